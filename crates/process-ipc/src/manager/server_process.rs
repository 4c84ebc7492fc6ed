//! [`ManagerBuilder::start`](super::ManagerBuilder::start): Python's `BaseManager.start()`, the
//! manager's server in a process of its own, started by the builder's start method (as
//! `Process::start_method` starts a child), instead of threads of this one
//! ([`serve`](super::ManagerBuilder::serve)).
//!
//! The server process serves on TCP (the builder's address, else a port of the loopback
//! address) with the builder's authkey (else a fresh random one), tells its parent the address
//! on a pipe and serves until the parent says stop or goes away (the pipe then closes); the
//! parent connects as any client does ([`Manager::connect`](super::Manager::connect)) and holds
//! the [`RemoteManager`] it gets. The server dies with its parent, as every child does.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::ops::Deref;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{Manager, ManagerError, RemoteManager};
use crate::error::ProcessError;
use crate::pipe::{Connection, pipe};
use crate::process::{Process, ProcessHandle};
use crate::start::{START_TIMEOUT, StartMethod};

/// How long a stopped server has to end before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(2);

/// What the server process is started with: the builder's settings.
#[derive(Serialize, Deserialize)]
pub(super) struct ServerSetup {
    pub(super) address: SocketAddr,
    pub(super) authkey: Vec<u8>,
    pub(super) max_frame: Option<usize>,
    pub(super) frame_timeout: Duration,
    pub(super) max_connections: usize,
}

/// The messages on the pipe between the parent and its server process.
#[derive(Serialize, Deserialize)]
enum Control {
    /// From the server: it listens at this address.
    Serving(SocketAddr),
    /// From the server: it could not start, and why.
    Failed(String),
    /// From the parent: shut down.
    Stop,
}

/// The server process's target: serves until told to stop or the parent's end closes.
fn serve_until_told(setup: ServerSetup, control: Connection<Control>) {
    let mut builder = Manager::builder()
        .address(setup.address)
        .authkey(&setup.authkey)
        .frame_timeout(setup.frame_timeout)
        .max_connections(setup.max_connections);
    if let Some(bytes) = setup.max_frame {
        builder = builder.max_frame(bytes);
    }
    let manager = match builder.serve() {
        Ok(manager) => manager,
        Err(e) => {
            let _ = control.send(Control::Failed(e.to_string()));
            return;
        }
    };
    let Some(address) = manager.local_addr() else {
        let _ = control.send(Control::Failed("the manager is not on TCP".into()));
        return;
    };
    if control.send(Control::Serving(address)).is_err() {
        return;
    }
    // A `Stop`, or the parent's end closed: either way the server is done.
    let _ = control.recv();
    manager.shutdown();
}

/// Starts the server process by `method` (`None`: the process default) and connects to it.
pub(super) fn start(
    setup: ServerSetup,
    method: Option<StartMethod>,
) -> Result<ManagerProcess, ManagerError> {
    let failed = |source: std::io::Error| ManagerError::Start {
        pid: std::process::id(),
        source,
    };
    let authkey = setup.authkey.clone();
    let (control, theirs) = pipe::<Control>().map_err(|e| failed(std::io::Error::other(e)))?;
    let mut process = Process::new(serve_until_told, (setup, theirs)).daemon(true);
    if let Some(method) = method {
        process = process.start_method(method);
    }
    let mut server = process
        .start()
        .map_err(|e| failed(std::io::Error::other(e)))?;
    let stop = |server: &mut ProcessHandle<()>| {
        let _ = server.kill();
        let _ = server.join_timeout(STOP_GRACE);
    };
    let mut address = match control.recv_timeout(START_TIMEOUT) {
        Ok(Control::Serving(address)) => address,
        Ok(Control::Failed(why)) => {
            stop(&mut server);
            return Err(failed(std::io::Error::other(why)));
        }
        other => {
            stop(&mut server);
            let why = match other {
                Err(e) => format!("the server process did not say where it listens: {e}"),
                Ok(_) => "the server process answered out of turn".into(),
            };
            return Err(failed(std::io::Error::other(why)));
        }
    };
    if address.ip().is_unspecified() {
        address.set_ip(IpAddr::V4(Ipv4Addr::LOCALHOST));
    }
    let remote = match Manager::connect(address, &authkey) {
        Ok(remote) => remote,
        Err(e) => {
            stop(&mut server);
            return Err(e);
        }
    };
    Ok(ManagerProcess {
        remote,
        control,
        server: Some(server),
    })
}

/// A manager whose server runs in a process of its own, from
/// [`ManagerBuilder::start`](super::ManagerBuilder::start) (Python's `BaseManager.start()`):
/// it makes objects there as a [`RemoteManager`] does (it dereferences to one), and
/// [`shutdown`](Self::shutdown), or dropping it, stops the server process.
///
/// Its objects' handles reach the server over TCP with the manager's authkey, which this
/// process holds; another process that decodes one must [`connect`](Manager::connect) with the
/// key first (see [`RemoteManager`]).
///
/// ```
/// use process_ipc::StartMethod;
/// use process_ipc::manager::{ManagedDict, Manager};
///
/// let manager = Manager::builder().start_method(StartMethod::Spawn).start()?;
/// assert_ne!(manager.pid(), std::process::id()); // the server's own process
/// let d: ManagedDict<String, u32> = manager.dict()?;
/// d.insert("answer".into(), 42)?;
/// assert_eq!(d.get("answer")?, Some(42));
/// manager.shutdown()?;
/// # Ok::<(), process_ipc::manager::ManagerError>(())
/// ```
#[derive(Debug)]
pub struct ManagerProcess {
    remote: RemoteManager,
    control: Connection<Control>,
    server: Option<ProcessHandle<()>>,
}

impl Deref for ManagerProcess {
    type Target = RemoteManager;

    fn deref(&self) -> &RemoteManager {
        &self.remote
    }
}

impl ManagerProcess {
    /// Stops the server process and waits for it to end (killing it if it has not ended
    /// within two seconds); its objects are gone.
    ///
    /// # Errors
    /// [`ManagerError::Start`] naming why the server process's end could not be seen.
    pub fn shutdown(mut self) -> Result<(), ManagerError> {
        self.stop()
    }

    fn stop(&mut self) -> Result<(), ManagerError> {
        let Some(mut server) = self.server.take() else {
            return Ok(());
        };
        let _ = self.control.send(Control::Stop);
        let ended = match server.join_timeout(STOP_GRACE) {
            Ok(()) => Ok(()),
            Err(ProcessError::Timeout { .. }) => {
                // Stuck: it ends by the kill (the join then reports the kill, as expected).
                let _ = server.kill();
                let _ = server.join_timeout(STOP_GRACE);
                Ok(())
            }
            Err(e) => Err(e),
        };
        ended.map_err(|e| ManagerError::Start {
            pid: self.remote.pid(),
            source: std::io::Error::other(e),
        })
    }
}

impl Drop for ManagerProcess {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}
