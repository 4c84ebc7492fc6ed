//! The sizes of shared blocks: what the system cannot back is an error at `create`, never a
//! tiny mapping or an out-of-memory kill, and a block takes memory only as its pages are
//! touched (sparse, as Python's `SharedMemory`). Every wait is bounded.

use std::os::unix::fs::MetadataExt;
use std::time::Duration;

use process_ipc::{Array, Process, RawArray, SharedError, SharedMemory};

const WAIT: Duration = Duration::from_secs(20);

/// RAM + swap as the kernel reports them, in bytes.
fn ram_and_swap() -> u64 {
    // SAFETY: an all-zero sysinfo is a valid buffer for the call to fill.
    let mut info: libc::sysinfo = unsafe { std::mem::zeroed() };
    // SAFETY: `info` is a writable sysinfo.
    assert_eq!(unsafe { libc::sysinfo(&mut info) }, 0);
    (info.totalram as u64 + info.totalswap as u64) * u64::from(info.mem_unit)
}

/// Bytes of memory the memfd behind `block` holds now (it is this process's: the name gives
/// its descriptor number).
fn allocated_bytes(block: &SharedMemory) -> u64 {
    let fd: i32 = block.name().split('_').nth(3).unwrap().parse().unwrap();
    let meta = std::fs::metadata(format!("/proc/self/fd/{fd}")).unwrap();
    meta.blocks() * 512
}

#[test]
fn a_size_past_the_address_space_is_an_error_not_a_tiny_mapping() {
    for size in [usize::MAX, usize::MAX - 63, usize::MAX / 2 + 1] {
        match SharedMemory::create(size) {
            Err(SharedError::TooLarge { size: asked, limit }) => {
                assert_eq!(asked, size as u128);
                assert!(limit > 0);
            }
            other => panic!("create({size}) gave {other:?}"),
        }
    }
}

#[test]
fn a_size_past_ram_and_swap_is_refused_naming_both() {
    let limit = ram_and_swap();
    let size = usize::try_from(limit + 4096).unwrap();
    let err = SharedMemory::create(size).unwrap_err();
    match err {
        SharedError::TooLarge {
            size: asked,
            limit: said,
        } => {
            assert_eq!(asked, size as u128);
            assert_eq!(said, limit);
        }
        ref other => panic!("expected TooLarge, got {other:?}"),
    }
    let text = err.to_string();
    assert!(text.contains(&size.to_string()), "{text}");
    assert!(text.contains(&limit.to_string()), "{text}");
}

#[test]
fn arrays_of_a_size_that_overflows_or_exceeds_memory_are_errors() {
    // len * 8 overflows usize: a capacity-overflow panic before.
    assert!(matches!(
        Array::<u64>::zeroed(usize::MAX / 4),
        Err(SharedError::TooLarge { .. })
    ));
    assert!(matches!(
        Array::<u64>::zeroed(usize::MAX / 8),
        Err(SharedError::TooLarge { .. })
    ));
    let past = usize::try_from(ram_and_swap() / 8 + 1).unwrap();
    assert!(matches!(
        Array::<u64>::zeroed(past),
        Err(SharedError::TooLarge { .. })
    ));
    let small = Array::<u64>::zeroed(3).unwrap();
    assert_eq!(small.to_vec().unwrap(), [0, 0, 0]);
    assert!(matches!(
        RawArray::<u64>::from_slice(&[]),
        Err(SharedError::ZeroSize)
    ));
}

/// Attaches to the block, writes one byte in its middle, reports its size.
fn touch_middle(block: SharedMemory) -> usize {
    let mut block = block;
    let middle = block.size() / 2;
    block.as_mut_slice()[middle] = 1;
    block.size()
}

#[test]
fn a_large_block_takes_memory_only_as_its_pages_are_touched() {
    const SIZE: usize = 1 << 30;
    let mut block = SharedMemory::create(SIZE).unwrap();
    assert_eq!(block.size(), SIZE);
    let before = allocated_bytes(&block);
    assert!(
        before < 1 << 20,
        "a fresh 1 GiB block holds {before} bytes already"
    );
    block.as_mut_slice()[SIZE - 1] = 7;
    let after_one = allocated_bytes(&block);
    assert!(after_one > before, "the touched page is allocated");
    assert!(after_one < 1 << 20, "{after_one} bytes after one write");
    // Another process's attach does not allocate the rest either.
    let mut child = Process::new(touch_middle, (block.try_clone().unwrap(),))
        .start()
        .unwrap();
    assert_eq!(child.join_timeout(WAIT).unwrap(), SIZE);
    let after_child = allocated_bytes(&block);
    assert!(
        after_child < 1 << 20,
        "{after_child} bytes after a child's attach and one write"
    );
    assert_eq!(block.as_slice()[SIZE / 2], 1);
    assert_eq!(block.as_slice()[SIZE - 1], 7);
    assert_eq!(block.as_slice()[12345], 0, "untouched pages read as zeroes");
    block.unlink();
}

#[test]
fn a_large_array_is_sparse_too() {
    let len = (512 << 20) / 8;
    let array = Array::<u64>::zeroed(len).unwrap();
    assert_eq!(array.len(), len);
    let mut items = array.lock().unwrap();
    items[len - 1] = 5;
    assert_eq!(items[0], 0);
    assert_eq!(items[len - 1], 5);
}
