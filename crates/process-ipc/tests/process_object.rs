//! The process as an object (CPython `_TestProcess`): `active_children`, `current_process`
//! and `parent_process` inside a child, `sentinel` with `connection::wait`, `interrupt`,
//! `close`. Every wait is bounded.

use std::time::{Duration, Instant};

use process_ipc::{
    Process, ProcessError, Queue, StartMethod, active_children, connection, current_pid,
    current_process, parent_process,
};

const WAIT: Duration = Duration::from_secs(20);

fn wait_for_stop(stop: Queue<()>) -> u8 {
    let _ = stop.get_timeout(WAIT);
    0
}

fn quick() -> u8 {
    0
}

#[test]
fn active_children_lists_running_children_and_drops_ended_ones() {
    let stop = Queue::<()>::new().unwrap();
    let sender = stop.sender().unwrap();
    let mut running = Process::new(wait_for_stop, (stop,))
        .start_method(StartMethod::ForkServer)
        .start()
        .unwrap();
    let mut ended = Process::new(quick, ()).start().unwrap();
    assert!(active_children().contains(&running.pid()));
    let server = process_ipc::__fork_server_pid().expect("the fork server runs");
    assert!(
        !active_children().contains(&server),
        "infrastructure is not listed"
    );
    // Ended but not joined: not active, and its handle still reads its exit code.
    let ready = connection::wait(&[ended.sentinel().unwrap()], Some(WAIT)).unwrap();
    assert_eq!(ready, vec![0]);
    let active = active_children();
    assert!(!active.contains(&ended.pid()), "{active:?}");
    assert!(active.contains(&running.pid()), "{active:?}");
    assert_eq!(ended.join_timeout(WAIT).unwrap(), 0);
    assert_eq!(ended.exitcode(), Some(0));
    sender.put(()).unwrap();
    assert_eq!(running.join_timeout(WAIT).unwrap(), 0);
    assert!(!active_children().contains(&running.pid()));
}

fn who_am_i() -> (String, bool, u32, Option<u32>) {
    let me = current_process();
    let parent = parent_process().map(|p| p.pid());
    (me.name().to_string(), me.is_daemon(), me.pid(), parent)
}

#[test]
fn current_process_in_a_child_has_its_name_daemon_flag_and_pid() {
    for method in [StartMethod::Spawn, StartMethod::ForkServer] {
        let mut named = Process::new(who_am_i, ())
            .named("worker-a")
            .daemon(true)
            .start_method(method)
            .start()
            .unwrap();
        let (name, daemon, pid, parent) = named.join_timeout(WAIT).unwrap();
        assert_eq!(name, "worker-a", "{method:?}");
        assert!(daemon, "{method:?}");
        assert_eq!(pid, named.pid(), "{method:?}");
        assert_eq!(parent, Some(current_pid()), "{method:?}");

        let mut plain = Process::new(who_am_i, ())
            .start_method(method)
            .start()
            .unwrap();
        let (name, daemon, _, _) = plain.join_timeout(WAIT).unwrap();
        assert_eq!(name, plain.name(), "{method:?}");
        assert!(name.starts_with("Process-"), "{name}");
        assert!(!daemon);
    }
    let main = current_process();
    assert_eq!(
        (main.name(), main.is_daemon(), main.pid()),
        ("MainProcess", false, current_pid())
    );
    assert!(
        parent_process().is_none(),
        "the main process has no parent process"
    );
}

/// Inside the child: the parent is alive, a bounded join on it times out, and its sentinel is
/// not ready (the child dies with its parent, so the parent's end cannot be watched here).
fn look_at_parent() -> (u32, bool, bool, Vec<usize>) {
    let parent = parent_process().expect("a child has a parent process");
    let timed_out = matches!(
        parent.join_timeout(Duration::from_millis(20)),
        Err(ProcessError::Timeout { .. })
    );
    let ready = connection::wait(&[parent.sentinel().unwrap()], Some(Duration::ZERO)).unwrap();
    (parent.pid(), parent.is_alive(), timed_out, ready)
}

#[test]
fn parent_process_in_a_child_is_alive_and_a_bounded_join_times_out() {
    for method in [StartMethod::Spawn, StartMethod::ForkServer] {
        let mut child = Process::new(look_at_parent, ())
            .start_method(method)
            .start()
            .unwrap();
        let (pid, alive, timed_out, ready) = child.join_timeout(WAIT).unwrap();
        assert_eq!(pid, current_pid(), "{method:?}");
        assert!(alive, "{method:?}");
        assert!(timed_out, "{method:?}");
        assert!(ready.is_empty(), "{method:?}");
    }
}

#[test]
fn wait_over_sentinels_returns_the_ended_ones_and_times_out_on_the_rest() {
    let stop = Queue::<()>::new().unwrap();
    let mut stalled = Process::new(wait_for_stop, (stop,)).start().unwrap();
    let mut done = Process::new(quick, ()).start().unwrap();
    let ready = connection::wait(
        &[stalled.sentinel().unwrap(), done.sentinel().unwrap()],
        Some(WAIT),
    )
    .unwrap();
    assert_eq!(ready, vec![1]);

    let began = Instant::now();
    let ready = connection::wait(
        &[stalled.sentinel().unwrap()],
        Some(Duration::from_millis(50)),
    )
    .unwrap();
    assert!(ready.is_empty());
    assert!(began.elapsed() >= Duration::from_millis(50));
    assert!(
        began.elapsed() < WAIT,
        "returned within its timeout and a margin"
    );

    stalled.kill().unwrap();
    let ready = connection::wait(&[stalled.sentinel().unwrap()], Some(WAIT)).unwrap();
    assert_eq!(ready, vec![0]);
    assert!(matches!(
        stalled.join_timeout(WAIT),
        Err(ProcessError::Killed { signal: 9, .. })
    ));
    assert_eq!(done.join_timeout(WAIT).unwrap(), 0);
}

#[test]
fn interrupt_sends_sigint() {
    let stop = Queue::<()>::new().unwrap();
    let mut child = Process::new(wait_for_stop, (stop,)).start().unwrap();
    child.interrupt().unwrap();
    let err = child.join_timeout(WAIT).unwrap_err();
    assert!(
        matches!(err, ProcessError::Killed { signal: 2, .. }),
        "{err:?}"
    );
    assert_eq!(child.exitcode(), Some(-2));
    child.interrupt().unwrap(); // a no-op once it has ended, as Python's
}

#[test]
fn close_refuses_a_running_child_and_releases_an_ended_one() {
    let stop = Queue::<()>::new().unwrap();
    let sender = stop.sender().unwrap();
    let child = Process::new(wait_for_stop, (stop,)).start().unwrap();
    let pid = child.pid();
    let mut child = child
        .close()
        .expect_err("still running: the handle comes back");
    assert_eq!(child.pid(), pid);
    sender.put(()).unwrap();
    assert_eq!(child.join_timeout(WAIT).unwrap(), 0);
    child.close().expect("ended: closed");
    assert!(!active_children().contains(&pid));
}
