//! Local<T>: each thread sees its own value, starting from `init`; values die with their thread.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use threads_sync::{Local, Thread};

static COUNTER: Local<u32> = Local::new(|| 0);

#[test]
fn smoke() {
    COUNTER.set(3);
    assert_eq!(COUNTER.get(), 3);
}

#[test]
fn each_thread_has_its_own_value() {
    COUNTER.set(100);
    let threads: Vec<_> = (1..=4u32)
        .map(|i| {
            Thread::new(
                move || {
                    for _ in 0..i {
                        COUNTER.with(|c| *c += 1);
                    }
                    COUNTER.get()
                },
                (),
            )
            .start()
            .unwrap()
        })
        .collect();
    let seen: Vec<u32> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    assert_eq!(seen, [1, 2, 3, 4]);
    assert_eq!(COUNTER.get(), 100, "this thread's value is untouched");
}

#[test]
fn a_local_shared_in_an_arc_and_non_send_values() {
    // `Rc` is not `Send`, yet the Local is shared: no value ever leaves its thread.
    let names: Arc<Local<Rc<RefCell<Vec<&'static str>>>>> = Arc::new(Local::new(Rc::default));
    names.with(|v| v.borrow_mut().push("main"));
    let theirs = Arc::clone(&names);
    let len = Thread::new(
        move || {
            theirs.with(|v| v.borrow_mut().push("worker"));
            theirs.with(|v| v.borrow().len())
        },
        (),
    )
    .start()
    .unwrap()
    .join()
    .unwrap();
    assert_eq!(len, 1);
    assert_eq!(names.with(|v| v.borrow().clone()), ["main"]);
}

#[test]
fn replace_returns_the_old_value_and_init_may_use_other_locals() {
    static BASE: Local<u32> = Local::new(|| 40);
    static DERIVED: Local<u32> = Local::new(|| BASE.get() + 2);
    assert_eq!(DERIVED.get(), 42);
    assert_eq!(DERIVED.replace(7), 42);
    assert_eq!(DERIVED.get(), 7);
}

#[test]
fn values_are_dropped_when_their_thread_exits() {
    static DROPS: AtomicUsize = AtomicUsize::new(0);
    struct Counted;
    impl Drop for Counted {
        fn drop(&mut self) {
            DROPS.fetch_add(1, Ordering::SeqCst);
        }
    }
    static VALUE: Local<Option<Counted>> = Local::new(|| None);
    Thread::new(|| VALUE.set(Some(Counted)), ())
        .start()
        .unwrap()
        .join()
        .unwrap();
    // The join returns after the thread's locals were destroyed.
    assert_eq!(DROPS.load(Ordering::SeqCst), 1);
}
