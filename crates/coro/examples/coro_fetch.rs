//! Fetch N pages with plain `std::net` code: one after another, then in N coroutines after
//! `monkey::patch_all()`. The seed's gevent story:
//!
//! ```python
//! from gevent import monkey; monkey.patch_all()
//! import gevent, urllib.request
//! jobs = [gevent.spawn(urllib.request.urlopen, url) for url in urls]
//! gevent.joinall(jobs)          # N pages in about the time of one
//! ```
//!
//! The server is local (a thread per connection, each page takes 100 ms to
//! produce), so the numbers depend on nothing outside this machine. The
//! `fetch` function is ordinary blocking `std::net` code, unchanged between
//! the two runs. Needs the `patch` feature:
//! `cargo run -p coro --example coro_fetch --features patch`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

const N: usize = 10;
const PAGE_TIME: Duration = Duration::from_millis(100);

/// A tiny HTTP server: every page takes `PAGE_TIME` to make; one thread per connection.
fn serve(listener: TcpListener) {
    for conn in listener.incoming() {
        let Ok(mut conn) = conn else { continue };
        std::thread::spawn(move || {
            let mut reader = BufReader::new(conn.try_clone().expect("clone"));
            let mut request_line = String::new();
            let _ = reader.read_line(&mut request_line);
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                line.clear();
            }
            std::thread::sleep(PAGE_TIME); // a plain thread: a real sleep
            let path = request_line.split_whitespace().nth(1).unwrap_or("/");
            let body = format!("page {path}\n");
            let _ = write!(
                conn,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        });
    }
}

/// Plain blocking `std::net` code, as any program would have it.
fn fetch(host: &str, path: &str) -> anyhow::Result<String> {
    let mut conn = TcpStream::connect(host).with_context(|| format!("connect {host}"))?;
    conn.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        conn,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    conn.read_to_string(&mut response)?;
    let Some((head, body)) = response.split_once("\r\n\r\n") else {
        bail!("no HTTP header in {response:?}");
    };
    if !head.starts_with("HTTP/1.1 200") {
        bail!("unexpected status: {head}");
    }
    Ok(body.trim_end().to_string())
}

fn main() -> anyhow::Result<()> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let host = format!("localhost:{}", listener.local_addr()?.port());
    std::thread::spawn(move || serve(listener));
    coro::spawn(|| ())?.join(); // start the runtime before timing

    println!("coro_fetch: {N} pages from a local server, {PAGE_TIME:?} each, plain std::net code");

    let start = Instant::now();
    for i in 0..N {
        fetch(&host, &format!("/{i}"))?;
    }
    let serial = start.elapsed();
    println!(
        "  one after another:                 {:>7.1} ms",
        serial.as_secs_f64() * 1e3
    );

    coro::monkey::patch_all()?;
    let start = Instant::now();
    let jobs = (0..N)
        .map(|i| {
            let host = host.clone();
            coro::spawn(move || fetch(&host, &format!("/{i}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut pages = Vec::new();
    for job in jobs {
        pages.push(job.into_value()??);
    }
    let together = start.elapsed();
    println!(
        "  {N} coroutines after patch_all():   {:>7.1} ms   ({:.1}x faster; one page takes {:.0} ms)",
        together.as_secs_f64() * 1e3,
        serial.as_secs_f64() / together.as_secs_f64(),
        PAGE_TIME.as_secs_f64() * 1e3
    );
    println!("  pages: {} .. {}", pages[0], pages[N - 1]);
    Ok(())
}
