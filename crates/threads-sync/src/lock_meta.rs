//! What every lock carries next to its raw lock: its owner word, its id and kind, its name.
//!
//! Layers: this module sits above the order graph (`lock_order`) and the wait-for graph
//! (`deadlock`), which know a lock only through the traits `LockMeta` implements here.

use std::borrow::Cow;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::deadlock::{WaitTarget, forget_waits_for};
use crate::lock_order::{HeldLock, ID_BITS, OrderedLock, with_order};

static NEXT_LOCK_ID: AtomicU64 = AtomicU64::new(1);

/// What every lock of this crate carries next to its raw lock. Built by a `const fn`, so that
/// a lock can live in a `static`: its id is handed out on first need, not at construction.
#[derive(Debug)]
#[repr(C)]
pub(crate) struct LockMeta {
    /// Ident of the thread holding the lock, 0 when free or changing hands. Written on every
    /// acquisition, so it sits first, next to the raw lock that follows the meta in each lock.
    owner: AtomicU64,
    /// The kind in bits 56..62, the lock id in the low 56 bits (0 until first needed), and
    /// [`IN_GRAPH_BIT`]: the lock appears in the lock-order graph, so dropping it prunes it.
    tag: AtomicU64,
    name: Option<Cow<'static, str>>,
}

/// Bit of [`LockMeta::tag`]: the lock is in the lock-order graph.
const IN_GRAPH_BIT: u64 = 1 << 62;

impl LockMeta {
    pub(crate) const fn new(kind: LockKind, name: Option<Cow<'static, str>>) -> Self {
        LockMeta {
            owner: AtomicU64::new(0),
            tag: AtomicU64::new((kind as u64) << 56),
            name,
        }
    }

    /// The id packed with the kind (no graph bit), handing out the id on first use.
    #[inline]
    pub(crate) fn tag(&self) -> HeldLock {
        let tag = self.tag.load(Ordering::Acquire);
        if tag & ID_BITS != 0 {
            return HeldLock(tag & !IN_GRAPH_BIT);
        }
        self.first_tag()
    }

    #[cold]
    #[inline(never)]
    fn first_tag(&self) -> HeldLock {
        let id = NEXT_LOCK_ID.fetch_add(1, Ordering::Relaxed) & ID_BITS;
        let mut seen = self.tag.load(Ordering::Acquire);
        loop {
            if seen & ID_BITS != 0 {
                // Another thread gave the id first; ours is simply never used.
                return HeldLock(seen & !IN_GRAPH_BIT);
            }
            match self.tag.compare_exchange_weak(
                seen,
                seen | id,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => break,
                Err(now) => seen = now,
            }
        }
        if let Some(name) = &self.name {
            with_order(|g| g.names.insert(id, Arc::from(&**name)));
            self.mark_in_graph();
        }
        HeldLock((seen | id) & !IN_GRAPH_BIT)
    }

    #[inline]
    pub(crate) fn id(&self) -> u64 {
        self.tag().id()
    }

    pub(crate) fn mark_in_graph(&self) {
        self.tag.fetch_or(IN_GRAPH_BIT, Ordering::Relaxed);
    }

    /// The lock's name, or `<kind>#<id>` when it has none.
    pub(crate) fn name(&self) -> String {
        match &self.name {
            Some(name) => name.to_string(),
            None => format!("{}#{}", self.tag().kind(), self.id()),
        }
    }

    #[inline]
    pub(crate) fn owner(&self) -> u64 {
        self.owner.load(Ordering::Acquire)
    }

    /// Records that the caller now holds the raw lock (call right after taking it).
    #[inline]
    pub(crate) fn set_owner(&self, ident: u64) {
        self.owner.store(ident, Ordering::Release);
    }

    /// Records that the lock is about to be released (call right before releasing it).
    #[inline]
    pub(crate) fn clear_owner(&self) {
        self.owner.store(0, Ordering::Release);
    }

    /// Like [`clear_owner`](LockMeta::clear_owner), skipping the store when detection was off
    /// at acquisition (the word is 0 already). Only the holder writes a nonzero owner, so
    /// this read sees the holder's own store.
    #[inline]
    pub(crate) fn clear_owner_if_set(&self) {
        if self.owner.load(Ordering::Relaxed) != 0 {
            self.owner.store(0, Ordering::Release);
        }
    }
}

impl Drop for LockMeta {
    fn drop(&mut self) {
        let tag = *self.tag.get_mut();
        if tag & IN_GRAPH_BIT != 0 {
            with_order(|g| g.forget_lock(tag & ID_BITS));
        }
        forget_waits_for(self);
    }
}

impl OrderedLock for LockMeta {
    #[inline]
    fn tag(&self) -> HeldLock {
        LockMeta::tag(self)
    }

    fn name(&self) -> String {
        LockMeta::name(self)
    }

    #[inline]
    fn mark_in_graph(&self) {
        LockMeta::mark_in_graph(self);
    }
}

impl WaitTarget for LockMeta {
    #[inline]
    fn owner(&self) -> u64 {
        LockMeta::owner(self)
    }

    #[inline]
    fn set_owner(&self, ident: u64) {
        LockMeta::set_owner(self, ident);
    }

    fn name(&self) -> String {
        LockMeta::name(self)
    }
}

/// The kinds of lock, as packed in a [`LockMeta`]'s tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum LockKind {
    /// [`Mutex`](crate::Mutex) and [`Lock`](crate::Lock).
    Mutex = 0,
    /// [`RLock`](crate::RLock).
    RLock = 1,
}
