//! The chaos soak's worker side: run by `cargo xtask soak [--secs N]` (xtask/src/soak.rs
//! reads what it writes and checks it), not a story of its own.
//!
//! `soak --secs N --dir DIR [--seed S]` starts, as separate processes: two producers putting
//! to a `Queue` through a `QueueSender`, two consumers getting from it, a producer and a lone
//! consumer on a second `Queue` (that consumer returns normally now and then and a new one
//! takes its place; it is stopped but never killed, so that it stays the queue's lone reader), two lock holders
//! sharing a `Lock`, and two Manager clients (one putting to a `ManagedQueue`, one getting);
//! it keeps a `Pool` of two workers busy from a thread of its own. For N seconds it sends
//! random SIGKILL, SIGSTOP and (later) SIGCONT to those processes and to the pool's workers,
//! and starts a new process in the place of each one that died. Then it lets the stopped
//! ones go on, asks every process to stop (a file `stop` in DIR), waits for them, drains both
//! queues itself and counts what is left over: descriptors and memfds of its own, zombies,
//! processes still alive.
//!
//! Every process appends what it does to its own file in DIR, one `write(2)` per line (so a
//! SIGKILL loses no line already written): `S role pid slot gen` first, then `P stream id`
//! when a put returned, `F stream id` when a flush returned (every item up to `id` of that
//! process has left its feeder), `G stream id` when a get returned an item, `C op start end
//! timeout outcome queued` for every call with a timeout (times in ns of CLOCK_MONOTONIC, the same
//! clock in every process; `queued`: ns its thread spent runnable without a CPU), `L ...` for the lock, `T ...` for pool tasks, `X message` for an
//! unexpected error, and `E` when it ends normally. `kills.log` holds the signals sent
//! (`K pid role`, `STOP pid t`, `CONT pid t`) and `H pid role` for a process that did not stop
//! when asked; `leaks.log` what was counted at the end.
//!
//! A put returns before the item has left the putting process (Python's design: a feeder
//! thread moves it), so a producer SIGKILLed after `put` returned may take items with it.
//! Each producer flushes after every few items and records `F`: an item put by a killed
//! producer after its last `F` may be lost (the checker counts these apart, as "lost in a
//! killed putter's feeder"); every other item put must be delivered exactly once, unless it
//! was in a killed reader's hands (at most one per reader killed).

mod roles;

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use process_ipc::{Lock, ManagedQueue, Manager, Pool, PoolError, Process, ProcessHandle, Queue};

use roles::{
    Log, MAX_STOP_MS, Rng, STOP_GRACE, TASK, call_start, consumer, consumer_probe, locker,
    mconsumer, mproducer, now_ns, producer, queue_outcome, task,
};

/// The roles, each a kind of process the soak keeps running.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Producer,
    Consumer,
    LProducer,
    LConsumer,
    Locker,
    MProducer,
    MConsumer,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Producer => "producer",
            Kind::Consumer => "consumer",
            Kind::LProducer => "lproducer",
            Kind::LConsumer => "lconsumer",
            Kind::Locker => "locker",
            Kind::MProducer => "mproducer",
            Kind::MConsumer => "mconsumer",
        }
    }
}

/// What the roles share.
struct World {
    dir: String,
    q: Queue<u64>,
    /// A queue with one reader at a time.
    lq: Queue<u64>,
    lock: Lock,
    mq: ManagedQueue<u64>,
}

impl World {
    fn start(&self, kind: Kind, slot: u32, generation: u32) -> anyhow::Result<ProcessHandle<()>> {
        let dir = self.dir.clone();
        let p = match kind {
            Kind::Producer => {
                let tx = self.q.sender()?;
                Process::new(producer, (dir, "Q".to_string(), slot, generation, tx)).start()?
            }
            Kind::Consumer => {
                let rx = self.q.handle();
                Process::new(consumer, (dir, "Q".to_string(), slot, generation, rx)).start()?
            }
            Kind::LProducer => {
                let tx = self.lq.sender()?;
                Process::new(producer, (dir, "L".to_string(), slot, generation, tx)).start()?
            }
            Kind::LConsumer => {
                let rx = self.lq.handle();
                Process::new(consumer, (dir, "L".to_string(), slot, generation, rx)).start()?
            }
            Kind::Locker => {
                Process::new(locker, (dir, slot, generation, self.lock.clone())).start()?
            }
            Kind::MProducer => {
                Process::new(mproducer, (dir, slot, generation, self.mq.clone())).start()?
            }
            Kind::MConsumer => {
                Process::new(mconsumer, (dir, slot, generation, self.mq.clone())).start()?
            }
        };
        Ok(p)
    }
}

