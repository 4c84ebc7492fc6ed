//! A start method per object: a Pool's workers and a Manager's server process start by the
//! method their builder names, whatever the process default is. Which method started a child
//! shows in the child: a spawned one re-ran this executable and watches its parent through a
//! lifeline thread; one forked from the fork server has no such thread (the parent-death signal
//! does that job). Both are this process's own children.

use std::time::Duration;

use process_ipc::manager::{ManagedDict, Manager};
use process_ipc::{__fork_server_pid, Pool, StartMethod, current_pid, parent_pid};

const BOTH: [StartMethod; 2] = [StartMethod::Spawn, StartMethod::ForkServer];

/// Threads of process `pid` whose name is the spawned child's lifeline watcher's
/// (`process-ipc-lifeline`, cut to the kernel's 15 bytes).
fn lifeline_threads(pid: u32) -> usize {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .flatten()
        .filter(|t| {
            std::fs::read_to_string(t.path().join("comm"))
                .is_ok_and(|name| name.trim_end().starts_with("process-ipc-lif"))
        })
        .count()
}

/// In a worker: (its pid, its parent's pid, its lifeline threads).
fn who_am_i() -> (u32, u32, usize) {
    (current_pid(), parent_pid(), lifeline_threads(current_pid()))
}

/// The parent of `pid`, from `/proc/<pid>/stat`.
fn parent_of(pid: u32) -> u32 {
    parent_of_or_none(pid).expect("a running process")
}

fn expected_lifelines(method: StartMethod) -> usize {
    match method {
        StartMethod::Spawn => 1,
        StartMethod::ForkServer => 0,
    }
}

#[test]
fn a_pool_starts_its_workers_by_its_own_start_method() {
    for method in BOTH {
        let pool = Pool::builder()
            .processes(2)
            .start_method(method)
            .build()
            .unwrap();
        let pids = pool.pids();
        for _ in 0..4 {
            let (pid, parent, lifelines) = pool.apply(who_am_i, ()).unwrap();
            assert!(pids.contains(&pid), "{method:?}: {pid} not in {pids:?}");
            assert_eq!(parent, current_pid(), "{method:?}: a worker is our child");
            assert_eq!(lifelines, expected_lifelines(method), "{method:?}");
        }
        if method == StartMethod::ForkServer {
            assert!(__fork_server_pid().is_some(), "the fork server was started");
        }
        pool.close();
        pool.join_timeout(Duration::from_secs(20)).unwrap();
    }
}

#[test]
fn a_pool_replaces_a_worker_by_the_same_start_method() {
    fn exit_now() {
        std::process::exit(3)
    }
    for method in BOTH {
        let pool = Pool::builder()
            .processes(1)
            .start_method(method)
            .build()
            .unwrap();
        let first = pool.pids();
        assert!(pool.apply(exit_now, ()).is_err(), "{method:?}");
        let (pid, _, lifelines) = pool.apply(who_am_i, ()).unwrap();
        assert!(
            !first.contains(&pid),
            "{method:?}: a replacement, not {first:?}"
        );
        assert_eq!(lifelines, expected_lifelines(method), "{method:?}");
        pool.terminate();
    }
}

#[test]
fn a_manager_starts_its_server_process_by_its_own_start_method() {
    for method in BOTH {
        let manager = Manager::builder().start_method(method).start().unwrap();
        let server = manager.pid();
        assert_ne!(server, current_pid(), "{method:?}: a process of its own");
        assert_eq!(parent_of(server), current_pid(), "{method:?}: our child");
        assert_eq!(
            lifeline_threads(server),
            expected_lifelines(method),
            "{method:?}"
        );
        let d: ManagedDict<String, u64> = manager.dict().unwrap();
        d.insert("answer".into(), 42).unwrap();
        assert_eq!(d.get("answer").unwrap(), Some(42), "{method:?}");
        manager.shutdown().unwrap();
    }
}

/// [`parent_of`], or `None` if `/proc` no longer has `pid`.
fn parent_of_or_none(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_name = &stat[stat.rfind(')')? + 2..];
    after_name.split(' ').nth(1)?.parse().ok()
}

#[test]
fn a_manager_server_that_cannot_serve_is_a_start_error() {
    // An address this process cannot bind: the server process says why, and is reaped.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let err = Manager::builder()
        .address(taken.local_addr().unwrap())
        .authkey("k")
        .start_method(StartMethod::ForkServer)
        .start()
        .unwrap_err();
    assert!(
        matches!(err, process_ipc::manager::ManagerError::Start { .. }),
        "{err:?}"
    );
}
