//! Spawning past the kernel's limits is an `Err` that names the cause, never a panic or abort.
//!
//! Its own test binary: the first test lowers this process's address-space
//! limit for a moment, the second fills `vm.max_map_count` (~32 000
//! coroutines, ~300 MB, a few seconds); they take turns.

use std::sync::Mutex;
use std::time::Duration;

use coro::{Builder, CoroError};

const WAIT: Duration = Duration::from_secs(60);

/// The two tests squeeze the same process's limits; one at a time.
static TURN: Mutex<()> = Mutex::new(());

fn vm_size_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmSize:")).unwrap();
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024
}

#[test]
fn smoke_stack_allocation_failure_is_an_err() {
    let _turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
    // Start the runtime first so its own threads and stack pool are mapped.
    coro::spawn(|| ()).unwrap().join();

    let mut old = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the valid struct we pass.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_AS, &mut old) }, 0);
    let tight = libc::rlimit {
        rlim_cur: vm_size_bytes() + 256 * 1024 * 1024,
        rlim_max: old.rlim_max,
    };
    // SAFETY: setrlimit reads the valid struct we pass; lowering the soft limit is allowed.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_AS, &tight) }, 0);

    let gate = coro::Event::new();
    let mut parked = Vec::new();
    let mut failure = None;
    // 64 MiB stacks: a handful exhausts the 256 MiB of headroom.
    for _ in 0..64 {
        let gate = gate.clone();
        match Builder::new()
            .stack_size(64 * 1024 * 1024)
            .spawn(move || gate.wait())
        {
            Ok(g) => parked.push(g),
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
    }
    // SAFETY: restores the limits read above.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_AS, &old) }, 0);

    let err = failure.expect("64 x 64 MiB stacks should not fit in 256 MiB of headroom");
    assert!(matches!(err, CoroError::StackExhausted { .. }), "{err}");
    let text = err.to_string();
    assert!(text.contains("vm.max_map_count"), "{text}");
    assert!(text.contains("os error 12"), "{text}");

    // Everything already spawned still runs to the end, and spawning works again.
    gate.set();
    coro::joinall(&parked, Some(WAIT)).unwrap();
    let mut after = Builder::new()
        .stack_size(64 * 1024 * 1024)
        .spawn(|| "fine")
        .unwrap();
    assert_eq!(after.get_timeout(WAIT).unwrap(), "fine");
}

#[test]
fn spawning_stops_short_of_max_map_count_and_the_process_stays_healthy() {
    let _turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
    let gate = coro::Event::new();
    let mut parked = Vec::new();
    let err = loop {
        let gate = gate.clone();
        match coro::spawn(move || gate.wait()) {
            Ok(g) => parked.push(g),
            Err(e) => break e,
        }
        assert!(parked.len() < 1_000_000, "no limit reached");
    };
    let live = parked.len();
    eprintln!("{live} coroutines alive when spawn failed: {err}");
    match &err {
        CoroError::StackExhausted {
            maps,
            max_map_count,
            ..
        } => {
            // The real count, close to the limit but short of it by the headroom.
            assert!(*maps > max_map_count / 2, "{err}");
            assert!(*maps + 400 <= *max_map_count, "{err}");
            assert!(*maps + 600 >= *max_map_count, "{err}");
            assert!(
                err.to_string().contains("keeps 512 memory maps free"),
                "{err}"
            );
        }
        other => panic!("expected StackExhausted, got {other}"),
    }
    // The process is still healthy: big allocations (each its own map) and threads work.
    let big: Vec<Vec<u8>> = (0..64).map(|i| vec![i as u8; 1 << 20]).collect();
    assert_eq!(big[63][12345], 63);
    std::thread::spawn(|| 5).join().unwrap();
    drop(big);
    gate.set();
    coro::joinall(&parked, Some(WAIT)).unwrap();
    drop(parked);
    let mut g = coro::spawn(|| 1).unwrap();
    assert_eq!(g.get_timeout(WAIT).unwrap(), 1);

    // Timed waits cost no coroutine of their own: as many fit as untimed ones.
    let gate = coro::Event::new();
    let waiting = coro::Queue::new();
    let mut timed = Vec::new();
    let timed_err = loop {
        let (gate, entered) = (gate.clone(), waiting.clone());
        match coro::spawn(move || {
            entered.put(()).unwrap();
            gate.wait_timeout(WAIT)
        }) {
            Ok(g) => timed.push(g),
            Err(e) => break e,
        }
        // Every 256 spawns, let them all reach their timed wait before spawning on.
        if timed.len() % 256 == 0 {
            for _ in 0..256 {
                waiting.get_timeout(WAIT).unwrap();
            }
        }
        assert!(timed.len() < 1_000_000, "no limit reached");
    };
    assert!(
        timed.len() + 64 >= live,
        "{} timed waiters fit against {live} untimed: {timed_err}",
        timed.len()
    );
    gate.set();
    coro::joinall(&timed, Some(WAIT)).unwrap();
}
