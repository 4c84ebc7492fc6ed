//! Lock-order checking: an A→B / B→A inversion is reported in a run that never deadlocks.

use std::sync::{Arc, Once};
use std::time::Duration;

use threads_sync::deadlock::{
    clear_lock_order_history, lock_order_checking_enabled, lock_order_violations,
    set_lock_order_checking,
};
use threads_sync::{Lock, Mutex, Thread};

const LONG: Duration = Duration::from_secs(10);

/// The checker is process-wide: the tests of this file take turns.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Takes this file's turn and switches checking on (the debug-build default; set explicitly
/// so that `--release` runs test the same).
fn serial() -> std::sync::MutexGuard<'static, ()> {
    let turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    set_lock_order_checking(true);
    turn
}

/// Captures `warn!` records so the test can see what was logged.
struct Capture;
static LOGGED: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

impl log::Log for Capture {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::Level::Warn
    }
    fn log(&self, record: &log::Record<'_>) {
        if self.enabled(record.metadata()) {
            LOGGED.lock().unwrap().push(record.args().to_string());
        }
    }
    fn flush(&self) {}
}

fn install_logger() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        log::set_boxed_logger(Box::new(Capture)).unwrap();
        log::set_max_level(log::LevelFilter::Warn);
    });
}

/// Takes `first`, then `second`, on a thread of that name.
fn nested(first: Arc<Lock>, second: Arc<Lock>, name: &str) {
    let t = Thread::new(
        move || {
            let _a = first.acquire_timeout(LONG).unwrap();
            let _b = second.acquire_timeout(LONG).unwrap();
        },
        (),
    )
    .named(name);
    let mut t = t.start().unwrap();
    t.join_timeout(LONG).unwrap();
}

#[test]
fn smoke() {
    let _serial = serial();
    assert!(lock_order_checking_enabled());
    let a = Mutex::named("smoke-a", ());
    let b = Mutex::named("smoke-b", ());
    let _a = a.lock().unwrap();
    let _b = b.lock().unwrap();
    assert!(
        lock_order_violations()
            .iter()
            .all(|v| !v.involves("smoke-a"))
    );
}

#[test]
fn inversion_reported_without_a_deadlock() {
    let _serial = serial();
    install_logger();
    let a = Arc::new(Lock::named("accounts"));
    let b = Arc::new(Lock::named("audit"));
    // One after the other: never a deadlock, but the order is inconsistent.
    nested(a.clone(), b.clone(), "first-order");
    assert!(
        lock_order_violations()
            .iter()
            .all(|v| !v.involves("accounts"))
    );
    nested(b, a, "second-order");
    let violation = lock_order_violations()
        .into_iter()
        .find(|v| v.involves("accounts"))
        .expect("inversion recorded");
    assert_eq!(violation.thread, "second-order");
    assert_eq!(violation.held, "audit");
    assert_eq!(violation.taking, "accounts");
    assert_eq!(
        violation.earlier,
        [(
            "accounts".to_owned(),
            "audit".to_owned(),
            "first-order".to_owned()
        )]
    );
    let logged = LOGGED.lock().unwrap();
    assert!(
        logged
            .iter()
            .any(|m| m.contains("lock order inversion") && m.contains("accounts")),
        "{logged:?}"
    );
}

#[test]
fn longer_inversion_chain() {
    let _serial = serial();
    let x = Arc::new(Lock::named("chain-x"));
    let y = Arc::new(Lock::named("chain-y"));
    let z = Arc::new(Lock::named("chain-z"));
    nested(x.clone(), y.clone(), "xy");
    nested(y.clone(), z.clone(), "yz");
    // Keep every lock alive: a dropped lock leaves the order graph.
    nested(z.clone(), x.clone(), "zx");
    let violation = lock_order_violations()
        .into_iter()
        .find(|v| v.involves("chain-x"))
        .expect("cycle x→y→z→x recorded");
    assert_eq!(violation.earlier.len(), 2);
    assert!(violation.to_string().contains("chain-y"));
    drop((x, y, z));
}

#[test]
fn dropped_locks_leave_the_order_graph() {
    let _serial = serial();
    let p = Arc::new(Lock::named("gone-p"));
    let keep = Arc::new(Lock::named("gone-keep"));
    nested(p.clone(), keep.clone(), "p-then-keep");
    drop(p);
    let q = Arc::new(Lock::named("gone-q"));
    nested(keep.clone(), q.clone(), "keep-then-q");
    nested(q, keep, "q-then-keep");
    // q→keep inverts keep→q (both alive then), but nothing involves the dropped p.
    let all = lock_order_violations();
    assert!(all.iter().any(|v| v.involves("gone-q")));
    assert!(all.iter().all(|v| !v.involves("gone-p")));
}

#[test]
fn switched_off_records_nothing() {
    let _serial = serial();
    set_lock_order_checking(false);
    let c = Arc::new(Lock::named("off-c"));
    let d = Arc::new(Lock::named("off-d"));
    nested(c.clone(), d.clone(), "cd");
    nested(d, c, "dc");
    set_lock_order_checking(true);
    assert!(lock_order_violations().iter().all(|v| !v.involves("off-c")));
}

#[test]
fn clearing_forgets_history() {
    let _serial = serial();
    let e = Arc::new(Lock::named("clear-e"));
    let f = Arc::new(Lock::named("clear-f"));
    nested(e.clone(), f.clone(), "ef");
    clear_lock_order_history();
    assert!(lock_order_violations().is_empty());
    nested(f.clone(), e.clone(), "fe");
    assert!(lock_order_violations().is_empty(), "e→f was forgotten");
    nested(e, f, "ef-again");
    assert!(
        lock_order_violations()
            .iter()
            .any(|v| v.involves("clear-e"))
    );
}
