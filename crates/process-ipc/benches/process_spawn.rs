//! Process spawn + join: `Process::new(f, ()).start()?.join()` under each start method, against
//! two floors measured in the same run: the physical one, a bare `fork()` + `_exit(0)` +
//! `waitpid` of this process, and a bare re-exec of the same binary with an ipc-channel
//! one-shot handshake (the anchor's workload); and beside them the peer crate a user would pick
//! instead, `procspawn::spawn` + `join` of the same no-op.

use std::process::Command;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group};
use ipc_channel::ipc::{IpcOneShotServer, IpcSender};
use process_ipc::{Process, StartMethod};

const RAW_CHILD: &str = "PROCESS_IPC_BENCH_RAW_CHILD";
/// `PROCESS_IPC_BENCH_PAIRED=N`: instead of criterion, N rounds alternating the floor and our
/// ForkServer spawn+join, printing each one's median and the median of the per-round ratios.
const PAIRED: &str = "PROCESS_IPC_BENCH_PAIRED";

fn noop() -> u64 {
    1
}

fn procspawn_noop(_: ()) -> u64 {
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

/// The physical floor: fork this (small, single-threaded at that point) process, `_exit(0)`
/// in the child, reap it.
fn fork_exit_wait() {
    // SAFETY: the child calls only async-signal-safe `_exit`.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        // SAFETY: leave at once, running nothing of the parent's.
        unsafe { libc::_exit(0) };
    }
    let mut status = 0;
    // SAFETY: a valid out pointer; `pid` is our unreaped child.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    assert_eq!(status, 0);
}

/// A copy of this process forked before it starts any thread, so small and single-threaded as
/// the floor wants (by the time ours has run once, this process has the fork server's starter
/// and reaper threads and the start watchdog, whose stacks every fork of it copies). On each
/// byte from the parent it times one [`fork_exit_wait`] and answers with the nanoseconds; it
/// exits when the parent's end closes.
struct FloorHelper {
    pid: libc::pid_t,
    ask: std::fs::File,
    answer: std::fs::File,
}

impl FloorHelper {
    fn start() -> FloorHelper {
        use std::io::{Read, Write};
        use std::os::fd::FromRawFd;
        let pipe = || {
            let mut fds = [0; 2];
            // Close-on-exec, or the fork server (re-executed from this process) would keep the
            // helper's request pipe open, and the helper would never see its end.
            // SAFETY: a valid out array of two descriptors.
            assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
            // SAFETY: both descriptors are fresh and owned by nobody else.
            unsafe {
                (
                    std::fs::File::from_raw_fd(fds[0]),
                    std::fs::File::from_raw_fd(fds[1]),
                )
            }
        };
        let (mut ask_rx, ask) = pipe();
        let (answer, mut answer_tx) = pipe();
        // SAFETY: this process is single-threaded here (no Process started yet), so the copy may
        // run anything; it only reads, forks, times and writes.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            drop((ask, answer));
            let mut byte = [0u8];
            while matches!(ask_rx.read(&mut byte), Ok(1)) {
                let start = Instant::now();
                fork_exit_wait();
                let ns = start.elapsed().as_nanos() as u64;
                if answer_tx.write_all(&ns.to_le_bytes()).is_err() {
                    break;
                }
            }
            // SAFETY: leave without running the parent's exit handlers.
            unsafe { libc::_exit(0) };
        }
        FloorHelper { pid, ask, answer }
    }

    /// One floor, in µs.
    fn floor(&mut self) -> f64 {
        use std::io::{Read, Write};
        self.ask.write_all(&[1]).unwrap();
        let mut ns = [0u8; 8];
        self.answer.read_exact(&mut ns).unwrap();
        u64::from_le_bytes(ns) as f64 / 1e3
    }

    fn stop(self) {
        drop(self.ask);
        let mut status = 0;
        // SAFETY: a valid out pointer; `pid` is our unreaped child, which exits on end-of-file.
        assert_eq!(unsafe { libc::waitpid(self.pid, &mut status, 0) }, self.pid);
    }
}

