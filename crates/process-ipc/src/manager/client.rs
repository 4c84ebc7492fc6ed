//! How a `ManagedQueue` in a process other than the manager's talks to its queue's server:
//! this process's connection (request channel, feeder, registered clients), and each call as
//! a request and its reply.

use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use ipc_channel::ipc::{IpcReceiver, IpcSender, OpaqueIpcSender};

use super::error::ManagerError;
use super::feeder::Feeder;
use super::wire::{Reply, Request};
use crate::Wire;

/// One registered connection to a queue's server: an id and the receiving end of the reply
/// channel that only the server can send on.
pub(super) struct Client<T> {
    pub(super) id: u64,
    pub(super) next_seq: u64,
    pub(super) replies: IpcReceiver<Reply<T>>,
    /// The queue's request channel, re-typed so that `Drop` can send `Unregister` (which
    /// carries no item, so its bytes are the same for every item type).
    pub(super) unregister: IpcSender<Request<()>>,
}

impl<T> Drop for Client<T> {
    fn drop(&mut self) {
        // Best effort: a server that is gone has nothing left to forget.
        let _ = self
            .unregister
            .send(Request::Unregister { client: self.id });
    }
}

/// How long a get or a bounded put may wait.
#[derive(Clone, Copy)]
pub(super) enum Wait {
    No,
    Until(Instant, Duration),
    Forever,
}

impl Wait {
    /// The timeout a timed wait was given (zero otherwise).
    pub(super) fn timeout(self) -> Duration {
        match self {
            Wait::Until(_, timeout) => timeout,
            _ => Duration::ZERO,
        }
    }
}

/// What a client call ended with; `Broken` means the client must not be reused.
pub(super) enum Outcome<T> {
    Ok(T),
    Broken(ManagerError),
}

/// One process's connection to one queue's server, shared by every handle to that queue
/// decoded in the process (a pool worker decodes one per task).
pub(super) struct Connection<T> {
    pub(super) requests: OpaqueIpcSender,
    /// Who this process is to the server when its puts do not decode (reported at flush).
    pub(super) producer: u64,
    /// The thread that sends this process's puts, started by the first one; `None` inside if
    /// it could not start (puts then go directly).
    pub(super) feeder: OnceLock<Option<Feeder<T>>>,
    /// Registered clients not in use by a call right now (one per concurrent caller).
    pub(super) clients: Mutex<Vec<Client<T>>>,
}

impl<T: Wire> Connection<T> {
    pub(super) fn requests(&self) -> IpcSender<Request<T>> {
        self.requests.clone().to()
    }
}

/// A number no other live process uses as a producer id: the pid, and randomness against a
/// pid reused while the manager still remembers the old process.
pub(super) fn new_producer() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let random = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    (u64::from(std::process::id()) << 32) ^ (random & 0xffff_ffff)
}

impl<T> Client<T> {
    /// The next request number.
    pub(super) fn seq(&mut self) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        seq
    }
}