struct Role {
    kind: Kind,
    slot: u32,
    generation: u32,
    handle: Option<ProcessHandle<()>>,
}

/// This process's descriptors and what each one is.
fn my_fds() -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = std::fs::read_dir("/proc/self/fd")
        .map(|d| {
            d.flatten()
                .map(|e| {
                    let target = std::fs::read_link(e.path())
                        .map(|t| t.to_string_lossy().into_owned())
                        .unwrap_or_default();
                    (e.file_name().to_string_lossy().into_owned(), target)
                })
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

fn fds_of(pid: &str) -> (usize, usize) {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return (0, 0);
    };
    let (mut all, mut memfd) = (0, 0);
    for e in dir.flatten() {
        all += 1;
        if std::fs::read_link(e.path()).is_ok_and(|t| t.to_string_lossy().starts_with("/memfd:")) {
            memfd += 1;
        }
    }
    (all, memfd)
}

/// (state, parent pid) of a process, if it exists.
fn stat_of(pid: u32) -> Option<(u8, u32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut fields = rest.split(' ');
    let state = fields.next()?.bytes().next()?;
    let ppid = fields.next()?.parse().ok()?;
    Some((state, ppid))
}

/// Whether `pid` runs this soak's own program: over a long soak on a busy machine the pids
/// of children long gone come round again for other programs, which are no leftover of ours.
fn ours(pid: u32) -> bool {
    let exe = |p: &str| std::fs::read_link(format!("/proc/{p}/exe")).ok();
    exe(&pid.to_string()).is_some_and(|e| Some(e) == exe("self"))
}

fn signal(pid: u32, sig: i32) {
    // SAFETY: kill(2) with a pid this soak started and a signal number.
    unsafe { libc::kill(pid as i32, sig) };
}

fn main() -> anyhow::Result<()> {
    let mut secs = 60u64;
    let mut dir = None;
    let mut seed = now_ns() | 1;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--secs" => secs = args.next().unwrap_or_default().parse()?,
            "--dir" => dir = args.next(),
            "--seed" => seed = args.next().unwrap_or_default().parse()?,
            other => anyhow::bail!("unknown argument {other}"),
        }
    }
    let dir = dir.ok_or_else(|| anyhow::anyhow!("--dir DIR is required"))?;
    let me = std::process::id().to_string();
    let mut kills = Log(File::create(Path::new(&dir).join("kills.log"))?);
    let mut rng = Rng(seed);

    // The fork server and this process's own descriptors, once the crate is warmed up: the
    // crate keeps small blocks nothing maps any more for reuse (see `SharedMemory`), so one
    // round of the same objects first, and their blocks are in the count before as after.
    Process::new(task, (1,)).start()?.join()?;
    {
        let manager = Manager::new()?;
        let q = Queue::<u64>::new()?;
        let sender = q.sender()?;
        let consumer = Process::new(consumer_probe, (q.handle(),)).start()?;
        sender.put(1)?;
        drop(sender);
        q.close();
        consumer.join()?;
        let lock = Lock::new()?;
        drop(lock.acquire()?);
        let mq = manager.queue::<u64>()?;
        mq.put(1)?;
        mq.get()?;
        let pool = Pool::new(2)?;
        pool.apply(task, (1,))?;
        pool.close();
        pool.join()?;
        manager.shutdown();
    }
    let server = process_ipc::__fork_server_pid();
    let (fds_before, memfd_before) = fds_of(&me);
    let fd_list_before = my_fds();
    let server_before = server.map(|s| fds_of(&s.to_string()));

    let manager = Manager::new()?;
    let world = World {
        dir: dir.clone(),
        q: Queue::<u64>::new()?,
        lq: Queue::<u64>::new()?,
        lock: Lock::new()?,
        mq: manager.queue::<u64>()?,
    };
    let pool = std::sync::Arc::new(Pool::new(2)?);
    let mut started: Vec<u32> = Vec::new();
    let mut roles: Vec<Role> = [
        (Kind::Producer, 2),
        (Kind::Consumer, 2),
        (Kind::LProducer, 1),
        (Kind::LConsumer, 1),
        (Kind::Locker, 2),
        (Kind::MProducer, 1),
        (Kind::MConsumer, 1),
    ]
    .into_iter()
    .flat_map(|(kind, n)| {
        (0..n).map(move |slot| Role {
            kind,
            slot,
            generation: 0,
            handle: None,
        })
    })
    .collect();

    let end = Instant::now() + Duration::from_secs(secs);
    let stop_pool = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let pool_thread = {
        let pool = std::sync::Arc::clone(&pool);
        let stop = stop_pool.clone();
        let mut log = Log::open(&dir, "pool", 0, 0);
        std::thread::spawn(move || {
            let mut x = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                x += 1;
                let start = call_start();
                let r = pool
                    .apply_async(task, (x,))
                    .and_then(|r| r.get_timeout(TASK));
                let outcome = match &r {
                    Ok(v) if *v == task(x) => "ok",
                    Ok(_) => "wrong",
                    Err(PoolError::WorkerDied { .. }) => "died",
                    Err(PoolError::Timeout { .. }) => "timeout",
                    Err(_) => "error",
                };
                log.call("task", start, TASK, outcome);
                log.line(format_args!("T {outcome}"));
                if outcome == "error" || outcome == "wrong" {
                    log.line(format_args!("X task {x}: {r:?}"));
                }
            }
            log.line(format_args!("E"));
        })
    };

    // Stopped pids and when each goes on.
    let mut stopped: Vec<(u32, Instant)> = Vec::new();
    let mut pool_pids_seen: Vec<u32> = Vec::new();
    while Instant::now() < end {
        // A new process in the place of each one that ended.
        for role in &mut roles {
            let ended = match &mut role.handle {
                None => true,
                Some(h) => !h.is_alive(),
            };
            if !ended {
                continue;
            }
            if let Some(mut h) = role.handle.take() {
                let _ = h.join_timeout(Duration::from_secs(1));
                role.generation += 1;
            }
            match world.start(role.kind, role.slot, role.generation) {
                Ok(h) => {
                    started.push(h.pid());
                    role.handle = Some(h);
                }
                Err(e) => kills.line(format_args!("# start {}: {e}", role.kind.name())),
            }
        }
        let now = Instant::now();
        stopped.retain(|&(pid, at)| {
            if at <= now {
                signal(pid, libc::SIGCONT);
                kills.line(format_args!("CONT {pid} {}", now_ns()));
                false
            } else {
                true
            }
        });
        for pid in pool.pids() {
            if !pool_pids_seen.contains(&pid) {
                pool_pids_seen.push(pid);
            }
        }
        // One action every 100 ms on average.
        if rng.below(5) == 0 {
            let mut victims: Vec<(u32, &str)> = roles
                .iter()
                .filter_map(|r| Some((r.handle.as_ref()?.pid(), r.kind.name())))
                .collect();
            victims.extend(pool.pids().into_iter().map(|p| (p, "pool-worker")));
            victims.retain(|(p, _)| !stopped.iter().any(|(s, _)| s == p));
            if !victims.is_empty() {
                let (pid, role) = victims[rng.below(victims.len() as u64) as usize];
                // The lone reader is stopped but never killed: the queue counts a killed
                // reader among its readers for ever, and would no longer be a lone reader's.
                if rng.below(4) == 0 && role != "lconsumer" {
                    kills.line(format_args!("K {pid} {role} {}", now_ns()));
                    signal(pid, libc::SIGKILL);
                } else {
                    let ms = 10 + rng.below(MAX_STOP_MS - 10);
                    kills.line(format_args!("STOP {pid} {}", now_ns()));
                    signal(pid, libc::SIGSTOP);
                    stopped.push((pid, Instant::now() + Duration::from_millis(ms)));
                }
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }

    // The end: everyone goes on, then stops.
    for (pid, _) in stopped.drain(..) {
        signal(pid, libc::SIGCONT);
        kills.line(format_args!("CONT {pid} {}", now_ns()));
    }
    File::create(Path::new(&dir).join("stop"))?;
    stop_pool.store(true, std::sync::atomic::Ordering::Relaxed);
    let grace = Instant::now() + STOP_GRACE;
    for role in &mut roles {
        let Some(mut h) = role.handle.take() else {
            continue;
        };
        let left = grace.saturating_duration_since(Instant::now());
        if h.join_timeout(left.max(Duration::from_millis(100)))
            .is_err()
            && h.is_alive()
        {
            kills.line(format_args!("H {} {}", h.pid(), role.kind.name()));
            let _ = h.kill();
            let _ = h.join_timeout(Duration::from_secs(5));
        }
    }
    if pool_thread.join().is_err() {
        kills.line(format_args!("# the pool thread panicked"));
    }

    // Drain the queues.
    let mut drain = Log::open(&dir, "drain", 0, 0);
    for (stream, q) in [("Q", &world.q), ("L", &world.lq)] {
        loop {
            let start = call_start();
            match q.get_timeout(Duration::from_millis(500)) {
                Ok(id) => drain.line(format_args!("G {stream} {id}")),
                Err(e) => {
                    drain.call("get", start, Duration::from_millis(500), queue_outcome(&e));
                    break;
                }
            }
        }
    }
    while let Ok(id) = world.mq.get_timeout(Duration::from_millis(500)) {
        drain.line(format_args!("G M {id}"));
    }
    drain.line(format_args!("E"));

    drop(drain);

    // Every handle goes; the memfds still open after each step tell which one kept its block.
    let mut steps = Vec::new();
    steps.push(("nothing", fds_of(&me).1));
    pool.close();
    if pool.join_timeout(Duration::from_secs(10)).is_err() {
        kills.line(format_args!("H pool pool"));
        pool.terminate();
    }
    drop(pool);
    steps.push(("pool", fds_of(&me).1));
    let World {
        q, lq, lock, mq, ..
    } = world;
    drop(q);
    drop(lq);
    steps.push(("queue", fds_of(&me).1));
    drop(lock);
    steps.push(("lock", fds_of(&me).1));
    drop(mq);
    steps.push(("managed-queue", fds_of(&me).1));
    manager.shutdown();
    drop(manager);
    steps.push(("manager", fds_of(&me).1));
    std::thread::sleep(Duration::from_secs(1));
    steps.push(("manager-and-1s", fds_of(&me).1));

    // What is left.
    let (fds_after, memfd_after) = fds_of(&me);
    let server_after = server.map(|s| fds_of(&s.to_string()));
    let mut zombies = 0;
    if let Ok(procs) = std::fs::read_dir("/proc") {
        for p in procs.flatten() {
            if let Some(pid) = p.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) {
                if stat_of(pid).is_some_and(|(state, ppid)| state == b'Z' && ppid.to_string() == me)
                {
                    zombies += 1;
                }
            }
        }
    }
    // Give the kernel a moment to finish tearing down the last exits.
    let settle = Instant::now() + Duration::from_secs(2);
    let leftover = loop {
        let alive: Vec<u32> = started
            .iter()
            .chain(&pool_pids_seen)
            .copied()
            .filter(|&p| stat_of(p).is_some() && ours(p))
            .collect();
        if alive.is_empty() || Instant::now() >= settle {
            break alive;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let fds_now = my_fds();
    let mut leaks = File::create(PathBuf::from(&dir).join("leaks.log"))?;
    for (fd, target) in fds_now {
        if !fd_list_before.iter().any(|(f, t)| *f == fd && *t == target)
            && !target.starts_with("/proc/")
        {
            writeln!(leaks, "new-fd {fd} {target}")?;
        }
    }
    for (step, memfds) in steps {
        writeln!(leaks, "memfds-after-dropping-{step} {memfds}")?;
    }
    writeln!(leaks, "fds {fds_before} {fds_after}")?;
    writeln!(leaks, "memfds {memfd_before} {memfd_after}")?;
    if let (Some(b), Some(a)) = (server_before, server_after) {
        writeln!(leaks, "server-fds {} {}", b.0, a.0)?;
        writeln!(leaks, "server-memfds {} {}", b.1, a.1)?;
    }
    writeln!(leaks, "zombies {zombies}")?;
    writeln!(leaks, "leftover {} {:?}", leftover.len(), leftover)?;
    writeln!(leaks, "started {}", started.len() + pool_pids_seen.len())?;
    writeln!(leaks, "seed {seed}")?;
    Ok(())
}
