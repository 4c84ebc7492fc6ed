//! The pool of finished stacks (`Config::with_stack_pool`): a burst of coroutines leaves its
//! stacks mapped for the next burst, up to the pool size, instead of unmapping them all.
//!
//! Its own test binary: the pool size is fixed when the runtime starts.

use std::time::Duration;

const WAIT: Duration = Duration::from_secs(60);
/// More than may's own pool (1000) and less than this binary's (4000).
const BURST: usize = 3000;

fn maps() -> usize {
    std::fs::read_to_string("/proc/self/maps")
        .unwrap()
        .lines()
        .count()
}

/// Parks `n` coroutines, then lets them all finish; the map count while they were parked.
fn burst(n: usize) -> usize {
    let gate = coro::Event::new();
    let parked = coro::Queue::new();
    let gs: Vec<_> = (0..n)
        .map(|_| {
            let (gate, parked) = (gate.clone(), parked.clone());
            coro::spawn(move || {
                parked.put(()).unwrap();
                gate.wait_timeout(WAIT)
            })
            .unwrap()
        })
        .collect();
    for _ in 0..n {
        parked.get_timeout(WAIT).unwrap();
    }
    let during = maps();
    gate.set();
    coro::joinall(&gs, Some(WAIT)).unwrap();
    for g in gs {
        assert!(g.into_value().unwrap(), "every waiter saw the gate set");
    }
    during
}

#[test]
fn a_burst_leaves_its_stacks_for_the_next_one() {
    coro::configure(coro::Config::new().with_stack_pool(4000)).unwrap();
    coro::spawn(|| ()).unwrap().join();
    assert_eq!(coro::runtime_config().stack_pool(), 4000);
    let before = maps();
    let first = burst(BURST);
    // Two maps per stack; the first 1000 were mapped at start.
    assert!(
        first >= before + 2 * (BURST - 1000) - 100,
        "{before} maps before, {first} with {BURST} parked"
    );
    let after = maps();
    // may's default pool (1000) would unmap 2000 of the 3000 stacks here.
    assert!(
        after + 200 >= first,
        "the finished stacks stay pooled: {first} maps while parked, {after} after"
    );
    let second = burst(BURST);
    assert!(
        second <= after + 200,
        "the second burst reuses the pooled stacks: {after} maps before it, {second} during"
    );
}
