//! Memory: memfds, shared mappings of them, advice on fresh memory, and how much memory the
//! machine has.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::ptr::NonNull;

use super::check;

/// `memfd_create(label, MFD_CLOEXEC)`: a new anonymous file in memory, of size 0. Never on a
/// standard descriptor (0-2): a program that closed one would otherwise write into the file.
pub(crate) fn memfd(label: &std::ffi::CStr) -> io::Result<OwnedFd> {
    // SAFETY: `label` is a valid C string; the returned descriptor is checked.
    let raw = check(unsafe { libc::memfd_create(label.as_ptr(), libc::MFD_CLOEXEC) })?;
    // SAFETY: `raw` is a descriptor we just opened and own.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    if raw > 2 {
        return Ok(fd);
    }
    // SAFETY: duplicating a descriptor we own to the lowest free number from 3.
    let moved = check(unsafe { libc::fcntl(raw, libc::F_DUPFD_CLOEXEC, 3) })?;
    // SAFETY: a descriptor we just made and own; the old one closes as `fd` drops.
    Ok(unsafe { OwnedFd::from_raw_fd(moved) })
}

/// `fchmod(2)`.
pub(crate) fn fchmod(fd: &OwnedFd, mode: libc::mode_t) -> io::Result<()> {
    // SAFETY: `fd` is a valid open descriptor.
    check(unsafe { libc::fchmod(fd.as_raw_fd(), mode) }).map(drop)
}

/// `ftruncate(2)` to `len` bytes (`EFBIG` past what an `off_t` holds).
pub(crate) fn ftruncate(fd: &OwnedFd, len: usize) -> io::Result<()> {
    let len = libc::off_t::try_from(len).map_err(|_| io::Error::from_raw_os_error(libc::EFBIG))?;
    // SAFETY: `fd` is a valid open descriptor.
    check(unsafe { libc::ftruncate(fd.as_raw_fd(), len) }).map(drop)
}

/// Maps `len` bytes of `fd` shared, readable and writable; with `populate`, every page at once.
pub(crate) fn map_shared(fd: &OwnedFd, len: usize, populate: bool) -> io::Result<NonNull<u8>> {
    let flags = if populate {
        libc::MAP_SHARED | libc::MAP_POPULATE
    } else {
        libc::MAP_SHARED
    };
    // SAFETY: mapping a descriptor we hold at an address the kernel picks; the result is
    // checked.
    let ptr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            flags,
            fd.as_raw_fd(),
            0,
        )
    };
    if ptr == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    NonNull::new(ptr.cast()).ok_or_else(|| io::Error::other("mmap gave a null address"))
}

/// `munmap(2)`.
///
/// # Safety
/// `ptr` and `len` are a mapping made by [`map_shared`], unmapped once, with nothing of it in
/// use any more.
pub(crate) unsafe fn unmap(ptr: NonNull<u8>, len: usize) {
    // SAFETY: per the caller.
    unsafe { libc::munmap(ptr.as_ptr().cast(), len) };
}

/// Advice on fresh memory of this process, not yet touched: transparent huge pages for the
/// 2 MiB-aligned part of `[ptr, ptr + len)`, then every page of its page-aligned part supplied
/// at once (`MADV_POPULATE_WRITE`, Linux 5.14). Only advice: a kernel that refuses either
/// leaves the memory as it was.
///
/// # Safety
/// `[ptr, ptr + len)` lies inside one allocation of this process that nothing has written yet.
pub(crate) unsafe fn advise_fresh(ptr: *mut u8, len: usize) {
    const HUGE: usize = 2 << 20;
    const PAGE: usize = 4096;
    let start = (ptr as usize).next_multiple_of(HUGE);
    let end = (ptr as usize + len) & !(HUGE - 1);
    if end > start {
        // SAFETY: MADV_HUGEPAGE on whole pages inside an allocation of ours changes no
        // contents and no access; a kernel without THP refuses it, which is fine.
        unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE) };
    }
    let start = (ptr as usize).next_multiple_of(PAGE);
    let end = (ptr as usize + len) & !(PAGE - 1);
    if end <= start {
        return;
    }
    // SAFETY: populating whole pages inside an allocation of ours, not yet written: the
    // kernel maps zeroed pages there, as the first write would; contents and access unchanged.
    // A kernel without MADV_POPULATE_WRITE refuses it (EINVAL), which is fine.
    unsafe {
        libc::madvise(
            start as *mut libc::c_void,
            end - start,
            libc::MADV_POPULATE_WRITE,
        )
    };
}

/// RAM + swap, in bytes, as `sysinfo` reports them (`None` if it cannot say).
pub(crate) fn ram_and_swap() -> Option<u64> {
    // SAFETY: an all-zero sysinfo is a valid buffer for the call to fill.
    let mut info: libc::sysinfo = unsafe { std::mem::zeroed() };
    // SAFETY: `info` is a writable sysinfo.
    if unsafe { libc::sysinfo(&mut info) } != 0 {
        return None;
    }
    Some(
        (info.totalram as u64)
            .saturating_add(info.totalswap as u64)
            .saturating_mul(u64::from(info.mem_unit.max(1))),
    )
}
