//! Lock-order checking (the idea of Linux's lockdep): "held A while taking B" edges, and the
//! inversions that close a cycle among them. See the [`deadlock`](crate::deadlock) module.
//!
//! Layers: this module sits below `deadlock` (which re-exports its public items) and below
//! `lock_meta` (whose `LockMeta` implements [`OrderedLock`]).

use std::cell::Cell;
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::identity::current_name;
use crate::mode::lock_order_checking_enabled;

/// What the order graph needs of a lock: implemented by the lock's meta (`LockMeta`, a layer
/// above), so that this module does not depend on it. Every function here is generic over it
/// and has one instance, so the calls compile as direct as they were.
pub(crate) trait OrderedLock {
    /// The lock's id and kind (handing out the id on first use).
    fn tag(&self) -> HeldLock;
    /// The name used in reports.
    fn name(&self) -> String;
    /// Notes that the lock is in the order graph, so that dropping it prunes it.
    fn mark_in_graph(&self);
    /// The lock's id.
    #[inline]
    fn id(&self) -> u64 {
        self.tag().id()
    }
}

/// Bumped by [`clear_lock_order_history`] so that per-thread edge caches start afresh.
static ORDER_EPOCH: AtomicU64 = AtomicU64::new(1);

/// Locks a thread can hold at once and still be order-checked; locks taken beyond that depth
/// are not tracked (their deadlock detection is unaffected).
const HELD_CAPACITY: usize = 16;
/// Slots of the per-thread cache of edges already reported (direct-mapped).
const SEEN_SLOTS: usize = 64;

/// The locks this thread holds, innermost last. Plain `Cell`s and no destructor, so that
/// the thread-local access on every lock and unlock stays a few instructions.
struct HeldStack {
    len: Cell<usize>,
    locks: [Cell<HeldLock>; HELD_CAPACITY],
}

/// Edges this thread already reported, for one `ORDER_EPOCH`.
struct SeenEdges {
    epoch: Cell<u64>,
    slots: [Cell<(u64, u64)>; SEEN_SLOTS],
}

thread_local! {
    static HELD: HeldStack = const {
        HeldStack {
            len: Cell::new(0),
            locks: [const { Cell::new(HeldLock::EMPTY) }; HELD_CAPACITY],
        }
    };
    static SEEN_EDGES: SeenEdges = const {
        SeenEdges {
            epoch: Cell::new(0),
            slots: [const { Cell::new((0, 0)) }; SEEN_SLOTS],
        }
    };
}

/// An entry of the per-thread list of held locks, packed in one word so that pushing and
/// popping it costs a store: the lock id in the low 56 bits, the kind in bits 56..63, and in
/// bit 63 whether another lock was taken while this one was held (on release, that marks the
/// lock as part of the order graph, so that dropping it prunes its edges).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct HeldLock(pub(crate) u64);

const KINDS: [&str; 2] = ["Mutex", "RLock"];
pub(crate) const ID_BITS: u64 = (1 << 56) - 1;
const NESTED_BIT: u64 = 1 << 63;

impl HeldLock {
    const EMPTY: HeldLock = HeldLock(0);

    #[inline]
    pub(crate) fn id(self) -> u64 {
        self.0 & ID_BITS
    }

    pub(crate) fn kind(self) -> &'static str {
        KINDS[((self.0 >> 56) & 0x3f) as usize % KINDS.len()]
    }

    #[inline]
    fn nested(self) -> bool {
        self.0 & NESTED_BIT != 0
    }

    #[inline]
    fn with_nested(self) -> Self {
        HeldLock(self.0 | NESTED_BIT)
    }
}

/// One recorded inversion of lock order: a cycle in the "held while taking" graph.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockOrderViolation {
    /// Thread that took `taking` while holding `held`, closing the cycle.
    pub thread: String,
    /// The lock the thread held.
    pub held: String,
    /// The lock it took.
    pub taking: String,
    /// The earlier chain from `taking` to `held`: each step is
    /// `(held lock, lock taken, thread that first did it)`.
    pub earlier: Vec<(String, String, String)>,
}

impl LockOrderViolation {
    /// Whether this inversion involves a lock of that name.
    pub fn involves(&self, lock: &str) -> bool {
        self.held == lock || self.taking == lock
    }
}

impl fmt::Display for LockOrderViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "lock order inversion: thread {:?} takes {:?} while holding {:?}, but earlier",
            self.thread, self.taking, self.held
        )?;
        for (i, (from, to, thread)) in self.earlier.iter().enumerate() {
            if i > 0 {
                write!(f, ",")?;
            }
            write!(f, " thread {thread:?} took {to:?} while holding {from:?}")?;
        }
        write!(f, "; threads doing both at once would deadlock")
    }
}

struct EdgeInfo {
    from: String,
    to: String,
    thread: String,
}

#[derive(Default)]
pub(crate) struct OrderGraph {
    /// Names of the named locks alive, so edges can name the held lock.
    pub(crate) names: HashMap<u64, Arc<str>>,
    edges: HashMap<u64, HashMap<u64, EdgeInfo>>,
    violations: Vec<LockOrderViolation>,
}

impl OrderGraph {
    fn name_of(&self, held: HeldLock) -> String {
        match self.names.get(&held.id()) {
            Some(name) => name.to_string(),
            None => format!("{}#{}", held.kind(), held.id()),
        }
    }

