//! `patch_all()` for the network: unchanged `std::net` code is cooperative inside coroutines.
//!
//! Its own test binary (`required-features = ["patch"]`): the patch is
//! process-wide. The first half of the one sequence runs unpatched, so the
//! steps run in a fixed order inside one test function. Each scenario is
//! built so that it can only finish if the other coroutine runs while the
//! first one waits in a plain `std::net` call (one worker): no timing is asserted.

use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream, ToSocketAddrs, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(20);

/// A reads from a socket that only B (spawned after A, same worker) writes to.
/// Returns what A read, or its error kind.
fn reader_needs_writer() -> Result<Vec<u8>, ErrorKind> {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let mut a = coro::spawn(move || {
        let mut s = TcpStream::connect(addr).map_err(|e| e.kind())?;
        // Bounded, in case the read blocks the worker (unpatched).
        s.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let mut buf = [0u8; 5];
        s.read_exact(&mut buf).map_err(|e| e.kind())?;
        Ok(buf.to_vec())
    })
    .unwrap();
    let (mut server_side, _) = listener.accept().unwrap();
    let b = coro::spawn(move || server_side.write_all(b"hello").unwrap()).unwrap();
    let got = a.get_timeout(WAIT).unwrap();
    assert!(b.join_timeout(WAIT));
    got
}

#[test]
fn smoke_std_net_inside_coroutines_cooperates_after_patch_all() {
    // Before the patch: A's read blocks the only worker, so it times out
    // (WouldBlock, as glibc reports SO_RCVTIMEO) before B can write.
    assert_eq!(reader_needs_writer(), Err(ErrorKind::WouldBlock));

    coro::monkey::patch_all().unwrap();
    // After: A parks, B runs on the same worker and writes, A reads it.
    assert_eq!(reader_needs_writer().unwrap(), b"hello");

    outside_coroutines_std_net_is_unchanged();
    read_timeout_is_honoured_and_others_run_meanwhile();
    explicit_nonblocking_stays_nonblocking();
    accept_waits_for_a_connection_made_by_another_coroutine();
    udp_recv_from_waits_for_send_to();
    poll_inside_a_coroutine_waits_for_readiness();
    name_lookups_work_inside_coroutines();
    many_coroutines_talk_to_one_server_at_once();
    pipes_and_files_are_untouched();
    a_greenlet_killed_in_a_patched_read_stops();
    a_killed_greenlet_that_swallows_the_error_ends_at_its_next_switch();
    listen_backlog_is_raised_while_patched();
}

fn outside_coroutines_std_net_is_unchanged() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut c = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    c.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
    let mut buf = [0u8; 1];
    // The main thread is no coroutine: glibc's own blocking read with its timeout.
    assert_eq!(c.read(&mut buf).unwrap_err().kind(), ErrorKind::WouldBlock);
    let (mut s, _) = listener.accept().unwrap();
    s.write_all(b"x").unwrap();
    c.set_read_timeout(None).unwrap();
    assert_eq!(c.read(&mut buf).unwrap(), 1);
}

fn read_timeout_is_honoured_and_others_run_meanwhile() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let ticks = coro::Queue::new();
    let tx = ticks.clone();
    let mut reader = coro::spawn(move || {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        let mut buf = [0u8; 1];
        let err = s.read(&mut buf).unwrap_err().kind();
        // Another coroutine ran while this one waited.
        (err, tx.qsize())
    })
    .unwrap();
    let _keep = listener.accept().unwrap();
    let ticker = coro::spawn(move || ticks.put(()).unwrap()).unwrap();
    let (kind, ticked) = reader.get_timeout(WAIT).unwrap();
    assert_eq!(kind, ErrorKind::WouldBlock);
    assert_eq!(ticked, 1);
    assert!(ticker.join_timeout(WAIT));
}

fn explicit_nonblocking_stays_nonblocking() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let mut g = coro::spawn(move || {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_nonblocking(true).unwrap();
        let mut buf = [0u8; 1];
        let first = s.read(&mut buf).unwrap_err().kind();
        // The flag is the user's: still non-blocking after the call.
        s.set_nonblocking(false).unwrap();
        s.set_nonblocking(true).unwrap();
        (first, s.read(&mut buf).unwrap_err().kind())
    })
    .unwrap();
    let _keep = listener.accept().unwrap();
    assert_eq!(
        g.get_timeout(WAIT).unwrap(),
        (ErrorKind::WouldBlock, ErrorKind::WouldBlock)
    );
}

fn accept_waits_for_a_connection_made_by_another_coroutine() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let mut server = coro::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).unwrap();
        buf
    })
    .unwrap();
    let client = coro::spawn(move || {
        let mut c = TcpStream::connect(addr).unwrap();
        c.write_all(b"via accept").unwrap();
    })
    .unwrap();
    assert_eq!(server.get_timeout(WAIT).unwrap(), b"via accept");
    assert!(client.join_timeout(WAIT));
}

