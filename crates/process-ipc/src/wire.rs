//! What crosses between processes: the bound every transported value meets.

use serde::Serialize;
use serde::de::DeserializeOwned;

/// A value that can travel to another process: serde both ways, owned, sendable.
///
/// Every argument, return value and queue item of this crate meets it; it is implemented for
/// every type that does, so there is nothing to implement by hand.
///
/// ```
/// fn takes_wire<T: process_ipc::Wire>(_: T) {}
/// takes_wire((1u8, String::from("two"), vec![3.0f64]));
/// ```
pub trait Wire: Serialize + DeserializeOwned + Send + 'static {}

impl<T: Serialize + DeserializeOwned + Send + 'static> Wire for T {}
