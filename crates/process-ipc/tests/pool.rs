//! Pool: Python's surface, callbacks, worker replacement, and the kill matrix (a dead worker
//! fails only its own task, never a hang).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

#[path = "pool/exits.rs"]
mod exits;
#[path = "pool/scribble.rs"]
mod scribble;

use process_ipc::{MapOptions, Pool, PoolError, ReturnWhen, as_completed, current_pid, wait};

pub(crate) const WAIT: Duration = Duration::from_secs(30);

pub(crate) fn square(x: u64) -> u64 {
    x * x
}

fn add(a: u64, b: u64) -> u64 {
    a + b
}

pub(crate) fn pid_of(_: u32) -> u32 {
    current_pid()
}

fn stall(_: u32) -> u32 {
    std::thread::sleep(Duration::from_secs(60));
    0
}

/// Item `k` kills the worker running it; the others are squared.
fn square_or_die(x: u64, k: u64) -> u64 {
    if x == k {
        // SAFETY: kill(2) on our own pid; the process ends here.
        unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
    }
    x * x
}

fn square_or_die_37(x: u64) -> u64 {
    square_or_die(x, 37)
}

fn fails_on_odd(x: u32) -> u32 {
    assert!(x % 2 == 0, "odd input {x}");
    x
}

#[test]
fn smoke() {
    let pool = Pool::new(2).unwrap();
    assert_eq!(pool.apply(add, (40, 2)).unwrap(), 42);
    assert_eq!(pool.pids().len(), 2);
    assert!(!pool.pids().contains(&current_pid()));
}

/// `n` bytes, each its index's low byte.
fn bytes_of(n: u64) -> serde_bytes::ByteBuf {
    serde_bytes::ByteBuf::from((0..n).map(|i| i as u8).collect::<Vec<u8>>())
}

#[test]
fn results_of_every_size_come_back_in_ring_and_channel_alike() {
    // Small results travel through the worker's shared-memory ring; one larger than half the
    // ring (32 KiB), or arriving when the ring is full, goes over the worker's channel. Mixed,
    // every one arrives intact and in its own slot.
    let pool = Pool::new(2).unwrap();
    let sizes: Vec<u64> = (0..200u64)
        .map(|i| match i % 10 {
            3 => 300_000,
            7 => 32_768,
            _ => i,
        })
        .collect();
    let results: Vec<_> = sizes
        .iter()
        .map(|&n| pool.apply_async(bytes_of, (n,)).unwrap())
        .collect();
    for (n, r) in sizes.into_iter().zip(results) {
        let got = r.get_timeout(WAIT).unwrap();
        assert_eq!(got.len() as u64, n);
        assert!(
            got.iter().enumerate().all(|(i, &b)| b == i as u8),
            "size {n}"
        );
    }
}

#[test]
fn a_pool_of_zero_is_an_error() {
    assert_eq!(Pool::new(0).unwrap_err(), PoolError::NoWorkers(0));
}

#[test]
fn map_over_ten_thousand_items_is_correct() {
    let pool = Pool::new(2).unwrap();
    let got = pool.map(square, 0..10_000u64).unwrap();
    assert_eq!(got, (0..10_000u64).map(|x| x * x).collect::<Vec<_>>());
    assert_eq!(
        pool.map(square, Vec::<u64>::new()).unwrap(),
        Vec::<u64>::new()
    );
    let chunked = pool
        .map_with(square, 0..100u64, MapOptions::new().chunksize(7))
        .unwrap();
    assert_eq!(chunked[99], 99 * 99);
}

#[test]
fn a_short_map_is_shared_between_the_workers() {
    // 8 chunks on 2 idle workers: each takes its fair share (4), instead of the first worker
    // prefetching all 8 while the second waits.
    let pool = Pool::new(2).unwrap();
    let pids = pool
        .map_with(pid_of, 0..8, MapOptions::new().chunksize(1))
        .unwrap();
    let mut per_worker = std::collections::BTreeMap::new();
    for pid in pids {
        *per_worker.entry(pid).or_insert(0) += 1;
    }
    assert_eq!(
        per_worker.len(),
        2,
        "one worker ran everything: {per_worker:?}"
    );
    assert!(per_worker.values().all(|&n| n == 4), "{per_worker:?}");
}

