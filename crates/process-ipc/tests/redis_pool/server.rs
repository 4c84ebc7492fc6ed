//! A `redis-server` of the test's own, in a temporary directory, stopped when dropped; and the
//! "hosts" the tests start: this same test binary serving pool workers, in its own process
//! group and, where the kernel allows, its own network namespace.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a test waits for anything before it fails.
pub(crate) const WAIT: Duration = Duration::from_secs(60);

/// A fresh empty directory under the system's temporary one, removed on drop.
pub(crate) struct TempDir(pub(crate) PathBuf);

impl TempDir {
    pub(crate) fn new(tag: &str) -> TempDir {
        let nonce: u64 = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let dir =
            std::env::temp_dir().join(format!("mt-redis-{tag}-{}-{nonce:x}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Polls `ready` until it is true, failing the test after `WAIT` (a readiness wait on a
/// condition, not a sleep standing in for one).
pub(crate) fn until(what: &str, mut ready: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ready() {
        assert!(
            start.elapsed() < WAIT,
            "gave up waiting for {what} after {WAIT:?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A running `redis-server`.
pub(crate) struct RedisServer {
    child: Option<Child>,
    dir: PathBuf,
    args: Vec<String>,
    pub(crate) url: String,
}

impl RedisServer {
    /// A server on a Unix socket in `dir`.
    pub(crate) fn unix(dir: &Path) -> RedisServer {
        let sock = dir.join("r.sock");
        let args = vec![
            "--port".into(),
            "0".into(),
            "--unixsocket".into(),
            sock.display().to_string(),
            "--unixsocketperm".into(),
            "700".into(),
        ];
        Self::start(dir, args, format!("redis+unix://{}", sock.display()))
    }

    /// A server on TCP at `addr:port` (for workers in another network namespace).
    pub(crate) fn tcp(dir: &Path, addr: &str, port: u16) -> RedisServer {
        let args = vec![
            "--port".into(),
            port.to_string(),
            "--bind".into(),
            addr.into(),
            "--protected-mode".into(),
            "no".into(),
        ];
        Self::start(dir, args, format!("redis://{addr}:{port}"))
    }

    fn start(dir: &Path, mut args: Vec<String>, url: String) -> RedisServer {
        args.extend(
            ["--save", "", "--appendonly", "no", "--dir"]
                .iter()
                .map(|s| s.to_string()),
        );
        args.push(dir.display().to_string());
        let mut server = RedisServer {
            child: None,
            dir: dir.to_path_buf(),
            args,
            url,
        };
        server.restart();
        server
    }

    /// Starts the server (again) and waits until it answers PING.
    pub(crate) fn restart(&mut self) {
        assert!(self.child.is_none(), "already running");
        let child = Command::new("redis-server")
            .args(&self.args)
            .current_dir(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server on the PATH (apt-get install redis-server)");
        self.child = Some(child);
        let client = redis::Client::open(self.url.as_str()).unwrap();
        until("redis-server to answer", || {
            client
                .get_connection_with_timeout(Duration::from_secs(1))
                .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c))
                .is_ok()
        });
    }

    /// Kills the server with SIGKILL and reaps it.
    pub(crate) fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends the server a signal (`-STOP`, `-CONT`).
    pub(crate) fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().expect("running").id().to_string();
        let status = Command::new("kill").args([signal, &pid]).status().unwrap();
        assert!(status.success());
    }

    /// A connection for the test's own commands.
    pub(crate) fn connection(&self) -> redis::Connection {
        redis::Client::open(self.url.as_str())
            .unwrap()
            .get_connection_with_timeout(Duration::from_secs(5))
            .unwrap()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Another "host": this test binary running only the test `host_entry`, which serves pool
/// workers for `url`, in its own process group (and network namespace `netns`, if given).
pub(crate) struct Host {
    child: Option<Child>,
}

impl Host {
    pub(crate) fn start(
        url: &str,
        workers: usize,
        tag: &str,
        dir: &Path,
        netns: Option<&str>,
    ) -> Host {
        use std::os::unix::process::CommandExt;
        let exe = std::env::current_exe().unwrap();
        let mut cmd = match netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(&exe);
                c
            }
            None => Command::new(&exe),
        };
        cmd.args([
            "--exact",
            "host_entry",
            "--ignored",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env("MT_REDIS_HOST_URL", url)
        .env("MT_REDIS_HOST_WORKERS", workers.to_string())
        .env("MT_REDIS_HOST_TAG", tag)
        .env("MT_REDIS_HOST_DIR", dir)
        .stdout(Stdio::null())
        .process_group(0);
        Host {
            child: Some(cmd.spawn().unwrap()),
        }
    }

    /// Kills the host's whole process group with SIGKILL: its workers go with it, and nobody
    /// is left to tell Redis (as when a machine loses power).
    pub(crate) fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", child.id())])
                .status();
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A network namespace joined to ours by a veth pair, removed on drop.
pub(crate) struct Netns {
    pub(crate) name: String,
    outer: String,
    pub(crate) outer_addr: String,
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip {args:?}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {args:?}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

impl Netns {
    /// Makes namespace `mtr<pid>` with the veth pair `mtA<pid>` (ours, 10.231.x.1/30) and
    /// `mtB<pid>` (its, 10.231.x.2/30); an error if the kernel or our rights refuse.
    pub(crate) fn create() -> Result<Netns, String> {
        let pid = std::process::id();
        let x = pid % 250;
        let ns = Netns {
            name: format!("mtr{pid}"),
            outer: format!("mtA{pid}"),
            outer_addr: format!("10.231.{x}.1"),
        };
        let inner = format!("mtB{pid}");
        let inner_addr = format!("10.231.{x}.2/30");
        match ns.build(&inner, &inner_addr) {
            Ok(()) => Ok(ns),
            Err(e) => Err(e), // dropping `ns` removes whatever was made
        }
    }

    fn build(&self, inner: &str, inner_addr: &str) -> Result<(), String> {
        let ns = self;
        ip(&["netns", "add", &ns.name])?;
        ip(&[
            "link", "add", &ns.outer, "type", "veth", "peer", "name", inner,
        ])?;
        ip(&["link", "set", inner, "netns", &ns.name])?;
        ip(&[
            "addr",
            "add",
            &format!("{}/30", ns.outer_addr),
            "dev",
            &ns.outer,
        ])?;
        ip(&["link", "set", &ns.outer, "up"])?;
        let inside = |args: &[&str]| {
            let mut all = vec!["netns", "exec", &ns.name, "ip"];
            all.extend_from_slice(args);
            ip(&all)
        };
        inside(&["addr", "add", inner_addr, "dev", inner])?;
        inside(&["link", "set", inner, "up"])?;
        inside(&["link", "set", "lo", "up"])
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = ip(&["link", "del", &self.outer]);
        let _ = ip(&["netns", "del", &self.name]);
    }
}
