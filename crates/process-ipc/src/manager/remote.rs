//! The half of [`ManagedQueue`]'s calls made from a process other than the manager's: each
//! a request over this process's [`Connection`](super::client::Connection) and its reply.

use super::client::{Client, Connection, Outcome, Wait, new_producer};
use super::error::{ManagerError, PutError};
use super::feeder::Feeder;
use super::queue::ManagedQueue;
use super::rendezvous::{self, Unreachable};
use super::server::Counts;
use super::wire::{Frames, Reply, Request};
use super::{REPLY_GRACE, ignore_sigpipe};
use crate::Wire;
use crate::wire::serialize_message;
use ipc_channel::ipc::{self, IpcSender};
use ipc_channel::{IpcError, TryRecvError};
use serde_bytes::ByteBuf;
use std::io;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

impl<T: Wire> ManagedQueue<T> {
    /// An unbounded put from a process other than the manager's: through the feeder.
    pub(super) fn put_remote(&self, item: T) -> Result<(), ManagerError> {
        let conn = self.conn()?;
        let feeder = conn.feeder.get_or_init(|| {
            let name = format!("manager-feeder-{}", self.queue);
            Feeder::start(conn.requests(), conn.producer, name).ok()
        });
        match feeder {
            Some(feeder) => {
                self.put_any.store(true, Ordering::Relaxed);
                feeder.put(item).map_err(|f| self.failed(f))
            }
            None => {
                let mut items = Frames::default();
                items
                    .push(&item)
                    .map_err(|e| self.serialization(serialize_message(&item, e)))?;
                let put = Request::Put {
                    producer: conn.producer,
                    items,
                };
                conn.requests().send(put).map_err(|e| self.send_error(e))
            }
        }
    }

    /// After this process's puts were sent: how many did not decode in the manager since the
    /// last flush, and why (a round trip that queues behind the puts).
    pub(super) fn flushed(&self) -> Result<Option<(u64, String)>, ManagerError> {
        let producer = self.conn()?.producer;
        self.with_client(REPLY_GRACE, |requests, client| {
            let seq = client.seq();
            let flush = Request::Flush {
                client: client.id,
                seq,
                producer,
            };
            if let Err(e) = requests.send(flush) {
                return Outcome::Broken(self.send_error(e));
            }
            loop {
                match self.recv(client, Some(REPLY_GRACE)) {
                    Ok(Reply::Flushed {
                        seq: s,
                        dropped,
                        why,
                    }) if s == seq => {
                        return Outcome::Ok((dropped > 0).then_some((dropped, why)));
                    }
                    Ok(_) => continue,
                    Err(e) => return Outcome::Broken(e),
                }
            }
        })
    }

    pub(super) fn counts(&self) -> Result<Counts, ManagerError> {
        if let Some(shared) = &self.local {
            return shared.counts().ok_or_else(|| self.gone("it was shut down"));
        }
        self.sync_puts(None);
        self.with_client(REPLY_GRACE, |requests, client| {
            let seq = client.seq();
            if let Err(e) = requests.send(Request::Qsize {
                client: client.id,
                seq,
            }) {
                return Outcome::Broken(self.send_error(e));
            }
            loop {
                match self.recv(client, Some(REPLY_GRACE)) {
                    Ok(Reply::Size {
                        seq: s,
                        len,
                        getters,
                        putters,
                    }) if s == seq => {
                        let size = |n: u64| usize::try_from(n).unwrap_or(usize::MAX);
                        return Outcome::Ok(Counts {
                            items: size(len),
                            getters: size(getters),
                            putters: size(putters),
                        });
                    }
                    Ok(_) => continue,
                    Err(e) => return Outcome::Broken(e),
                }
            }
        })
    }

    /// This process's connection to the queue: this handle's, the one another handle made in
    /// this process, or (first use in this process) a new one, obtained from the manager
    /// through its socket.
    fn conn(&self) -> Result<&Arc<Connection<T>>, ManagerError> {
        if let Some(conn) = self.conn.get() {
            return Ok(conn);
        }
        ignore_sigpipe();
        let queue = self.queue;
        let make = |requests| Connection {
            requests,
            producer: new_producer(),
            feeder: OnceLock::new(),
            clients: Mutex::new(Vec::new()),
        };
        let conn = rendezvous::connect(&self.address, queue, make).map_err(|e| match e {
            Unreachable::Gone(why) => self.gone(why),
            Unreachable::Io(source) => ManagerError::Io {
                pid: self.pid,
                queue,
                what: "cannot open a channel to reach the manager",
                source,
            },
        })?;
        Ok(self.conn.get_or_init(|| conn))
    }

