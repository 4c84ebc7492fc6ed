//! The blocking shim: dual-mode sleep, TCP, UDP, channels and locks.

use std::io::{Read, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

use coro::monkey::prelude::*;

const WAIT: Duration = Duration::from_secs(20);

#[test]
fn smoke() {
    let (tx, rx) = mpsc::channel();
    let g = coro::spawn(move || {
        thread::sleep(Duration::from_millis(1));
        tx.send(coro::is_coroutine()).unwrap();
    })
    .unwrap();
    assert!(rx.recv_timeout(WAIT).unwrap());
    assert!(g.join_timeout(WAIT));
    assert!(!coro::monkey::is_patched());
}

#[test]
fn shim_sleep_blocks_outside_and_yields_inside() {
    // Outside a coroutine: a plain sleep.
    let t = Instant::now();
    coro::monkey::sleep(Duration::from_millis(20));
    assert!(t.elapsed() >= Duration::from_millis(20));

    // Inside: 100 sleepers of 20 ms on one worker overlap (serial would be 2 s).
    let t = Instant::now();
    let gs: Vec<_> = (0..100)
        .map(|_| {
            coro::spawn(|| {
                let t = Instant::now();
                coro::monkey::sleep(Duration::from_millis(20));
                t.elapsed()
            })
            .unwrap()
        })
        .collect();
    coro::joinall(&gs, Some(WAIT)).unwrap();
    let wall = t.elapsed();
    for mut g in gs {
        assert!(g.get().unwrap() >= Duration::from_millis(20));
    }
    assert!(
        wall < Duration::from_millis(1000),
        "100 x 20 ms took {wall:?}"
    );
}

#[test]
fn echo_server_serves_100_concurrent_clients() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let clients = 100;
    let server = coro::spawn(move || {
        let mut handlers = Vec::new();
        for _ in 0..clients {
            let (mut stream, _) = listener.accept().unwrap();
            handlers.push(
                coro::spawn(move || {
                    stream.set_read_timeout(Some(WAIT)).unwrap();
                    let mut buf = [0u8; 256];
                    let mut echoed = 0;
                    loop {
                        let n = stream.read(&mut buf).unwrap();
                        if n == 0 {
                            return echoed;
                        }
                        stream.write_all(&buf[..n]).unwrap();
                        echoed += n;
                    }
                })
                .unwrap(),
            );
        }
        handlers
            .iter_mut()
            .map(|h| h.get_timeout(WAIT).unwrap())
            .sum::<usize>()
    })
    .unwrap();
    let client_greenlets: Vec<_> = (0..clients)
        .map(|i| {
            coro::spawn(move || {
                let mut s = TcpStream::connect(addr).unwrap();
                s.set_read_timeout(Some(WAIT)).unwrap();
                let msg = format!("hello from client {i}");
                s.write_all(msg.as_bytes()).unwrap();
                let mut back = vec![0u8; msg.len()];
                s.read_exact(&mut back).unwrap();
                assert_eq!(back, msg.as_bytes());
                msg.len()
            })
            .unwrap()
        })
        .collect();
    let mut sent = 0;
    for mut c in client_greenlets {
        sent += c.get_timeout(WAIT).unwrap();
    }
    let mut server = server;
    assert_eq!(server.get_timeout(WAIT).unwrap(), sent);
}

#[test]
fn tcp_works_from_plain_threads_too() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let t = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut buf = [0u8; 4];
        s.read_exact(&mut buf).unwrap();
        s.write_all(&buf).unwrap();
    });
    let mut c = TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(WAIT)).unwrap();
    c.write_all(b"ping").unwrap();
    let mut buf = [0u8; 4];
    c.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"ping");
    t.join().unwrap();
}

#[test]
fn udp_round_trip_inside_a_coroutine() {
    let server = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = server.local_addr().unwrap();
    server.set_read_timeout(Some(WAIT)).unwrap();
    let echo = coro::spawn(move || {
        let mut buf = [0u8; 64];
        let (n, from) = server.recv_from(&mut buf).unwrap();
        server.send_to(&buf[..n], from).unwrap();
    })
    .unwrap();
    let mut client = coro::spawn(move || {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        s.set_read_timeout(Some(WAIT)).unwrap();
        s.send_to(b"datagram", addr).unwrap();
        let mut buf = [0u8; 64];
        let (n, _) = s.recv_from(&mut buf).unwrap();
        buf[..n].to_vec()
    })
    .unwrap();
    assert_eq!(client.get_timeout(WAIT).unwrap(), b"datagram");
    assert!(echo.join_timeout(WAIT));
}

#[test]
fn mutex_held_across_a_yield_does_not_block_the_worker() {
    // With std's Mutex, a coroutine waiting for a lock held by a sleeping
    // coroutine would block the only worker forever; may's yields instead.
    let m = Arc::new(Mutex::new(0));
    let m1 = m.clone();
    let holder = coro::spawn(move || {
        let mut g = m1.lock().unwrap();
        coro::sleep(Duration::from_millis(10));
        *g += 1;
    })
    .unwrap();
    let m2 = m.clone();
    let waiter = coro::spawn(move || {
        coro::yield_now();
        *m2.lock().unwrap() += 10;
    })
    .unwrap();
    coro::joinall([&holder, &waiter], Some(WAIT)).unwrap();
    assert_eq!(*m.lock().unwrap(), 11);
}

/// The shim's listener binds with the system's largest backlog (as `ss`
/// reports it), and `listen` sets another.
#[test]
fn shim_listener_listens_with_the_largest_backlog() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let backlog = |port: u16| -> Option<u32> {
        let out = std::process::Command::new("ss")
            .args(["-ltnH", &format!("sport = :{port}")])
            .output()
            .ok()?;
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        text.lines().next()?.split_whitespace().nth(2)?.parse().ok()
    };
    let Some(got) = backlog(port) else {
        eprintln!("skipped: no `ss` to read the backlog with");
        return;
    };
    assert_eq!(got, coro::monkey::net::max_listen_backlog() as u32);
    assert!(got > 1024, "may's own bind listens with 1024; got {got}");
    listener.listen(7).unwrap();
    assert_eq!(backlog(port), Some(7));
}