#[test]
fn imap_keeps_order() {
    let pool = Pool::new(2).unwrap();
    let mut it = pool.imap(square, 0..200u64).unwrap();
    let mut expected = 0;
    while let Some(v) = it.next_timeout(WAIT) {
        assert_eq!(v.unwrap(), expected * expected);
        expected += 1;
    }
    assert_eq!(expected, 200);
}

#[test]
fn imap_unordered_returns_every_item_once() {
    let pool = Pool::new(2).unwrap();
    let mut it = pool.imap_unordered(square, 0..500u64).unwrap();
    let mut seen = HashSet::new();
    while let Some(v) = it.next_timeout(WAIT) {
        assert!(seen.insert(v.unwrap()));
    }
    assert_eq!(seen, (0..500u64).map(|x| x * x).collect());
}

#[test]
fn starmap_unpacks_tuples() {
    let pool = Pool::new(2).unwrap();
    let got = pool.starmap(add, (0..50u64).map(|i| (i, 1000))).unwrap();
    assert_eq!(got, (0..50u64).map(|i| i + 1000).collect::<Vec<_>>());
}

#[test]
fn apply_async_with_get_timeout() {
    let pool = Pool::new(2).unwrap();
    let quick = pool.apply_async(square, (9,)).unwrap();
    assert_eq!(quick.get_timeout(WAIT), Ok(81));
    assert_eq!(quick.get_timeout(WAIT), Err(PoolError::ResultTaken));
    let slow = pool.apply_async(stall, (0,)).unwrap();
    assert_eq!(
        slow.get_timeout(Duration::from_millis(50)),
        Err(PoolError::Timeout {
            timeout: Duration::from_millis(50)
        })
    );
    assert!(!slow.ready());
    assert_eq!(slow.successful(), None);
    let started = Instant::now();
    pool.terminate();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "terminate took {:?}",
        started.elapsed()
    );
    assert_eq!(slow.get_timeout(WAIT), Err(PoolError::Terminated));
}

#[test]
fn done_callbacks_run_exactly_once_each() {
    let pool = Pool::new(2).unwrap();
    let calls: Arc<Vec<AtomicU32>> = Arc::new((0..40).map(|_| AtomicU32::new(0)).collect());
    let errors = Arc::new(AtomicUsize::new(0));
    let results: Vec<_> = (0..40u32)
        .map(|i| {
            let (calls, errors) = (Arc::clone(&calls), Arc::clone(&errors));
            let result = pool.apply_async(fails_on_odd, (i,)).unwrap();
            result.add_done_callback(move |r: &Result<u32, PoolError>| {
                match r {
                    Ok(v) => assert_eq!(*v, i),
                    Err(e) => {
                        assert!(matches!(e, PoolError::Panicked { .. }), "{e:?}");
                        errors.fetch_add(1, Ordering::SeqCst);
                    }
                }
                calls[i as usize].fetch_add(1, Ordering::SeqCst);
            });
            result
        })
        .collect();
    for (i, r) in results.iter().enumerate() {
        assert!(r.wait_timeout(WAIT));
        assert_eq!(r.successful(), Some(i % 2 == 0));
    }
    // Added once the result is ready: runs at once, on this thread.
    let late = Arc::new(AtomicU32::new(0));
    let seen = Arc::clone(&late);
    results[0].add_done_callback(move |r| {
        assert_eq!(r, &Ok(0));
        seen.fetch_add(1, Ordering::SeqCst);
    });
    assert_eq!(late.load(Ordering::SeqCst), 1);
    assert!(calls.iter().all(|c| c.load(Ordering::SeqCst) == 1));
    assert_eq!(errors.load(Ordering::SeqCst), 20);
}

