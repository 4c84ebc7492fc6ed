//! The server benchmark's Rust side (`cargo xtask bench --servers` runs it).
//!
//! `coro_servers serve <shim|patched|tokio> <echo|http>` starts one server on
//! 127.0.0.1 (one thread of work each: coro's one worker, tokio's
//! `current_thread`), prints its port on the first line of stdout, and serves
//! until its stdin closes. `coro_servers load <port> <echo|http> <clients> <trips>`
//! is the one load generator for every server (the gevent twin,
//! `xtask/python/servers.py`, included): it holds `clients` connections at
//! once, each making `trips` request/response round trips (echo: 1 KiB out,
//! the same 1 KiB back; http: a keep-alive `GET /` and its 200 answer), and
//! prints one JSON line: requests per second and the p50/p99 latency of a
//! round trip. All N connect at once (set `CORO_SERVERS_CONNECT_AT_ONCE` to
//! pace them), so a listen backlog too small for N shows as ListenOverflows;
//! every connection is made before the first request, and the clock runs from
//! the first request to the last answer.
//!
//! The echo server is the one a gevent user writes; the `patched` server is
//! the same code on plain `std::net` after `coro::monkey::patch_all()`.

use std::io::{self, BufRead, Read, Write};
use std::time::{Duration, Instant};

/// One request and one answer of the echo protocol.
const MSG: usize = 1024;
/// The HTTP answer's body.
const BODY: &[u8] = b"Hello, World!";
/// No run lasts longer: the bench stops by itself.
const RUN_LIMIT: Duration = Duration::from_secs(120);

fn main() -> io::Result<()> {
    raise_nofile();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize| args.get(i).map(String::as_str).unwrap_or("");
    let http = match arg(2) {
        "echo" => false,
        "http" => true,
        _ => return Err(usage()),
    };
    match arg(0) {
        "serve" => serve(arg(1), http),
        "load" => {
            let port: u16 = arg(1).parse().map_err(|_| usage())?;
            let clients: usize = arg(3).parse().map_err(|_| usage())?;
            let trips: usize = arg(4).parse().map_err(|_| usage())?;
            load(port, http, clients, trips)
        }
        _ => Err(usage()),
    }
}

fn usage() -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        "usage: coro_servers serve <shim|patched|tokio> <echo|http> | \
         coro_servers load <port> <echo|http> <clients> <trips>",
    )
}

/// Raises RLIMIT_NOFILE to its hard limit (5 000 clients need 5 000 descriptors each side).
fn raise_nofile() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid rlimit to fill, then to read.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

/// Prints the port, then waits until stdin closes (the bench's end).
fn announce_and_wait(port: u16) -> io::Result<()> {
    println!("{port}");
    io::stdout().flush()?;
    let mut sink = String::new();
    while io::stdin().lock().read_line(&mut sink)? > 0 {}
    Ok(())
}

fn serve(kind: &str, http: bool) -> io::Result<()> {
    match kind {
        "shim" => {
            let listener = coro::monkey::net::TcpListener::bind("127.0.0.1:0")?;
            let port = listener.local_addr()?.port();
            coro::spawn(move || {
                while let Ok((stream, _)) = listener.accept() {
                    let _ = coro::spawn(move || handle(stream, http));
                }
            })
            .map_err(io::Error::other)?;
            announce_and_wait(port)
        }
        "patched" => {
            coro::monkey::patch_all().map_err(io::Error::other)?;
            // std asks for a backlog of 128; the patch raises it.
            let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
            let port = listener.local_addr()?.port();
            coro::spawn(move || {
                while let Ok((stream, _)) = listener.accept() {
                    let _ = coro::spawn(move || handle(stream, http));
                }
            })
            .map_err(io::Error::other)?;
            announce_and_wait(port)
        }
        "tokio" => serve_tokio(http),
        _ => Err(usage()),
    }
}

/// One connection: echo 1 KiB messages, or answer keep-alive GETs, until the client closes.
fn handle<S: Read + Write>(mut s: S, http: bool) {
    if !http {
        let mut buf = [0u8; MSG];
        while s.read_exact(&mut buf).is_ok() {
            if s.write_all(&buf).is_err() {
                return;
            }
        }
        return;
    }
    let answer = http_answer();
    let mut buf = vec![0u8; 4096];
    let mut have = 0;
    loop {
        match find_end(&buf[..have]) {
            Some(end) => {
                if s.write_all(&answer).is_err() {
                    return;
                }
                buf.copy_within(end..have, 0);
                have -= end;
            }
            None => match s.read(&mut buf[have..]) {
                Ok(0) | Err(_) => return,
                Ok(n) => have += n,
            },
        }
    }
}