/// Medians of `rounds` alternating runs of the floor and of ours (ForkServer), in µs, and the
/// median of the per-round ratios; the floor is taken twice, in this process (which has
/// threads by then) and in a [`FloorHelper`] (single-threaded).
fn paired_probe(rounds: usize) {
    let mut helper = FloorHelper::start();
    let ours = || {
        let child = Process::new(noop, ())
            .start_method(StartMethod::ForkServer)
            .start()
            .unwrap();
        assert_eq!(child.join().unwrap(), 1);
    };
    ours();
    let time = |f: &dyn Fn()| {
        let start = Instant::now();
        f();
        start.elapsed().as_secs_f64() * 1e6
    };
    let (mut floor, mut mine, mut ratio) = (Vec::new(), Vec::new(), Vec::new());
    let (mut lone_floor, mut lone_ratio) = (Vec::new(), Vec::new());
    let (mut starts, mut joins) = (Vec::new(), Vec::new());
    // What the reaped children cost, page faults and CPU, the floor's and ours apart.
    let (mut floor_use, mut our_use) = (Usage::default(), Usage::default());
    for _ in 0..rounds {
        let before = Usage::children();
        let f = time(&fork_exit_wait);
        let between = Usage::children();
        let o = time(&ours);
        floor_use.add(&between, &before);
        our_use.add(&Usage::children(), &between);
        // The two halves of ours, timed apart in a third run.
        let begin = Instant::now();
        let child = Process::new(noop, ())
            .start_method(StartMethod::ForkServer)
            .start()
            .unwrap();
        let started = Instant::now();
        assert_eq!(child.join().unwrap(), 1);
        starts.push((started - begin).as_secs_f64() * 1e6);
        joins.push(started.elapsed().as_secs_f64() * 1e6);
        let lone = helper.floor();
        floor.push(f);
        mine.push(o);
        ratio.push(o / f);
        lone_floor.push(lone);
        lone_ratio.push(o / lone);
    }
    helper.stop();
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    println!(
        "of ours: start {:.1} us, join {:.1} us",
        median(&mut starts),
        median(&mut joins)
    );
    println!(
        "paired x{rounds}: floor {:.1} us, ours {:.1} us, median ratio {:.2}",
        median(&mut floor),
        median(&mut mine),
        median(&mut ratio)
    );
    println!(
        "single-threaded floor: {:.1} us, median ratio {:.2}",
        median(&mut lone_floor),
        median(&mut lone_ratio)
    );
    // `median` sorted them: the tails, where a scheduling delay lands.
    let p90 = |v: &[f64]| v[v.len() * 9 / 10];
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    println!(
        "tails: floor p90 {:.1} us, mean {:.1} us; ours p90 {:.1} us, mean {:.1} us",
        p90(&floor),
        mean(&floor),
        p90(&mine),
        mean(&mine)
    );
    let n = rounds as f64;
    println!(
        "per child: floor {:.1} minor faults, {:.1} us CPU; ours {:.1} minor faults, {:.1} us CPU",
        floor_use.faults as f64 / n,
        floor_use.cpu_us / n,
        our_use.faults as f64 / n,
        our_use.cpu_us / n
    );
}

/// Resources used by this process's reaped children (`getrusage(RUSAGE_CHILDREN)`).
#[derive(Default)]
struct Usage {
    faults: i64,
    cpu_us: f64,
}

impl Usage {
    fn children() -> Usage {
        // SAFETY: an all-zero rusage is a valid value of this plain C struct.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: a valid out pointer.
        assert_eq!(
            unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut ru) },
            0
        );
        let us = |t: libc::timeval| t.tv_sec as f64 * 1e6 + t.tv_usec as f64;
        Usage {
            faults: ru.ru_minflt,
            cpu_us: us(ru.ru_utime) + us(ru.ru_stime),
        }
    }

    fn add(&mut self, later: &Usage, earlier: &Usage) {
        self.faults += later.faults - earlier.faults;
        self.cpu_us += later.cpu_us - earlier.cpu_us;
    }
}

fn spawn_join(c: &mut Criterion) {
    let mut g = c.benchmark_group("process_spawn_join");
    g.sample_size(20);
    g.bench_function("floor_fork_exit_waitpid", |b| b.iter(fork_exit_wait));
    g.bench_function("raw_reexec_ipc_handshake", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                raw_spawn_join();
            }
            start.elapsed()
        })
    });
    g.bench_function("procspawn_spawn_join", |b| {
        b.iter(|| {
            let child = procspawn::spawn((), procspawn_noop);
            assert_eq!(child.join().unwrap(), 1);
        })
    });
    for method in [StartMethod::ForkServer, StartMethod::Spawn] {
        // The fork server starts on first use: not inside the measurement.
        let warm = Process::new(noop, ()).start_method(method).start().unwrap();
        assert_eq!(warm.join().unwrap(), 1);
        g.bench_function(format!("process_ipc_{}", method.name()), |b| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                for _ in 0..iters {
                    let child = Process::new(noop, ()).start_method(method).start().unwrap();
                    assert_eq!(child.join().unwrap(), 1);
                }
                start.elapsed()
            })
        });
    }
    g.finish();
}

criterion_group!(benches, spawn_join);

fn main() {
    // A procspawn child runs its function here and exits; our own children never reach main.
    procspawn::init();
    if let Ok(name) = std::env::var(RAW_CHILD) {
        let tx = IpcSender::<u64>::connect(name).unwrap();
        tx.send(1).unwrap();
        return;
    }
    let _ = Duration::ZERO;
    if let Some(rounds) = std::env::var(PAIRED).ok().and_then(|n| n.parse().ok()) {
        paired_probe(rounds);
        return;
    }
    benches();
    criterion::Criterion::default()
        .configure_from_args()
        .final_summary();
}
