//! Shared memory under a name the program chooses (Python's `SharedMemory(name, create=True)`),
//! attachable by that name from any process of the same user, related or not.
//!
//! Where the names live: one directory per user, private to it (mode 0700, owned by the
//! user): `$XDG_RUNTIME_DIR/multitask-shm` when the runtime directory is set and is the
//! user's own (systemd makes it 0700 per user), else `/dev/shm/multitask-shm-<uid>`. Python
//! puts its blocks straight in `/dev/shm`, open to any user who can guess the name and has the
//! mode bits; here another user can neither list, open nor squat a name, which keeps the
//! crate's rule that its shared memory is private to the uid. The directory is made on first
//! use and checked each time (not a symbolic link, a directory, ours, no group or other
//! access): a directory made in advance by another user, or opened up, is refused.
//!
//! A name is 1 to 200 of `[A-Za-z0-9._-]`, not starting with `.`: a `/` (so any path) or `..`
//! is refused, so a name always stays inside the directory. A block is made whole before its
//! name appears: an unnamed file (`O_TMPFILE`) is sized, mapped and given its header, then
//! linked under the name, which fails if the name exists (Python's `FileExistsError`). An
//! attach opens the name without following links and checks the file is regular, ours, mode
//! 0600 and at least a header long, then the header's magic and size against the file.
//!
//! A named block lives until [`unlink`](super::SharedMemory::unlink) (or the machine's
//! restart: the directory is a RAM file system), as Python's with `track=False`: a crash does
//! not remove it.
//!
//! The file is untrusted: any process of this user may write it, or shrink it (a page past
//! the new end then raises SIGBUS in every process that touches it, as with Python's blocks).
//! Its size is read once, at attach, and the header checked against it.

use std::ffi::CString;
use std::os::fd::OwnedFd;
use std::sync::atomic::Ordering;

use super::error::SharedError;
use super::mapping::{HEADER, MAGIC, Mapping};
use crate::sys;

/// The longest name accepted (a file name is at most 255 bytes).
const MAX_NAME: usize = 200;

/// Whether `name` is a name a program may choose; the reason if not.
pub(super) fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_NAME {
        return Err(format!("a name has 1 to {MAX_NAME} characters"));
    }
    if name.starts_with('.') {
        return Err("a name may not start with '.' (no '.', '..' or hidden files)".into());
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!(
            "{bad:?} is not allowed in a name (only letters, digits, '.', '_' and '-': a name \
             is never a path)"
        ));
    }
    Ok(())
}

fn io_refused(name: &str, what: &str, e: std::io::Error) -> SharedError {
    SharedError::Refused {
        name: name.to_string(),
        reason: format!("{what}: {e}"),
    }
}

/// The per-user directory of named blocks, made if missing, opened and checked.
pub(super) fn scope_dir(name: &str) -> Result<(OwnedFd, String), SharedError> {
    let uid = sys::euid();
    let runtime = std::env::var_os("XDG_RUNTIME_DIR")
        .map(std::path::PathBuf::from)
        .filter(|dir| {
            use std::os::unix::fs::MetadataExt;
            std::fs::symlink_metadata(dir)
                .is_ok_and(|m| m.is_dir() && m.uid() == uid && m.mode() & 0o077 == 0)
        });
    let path = match runtime {
        Some(dir) => dir.join("multitask-shm"),
        None => std::path::PathBuf::from(format!("/dev/shm/multitask-shm-{uid}")),
    };
    let shown = path.display().to_string();
    let c_path = CString::new(shown.clone()).map_err(|_| SharedError::Refused {
        name: name.to_string(),
        reason: format!("the directory {shown:?} holds a NUL"),
    })?;
    // An existing entry is checked below, whatever made it.
    if let Err(e) = sys::file::mkdir(&c_path, 0o700) {
        if e.raw_os_error() != Some(libc::EEXIST) {
            return Err(io_refused(name, &format!("cannot make {shown}"), e));
        }
    }
    // O_NOFOLLOW|O_DIRECTORY refuse a link or a non-directory.
    let dir = sys::file::open(
        &c_path,
        libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW,
    )
    .map_err(|e| io_refused(name, &format!("cannot open {shown}"), e))?;
    let st = fstat(&dir)?;
    if st.st_uid != uid || st.st_mode & 0o077 != 0 {
        return Err(SharedError::Refused {
            name: name.to_string(),
            reason: format!(
                "the directory {shown} is owned by uid {} with mode {:o}: it must be ours \
                 ({uid}) with no group or other access",
                st.st_uid,
                st.st_mode & 0o7777
            ),
        });
    }
    Ok((dir, shown))
}

pub(super) fn fstat(fd: &OwnedFd) -> Result<libc::stat, SharedError> {
    sys::file::fstat(fd).map_err(|e| SharedError::io("fstat", e))
}

