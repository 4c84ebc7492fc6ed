//! Shared memory under a name the program chooses (#25): `SharedMemory::create_named`, attach
//! by that name from a child and from an unrelated process (this test binary run again with
//! `std::process::Command`), `Exists` for a taken name, and the adversary's probes: a name
//! that is a path, a file of another mode, a file whose header is junk. Every wait is bounded.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use process_ipc::{Process, SharedError, SharedMemory};

const WAIT: Duration = Duration::from_secs(20);

/// A name no other test (or run) uses.
fn fresh(what: &str) -> String {
    format!("mt-test-{what}-{}", std::process::id())
}

/// The directory the crate keeps named blocks in (see the `named` module's doc).
fn scope_dir() -> PathBuf {
    use std::os::unix::fs::MetadataExt;
    // SAFETY: geteuid cannot fail.
    let uid = unsafe { libc::geteuid() };
    match std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from) {
        Some(dir)
            if std::fs::symlink_metadata(&dir)
                .is_ok_and(|m| m.is_dir() && m.uid() == uid && m.mode() & 0o077 == 0) =>
        {
            dir.join("multitask-shm")
        }
        _ => PathBuf::from(format!("/dev/shm/multitask-shm-{uid}")),
    }
}

fn write_by_name(name: String, at: usize, byte: u8) -> usize {
    let mut block = SharedMemory::attach(&name).unwrap();
    block.as_mut_slice()[at] = byte;
    block.size()
}

#[test]
fn a_named_block_is_attached_by_its_name_in_a_child_and_unlink_ends_the_name() {
    let name = fresh("child");
    let mut block = SharedMemory::create_named(&name, 8192).unwrap();
    assert_eq!(block.name(), name);
    let mut child = Process::new(write_by_name, (name.clone(), 5000, 9))
        .start()
        .unwrap();
    assert_eq!(child.join_timeout(WAIT).unwrap(), 8192);
    assert_eq!(block.as_slice()[5000], 9);
    let mode = std::fs::metadata(scope_dir().join(&name))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "private to the user");
    let dir_mode = std::fs::metadata(scope_dir()).unwrap().permissions().mode();
    assert_eq!(dir_mode & 0o077, 0, "the directory is private too");
    block.unlink();
    let err = SharedMemory::attach(&name).unwrap_err();
    assert!(matches!(err, SharedError::NotFound { .. }), "{err}");
    // The mapping outlives the name, as in Python.
    assert_eq!(block.as_slice()[5000], 9);
    // The name is free again.
    SharedMemory::create_named(&name, 16).unwrap().unlink();
}

#[test]
fn a_taken_name_is_exists_naming_the_block() {
    let name = fresh("exists");
    let mut first = SharedMemory::create_named(&name, 64).unwrap();
    let err = SharedMemory::create_named(&name, 64).unwrap_err();
    assert!(
        matches!(&err, SharedError::Exists { name: n } if *n == name),
        "{err}"
    );
    assert!(err.to_string().contains(&name), "{err}");
    first.unlink();
}

#[test]
fn names_that_are_paths_are_refused() {
    for bad in ["a/b", "..", "../escape", "/abs", ".hidden", "", "sp ace"] {
        let err = SharedMemory::create_named(bad, 64).unwrap_err();
        assert!(matches!(err, SharedError::Refused { .. }), "{bad:?}: {err}");
        let err = SharedMemory::attach(bad).unwrap_err();
        assert!(
            matches!(
                err,
                SharedError::Refused { .. } | SharedError::NotFound { .. }
            ),
            "{bad:?}: {err}"
        );
    }
    assert!(!scope_dir().parent().unwrap().join("escape").exists());
}

#[test]
fn a_file_of_another_mode_or_with_a_junk_header_is_refused() {
    // Make sure the directory exists (a first named block makes it).
    let probe = fresh("probe");
    SharedMemory::create_named(&probe, 1).unwrap().unlink();

    let open = scope_dir().join(fresh("mode"));
    std::fs::write(&open, vec![0u8; 4096]).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o644)).unwrap();
    let name = open.file_name().unwrap().to_str().unwrap().to_string();
    let err = SharedMemory::attach(&name).unwrap_err();
    assert!(matches!(err, SharedError::Refused { .. }), "{err}");
    assert!(err.to_string().contains("mode"), "{err}");
    // Nor is the name taken over by create_named.
    assert!(matches!(
        SharedMemory::create_named(&name, 64),
        Err(SharedError::Exists { .. })
    ));
    std::fs::remove_file(&open).unwrap();

    let junk = scope_dir().join(fresh("junk"));
    std::fs::write(&junk, vec![0xa5u8; 4096]).unwrap();
    std::fs::set_permissions(&junk, std::fs::Permissions::from_mode(0o600)).unwrap();
    let name = junk.file_name().unwrap().to_str().unwrap().to_string();
    let err = SharedMemory::attach(&name).unwrap_err();
    assert!(matches!(err, SharedError::Refused { .. }), "{err}");
    std::fs::remove_file(&junk).unwrap();

    // A symbolic link under a good name is not followed.
    let link = scope_dir().join(fresh("link"));
    std::os::unix::fs::symlink("/etc/passwd", &link).unwrap();
    let name = link.file_name().unwrap().to_str().unwrap().to_string();
    assert!(SharedMemory::attach(&name).is_err());
    std::fs::remove_file(&link).unwrap();
}

/// When this binary runs as the unrelated process: attach, write, exit.
const CHILD_ENV: &str = "MT_NAMED_BLOCK_CHILD";

#[test]
fn an_unrelated_process_attaches_by_name() {
    if let Some(name) = std::env::var_os(CHILD_ENV) {
        let mut block = SharedMemory::attach(name.to_str().unwrap()).unwrap();
        block.as_mut_slice()[..5].copy_from_slice(b"hello");
        return;
    }
    let name = fresh("unrelated");
    let mut block = SharedMemory::create_named(&name, 4096).unwrap();
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "an_unrelated_process_attaches_by_name",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, &name)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + WAIT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() >= deadline {
            child.kill().unwrap();
            panic!("the unrelated process did not finish");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    assert!(status.success());
    assert_eq!(&block.as_slice()[..5], b"hello");
    block.unlink();
}
