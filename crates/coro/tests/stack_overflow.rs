//! A coroutine that overflows its stack is an `Err`, and the runtime goes on.
//!
//! Its own test binary: the overflow goes through may's SIGSEGV handler, and
//! the runtime keeps a pool of one stack, so that a stack that overflowed is
//! the next one reused.

use std::sync::{Mutex, Once};
use std::time::Duration;

use coro::{Builder, CoroError};

const WAIT: Duration = Duration::from_secs(20);

/// One test at a time: the pool's one stack must go to the spawn that expects it.
static TURN: Mutex<()> = Mutex::new(());

fn setup() -> std::sync::MutexGuard<'static, ()> {
    static CONFIG: Once = Once::new();
    let turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
    CONFIG.call_once(|| coro::configure(coro::Config::new().with_stack_pool(1)).unwrap());
    turn
}

/// Where the calling coroutine's stack is (the address of one of its locals).
fn stack_here() -> usize {
    let local = 0u8;
    std::hint::black_box(&local) as *const u8 as usize
}

/// A frame of 64 KiB: more than the default 32 KiB stack.
#[inline(never)]
fn overflow() -> u32 {
    let big = std::hint::black_box([1u8; 64 * 1024]);
    big.iter().map(|&b| u32::from(b)).sum::<u32>()
}

#[test]
fn a_pooled_stack_that_overflowed_runs_the_next_coroutines_and_still_catches_overflows() {
    let _turn = setup();
    for _ in 0..3 {
        let (tx, rx) = std::sync::mpsc::channel();
        let mut deep = coro::spawn(move || {
            tx.send(stack_here()).unwrap();
            overflow()
        })
        .unwrap();
        assert!(deep.join_timeout(WAIT));
        assert!(
            matches!(deep.get(), Err(CoroError::StackOverflow { .. })),
            "a 64 KiB frame overflows the default 32 KiB stack"
        );
        let overflowed = rx.recv_timeout(WAIT).unwrap();
        // The pool keeps one stack: the next coroutine runs on the one that
        // overflowed, and uses a good part of it (a debug build copies the array).
        let mut next = coro::spawn(|| {
            let here = stack_here();
            let part = std::hint::black_box([2u8; 6 * 1024]);
            (here, part.iter().map(|&b| u32::from(b)).sum::<u32>())
        })
        .unwrap();
        let (here, sum) = next.get_timeout(WAIT).unwrap();
        assert_eq!(sum, 12 * 1024);
        assert!(
            here.abs_diff(overflowed) < coro::DEFAULT_STACK_SIZE,
            "expected the pooled stack again: {overflowed:#x} then {here:#x}"
        );
    }
}

#[test]
fn smoke_stack_overflow_is_an_err_naming_the_coroutine() {
    let _turn = setup();
    let mut deep = Builder::new()
        .name("deep")
        .stack_size(16 * 1024)
        .spawn(|| {
            let big = std::hint::black_box([1u8; 64 * 1024]);
            big.iter().map(|&b| u32::from(b)).sum::<u32>()
        })
        .unwrap();
    assert!(
        deep.join_timeout(WAIT),
        "join must return after an overflow"
    );
    let err = deep.get().unwrap_err();
    assert_eq!(
        err,
        CoroError::StackOverflow {
            name: "deep".into()
        }
    );
    assert!(err.to_string().contains("stack_size"), "{err}");

    let mut after = coro::spawn(|| 1).unwrap();
    assert_eq!(after.get_timeout(WAIT).unwrap(), 1);
}
