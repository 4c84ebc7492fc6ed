//! [`Local`]: Python's `threading.local()`, one value per thread, over `thread_local!`.

use std::any::Any;
use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};

static NEXT_LOCAL_ID: AtomicU64 = AtomicU64::new(1);

thread_local! {
    /// This thread's values of every [`Local`] it has touched, by the local's id.
    static VALUES: RefCell<HashMap<u64, Rc<dyn Any>>> = RefCell::new(HashMap::new());
}

/// A value each thread sees its own copy of (Python: `threading.local()`).
///
/// Unlike `thread_local!`, a `Local` is an ordinary value: keep it in a `static`, in a struct
/// or in an `Arc` shared by threads; each thread that touches it gets a fresh value from
/// `init`, dropped when that thread exits. It is `Send` and `Sync` whatever `T` is, because a
/// value never leaves the thread that made it.
///
/// ```python
/// data = threading.local()
/// data.count = 0          # each thread has its own .count
/// ```
/// ```
/// use threads_sync::{Local, Thread};
/// static COUNT: Local<u32> = Local::new(|| 0);
/// COUNT.with(|c| *c += 5);
/// let other = Thread::new(|| { COUNT.with(|c| *c += 1); COUNT.get() }, ()).start()?;
/// assert_eq!(other.join()?, 1); // its own value, starting from 0
/// assert_eq!(COUNT.get(), 5);   // ours is untouched
/// # Ok::<(), threads_sync::ThreadError>(())
/// ```
pub struct Local<T> {
    /// 0 until first used (a `const fn` cannot count).
    id: AtomicU64,
    init: fn() -> T,
}

impl<T: 'static> Local<T> {
    /// A thread-local value that starts as `init()` in each thread (a `const fn`, so a
    /// `Local` can be a `static`).
    pub const fn new(init: fn() -> T) -> Self {
        Local {
            id: AtomicU64::new(0),
            init,
        }
    }

    fn id(&self) -> u64 {
        let id = self.id.load(Ordering::Acquire);
        if id != 0 {
            return id;
        }
        let fresh = NEXT_LOCAL_ID.fetch_add(1, Ordering::Relaxed);
        match self
            .id
            .compare_exchange(0, fresh, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => fresh,
            Err(other) => other,
        }
    }

    fn cell(&self) -> Rc<RefCell<T>> {
        let id = self.id();
        let found = VALUES.with(|values| values.borrow().get(&id).cloned());
        let any = match found {
            Some(any) => any,
            None => {
                // `init` runs with no borrow held, so it may use other `Local`s.
                let fresh: Rc<dyn Any> = Rc::new(RefCell::new((self.init)()));
                VALUES.with(|values| values.borrow_mut().entry(id).or_insert(fresh).clone())
            }
        };
        match any.downcast::<RefCell<T>>() {
            Ok(cell) => cell,
            Err(_) => unreachable!("a Local's id is its own: its values all have type T"),
        }
    }

    /// Calls `f` with this thread's value.
    ///
    /// # Panics
    /// If `f` uses the same `Local` again (as `RefCell` would), or if called while the
    /// thread's locals are being destroyed at thread exit.
    pub fn with<U>(&self, f: impl FnOnce(&mut T) -> U) -> U {
        let cell = self.cell();
        let mut value = cell.borrow_mut();
        f(&mut value)
    }

    /// Replaces this thread's value (Python: `data.x = value`).
    pub fn set(&self, value: T) {
        self.with(|v| *v = value);
    }

    /// Replaces this thread's value and returns the old one.
    pub fn replace(&self, value: T) -> T {
        self.with(|v| std::mem::replace(v, value))
    }

    /// A copy of this thread's value (Python: `data.x`).
    pub fn get(&self) -> T
    where
        T: Clone,
    {
        self.with(|v| v.clone())
    }
}

impl<T> Drop for Local<T> {
    /// Drops the calling thread's value now; other threads' values go when they exit.
    fn drop(&mut self) {
        let id = *self.id.get_mut();
        if id != 0 {
            let value = VALUES
                .try_with(|values| values.borrow_mut().remove(&id))
                .ok()
                .flatten();
            drop(value);
        }
    }
}

impl<T> fmt::Debug for Local<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Local")
            .field("id", &self.id.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}
