//! Shared state: the racy counter never over-counts, the locked one is exact.

use threads_sync::RacyCounter;
use threads_sync::race::{count_locked, count_racy};

#[test]
fn smoke() {
    let c = RacyCounter::new();
    c.increment();
    c.increment();
    assert_eq!(c.get(), 2);
}

#[test]
fn racy_count_never_exceeds_the_expected_total() {
    let got = count_racy(2, 100_000);
    assert!(got <= 200_000, "{got}");
    assert!(
        got >= 100_000,
        "each thread's own updates: at least one full run survives ({got})"
    );
}

#[test]
fn locked_count_is_exact() {
    assert_eq!(count_locked(4, 50_000).unwrap(), 200_000);
    assert_eq!(count_locked(0, 10).unwrap(), 0);
}