#[test]
fn successful_stays_false_after_the_error_is_taken() {
    let pool = Pool::new(1).unwrap();
    let failed = pool.apply_async(fails_on_odd, (3,)).unwrap();
    assert!(matches!(
        failed.get_timeout(WAIT),
        Err(PoolError::Panicked { .. })
    ));
    assert_eq!(failed.successful(), Some(false));
    assert_eq!(failed.get_timeout(WAIT), Err(PoolError::ResultTaken));
    assert_eq!(failed.successful(), Some(false));
    let fine = pool.apply_async(fails_on_odd, (4,)).unwrap();
    assert_eq!(fine.get_timeout(WAIT), Ok(4));
    assert_eq!(fine.successful(), Some(true));
}

#[test]
fn imap_with_options_chunks_and_orders() {
    let pool = Pool::new(2).unwrap();
    let ordered: Vec<u64> = pool
        .imap_with(square, 0..50u64, MapOptions::new().chunksize(8))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(ordered, (0..50u64).map(|x| x * x).collect::<Vec<_>>());
    let mut unordered: Vec<u64> = pool
        .imap_with(square, 0..50u64, MapOptions::new().chunksize(8).unordered())
        .unwrap()
        .map(Result::unwrap)
        .collect();
    unordered.sort_unstable();
    assert_eq!(unordered, ordered);
    assert_eq!(pool.size(), 2);
}

#[test]
fn max_tasks_per_child_replaces_workers() {
    let pool = Pool::builder()
        .processes(2)
        .max_tasks_per_child(2)
        .build()
        .unwrap();
    let pids = pool
        .map_with(pid_of, 0..12u32, MapOptions::new().chunksize(1))
        .unwrap();
    let mut per_pid: HashMap<u32, usize> = HashMap::new();
    for pid in pids {
        *per_pid.entry(pid).or_default() += 1;
    }
    assert!(per_pid.values().all(|&n| n <= 2), "{per_pid:?}");
    assert!(per_pid.len() >= 6, "{per_pid:?}");
}

static INIT_RUNS: AtomicU32 = AtomicU32::new(0);

fn init(step: u32) {
    INIT_RUNS.fetch_add(step, Ordering::SeqCst);
}

fn init_runs(_: u32) -> (u32, u32) {
    (current_pid(), INIT_RUNS.load(Ordering::SeqCst))
}

#[test]
fn initializer_runs_once_per_worker() {
    let pool = Pool::builder()
        .processes(2)
        .initializer(init, (1,))
        .max_tasks_per_child(3)
        .build()
        .unwrap();
    let seen = pool
        .map_with(init_runs, 0..12u32, MapOptions::new().chunksize(1))
        .unwrap();
    let pids: HashSet<u32> = seen.iter().map(|&(pid, _)| pid).collect();
    assert!(pids.len() >= 4, "{seen:?}");
    assert!(seen.iter().all(|&(_, runs)| runs == 1), "{seen:?}");
    // The parent never ran it.
    assert_eq!(INIT_RUNS.load(Ordering::SeqCst), 0);
}

fn bad_init() {
    panic!("no database")
}

#[test]
fn a_failing_initializer_fails_tasks_instead_of_looping() {
    let pool = Pool::builder()
        .processes(1)
        .initializer(bad_init, ())
        .build()
        .unwrap();
    let err = pool
        .apply_async(square, (2,))
        .map_or_else(|e| e, |r| r.get_timeout(WAIT).unwrap_err());
    assert!(
        matches!(err, PoolError::InitializerFailed { ref message, .. } if message.contains("no database")),
        "{err:?}"
    );
}

#[test]
fn kill_matrix_imap_fails_only_the_killed_item() {
    let pool = Pool::new(2).unwrap();
    let started = Instant::now();
    let mut it = pool.imap(square_or_die_37, 0..100u64).unwrap();
    for x in 0..100u64 {
        let v = it.next_timeout(WAIT).unwrap();
        if x == 37 {
            match v {
                Err(PoolError::WorkerDied { signal, pid, .. }) => {
                    assert_eq!(signal, Some(9));
                    assert_ne!(pid, current_pid());
                }
                other => panic!("item 37: expected WorkerDied, got {other:?}"),
            }
        } else {
            assert_eq!(v, Ok(x * x), "item {x}");
        }
    }
    assert!(started.elapsed() < WAIT);
    // The pool is whole again and runs another map.
    assert_eq!(pool.pids().len(), 2);
    assert_eq!(pool.map(square, 0..10u64).unwrap()[9], 81);
}

