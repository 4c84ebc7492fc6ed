//! A coroutine that overflows its stack is an `Err`, and the runtime goes on.
//!
//! Its own test binary: the overflow goes through may's SIGSEGV handler.

use std::time::Duration;

use coro::{Builder, CoroError};

const WAIT: Duration = Duration::from_secs(20);

#[test]
fn smoke_stack_overflow_is_an_err_naming_the_coroutine() {
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
