//! Thread(target, args): every arity, join values, panics, timeouts, names and idents.

use std::time::Duration;

use threads_sync::{Thread, ThreadError, current_thread, get_ident};

/// Upper bound for any wait in these tests: a hang fails instead of stalling CI.
const LONG: Duration = Duration::from_secs(10);

fn add(a: i32, b: i32) -> i32 {
    a + b
}

#[test]
fn smoke() {
    let mut t = Thread::new(add, (2, 3));
    t.start().unwrap();
    assert_eq!(t.join_timeout(LONG).unwrap(), 5);
}

fn zero() -> &'static str {
    "zero"
}
fn one(a: u8) -> u8 {
    a
}
fn three(a: u8, b: u16, c: u32) -> u64 {
    u64::from(a) + u64::from(b) + u64::from(c)
}
fn four(a: String, b: &'static str, c: char, d: bool) -> String {
    format!("{a}{b}{c}{d}")
}
fn five(a: u64, b: u64, c: u64, d: u64, e: u64) -> u64 {
    a + b + c + d + e
}
fn six(a: Vec<u8>, b: u8, c: u8, d: u8, e: u8, f: u8) -> Vec<u8> {
    let mut v = a;
    v.extend([b, c, d, e, f]);
    v
}

fn run<R: Send + 'static>(mut t: Thread<R>) -> R {
    t.start().unwrap();
    t.join_timeout(LONG).unwrap()
}

#[test]
fn each_arity_of_plain_functions() {
    assert_eq!(run(Thread::new(zero, ())), "zero");
    assert_eq!(run(Thread::new(one, (7,))), 7);
    assert_eq!(run(Thread::new(add, (2, 3))), 5);
    assert_eq!(run(Thread::new(three, (1, 2, 3))), 6);
    assert_eq!(
        run(Thread::new(four, ("a".to_owned(), "b", 'c', true))),
        "abctrue"
    );
    assert_eq!(run(Thread::new(five, (1, 2, 3, 4, 5))), 15);
    assert_eq!(
        run(Thread::new(six, (vec![0], 1, 2, 3, 4, 5))),
        [0, 1, 2, 3, 4, 5]
    );
}

#[test]
fn closures_with_and_without_args() {
    let base = 40;
    assert_eq!(run(Thread::new(move || base + 2, ())), 42);
    assert_eq!(run(Thread::new(move |x: i32| base + x, (1,))), 41);
    let owned = String::from("abc");
    assert_eq!(run(Thread::new(move || owned.len(), ())), 3);
}

#[test]
fn panic_is_an_error_with_its_message() {
    let mut t = Thread::new(|| -> u32 { panic!("disk on fire: {}", 42) }, ()).named("doomed");
    t.start().unwrap();
    match t.join_timeout(LONG) {
        Err(ThreadError::Panicked { thread, message }) => {
            assert_eq!(thread, "doomed");
            assert_eq!(message, "disk on fire: 42");
        }
        other => panic!("expected Panicked, got {other:?}"),
    }
    let text = ThreadError::Panicked {
        thread: "doomed".into(),
        message: "x".into(),
    }
    .to_string();
    assert!(text.contains("doomed") && text.contains("panicked"));
}

#[test]
fn non_string_panic_payload_is_reported() {
    let mut t = Thread::new(|| std::panic::panic_any(17u32), ());
    t.start().unwrap();
    let err = t.join_timeout(LONG).unwrap_err();
    assert!(
        err.to_string().contains("non-string panic payload"),
        "{err}"
    );
}

#[test]
fn join_timeout_on_a_busy_thread_then_join_again() {
    let (go_tx, go_rx) = crossbeam_channel::bounded::<()>(0);
    let mut t = Thread::new(
        move || {
            go_rx.recv_timeout(LONG).expect("released by the test");
            "done"
        },
        (),
    )
    .named("busy");
    t.start().unwrap();
    match t.join_timeout(Duration::from_millis(20)) {
        Err(ThreadError::Timeout { thread, .. }) => assert_eq!(thread, "busy"),
        other => panic!("expected Timeout, got {other:?}"),
    }
    assert!(t.is_alive());
    go_tx.send_timeout((), LONG).unwrap();
    assert_eq!(t.join_timeout(LONG).unwrap(), "done");
    assert!(!t.is_alive());
}

#[test]
fn lifecycle_errors() {
    let mut t = Thread::new(add, (1, 1)).named("once");
    assert!(!t.is_alive());
    assert!(t.ident().is_none());
    assert!(matches!(t.join(), Err(ThreadError::NotStarted { .. })));
    t.start().unwrap();
    assert!(matches!(t.start(), Err(ThreadError::AlreadyStarted { .. })));
    assert_eq!(t.join_timeout(LONG).unwrap(), 2);
    assert!(matches!(t.join(), Err(ThreadError::AlreadyJoined { .. })));
    assert!(matches!(t.start(), Err(ThreadError::AlreadyStarted { .. })));
}

#[test]
fn default_names_follow_python() {
    let t = Thread::new(add, (1, 2));
    assert!(t.name().starts_with("Thread-"), "{}", t.name());
    assert!(t.name().ends_with("(add)"), "{}", t.name());
    let c = Thread::new(|| (), ());
    assert!(
        c.name().starts_with("Thread-") && !c.name().contains('('),
        "{}",
        c.name()
    );
}

#[test]
fn current_thread_inside_sees_name_and_ident() {
    let mut t = Thread::new(|| (current_thread(), get_ident()), ()).named("worker-7");
    t.start().unwrap();
    let ident = t.ident().unwrap();
    let (me, raw) = t.join_timeout(LONG).unwrap();
    assert_eq!(me.name(), "worker-7");
    assert_eq!(me.ident(), ident);
    assert_eq!(raw, ident);
    assert_ne!(get_ident(), ident);
    assert_eq!(current_thread().ident(), get_ident());
}

#[test]
fn idents_are_unique() {
    let mut threads: Vec<_> = (0..8).map(|_| Thread::new(get_ident, ())).collect();
    for t in &mut threads {
        t.start().unwrap();
    }
    let mut idents: Vec<u64> = threads
        .iter_mut()
        .map(|t| t.join_timeout(LONG).unwrap())
        .collect();
    idents.sort_unstable();
    idents.dedup();
    assert_eq!(idents.len(), 8);
    assert!(!idents.contains(&0));
}