fn http_answer() -> Vec<u8> {
    let mut a = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n",
        BODY.len()
    )
    .into_bytes();
    a.extend_from_slice(BODY);
    a
}

/// The end of the first request's head (after its blank line) in `buf`.
fn find_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4)
}

fn serve_tokio(http: bool) -> io::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let socket = tokio::net::TcpSocket::new_v4()?;
    rt.block_on(async move {
        socket.bind("127.0.0.1:0".parse().map_err(io::Error::other)?)?;
        let listener = socket.listen(coro::monkey::net::max_listen_backlog() as u32)?;
        let port = listener.local_addr()?.port();
        tokio::task::spawn_blocking(move || {
            let _ = announce_and_wait(port);
            std::process::exit(0);
        });
        loop {
            let (mut s, _) = listener.accept().await?;
            tokio::spawn(async move {
                if !http {
                    let mut buf = [0u8; MSG];
                    while s.read_exact(&mut buf).await.is_ok() {
                        if s.write_all(&buf).await.is_err() {
                            return;
                        }
                    }
                    return;
                }
                let answer = http_answer();
                let mut buf = vec![0u8; 4096];
                let mut have = 0;
                loop {
                    match find_end(&buf[..have]) {
                        Some(end) => {
                            if s.write_all(&answer).await.is_err() {
                                return;
                            }
                            buf.copy_within(end..have, 0);
                            have -= end;
                        }
                        None => match s.read(&mut buf[have..]).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => have += n,
                        },
                    }
                }
            });
        }
    })
}

/// How many connects may be in flight at once: all of them, unless
/// `CORO_SERVERS_CONNECT_AT_ONCE` says fewer.
fn connect_at_once(clients: usize) -> usize {
    std::env::var("CORO_SERVERS_CONNECT_AT_ONCE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(clients)
        .max(1)
}

/// The load generator: a tokio runtime on two threads, one task per connection.
fn load(port: u16, http: bool, clients: usize, trips: usize) -> io::Result<()> {
    use std::sync::Arc;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let result = rt.block_on(async move {
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        let connecting = Arc::new(tokio::sync::Semaphore::new(connect_at_once(clients)));
        let connected = Arc::new(tokio::sync::Barrier::new(clients + 1));
        let mut tasks = Vec::with_capacity(clients);
        for _ in 0..clients {
            let (connecting, connected) = (connecting.clone(), connected.clone());
            tasks.push(tokio::spawn(async move {
                let permit = connecting.acquire().await.map_err(io::Error::other)?;
                let s = tokio::net::TcpStream::connect(addr).await;
                drop(permit);
                connected.wait().await;
                let mut s = s?;
                s.set_nodelay(true)?;
                let mut lat = Vec::with_capacity(trips);
                let request: Vec<u8> = if http {
                    b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: keep-alive\r\n\r\n".to_vec()
                } else {
                    vec![7u8; MSG]
                };
                let want = if http { http_answer().len() } else { MSG };
                let mut back = vec![0u8; want];
                for _ in 0..trips {
                    let t = Instant::now();
                    s.write_all(&request).await?;
                    s.read_exact(&mut back).await?;
                    lat.push(t.elapsed());
                }
                Ok::<_, io::Error>(lat)
            }));
        }
        connected.wait().await;
        let start = Instant::now();
        let mut lat = Vec::with_capacity(clients * trips);
        let mut failed = 0usize;
        for t in tasks {
            match tokio::time::timeout(RUN_LIMIT, t).await {
                Ok(Ok(Ok(l))) => lat.extend(l),
                _ => failed += 1,
            }
        }
        (start.elapsed(), lat, failed)
    });
    let (elapsed, mut lat, failed) = result;
    lat.sort_unstable();
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
            .map_or(0.0, |d| d.as_secs_f64() * 1e6)
    };
    println!(
        "{{\"requests\":{},\"seconds\":{:.6},\"rps\":{:.1},\"p50_us\":{:.1},\"p99_us\":{:.1},\"failed_clients\":{}}}",
        lat.len(),
        elapsed.as_secs_f64(),
        lat.len() as f64 / elapsed.as_secs_f64(),
        pct(0.50),
        pct(0.99),
        failed
    );
    Ok(())
}
