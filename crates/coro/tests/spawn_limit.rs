//! Spawning past the kernel's limits is an `Err` that names the cause, never a panic or abort.
//!
//! Its own test binary: the first test lowers this process's address-space
//! limit for a moment, the second (ignored: ~300 MB, a few seconds) fills
//! `vm.max_map_count`.

use std::time::Duration;

use coro::{Builder, CoroError};

const WAIT: Duration = Duration::from_secs(60);

fn vm_size_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmSize:")).unwrap();
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024
}

#[test]
fn smoke_stack_allocation_failure_is_an_err() {
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
#[ignore = "fills vm.max_map_count: ~32 700 coroutines, ~300 MB, a few seconds"]
fn spawning_past_max_map_count_is_an_err() {
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
        } => assert!(*maps + 16 >= *max_map_count, "{err}"),
        other => panic!("expected StackExhausted, got {other}"),
    }
    gate.set();
    coro::joinall(&parked, Some(WAIT)).unwrap();
    drop(parked);
    let mut g = coro::spawn(|| 1).unwrap();
    assert_eq!(g.get_timeout(WAIT).unwrap(), 1);
}