#[test]
fn kill_matrix_map_names_the_lost_chunk() {
    let pool = Pool::new(2).unwrap();
    // 100 items over 2 workers: Python's chunk size is ceil(100 / 8) = 13.
    match pool.map(square_or_die_37, 0..100u64) {
        Err(PoolError::WorkerDied {
            what,
            signal,
            cause,
            ..
        }) => {
            assert!(what.starts_with("items 26..39 of a map of "), "{what}");
            assert!(what.contains("square_or_die_37"), "{what}");
            assert_eq!(signal, Some(9));
            assert!(cause.contains("SIGKILL"), "{cause}");
        }
        other => panic!("expected WorkerDied, got {other:?}"),
    }
    assert_eq!(pool.map(square, 0..100u64).unwrap()[10], 100);
}

#[test]
fn kill_matrix_apply_async_fails_within_a_second() {
    let pool = Pool::new(2).unwrap();
    let started = Instant::now();
    let results: Vec<_> = (0..10u64)
        .map(|i| pool.apply_async(square_or_die, (i, 3)).unwrap())
        .collect();
    // The killed task's error arrives within a second of submission...
    let v = results[3].get_timeout(Duration::from_secs(1));
    assert!(
        matches!(
            v,
            Err(PoolError::WorkerDied {
                signal: Some(9),
                ..
            })
        ),
        "{v:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(1));
    // ...and every other task completes.
    for (i, r) in results.into_iter().enumerate().filter(|&(i, _)| i != 3) {
        assert_eq!(r.get_timeout(WAIT), Ok((i * i) as u64), "task {i}");
    }
}

/// Forks a grandchild that keeps every socket of the worker open and sleeps for 15 s, writes
/// its pid to `path`, then the worker kills itself.
fn fork_then_die(path: String) -> u32 {
    // SAFETY: the grandchild calls only async-signal-safe functions (sleep, _exit).
    let grandchild = unsafe { libc::fork() };
    if grandchild == 0 {
        // SAFETY: as above.
        unsafe {
            libc::sleep(15);
            libc::_exit(0);
        }
    }
    std::fs::write(&path, grandchild.to_string()).expect("write the grandchild's pid");
    // SAFETY: kill(2) on our own pid; the process ends here.
    unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
    0
}

/// Kills the grandchild named in the file, however the test ends.
struct KillGrandchild(std::path::PathBuf);

impl Drop for KillGrandchild {
    fn drop(&mut self) {
        if let Ok(pid) = std::fs::read_to_string(&self.0) {
            if let Ok(pid) = pid.trim().parse::<i32>() {
                // SAFETY: kill(2) with a pid we were given; at worst it names no process.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
        let _ = std::fs::remove_file(&self.0);
    }
}

#[test]
fn a_worker_killed_while_its_grandchild_holds_its_sockets_fails_its_task_at_once() {
    let pool = Pool::new(1).unwrap();
    let worker = pool.pids()[0];
    let path = std::env::temp_dir().join(format!(
        "process-ipc-test-grandchild-{}-{}",
        current_pid(),
        worker
    ));
    let _cleanup = KillGrandchild(path.clone());
    let doomed = pool
        .apply_async(fork_then_die, (path.to_string_lossy().into_owned(),))
        .unwrap();
    let queued = pool.apply_async(square, (6,)).unwrap();
    // The grandchild keeps the result socket open for 15 s: only the process itself can tell
    // that the worker died.
    match doomed.get_timeout(Duration::from_secs(3)) {
        Err(PoolError::WorkerDied { pid, signal, .. }) => {
            assert_eq!(pid, worker);
            assert_eq!(signal, Some(libc::SIGKILL));
        }
        other => panic!("expected WorkerDied, got {other:?}"),
    }
    assert_eq!(queued.get_timeout(WAIT), Ok(36));
    assert_eq!(pool.apply(square, (7,)), Ok(49));
    assert_ne!(pool.pids(), vec![worker]);
}

#[test]
fn a_panic_is_an_error_and_the_worker_survives() {
    let pool = Pool::new(1).unwrap();
    let before = pool.pids();
    match pool.apply(fails_on_odd, (3,)) {
        Err(PoolError::Panicked {
            message, location, ..
        }) => {
            assert_eq!(message, "odd input 3");
            assert!(location.contains("pool.rs"), "{location}");
        }
        other => panic!("expected a panic, got {other:?}"),
    }
    assert_eq!(pool.apply(fails_on_odd, (4,)), Ok(4));
    assert_eq!(pool.pids(), before);
}

#[test]
fn an_overdue_task_is_killed_and_times_out() {
    let pool = Pool::builder()
        .processes(1)
        .task_timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    let before = pool.pids();
    let slow = pool.apply_async(stall, (0,)).unwrap();
    let quick = pool.apply_async(square, (5,)).unwrap();
    assert!(matches!(
        slow.get_timeout(WAIT),
        Err(PoolError::TaskTimeout { .. })
    ));
    assert_eq!(quick.get_timeout(WAIT), Ok(25));
    assert_ne!(pool.pids(), before);
}

#[test]
fn close_then_join() {
    let pool = Pool::new(2).unwrap();
    assert_eq!(pool.join_timeout(WAIT), Err(PoolError::StillOpen));
    let pending = pool.apply_async(square, (3,)).unwrap();
    pool.close();
    assert!(matches!(
        pool.apply_async(square, (1,)),
        Err(PoolError::Closed)
    ));
    pool.join_timeout(WAIT).unwrap();
    assert_eq!(pending.get_timeout(WAIT), Ok(9));
    assert!(pool.pids().is_empty());
}

#[test]
fn drop_terminates_and_reaps_the_workers() {
    let pool = Pool::new(2).unwrap();
    let _running = pool.apply_async(stall, (0,)).unwrap();
    let pids = pool.pids();
    drop(pool);
    let deadline = Instant::now() + WAIT;
    for pid in pids {
        while std::path::Path::new(&format!("/proc/{pid}")).exists() {
            assert!(Instant::now() < deadline, "worker {pid} not reaped");
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// An argument whose encoding fails, with a message of its own.
#[derive(Debug, serde::Deserialize)]
struct Secret(u32);

impl serde::Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        Err(serde::ser::Error::custom("a secret stays home"))
    }
}

fn reveal(s: Secret) -> u32 {
    s.0
}

#[test]
fn an_argument_that_does_not_encode_is_an_error_in_its_own_words() {
    let pool = Pool::new(1).unwrap();
    match pool.apply_async(reveal, (Secret(1),)) {
        Err(PoolError::Serde(message)) => assert_eq!(message, "a secret stays home"),
        other => panic!("expected a serde error, got {other:?}"),
    }
    match pool.map(reveal, [Secret(2)]) {
        Err(PoolError::Serde(message)) => assert_eq!(message, "a secret stays home"),
        other => panic!("expected a serde error, got {other:?}"),
    }
    // Nothing was submitted; the pool goes on.
    assert_eq!(pool.apply(square, (3,)), Ok(9));
}

#[test]
fn cancel_withdraws_only_a_task_that_has_not_started() {
    let pool = Pool::new(1).unwrap();
    let running = pool.apply_async(stall, (0,)).unwrap();
    // The only worker is busy: these wait in the pool, not in the worker.
    let queued = pool.apply_async(square, (4,)).unwrap();
    let chunks = pool.map_async(square, 0..10u64).unwrap();
    assert!(queued.cancel());
    assert!(!queued.cancel(), "once");
    assert_eq!(queued.get_timeout(WAIT), Err(PoolError::Cancelled));
    assert!(chunks.cancel());
    assert_eq!(chunks.get_timeout(WAIT), Err(PoolError::Cancelled));
    assert!(!running.cancel(), "it is running");
    assert!(!running.ready());
    pool.terminate();
    assert_eq!(running.get_timeout(WAIT), Err(PoolError::Terminated));
}

#[test]
fn wait_returns_when_asked() {
    let pool = Pool::new(3).unwrap();
    let results = vec![
        pool.apply_async(fails_on_odd, (2,)).unwrap(),
        pool.apply_async(fails_on_odd, (3,)).unwrap(),
        pool.apply_async(stall, (0,)).unwrap(),
    ];
    let failed = wait(&results, ReturnWhen::FirstException, Some(WAIT));
    assert!(failed.done.contains(&1), "{failed:?}");
    assert!(failed.not_done.contains(&2), "{failed:?}");
    let first = wait(&results, ReturnWhen::FirstCompleted, Some(WAIT));
    assert!(first.done.contains(&1), "{first:?}");
    assert!(results[0].wait_timeout(WAIT));
    // The staller does not finish in time: the wait ends at its timeout, nothing taken.
    let short = Duration::from_millis(50);
    let all = wait(&results, ReturnWhen::AllCompleted, Some(short));
    assert_eq!((all.done, all.not_done), (vec![0, 1], vec![2]));
    assert_eq!(results[0].get_timeout(WAIT), Ok(2));
    pool.terminate();
    let all = wait(&results, ReturnWhen::AllCompleted, Some(WAIT));
    assert_eq!(all.done, vec![0, 1, 2]);
}

#[test]
fn as_completed_yields_each_done_result_once_then_times_out() {
    let pool = Pool::new(2).unwrap();
    let results = vec![
        pool.apply_async(stall, (0,)).unwrap(),
        pool.apply_async(pid_of, (5,)).unwrap(),
    ];
    assert!(results[1].wait_timeout(WAIT));
    let mut it = as_completed(results, Some(Duration::from_millis(500)));
    let done = it.next().unwrap().unwrap();
    assert!(done.get_timeout(Duration::ZERO).is_ok());
    assert_eq!(
        it.next().unwrap().unwrap_err(),
        PoolError::Timeout {
            timeout: Duration::from_millis(500)
        }
    );
    assert!(it.next().is_none());
    let remaining = it.into_remaining();
    assert_eq!(remaining.len(), 1, "the stalled one is handed back");
    pool.terminate();
    let again: Vec<_> = as_completed(remaining, Some(WAIT)).collect();
    assert_eq!(again.len(), 1);
    assert_eq!(
        again
            .into_iter()
            .next()
            .unwrap()
            .unwrap()
            .get_timeout(Duration::ZERO),
        Err(PoolError::Terminated)
    );
}

#[test]
fn send_and_sync_tell_the_truth() {
    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>() {}
    send_sync::<Pool>();
    send_sync::<process_ipc::AsyncResult<u64>>();
    send_sync::<process_ipc::Queue<u64>>();
    send_sync::<process_ipc::QueueSender<u64>>();
    send::<process_ipc::ProcessHandle<u64>>();
    send::<process_ipc::Connection<u64>>();
}

/// Waits for the tester's byte on the Unix socket at `path`, then returns 1000.
fn gate(path: String) -> u64 {
    use std::io::Read;
    let mut stream = std::os::unix::net::UnixStream::connect(&path).expect("connect to the gate");
    stream.set_read_timeout(Some(WAIT)).expect("a read timeout");
    let mut byte = [0u8];
    stream.read_exact(&mut byte).expect("the gate opens");
    1000
}

fn die() -> u64 {
    // SAFETY: kill(2) on our own pid; the process ends here.
    unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
    0
}

/// Takes the next connection to the gate (waiting at most `WAIT`) and lets its task go.
fn open_gate(listener: &std::os::unix::net::UnixListener) {
    use std::io::Write;
    use std::os::fd::AsRawFd;
    let mut poll = libc::pollfd {
        fd: listener.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    let ready = unsafe { libc::poll(&mut poll, 1, WAIT.as_millis() as i32) };
    assert_eq!(ready, 1, "no task reached the gate within {WAIT:?}");
    let (mut stream, _) = listener.accept().unwrap();
    stream.write_all(&[1]).unwrap();
}

/// Blocks (at most `WAIT`) until child `pid` has exited, without reaping it.
fn await_death(pid: u32) {
    // SAFETY: pidfd_open takes a pid and flags; the result is checked.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) } as i32;
    assert!(fd >= 0, "pidfd_open: {}", std::io::Error::last_os_error());
    let mut poll = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd; a pidfd is readable once its process has exited.
    let ready = unsafe { libc::poll(&mut poll, 1, WAIT.as_millis() as i32) };
    // SAFETY: closing the descriptor opened above.
    unsafe { libc::close(fd) };
    assert_eq!(ready, 1, "worker {pid} did not die within {WAIT:?}");
}

#[test]
fn results_a_killed_worker_finished_but_the_parent_had_not_read_are_all_delivered() {
    let dir = std::env::temp_dir().join(format!("pipc-gate-{}", current_pid()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir(&dir).unwrap();
    let path = dir.join("gate");
    let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
    let path = path.to_string_lossy().into_owned();
    let pool = Pool::new(1).unwrap();
    let worker = pool.pids()[0];
    // Task 0's done callback runs on the pool's result thread: holding it there keeps the parent
    // from reading any later result until the worker is dead.
    let first = pool.apply_async(gate, (path.clone(),)).unwrap();
    let (in_callback, callback_started) = crossbeam_channel::bounded::<()>(1);
    let (release, released) = crossbeam_channel::bounded::<()>(1);
    first.add_done_callback(move |_| {
        let _ = in_callback.send(());
        let _ = released.recv_timeout(WAIT);
    });
    // Task 1 starts only once the parent is held, so tasks 1..=20 finish unread. (The worker got
    // tasks 1..=32 in one batch when task 0 finished: the killer must be among them, as the
    // held parent sends nothing more.)
    let second = pool.apply_async(gate, (path.clone(),)).unwrap();
    let finished: Vec<_> = (2..=20u64)
        .map(|i| pool.apply_async(square, (i,)).unwrap())
        .collect();
    let killer = pool.apply_async(die, ()).unwrap();
    let after: Vec<_> = (21..=60u64)
        .map(|i| pool.apply_async(square, (i,)).unwrap())
        .collect();

    open_gate(&listener);
    callback_started
        .recv_timeout(WAIT)
        .expect("task 0's callback runs");
    open_gate(&listener);
    await_death(worker);
    // Every result up to the killer's is in the dead worker's ring, unread: let the parent go.
    release.send(()).unwrap();

    assert_eq!(first.get_timeout(WAIT), Ok(1000));
    assert_eq!(second.get_timeout(WAIT), Ok(1000));
    for (i, r) in (2..=20u64).zip(finished) {
        assert_eq!(r.get_timeout(WAIT), Ok(i * i), "finished task {i}");
    }
    let lost = killer.get_timeout(WAIT);
    assert!(
        matches!(&lost, Err(PoolError::WorkerDied { pid, signal: Some(9), .. }) if *pid == worker),
        "{lost:?}"
    );
    // The tasks queued behind it never started: the replacement runs them.
    for (i, r) in (21..=60u64).zip(after) {
        assert_eq!(r.get_timeout(WAIT), Ok(i * i), "queued task {i}");
    }
    assert_ne!(pool.pids(), vec![worker]);
    let _ = std::fs::remove_dir_all(&dir);
}

/// `chunksize(0)` is an error, as in the ThreadPool and Python (`ValueError`), not silently 1.
#[test]
fn zero_chunksize_is_an_error_in_map_and_imap() {
    let pool = Pool::new(1).unwrap();
    assert_eq!(
        pool.map_with(square, 0..4u64, MapOptions::new().chunksize(0)),
        Err(PoolError::ZeroChunksize)
    );
    assert!(matches!(
        pool.imap_with(square, 0..4u64, MapOptions::new().chunksize(0).unordered()),
        Err(PoolError::ZeroChunksize)
    ));
    assert_eq!(
        pool.map_with(square, 0..4u64, MapOptions::new().chunksize(1)),
        Ok(vec![0, 1, 4, 9])
    );
}
