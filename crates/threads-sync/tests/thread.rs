//! Thread(target, args): every arity, join values, panics, timeouts, names and idents, and the
//! registry of live threads (enumerate, active_count, main_thread).

use std::time::Duration;

use threads_sync::{
    Thread, ThreadError, active_count, current_thread, enumerate, get_ident, main_thread,
};

/// Upper bound for any wait in these tests: a hang fails instead of stalling CI.
const LONG: Duration = Duration::from_secs(10);

fn add(a: i32, b: i32) -> i32 {
    a + b
}

#[test]
fn smoke() {
    let mut t = Thread::new(add, (2, 3)).start().unwrap();
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

fn run<R: Send + 'static>(t: Thread<R>) -> R {
    t.start().unwrap().join_timeout(LONG).unwrap()
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
    let t = Thread::new(|| -> u32 { panic!("disk on fire: {}", 42) }, ()).named("doomed");
    let mut t = t.start().unwrap();
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
    let t = Thread::new(|| std::panic::panic_any(17u32), ());
    let mut t = t.start().unwrap();
    let err = t.join_timeout(LONG).unwrap_err();
    assert!(
        err.to_string().contains("non-string panic payload"),
        "{err}"
    );
}

#[test]
fn join_timeout_on_a_busy_thread_then_join_again() {
    let (go_tx, go_rx) = crossbeam_channel::bounded::<()>(0);
    let t = Thread::new(
        move || {
            go_rx.recv_timeout(LONG).expect("released by the test");
            "done"
        },
        (),
    )
    .named("busy");
    let mut t = t.start().unwrap();
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
fn join_after_a_successful_join_timeout_is_already_joined() {
    let t = Thread::new(add, (1, 1)).named("once");
    assert_eq!(t.name(), "once");
    let mut t = t.start().unwrap();
    assert_ne!(t.ident(), 0);
    assert_eq!(t.join_timeout(LONG).unwrap(), 2);
    assert!(!t.is_alive());
    match t.join_timeout(LONG) {
        Err(ThreadError::AlreadyJoined { thread }) => assert_eq!(thread, "once"),
        other => panic!("expected AlreadyJoined, got {other:?}"),
    }
    assert!(matches!(t.join(), Err(ThreadError::AlreadyJoined { .. })));
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
    let mut t = Thread::new(|| (current_thread(), get_ident()), ())
        .named("worker-7")
        .start()
        .unwrap();
    let ident = t.ident();
    let (me, raw) = t.join_timeout(LONG).unwrap();
    assert_eq!(me.name(), "worker-7");
    assert_eq!(me.ident(), ident);
    assert_eq!(raw, ident);
    assert_ne!(get_ident(), ident);
    assert_eq!(current_thread().ident(), get_ident());
}

#[test]
fn idents_are_unique() {
    let mut threads: Vec<_> = (0..8)
        .map(|_| Thread::new(get_ident, ()).start().unwrap())
        .collect();
    let mut idents: Vec<u64> = threads
        .iter_mut()
        .map(|t| t.join_timeout(LONG).unwrap())
        .collect();
    idents.sort_unstable();
    idents.dedup();
    assert_eq!(idents.len(), 8);
    assert!(!idents.contains(&0));
}

#[test]
fn enumerate_lists_live_threads_and_drops_finished_ones() {
    let (release, hold) = crossbeam_channel::bounded::<()>(0);
    let (entered_tx, entered) = crossbeam_channel::bounded::<()>(1);
    let t = Thread::new(
        move || {
            entered_tx.send(()).unwrap();
            hold.recv_timeout(LONG).is_ok()
        },
        (),
    )
    .named("listed-while-alive")
    .daemon(true)
    .start()
    .unwrap();
    entered.recv_timeout(LONG).unwrap();
    let ident = t.ident();
    let listed = enumerate();
    let me = listed
        .iter()
        .find(|info| info.ident() == ident)
        .expect("a live thread is listed");
    assert_eq!(me.name(), "listed-while-alive");
    assert!(me.is_daemon());
    assert_eq!(listed[0], main_thread());
    assert!(active_count() >= 2);
    release.send_timeout((), LONG).unwrap();
    assert!(t.join().unwrap());
    assert!(
        enumerate().iter().all(|info| info.ident() != ident),
        "a joined thread is no longer listed"
    );
}

#[test]
fn main_thread_is_the_one_std_calls_main() {
    let main = main_thread();
    assert_eq!((main.name(), main.ident()), ("main", 1));
    assert!(!main.is_daemon());
    // Test threads are not the main thread.
    assert_ne!(get_ident(), main.ident());
}

#[test]
fn daemon_flag_is_inherited_from_the_creating_thread() {
    let inner_flag = Thread::new(|| Thread::new(|| (), ()).is_daemon(), ())
        .daemon(true)
        .start()
        .unwrap()
        .join()
        .unwrap();
    assert!(inner_flag);
    assert!(!Thread::new(|| (), ()).is_daemon());
    let flag_inside = Thread::new(|| current_thread().is_daemon(), ())
        .daemon(true)
        .start()
        .unwrap()
        .join()
        .unwrap();
    assert!(flag_inside);
}

#[test]
fn handles_and_shared_objects_cross_threads() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<threads_sync::ThreadHandle<u8>>();
    send_sync::<threads_sync::TimerHandle<u8>>();
    send_sync::<threads_sync::ThreadPool>();
    send_sync::<threads_sync::AsyncResult<u8>>();
    send_sync::<threads_sync::Queue<u8>>();
    send_sync::<threads_sync::LifoQueue<u8>>();
    send_sync::<threads_sync::PriorityQueue<u8>>();
    send_sync::<threads_sync::SimpleQueue<u8>>();
    send_sync::<threads_sync::Lock>();
    send_sync::<threads_sync::Mutex<u8>>();
    // A Local's values never leave their thread, so it is shareable whatever it holds.
    send_sync::<threads_sync::Local<std::rc::Rc<u8>>>();
}

