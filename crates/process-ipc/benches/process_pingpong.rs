//! Process ping-pong: the parent sends a token, the child sends it back; Pipe and Queue against
//! raw ipc-channel, with both ends pinned to one CPU and unpinned (cross-CPU wake-ups dominate).

use std::time::Instant;

use criterion::{Criterion, criterion_group, criterion_main};
use ipc_channel::ipc::{self, IpcReceiver, IpcSender};
use process_ipc::{Connection, Process, Queue, QueueSender, pipe};

/// Pins the calling thread to `cpu`, or undoes pinning with `None`.
fn pin(cpu: Option<usize>) {
    // SAFETY: cpu_set_t is plain data; sched_setaffinity only reads it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        match cpu {
            Some(c) => libc::CPU_SET(c, &mut set),
            None => {
                for c in 0..libc::CPU_SETSIZE as usize {
                    libc::CPU_SET(c, &mut set);
                }
            }
        }
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

fn queue_echo(input: Queue<u64>, output: QueueSender<u64>, cpu: Option<usize>) {
    pin(cpu);
    input.close();
    while let Ok(x) = input.get() {
        output.put(x).unwrap();
    }
}

fn pipe_echo(conn: Connection<u64>, cpu: Option<usize>) {
    pin(cpu);
    while let Ok(x) = conn.recv() {
        conn.send(x).unwrap();
    }
}

fn raw_echo(input: IpcReceiver<u64>, output: IpcSender<u64>, cpu: Option<usize>) {
    pin(cpu);
    while let Ok(x) = input.recv() {
        output.send(x).unwrap();
    }
}

fn pingpong(c: &mut Criterion) {
    for (label, cpu) in [("samecpu", Some(0)), ("unpinned", None)] {
        let mut g = c.benchmark_group(format!("process_pingpong_{label}"));
        g.sample_size(10);
        g.bench_function("raw_ipc_channel", |b| {
            let (to_tx, to_rx) = ipc::channel::<u64>().unwrap();
            let (back_tx, back_rx) = ipc::channel::<u64>().unwrap();
            let child = Process::new(raw_echo, (to_rx, back_tx, cpu))
                .start()
                .unwrap();
            pin(cpu);
            b.iter_custom(|iters| {
                let t = Instant::now();
                for i in 0..iters {
                    to_tx.send(i).unwrap();
                    assert_eq!(back_rx.recv().unwrap(), i);
                }
                t.elapsed()
            });
            pin(None);
            drop(to_tx);
            child.join().unwrap();
        });
        g.bench_function("pipe", |b| {
            let (mine, theirs) = pipe::<u64>().unwrap();
            let child = Process::new(pipe_echo, (theirs, cpu)).start().unwrap();
            pin(cpu);
            b.iter_custom(|iters| {
                let t = Instant::now();
                for i in 0..iters {
                    mine.send(i).unwrap();
                    assert_eq!(mine.recv().unwrap(), i);
                }
                t.elapsed()
            });
            pin(None);
            drop(mine);
            child.join().unwrap();
        });
        g.bench_function("queue", |b| {
            let to_child = Queue::<u64>::new().unwrap();
            let to_tx = to_child.sender().unwrap();
            let back = Queue::<u64>::new().unwrap();
            let child = Process::new(queue_echo, (to_child, back.sender().unwrap(), cpu))
                .start()
                .unwrap();
            pin(cpu);
            b.iter_custom(|iters| {
                let t = Instant::now();
                for i in 0..iters {
                    to_tx.put(i).unwrap();
                    assert_eq!(back.get().unwrap(), i);
                }
                t.elapsed()
            });
            pin(None);
            drop(to_tx);
            child.join().unwrap();
        });
        g.finish();
    }
}

criterion_group!(benches, pingpong);
criterion_main!(benches);