fn udp_recv_from_waits_for_send_to() {
    let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
    let to = rx.local_addr().unwrap();
    let mut receiver = coro::spawn(move || {
        rx.set_read_timeout(Some(WAIT)).unwrap();
        let mut buf = [0u8; 16];
        let (n, _) = rx.recv_from(&mut buf).unwrap();
        buf[..n].to_vec()
    })
    .unwrap();
    let sender = coro::spawn(move || {
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        tx.send_to(b"dgram", to).unwrap();
    })
    .unwrap();
    assert_eq!(receiver.get_timeout(WAIT).unwrap(), b"dgram");
    assert!(sender.join_timeout(WAIT));
}

fn poll_inside_a_coroutine_waits_for_readiness() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let mut poller = coro::spawn(move || {
        let s = TcpStream::connect(addr).unwrap();
        let mut p = libc::pollfd {
            fd: s.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let n = unsafe { libc::poll(&mut p, 1, 20_000) };
        (n, p.revents & libc::POLLIN != 0)
    })
    .unwrap();
    let (mut server_side, _) = listener.accept().unwrap();
    let writer = coro::spawn(move || server_side.write_all(b"!").unwrap()).unwrap();
    assert_eq!(poller.get_timeout(WAIT).unwrap(), (1, true));
    assert!(writer.join_timeout(WAIT));
}

fn name_lookups_work_inside_coroutines() {
    let mut g = coro::spawn(|| {
        ("localhost", 80)
            .to_socket_addrs()
            .map(|addrs| addrs.map(|a| a.port()).collect::<Vec<_>>())
    })
    .unwrap();
    let ports = g.get_timeout(WAIT).unwrap().unwrap();
    assert!(!ports.is_empty() && ports.iter().all(|&p| p == 80));
    let mut bad = coro::spawn(|| "no-such-host.invalid:1".to_socket_addrs().is_err()).unwrap();
    assert!(bad.get_timeout(WAIT).unwrap());
}

fn many_coroutines_talk_to_one_server_at_once() {
    // A server coroutine per connection, all on one worker, all in plain std::net.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    const N: usize = 50;
    let server = coro::spawn(move || {
        let handlers: Vec<_> = (0..N)
            .map(|_| {
                let (mut s, _) = listener.accept().unwrap();
                coro::spawn(move || {
                    let mut buf = [0u8; 4];
                    for _ in 0..3 {
                        s.read_exact(&mut buf).unwrap();
                        s.write_all(&buf).unwrap();
                    }
                })
                .unwrap()
            })
            .collect();
        coro::joinall(&handlers, Some(WAIT)).is_ok()
    })
    .unwrap();
    let clients: Vec<_> = (0..N as u32)
        .map(|i| {
            coro::spawn(move || {
                let mut c = TcpStream::connect(addr).unwrap();
                let mut back = [0u8; 4];
                (0..3).all(|_| {
                    c.write_all(&i.to_le_bytes()).unwrap();
                    c.read_exact(&mut back).unwrap();
                    back == i.to_le_bytes()
                })
            })
            .unwrap()
        })
        .collect();
    for g in clients {
        assert!(g.into_value().unwrap());
    }
    assert!(server.into_value().unwrap());
}

fn pipes_and_files_are_untouched() {
    let mut g = coro::spawn(|| {
        let path = std::env::temp_dir().join(format!("coro-patch-net-{}", std::process::id()));
        std::fs::write(&path, b"file bytes").unwrap();
        let back = std::fs::read(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        back
    })
    .unwrap();
    assert_eq!(g.get_timeout(WAIT).unwrap(), b"file bytes");
}

fn a_greenlet_killed_in_a_patched_read_stops() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let mut reader = coro::spawn(move || {
        let mut s = TcpStream::connect(addr).unwrap();
        let mut buf = [0u8; 4];
        // Nothing ever comes: only a kill ends this.
        s.read_exact(&mut buf).unwrap();
    })
    .unwrap();
    let _keep = listener.accept().unwrap();
    // Let it reach its read (one worker: this runs after it parks).
    coro::spawn(|| ()).unwrap().join();
    assert!(reader.kill_timeout(WAIT));
    assert!(matches!(reader.get(), Err(coro::CoroError::Killed { .. })));
}