/// Python's `join(timeout=None)` is `join_timeout(Duration::MAX)` here too: no limit, no
/// overflow panic computing the deadline.
#[test]
fn join_timeout_of_duration_max_means_no_limit() {
    let (go_tx, go_rx) = crossbeam_channel::bounded::<()>(1);
    let mut t = Thread::new(
        move || go_rx.recv_timeout(Duration::from_secs(20)).is_ok(),
        (),
    )
    .start()
    .unwrap();
    go_tx.send(()).unwrap();
    assert!(t.join_timeout(Duration::MAX).unwrap());
    // And once joined, again: AlreadyJoined, not a panic.
    assert!(matches!(
        t.join_timeout(Duration::MAX),
        Err(threads_sync::ThreadError::AlreadyJoined { .. })
    ));
}

/// `Duration::MAX` as a timeout is no limit on every timed call (it used to panic computing
/// the deadline in several): each call below has what it waits for, so it returns at once.
#[test]
fn duration_max_is_no_limit_on_every_timed_call() {
    let event = threads_sync::Event::new();
    event.set();
    assert!(event.wait_timeout(Duration::MAX));
    let semaphore = threads_sync::Semaphore::new(1);
    assert!(semaphore.acquire_timeout(Duration::MAX));
    let lock = threads_sync::Lock::new();
    drop(lock.acquire_timeout(Duration::MAX).unwrap());
    let q = threads_sync::Queue::new();
    q.put(1).unwrap();
    assert_eq!(q.get_timeout(Duration::MAX), Ok(1));
    q.task_done().unwrap();
    q.join_timeout(Duration::MAX).unwrap();
    let pool = threads_sync::ThreadPool::new(1).unwrap();
    let result = pool.apply_async(|| 5, ()).unwrap();
    assert_eq!(result.get_timeout(Duration::MAX), Ok(5));
    let results = vec![pool.apply_async(|| 6, ()).unwrap()];
    let done: Vec<_> = threads_sync::as_completed(results, Some(Duration::MAX)).collect();
    assert_eq!(done.len(), 1);
    pool.close();
    pool.join_timeout(Duration::MAX).unwrap();
}
