//! Echo, 200 clients x 5 round trips of 64 bytes, all coroutines on one worker: unchanged
//! `std::net` code after `monkey::patch_all()` vs the shim types (`coro::monkey::net`).
//! Needs `--features patch`.

use std::hint::black_box;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};

const CLIENTS: usize = 200;
const TRIPS: usize = 5;
const WAIT: Duration = Duration::from_secs(60);

/// One echo run with the stream/listener types given; the wall time.
///
/// std's listener is made with a backlog of 128, may's with 1024: 200 clients
/// connecting at once overflow the first, and the kernel resends a dropped SYN
/// only after a second. Both listeners are set to 1024 (`listen` again on a
/// listening socket changes its backlog), so the two runs measure the socket
/// calls, not the backlog.
macro_rules! echo_run {
    ($listener:ty, $stream:ty) => {{
        let listener = <$listener>::bind("127.0.0.1:0").unwrap();
        // SAFETY: listen on our own listening socket only changes its backlog.
        assert_eq!(unsafe { libc::listen(listener.as_raw_fd(), 1024) }, 0);
        let addr = listener.local_addr().unwrap();
        let start = Instant::now();
        let server = coro::spawn(move || {
            let handlers: Vec<_> = (0..CLIENTS)
                .map(|_| {
                    let (mut s, _) = listener.accept().unwrap();
                    coro::spawn(move || {
                        let mut buf = [0u8; 64];
                        for _ in 0..TRIPS {
                            s.read_exact(&mut buf).unwrap();
                            s.write_all(&buf).unwrap();
                        }
                    })
                    .unwrap()
                })
                .collect();
            coro::joinall(&handlers, Some(WAIT)).unwrap();
        })
        .unwrap();
        let clients: Vec<_> = (0..CLIENTS)
            .map(|i| {
                coro::spawn(move || {
                    let mut c = <$stream>::connect(addr).unwrap();
                    let msg = [i as u8; 64];
                    let mut back = [0u8; 64];
                    for _ in 0..TRIPS {
                        c.write_all(&msg).unwrap();
                        c.read_exact(&mut back).unwrap();
                    }
                    back[0]
                })
                .unwrap()
            })
            .collect();
        for c in clients {
            black_box(c.into_value().unwrap());
        }
        assert!(server.join_timeout(WAIT));
        start.elapsed()
    }};
}

fn std_run() -> Duration {
    echo_run!(std::net::TcpListener, std::net::TcpStream)
}

fn shim_run() -> Duration {
    echo_run!(coro::monkey::net::TcpListener, coro::monkey::net::TcpStream)
}

fn bench(c: &mut Criterion) {
    coro::monkey::patch_all().unwrap();
    let mut g = c.benchmark_group("coro_echo_200x5");
    g.sample_size(10);
    g.bench_function("patched_std_net", |b| {
        b.iter_custom(|iters| (0..iters).map(|_| std_run()).sum())
    });
    g.bench_function("shim_types", |b| {
        b.iter_custom(|iters| (0..iters).map(|_| shim_run()).sum())
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
