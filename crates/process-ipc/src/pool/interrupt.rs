//! The pools [`crate::interrupt`] shuts down on SIGINT/SIGTERM: every pool registers here when
//! it starts (a weak reference, so the registry keeps no pool alive), and the first one
//! registers [`interrupt_pools`] as the shutdown's first step.

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use crate::error::PoolError;

use super::collector::PoolShared;

/// Every pool started in this process, while it lives.
static POOLS: parking_lot::Mutex<Vec<Weak<PoolShared>>> = parking_lot::const_mutex(Vec::new());

/// Follows a newly started pool (the dead ones are dropped on the way).
pub(crate) fn register(shared: &Arc<PoolShared>) {
    static HOOKED: std::sync::Once = std::sync::Once::new();
    HOOKED.call_once(|| crate::interrupt::on_shutdown(interrupt_pools));
    let mut pools = POOLS.lock();
    pools.retain(|p| p.strong_count() > 0);
    pools.push(Arc::downgrade(shared));
}

/// Terminates every live pool: its workers are killed, its unfinished tasks fail with
/// [`PoolError::Interrupted`]; then waits (until `deadline`) for the workers to be reaped.
fn interrupt_pools(signal: i32, deadline: Instant) {
    let pools: Vec<Arc<PoolShared>> = POOLS.lock().iter().filter_map(Weak::upgrade).collect();
    for shared in &pools {
        shared.terminate_with(PoolError::Interrupted { signal });
    }
    for shared in &pools {
        let left = deadline.saturating_duration_since(Instant::now());
        let _ = shared.join_until(Some((Instant::now() + left, left.max(Duration::ZERO))));
    }
}