/// Makes the block `name` of `size` user bytes, whole, then publishes the name; its mapping.
pub(super) fn create(name: &str, size: usize) -> Result<Mapping, SharedError> {
    check_name(name).map_err(|reason| SharedError::Refused {
        name: name.to_string(),
        reason,
    })?;
    let (dir, shown) = scope_dir(name)?;
    let c_name = CString::new(name).expect("checked: no NUL");
    let len = HEADER + size;
    // An unnamed file in our directory, private.
    let (fd, linked) = match sys::file::openat(&dir, c".", libc::O_TMPFILE | libc::O_RDWR, 0o600) {
        Ok(fd) => (fd, false),
        // No O_TMPFILE here: create the name at once, exclusively (an attacher may then see
        // it for an instant before its header: it refuses it as not a block yet).
        Err(_) => {
            let fd = sys::file::openat(
                &dir,
                &c_name,
                libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_RDWR,
                0o600,
            )
            .map_err(|e| exists_or(name, &shown, e))?;
            (fd, true)
        }
    };
    let remove = |fd_made: bool| {
        if fd_made {
            let _ = sys::file::unlinkat(&dir, &c_name);
        }
    };
    // Private whatever the umask.
    let sized = sys::memory::fchmod(&fd, 0o600).and_then(|()| sys::memory::ftruncate(&fd, len));
    if let Err(e) = sized {
        remove(linked);
        return Err(SharedError::io("ftruncate", e));
    }
    let mut map = match Mapping::attach(&fd, len, false) {
        Ok(map) => map,
        Err(e) => {
            remove(linked);
            return Err(e);
        }
    };
    map.count_in();
    let header = map.header();
    header.size.store(size as u64, Ordering::Relaxed);
    header.magic.store(MAGIC, Ordering::Release);
    if !linked {
        // Fails if the name is taken.
        sys::file::link_fd(&fd, &dir, &c_name).map_err(|e| exists_or(name, &shown, e))?;
    }
    Ok(map)
}

/// `Exists` if `e` says the name is taken, else the error as it is.
fn exists_or(name: &str, shown: &str, e: std::io::Error) -> SharedError {
    if e.raw_os_error() == Some(libc::EEXIST) {
        SharedError::Exists {
            name: name.to_string(),
        }
    } else {
        io_refused(name, &format!("cannot make it in {shown}"), e)
    }
}

/// Opens and maps the named block `name`, checked; its mapping and user size.
pub(super) fn attach(name: &str) -> Result<(Mapping, usize), SharedError> {
    let refused = |reason: String| SharedError::Refused {
        name: name.to_string(),
        reason,
    };
    check_name(name).map_err(refused)?;
    let (dir, shown) = scope_dir(name)?;
    let c_name = CString::new(name).expect("checked: no NUL");
    // No link followed.
    let opened = sys::file::openat(
        &dir,
        &c_name,
        libc::O_RDWR | libc::O_NOFOLLOW | libc::O_NONBLOCK,
        0,
    );
    let fd = match opened {
        Ok(fd) => fd,
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
            return Err(SharedError::NotFound {
                name: name.to_string(),
                reason: format!("no such block in {shown} (never made, or unlinked)"),
            });
        }
        Err(e) => return Err(io_refused(name, &format!("cannot open it in {shown}"), e)),
    };
    let (mut map, size) = map_private(&fd, name)?;
    let header = map.header();
    if header.magic.load(Ordering::Acquire) != MAGIC
        || header.size.load(Ordering::Relaxed) != size as u64
    {
        return Err(refused(
            "its header is not that of a block of this size (not made by SharedMemory, or \
             still being made)"
                .into(),
        ));
    }
    // Named blocks are never taken back for reuse: the count only keeps the books even.
    map.count_in();
    Ok((map, size))
}

/// Maps the block behind `fd` (opened by name, so of unknown origin) after checking it: a
/// regular file of this user, with no group or other access, at least a header long. The
/// caller checks the header, then counts the mapping in the block's users. The mapping and
/// the user size.
pub(super) fn map_private(fd: &OwnedFd, name: &str) -> Result<(Mapping, usize), SharedError> {
    let refused = |reason: String| SharedError::Refused {
        name: name.to_string(),
        reason,
    };
    let st = fstat(fd)?;
    let me = sys::euid();
    if st.st_uid != me {
        return Err(refused(format!(
            "owned by uid {}, not ours ({me})",
            st.st_uid
        )));
    }
    if st.st_mode & libc::S_IFMT != libc::S_IFREG || st.st_mode & 0o077 != 0 {
        return Err(refused(format!(
            "not a private block (mode {:o})",
            st.st_mode
        )));
    }
    let total = usize::try_from(st.st_size).unwrap_or(0);
    if total <= HEADER {
        return Err(refused("too small to be a block of ours".into()));
    }
    // Every page already there (a block written all over): map them all now. Holes
    // left: map lazily, or mapping them would allocate them.
    let allocated = (st.st_blocks as u128) * 512 >= total as u128;
    Ok((Mapping::attach(fd, total, allocated)?, total - HEADER))
}

/// Removes the name `name` (its memory stays while mapped).
pub(super) fn unlink(name: &str) -> Result<(), SharedError> {
    let (dir, shown) = scope_dir(name)?;
    let c_name = CString::new(name).map_err(|_| SharedError::Refused {
        name: name.to_string(),
        reason: "a name holds no NUL".into(),
    })?;
    if let Err(e) = sys::file::unlinkat(&dir, &c_name) {
        if e.raw_os_error() == Some(libc::ENOENT) {
            return Err(SharedError::NotFound {
                name: name.to_string(),
                reason: format!("no such block in {shown} (already unlinked?)"),
            });
        }
        return Err(io_refused(name, &format!("cannot unlink it in {shown}"), e));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::check_name;

    #[test]
    fn names_are_never_paths() {
        assert!(check_name("psm_1234-ab.c").is_ok());
        for bad in [
            "", ".", "..", "../x", "a/b", "/abs", ".hidden", "a\0b", "sp ace", "é",
        ] {
            assert!(check_name(bad).is_err(), "{bad:?} accepted");
        }
        assert!(check_name(&"x".repeat(201)).is_err());
    }
}
