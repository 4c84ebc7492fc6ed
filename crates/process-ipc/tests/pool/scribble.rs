//! A task with a memory bug scribbles on its worker's result ring (the shared memory the
//! worker answers through): the pool must not trust it. The task fails with `WorkerDied`
//! naming the damage, a replacement runs the next tasks, and the pool keeps answering within
//! bounded time (before, a write position moved 2^40 ahead made the collector walk billions of
//! empty records while holding the pool's lock).

use std::time::Instant;

use process_ipc::{__RingScribble as Scribble, __scribble_pool_result_ring, Pool, PoolError};

use super::{WAIT, square};

/// Damages the result ring of the worker running it, then returns 7.
fn scribble_then_answer(how: Scribble) -> u64 {
    assert!(__scribble_pool_result_ring(how), "not in a pool worker");
    7
}

fn a_scribbled_ring_is_its_workers_death(how: Scribble, check: &str) {
    let pool = Pool::new(1).unwrap();
    let worker = pool.pids()[0];
    let started = Instant::now();
    let got = pool
        .apply_async(scribble_then_answer, (how,))
        .unwrap()
        .get_timeout(WAIT);
    match &got {
        Err(PoolError::WorkerDied { pid, cause, .. }) => {
            assert_eq!(*pid, worker);
            assert!(cause.contains("result ring is corrupt"), "{cause}");
            assert!(cause.contains(check), "{cause}");
        }
        other => panic!("expected WorkerDied, got {other:?}"),
    }
    // A replacement answers, at once and every time.
    for i in 0..50u64 {
        assert_eq!(
            pool.apply_async(square, (i,)).unwrap().get_timeout(WAIT),
            Ok(i * i)
        );
    }
    assert_eq!(pool.map(square, 0..1000u64).unwrap()[999], 999 * 999);
    assert_ne!(pool.pids(), vec![worker]);
    assert!(started.elapsed() < WAIT, "took {:?}", started.elapsed());
}

#[test]
fn a_result_ring_whose_write_position_jumps_2_pow_40_ahead_fails_only_its_task() {
    a_scribbled_ring_is_its_workers_death(Scribble::TailAhead(1 << 40), "ahead");
}

#[test]
fn a_result_record_whose_length_runs_past_the_ring_fails_only_its_task() {
    a_scribbled_ring_is_its_workers_death(Scribble::BadLength, "runs past");
}

#[test]
fn scribbling_outside_a_pool_worker_does_nothing() {
    assert!(!__scribble_pool_result_ring(Scribble::BadLength));
}