    /// The feeder of this process's connection, if one was started.
    pub(super) fn feeder(&self) -> Option<&Feeder<T>> {
        self.conn.get()?.feeder.get()?.as_ref()
    }

    fn send_error(&self, error: IpcError) -> ManagerError {
        match error {
            IpcError::SerializationError(e) => self.serialization(e.to_string()),
            IpcError::Disconnected => self.gone("its request channel is closed"),
            IpcError::Io(e) => match e.kind() {
                io::ErrorKind::BrokenPipe
                | io::ErrorKind::ConnectionReset
                | io::ErrorKind::ConnectionRefused
                | io::ErrorKind::NotConnected => self.gone("its request channel is closed"),
                _ => ManagerError::Io {
                    pid: self.pid,
                    queue: self.queue,
                    what: "cannot send a request",
                    source: e,
                },
            },
        }
    }

    /// Receives one reply; `None` waits without bound. A timeout is `NoReply`.
    fn recv(&self, client: &Client<T>, wait: Option<Duration>) -> Result<Reply<T>, ManagerError> {
        let received = match wait {
            None => client.replies.recv().map_err(TryRecvError::IpcError),
            Some(d) => client.replies.try_recv_timeout(d),
        };
        received.map_err(|e| match e {
            TryRecvError::Empty => ManagerError::NoReply {
                pid: self.pid,
                queue: self.queue,
                waited: wait.unwrap_or_default(),
            },
            TryRecvError::IpcError(IpcError::SerializationError(e)) => {
                self.serialization(format!("the item received does not decode: {e}"))
            }
            TryRecvError::IpcError(_) => self.gone("its reply channel closed"),
        })
    }

    /// Runs `call` with a registered client (reused, or registered now within `register`),
    /// and keeps the client for later unless the call broke it.
    fn with_client<R>(
        &self,
        register: Duration,
        call: impl FnOnce(&IpcSender<Request<T>>, &mut Client<T>) -> Outcome<R>,
    ) -> Result<R, ManagerError> {
        let conn = self.conn()?;
        let requests = conn.requests();
        let pooled = conn.clients.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let mut client = match pooled {
            Some(client) => client,
            None => self.register(&requests, register)?,
        };
        match call(&requests, &mut client) {
            Outcome::Ok(value) => {
                conn.clients
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(client);
                Ok(value)
            }
            // Dropping the client unregisters it.
            Outcome::Broken(e) => Err(e),
        }
    }

    /// Creates a reply channel and registers it with the server.
    fn register(
        &self,
        requests: &IpcSender<Request<T>>,
        wait: Duration,
    ) -> Result<Client<T>, ManagerError> {
        let (reply, replies) = ipc::channel::<Reply<T>>().map_err(|source| ManagerError::Io {
            pid: self.pid,
            queue: self.queue,
            what: "cannot create a reply channel",
            source,
        })?;
        // The send moves `reply` and drops this process's copy of it: the server then holds
        // the only sending end, so its exit closes the channel and wakes this client.
        requests
            .send(Request::Register { reply })
            .map_err(|e| self.send_error(e))?;
        let mut client = Client {
            id: 0,
            next_seq: 1,
            replies,
            unregister: requests.clone().to_opaque().to(),
        };
        match self.recv(&client, Some(wait.max(REPLY_GRACE)))? {
            Reply::Registered { client: id } => {
                client.id = id;
                Ok(client)
            }
            _ => Err(self.gone("it answered a registration with something else")),
        }
    }

