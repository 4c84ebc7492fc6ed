//! State shared between processes: [`SharedMemory`], [`Value`]/[`Array`] of plain-old-data
//! types, and process-wide [`Lock`], [`RLock`], [`Event`], [`Semaphore`], [`Condition`],
//! [`Barrier`].
//!
//! Every one of them lives in a memfd block (nothing in `/dev/shm`, nothing left after a
//! crash), and every handle is a serde value naming its block, so it passes to a `Process` or
//! pool task like any argument and attaches on arrival.

mod cell;
mod error;
mod memory;
mod sync;
mod value;

pub use error::SharedError;
pub use memory::SharedMemory;
pub use sync::{
    Barrier, BoundedSemaphore, Condition, Event, Lock, LockGuard, RLock, RLockGuard, Semaphore,
};
pub use value::{Array, ArrayGuard, RawArray, RawValue, Value, ValueGuard, ValueLock};
