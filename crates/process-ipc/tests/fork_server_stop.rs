//! The Ctrl-C shutdown's end of the fork server: a server that died by the signal itself (it
//! reaches the whole process group) is out of the parent's hands before its reaper thread
//! reaps it; the shutdown must still wait for that reaping, or the program ends first and the
//! server is left a zombie of init. Its own binary: it kills the one fork server.

use std::time::{Duration, Instant};

use process_ipc::{
    __fork_server_pid, __pause_fork_server_reaper, __stop_fork_server, Process, StartMethod,
};

const WAIT: Duration = Duration::from_secs(20);

fn add(a: u64, b: u64) -> u64 {
    a + b
}

#[test]
fn the_shutdown_waits_for_a_server_that_died_on_its_own_to_be_reaped() {
    let child = Process::new(add, (1, 2))
        .start_method(StartMethod::ForkServer)
        .start()
        .unwrap();
    assert_eq!(child.join().unwrap(), 3);
    let server = __fork_server_pid().expect("a fork server runs");
    // Its reaper takes it out of the parent's hands at once, then waits a while to reap it.
    __pause_fork_server_reaper(Duration::from_millis(300));
    // SAFETY: kill has no memory preconditions; the server is not reaped yet, so the pid is
    // still the server's.
    assert_eq!(unsafe { libc::kill(server as i32, libc::SIGKILL) }, 0);
    let deadline = Instant::now() + WAIT;
    while __fork_server_pid() == Some(server) {
        assert!(
            Instant::now() < deadline,
            "the server's reaper never saw it die"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    __stop_fork_server(WAIT);
    // Reaped by the time the shutdown returns: no entry left for init to find.
    assert!(
        !std::path::Path::new(&format!("/proc/{server}")).exists(),
        "the dead fork server {server} is not reaped when the shutdown returns"
    );
}