    pub(super) fn get_remote(&self, wait: Wait) -> Result<T, ManagerError> {
        let deadline = match wait {
            Wait::Until(deadline, _) => Some(deadline),
            _ => None,
        };
        if !self.sync_puts(deadline) {
            if let Wait::Until(_, timeout) = wait {
                return Err(self.timeout(timeout));
            }
        }
        let register = match wait {
            Wait::Until(deadline, _) => deadline.saturating_duration_since(Instant::now()),
            _ => REPLY_GRACE,
        };
        self.with_client(register, |requests, client| {
            let block = !matches!(wait, Wait::No);
            let request = |client, seq| Request::Get { client, seq, block };
            self.exchange(requests, client, request, wait, |reply, seq| match reply {
                Reply::Item { seq: s, item } if s == seq => Some(Ok(item)),
                Reply::Empty { seq: s } if s == seq => Some(Err(self.empty_error())),
                Reply::Cancelled { seq: s } if s == seq => Some(Err(self.timeout(wait.timeout()))),
                Reply::Undeliverable { seq: s, why } if s == seq => {
                    Some(Err(self.serialization(why)))
                }
                _ => None,
            })
        })?
    }

    /// Sends `request` (made from the client id and a fresh seq) and reads replies until
    /// `answer` recognises the one that concludes it. If `wait` runs out first, the request is
    /// withdrawn with `Cancel` and the server's answer to that (which may still be the real
    /// answer, sent just before) is what `answer` gets: a reply is never left unread.
    fn exchange<R>(
        &self,
        requests: &IpcSender<Request<T>>,
        client: &mut Client<T>,
        request: impl FnOnce(u64, u64) -> Request<T>,
        wait: Wait,
        mut answer: impl FnMut(Reply<T>, u64) -> Option<R>,
    ) -> Outcome<R> {
        let seq = client.seq();
        if let Err(e) = requests.send(request(client.id, seq)) {
            return Outcome::Broken(self.send_error(e));
        }
        loop {
            let bound = match wait {
                Wait::No => Some(REPLY_GRACE),
                Wait::Forever => None,
                Wait::Until(deadline, _) => {
                    Some(deadline.saturating_duration_since(Instant::now()))
                }
            };
            match self.recv(client, bound) {
                Ok(reply) => {
                    if let Some(r) = answer(reply, seq) {
                        return Outcome::Ok(r);
                    }
                }
                // ipc-channel polls in whole milliseconds, rounding down: wait out the rest.
                Err(ManagerError::NoReply { .. }) => match wait {
                    Wait::Until(deadline, _) if Instant::now() < deadline => {}
                    Wait::Until(..) => break,
                    _ => return Outcome::Broken(self.no_reply(REPLY_GRACE)),
                },
                Err(e) => return Outcome::Broken(e),
            }
        }
        let cancel = Request::Cancel {
            client: client.id,
            seq,
        };
        if let Err(e) = requests.send(cancel) {
            return Outcome::Broken(self.send_error(e));
        }
        loop {
            match self.recv(client, Some(REPLY_GRACE)) {
                Ok(reply) => {
                    if let Some(r) = answer(reply, seq) {
                        return Outcome::Ok(r);
                    }
                }
                Err(e) => return Outcome::Broken(e),
            }
        }
    }

    pub(super) fn put_bounded_remote(&self, item: T, wait: Wait) -> Result<(), PutError<T>> {
        // The item travels encoded on its own; this process keeps it until the answer, so a
        // refusal hands it back without another trip.
        let bytes = match postcard::to_stdvec(&item) {
            Ok(bytes) => ByteBuf::from(bytes),
            Err(e) => {
                let error = self.serialization(serialize_message(&item, e));
                return Err(PutError::new(error, Some(item)));
            }
        };
        let register = match wait {
            Wait::Until(deadline, _) => deadline.saturating_duration_since(Instant::now()),
            _ => REPLY_GRACE,
        };
        let block = !matches!(wait, Wait::No);
        let outcome = self.with_client(register, |requests, client| {
            let request = |client, seq| Request::PutWait {
                client,
                seq,
                item: bytes,
                block,
            };
            self.exchange(requests, client, request, wait, |reply, seq| match reply {
                Reply::PutAck { seq: s } if s == seq => Some(Ok(())),
                Reply::PutRefused { seq: s } if s == seq => Some(Err(self.full_error())),
                Reply::PutFailed { seq: s, why } if s == seq => Some(Err(self.serialization(why))),
                _ => None,
            })
        });
        match outcome {
            Ok(Ok(())) => Ok(()),
            Ok(Err(refused)) => Err(PutError::new(refused, Some(item))),
            Err(e) => Err(PutError::new(e, None)),
        }
    }
}
