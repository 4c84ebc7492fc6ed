//! Stop spawning before the kernel's memory-map limit, with room left for the rest of the process.
//!
//! may maps each coroutine stack as two regions (the stack and its guard
//! page), so live coroutines count against `vm.max_map_count`. Spawning until
//! the kernel refuses would leave the process with no map to spare: its next
//! large allocation (glibc maps anything of 128 KiB and more on its own) or
//! thread would fail, and Rust aborts on a failed allocation. So `coro`
//! refuses a spawn while fewer than [`HEADROOM`] maps would remain.
//!
//! Counting maps means reading `/proc/self/maps`, too slow for every spawn:
//! the count is taken exactly now and then, and in between each live
//! coroutine is charged two maps. The next exact count is due when a third of
//! the room left at the last count has been charged, so even maps that appear
//! from elsewhere meanwhile cannot eat the headroom unnoticed.

use std::io::Read;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::{LIVE, live_coroutines};
use crate::error::{CoroError, Result};

/// Memory maps kept free for the rest of the process.
pub(crate) const HEADROOM: usize = 512;

/// Maps each coroutine stack costs (the stack and its guard page).
const PER_STACK: usize = 2;

/// The live-coroutine count at which the next exact count is due.
static NEXT_CHECK: AtomicUsize = AtomicUsize::new(0);

/// `/proc/sys/vm/max_map_count` (read once; 65 530 if unreadable, the kernel default).
pub(crate) fn max_map_count() -> usize {
    static MAX: OnceLock<usize> = OnceLock::new();
    *MAX.get_or_init(|| {
        std::fs::read_to_string("/proc/sys/vm/max_map_count")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(65_530)
    })
}

/// The number of memory maps this process holds now, counted without a big allocation.
pub(crate) fn count() -> Option<usize> {
    let mut file = std::fs::File::open("/proc/self/maps").ok()?;
    let mut buf = [0u8; 16 * 1024];
    let mut lines = 0;
    loop {
        match file.read(&mut buf) {
            Ok(0) => return Some(lines),
            Ok(n) => lines += buf[..n].iter().filter(|&&b| b == b'\n').count(),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return None,
        }
    }
}

/// Whether one more coroutine stack leaves [`HEADROOM`] maps free; `Err` naming the count if not.
pub(crate) fn check_budget() -> Result<()> {
    let live = LIVE.load(Ordering::Relaxed);
    if live < NEXT_CHECK.load(Ordering::Relaxed) {
        return Ok(());
    }
    check_exactly(live)
}

#[cold]
fn check_exactly(live: usize) -> Result<()> {
    let max = max_map_count();
    let Some(maps) = count() else {
        // /proc unreadable (not mounted?): rely on the kernel's own refusal.
        NEXT_CHECK.store(usize::MAX, Ordering::Relaxed);
        return Ok(());
    };
    let limit = max.saturating_sub(HEADROOM);
    if maps + PER_STACK > limit {
        NEXT_CHECK.store(live, Ordering::Relaxed);
        return Err(CoroError::StackExhausted {
            cause: format!(
                "coro keeps {HEADROOM} memory maps free below vm.max_map_count so the rest \
                 of the process can still allocate"
            ),
            live: live_coroutines(),
            maps,
            max_map_count: max,
        });
    }
    let room = (limit - maps) / PER_STACK;
    NEXT_CHECK.store(live + (room / 3).max(1), Ordering::Relaxed);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_maps_and_a_limit() {
        let maps = count().unwrap();
        assert!(maps > 10, "{maps}");
        assert!(max_map_count() > maps);
    }
}