/// A kill inside a patched call cannot unwind through glibc's `extern "C"` symbol: the
/// call fails with `ECANCELED`. Code that swallows that error still ends killed, with
/// its `Drop`s run, at its next switch point (here a `coro::sleep`), which unwinds.
fn a_killed_greenlet_that_swallows_the_error_ends_at_its_next_switch() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    struct Flag(Arc<AtomicBool>);
    impl Drop for Flag {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (dropped, past) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicBool::new(false)),
    );
    let seen = coro::Queue::new();
    let (d, p, tx) = (dropped.clone(), past.clone(), seen.clone());
    let mut reader = coro::spawn(move || {
        let _flag = Flag(d);
        let mut s = TcpStream::connect(addr).unwrap();
        tx.put((ErrorKind::Other, None)).unwrap(); // connected; the read comes next
        let err = s.read(&mut [0u8; 4]).unwrap_err();
        tx.put((err.kind(), err.raw_os_error())).unwrap();
        // A later patched call that would wait fails the same way, at once.
        let again = s.read(&mut [0u8; 4]).unwrap_err().raw_os_error();
        tx.put((ErrorKind::Other, again)).unwrap();
        coro::sleep(WAIT); // the next switch point: the kill unwinds from here
        p.store(true, Ordering::SeqCst);
    })
    .unwrap();
    let _keep = listener.accept().unwrap();
    // Connected: the kill comes while it waits in its read, or just before (then
    // the read's wait fails at once); either way the read is what sees it.
    assert_eq!(seen.get_timeout(WAIT).unwrap(), (ErrorKind::Other, None));
    assert!(reader.kill_timeout(WAIT));
    let (kind, code) = seen.get_timeout(WAIT).unwrap();
    assert_eq!(code, Some(libc::ECANCELED));
    assert_eq!(
        kind,
        std::io::Error::from_raw_os_error(libc::ECANCELED).kind()
    );
    assert_eq!(seen.get_timeout(WAIT).unwrap().1, Some(libc::ECANCELED));
    assert!(reader.get().unwrap_err().is_killed());
    assert_eq!(reader.successful(), Some(true));
    assert!(dropped.load(Ordering::SeqCst), "its Drops ran");
    assert!(
        !past.load(Ordering::SeqCst),
        "it did not go on past the switch point"
    );
}

/// The backlog of the listening socket on `port`, as `ss` reports it (its
/// Send-Q column); `None` if `ss` (iproute2) is missing.
pub fn listen_backlog(port: u16) -> Option<u32> {
    let out = std::process::Command::new("ss")
        .args(["-ltnH", &format!("sport = :{port}")])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().next()?;
    line.split_whitespace().nth(2)?.parse().ok()
}

fn listen_backlog_is_raised_while_patched() {
    let max = coro::monkey::net::max_listen_backlog();
    assert!(max >= 128, "{max}");
    let std_listener = TcpListener::bind("127.0.0.1:0").unwrap(); // std asks for 128
    let port = std_listener.local_addr().unwrap().port();
    let Some(backlog) = listen_backlog(port) else {
        eprintln!("skipped: no `ss` to read the backlog with");
        return;
    };
    assert_eq!(backlog, max as u32);
    coro::monkey::raise_listen_backlog(false);
    let kept = TcpListener::bind("127.0.0.1:0").unwrap();
    let kept_port = kept.local_addr().unwrap().port();
    coro::monkey::raise_listen_backlog(true);
    assert_eq!(
        listen_backlog(kept_port),
        Some(128),
        "the caller's number is kept"
    );
}

const CHILD: &str = "CORO_PATCH_NET_KILL_CHILD";

/// Run in a child process by `a_kill_in_a_patched_call_prints_nothing`: a
/// greenlet killed in a patched read whose error it `unwrap`s.
#[test]
fn child_killed_in_a_patched_read_that_unwraps() {
    if std::env::var_os(CHILD).is_none() {
        return;
    }
    coro::monkey::patch_all().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let dropped = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    struct Guard(std::sync::Arc<std::sync::atomic::AtomicBool>);
    impl Drop for Guard {
        fn drop(&mut self) {
            self.0.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    }
    let d = dropped.clone();
    let mut reader = coro::spawn(move || {
        let _guard = Guard(d);
        let mut s = TcpStream::connect(addr).unwrap();
        s.read_exact(&mut [0u8; 4]).unwrap(); // ECANCELED after the kill
    })
    .unwrap();
    let _keep = listener.accept().unwrap();
    coro::spawn(|| ()).unwrap().join();
    assert!(reader.kill_timeout(WAIT));
    assert_eq!(reader.successful(), Some(true));
    assert!(reader.get().unwrap_err().is_killed());
    assert!(dropped.load(std::sync::atomic::Ordering::SeqCst));
    let mut real = coro::spawn(|| -> u8 { panic!("a real panic") }).unwrap();
    assert!(real.get().is_err());
    println!("child done");
}

/// A kill inside a patched call, and the `unwrap` of its `ECANCELED`, print
/// nothing on stderr; a real panic still prints.
#[test]
fn a_kill_in_a_patched_call_prints_nothing() {
    if std::env::var_os(CHILD).is_some() {
        return;
    }
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_killed_in_a_patched_read_that_unwraps"])
        .args(["--nocapture", "--test-threads", "1"])
        .env(CHILD, "1")
        .env("RUST_BACKTRACE", "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.contains("child done"), "{stdout}");
    assert!(!stderr.contains("Operation canceled"), "{stderr}");
    assert!(!stderr.contains("read_exact"), "{stderr}");
    assert!(stderr.contains("a real panic"), "{stderr}");
    assert_eq!(stderr.matches("panicked").count(), 1, "{stderr}");
}