    /// A path `from` ⇝ `to` as a list of edges, breadth-first (so the shortest).
    fn path(&self, from: u64, to: u64) -> Option<Vec<&EdgeInfo>> {
        let mut parent: HashMap<u64, u64> = HashMap::new();
        let mut queue = std::collections::VecDeque::from([from]);
        while let Some(node) = queue.pop_front() {
            if node == to {
                let mut path = Vec::new();
                let mut at = to;
                while at != from {
                    let prev = parent[&at];
                    path.push(&self.edges[&prev][&at]);
                    at = prev;
                }
                path.reverse();
                return Some(path);
            }
            for &next in self.edges.get(&node).into_iter().flat_map(|m| m.keys()) {
                if next != from && !parent.contains_key(&next) {
                    parent.insert(next, node);
                    queue.push_back(next);
                }
            }
        }
        None
    }

    fn add_edge(&mut self, held: HeldLock, taking: &impl OrderedLock, thread: &str) {
        if self
            .edges
            .get(&held.id())
            .is_some_and(|m| m.contains_key(&taking.id()))
        {
            return;
        }
        let from = self.name_of(held);
        let to = taking.name();
        if let Some(path) = self.path(taking.id(), held.id()) {
            let violation = LockOrderViolation {
                thread: thread.to_owned(),
                held: from.clone(),
                taking: to.clone(),
                earlier: path
                    .iter()
                    .map(|e| (e.from.clone(), e.to.clone(), e.thread.clone()))
                    .collect(),
            };
            log::warn!("{violation}");
            self.violations.push(violation);
        }
        self.edges.entry(held.id()).or_default().insert(
            taking.id(),
            EdgeInfo {
                from,
                to,
                thread: thread.to_owned(),
            },
        );
    }

    pub(crate) fn forget_lock(&mut self, id: u64) {
        self.names.remove(&id);
        self.edges.remove(&id);
        for tos in self.edges.values_mut() {
            tos.remove(&id);
        }
    }
}

static ORDER: parking_lot::Mutex<Option<OrderGraph>> = parking_lot::const_mutex(None);

pub(crate) fn with_order<R>(f: impl FnOnce(&mut OrderGraph) -> R) -> R {
    f(ORDER.lock().get_or_insert_with(OrderGraph::default))
}

/// Whether the guard being created must pop the held list when dropped.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Tracked(bool);

impl Tracked {
    /// Not on the held list (lock-order checking off): dropping the guard has nothing to pop.
    pub(crate) const NO: Tracked = Tracked(false);
}

/// Notes that the current thread takes `meta` (before a blocking attempt, so that the order is
/// checked even if the attempt then blocks; after a successful try-lock, with `check` false,
/// since a try-lock cannot deadlock). If the attempt fails, undo with [`note_released`].
#[inline]
pub(crate) fn note_acquiring(meta: &impl OrderedLock, check: bool) -> Tracked {
    if !lock_order_checking_enabled() {
        return Tracked(false);
    }
    HELD.with(|held| {
        let len = held.len.get();
        if len == HELD_CAPACITY {
            return Tracked(false);
        }
        if check && len > 0 {
            check_edges(held, len, meta);
        }
        held.locks[len].set(meta.tag());
        held.len.set(len + 1);
        Tracked(true)
    })
}

/// Records "held → meta" for every held lock not yet reported by this thread. Kept out of
/// line so that the common, unnested path of `note_acquiring` stays small enough to inline.
#[inline(never)]
fn check_edges(held: &HeldStack, len: usize, meta: &impl OrderedLock) {
    SEEN_EDGES.with(|seen| {
        let now = ORDER_EPOCH.load(Ordering::Acquire);
        if seen.epoch.get() != now {
            seen.epoch.set(now);
            seen.slots.iter().for_each(|slot| slot.set((0, 0)));
        }
        for cell in &held.locks[..len] {
            let h = cell.get();
            if h.id() == meta.id() {
                continue;
            }
            if !h.nested() {
                cell.set(h.with_nested());
            }
            let edge = (h.id(), meta.id());
            let slot = &seen.slots[(h.id().wrapping_mul(31) ^ meta.id()) as usize % SEEN_SLOTS];
            if slot.get() != edge {
                record_edge(h, meta);
                slot.set(edge);
            }
        }
    });
}

#[cold]
#[inline(never)]
fn record_edge(held: HeldLock, meta: &impl OrderedLock) {
    let thread = current_name();
    // The lock's id must exist before the order graph is locked: handing it out registers
    // a named lock's name in that same graph.
    meta.tag();
    with_order(|g| g.add_edge(held, meta, &thread));
    meta.mark_in_graph();
}

/// Notes that the current thread released `meta` (or gave up taking it).
#[inline]
pub(crate) fn note_released(meta: &impl OrderedLock, tracked: Tracked) {
    if !tracked.0 {
        return;
    }
    HELD.with(|held| {
        let len = held.len.get();
        // Usually the innermost; guards may also be dropped out of order.
        if let Some(pos) = (0..len)
            .rev()
            .find(|&i| held.locks[i].get().id() == meta.id())
        {
            if held.locks[pos].get().nested() {
                meta.mark_in_graph();
            }
            for i in pos..len - 1 {
                held.locks[i].set(held.locks[i + 1].get());
            }
            held.len.set(len - 1);
        }
    });
}

/// Every lock-order inversion recorded so far, oldest first.
pub fn lock_order_violations() -> Vec<LockOrderViolation> {
    with_order(|g| g.violations.clone())
}

/// The first lock-order inversion recorded, if any.
pub fn first_lock_order_violation() -> Option<LockOrderViolation> {
    with_order(|g| g.violations.first().cloned())
}

/// Forgets every recorded edge and inversion, as if no lock had been nested yet.
pub fn clear_lock_order_history() {
    with_order(|g| {
        g.edges.clear();
        g.violations.clear();
        ORDER_EPOCH.fetch_add(1, Ordering::Release);
    });
}
