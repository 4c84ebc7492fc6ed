//! Process spawn + join: `Process::new(f, ()).start()?.join()` against the raw floor, a bare
//! re-exec of the same binary with an ipc-channel one-shot handshake (the anchor's workload).

use std::process::Command;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group};
use ipc_channel::ipc::{IpcOneShotServer, IpcSender};
use process_ipc::Process;

const RAW_CHILD: &str = "PROCESS_IPC_BENCH_RAW_CHILD";

fn noop() -> u64 {
    1
}

fn raw_spawn_join() {
    let (server, name) = IpcOneShotServer::<u64>::new().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .env(RAW_CHILD, name)
        .spawn()
        .unwrap();
    let (_, value) = server.accept().unwrap();
    assert_eq!(value, 1);
    assert!(child.wait().unwrap().success());
}

fn spawn_join(c: &mut Criterion) {
    let mut g = c.benchmark_group("process_spawn_join");
    g.sample_size(20);
    g.bench_function("raw_reexec_ipc_handshake", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                raw_spawn_join();
            }
            start.elapsed()
        })
    });
    g.bench_function("process_ipc", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                let child = Process::new(noop, ()).start().unwrap();
                assert_eq!(child.join().unwrap(), 1);
            }
            start.elapsed()
        })
    });
    g.finish();
}

criterion_group!(benches, spawn_join);

fn main() {
    if let Ok(name) = std::env::var(RAW_CHILD) {
        let tx = IpcSender::<u64>::connect(name).unwrap();
        tx.send(1).unwrap();
        return;
    }
    let _ = Duration::ZERO;
    benches();
    criterion::Criterion::default()
        .configure_from_args()
        .final_summary();
}
