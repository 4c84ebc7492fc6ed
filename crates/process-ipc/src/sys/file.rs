//! Files by name, for the named shared-memory blocks: a private directory, files opened and
//! made in it by name (never following a link), their status, links and removal.

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use super::check;

fn owned(raw: RawFd) -> io::Result<OwnedFd> {
    check(raw)?;
    // SAFETY: a descriptor just opened, owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

/// `mkdir(path, mode)`.
pub(crate) fn mkdir(path: &CStr, mode: libc::mode_t) -> io::Result<()> {
    // SAFETY: a valid C string.
    check(unsafe { libc::mkdir(path.as_ptr(), mode) }).map(drop)
}

/// `open(path, flags)`, close-on-exec added.
pub(crate) fn open(path: &CStr, flags: libc::c_int) -> io::Result<OwnedFd> {
    // SAFETY: a valid C string; the result is checked.
    owned(unsafe { libc::open(path.as_ptr(), flags | libc::O_CLOEXEC) })
}

/// `openat(dir, name, flags, mode)`, close-on-exec added.
pub(crate) fn openat(
    dir: &OwnedFd,
    name: &CStr,
    flags: libc::c_int,
    mode: libc::mode_t,
) -> io::Result<OwnedFd> {
    // SAFETY: a valid C string relative to an open directory; the result is checked.
    owned(unsafe {
        libc::openat(
            dir.as_raw_fd(),
            name.as_ptr(),
            flags | libc::O_CLOEXEC,
            mode,
        )
    })
}

/// `fstat(2)`.
pub(crate) fn fstat(fd: &OwnedFd) -> io::Result<libc::stat> {
    // SAFETY: an all-zero `stat` is a valid value for fstat to overwrite.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `fd` is valid and `st` is a writable stat buffer.
    check(unsafe { libc::fstat(fd.as_raw_fd(), &mut st) })?;
    Ok(st)
}

/// `unlinkat(dir, name, 0)`.
pub(crate) fn unlinkat(dir: &OwnedFd, name: &CStr) -> io::Result<()> {
    // SAFETY: a valid C string relative to an open directory.
    check(unsafe { libc::unlinkat(dir.as_raw_fd(), name.as_ptr(), 0) }).map(drop)
}

/// Gives the open file `fd` (an `O_TMPFILE` one, say) the name `name` in `dir`, failing with
/// `EEXIST` if the name is taken (`linkat` of `/proc/self/fd/<fd>`).
pub(crate) fn link_fd(fd: &OwnedFd, dir: &OwnedFd, name: &CStr) -> io::Result<()> {
    let proc_path =
        CString::new(format!("/proc/self/fd/{}", fd.as_raw_fd())).expect("digits hold no NUL");
    // SAFETY: valid C strings; links the file under the name, failing if taken.
    check(unsafe {
        libc::linkat(
            libc::AT_FDCWD,
            proc_path.as_ptr(),
            dir.as_raw_fd(),
            name.as_ptr(),
            libc::AT_SYMLINK_FOLLOW,
        )
    })
    .map(drop)
}
