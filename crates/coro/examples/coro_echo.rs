//! A TCP echo server on 127.0.0.1 serving many clients at once, all through the shim.
//!
//! ```python
//! from gevent.server import StreamServer
//! def echo(sock, addr):
//!     for line in sock.makefile():
//!         sock.sendall(line.encode())
//! ```
//!
//! The same `TcpStream` type works in a coroutine (it yields while it waits)
//! and in a plain thread (it blocks), so the last client here is a thread.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use anyhow::Context;
use coro::monkey::prelude::*;

const CLIENTS: usize = 200;
const ROUNDS: usize = 5;
const LIMIT: Duration = Duration::from_secs(10);

fn handle(mut stream: TcpStream) -> anyhow::Result<usize> {
    stream.set_read_timeout(Some(LIMIT))?;
    let mut buf = [0u8; 512];
    let mut echoed = 0;
    loop {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            return Ok(echoed);
        }
        stream.write_all(&buf[..n])?;
        echoed += n;
    }
}

fn client(addr: std::net::SocketAddr, id: usize) -> anyhow::Result<usize> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(LIMIT))?;
    let mut total = 0;
    for round in 0..ROUNDS {
        let msg = format!("client {id:03} round {round}\n");
        s.write_all(msg.as_bytes())?;
        let mut back = vec![0u8; msg.len()];
        s.read_exact(&mut back)?;
        anyhow::ensure!(back == msg.as_bytes(), "client {id}: echo mismatch");
        total += msg.len();
    }
    Ok(total)
}

fn main() -> anyhow::Result<()> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    println!(
        "coro_echo: echo server on {addr}, {CLIENTS} clients x {ROUNDS} round trips, one worker"
    );
    let start = Instant::now();
    // The server accepts exactly CLIENTS + 1 connections, one greenlet each.
    let mut server = coro::Builder::new().name("server").spawn(move || {
        let mut handlers = Vec::new();
        for _ in 0..=CLIENTS {
            let (stream, _) = listener.accept()?;
            handlers.push(coro::spawn(move || handle(stream))?);
        }
        let mut echoed = 0;
        for mut h in handlers {
            echoed += h.get_timeout(LIMIT)??;
        }
        anyhow::Ok(echoed)
    })?;
    let mut clients = (0..CLIENTS)
        .map(|id| coro::spawn(move || client(addr, id)))
        .collect::<Result<Vec<_>, _>>()?;
    // One more client from a plain thread: the same type, blocking mode.
    let thread_client = std::thread::spawn(move || client(addr, CLIENTS));

    let mut sent = 0;
    for c in &mut clients {
        sent += c.get_timeout(LIMIT)??;
    }
    sent += thread_client
        .join()
        .map_err(|_| anyhow::anyhow!("thread client panicked"))??;
    let echoed = server.get_timeout(LIMIT)?.context("server failed")?;
    let wall = start.elapsed();
    anyhow::ensure!(
        sent == echoed,
        "sent {sent} bytes but the server echoed {echoed}"
    );
    println!(
        "  {} clients served ({} in coroutines + 1 in a thread), {} bytes echoed",
        CLIENTS + 1,
        CLIENTS,
        echoed
    );
    println!(
        "  wall {:.1} ms, {:.1} µs per round trip",
        wall.as_secs_f64() * 1e3,
        wall.as_secs_f64() * 1e6 / ((CLIENTS + 1) * ROUNDS) as f64
    );
    Ok(())
}
