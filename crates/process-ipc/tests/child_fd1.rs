//! A child that closes its standard output, opens a pipe (which takes descriptor 1) and prints
//! ends within its deadline under either start method: its target's result or a clear error,
//! never a join that hangs.

use std::time::{Duration, Instant};

use process_ipc::{Process, StartMethod};

const WAIT: Duration = Duration::from_secs(20);

/// Closes fd 1, opens a pipe in its place (the read end takes 1: the lowest free number) and
/// prints; then says which descriptors the pipe got.
fn print_into_a_pipe_on_fd_1(write_end_on_1: bool) -> (i32, i32) {
    // SAFETY: closing this process's standard output, which nothing else here uses after.
    unsafe { libc::close(1) };
    let mut fds = [-1; 2];
    // SAFETY: `fds` is a writable array of two descriptors.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    if write_end_on_1 && fds[0] == 1 {
        // Put the write end on 1 instead, so that the print goes into the pipe.
        // SAFETY: descriptors this function just made.
        unsafe {
            let read = libc::dup(fds[0]);
            libc::dup2(fds[1], 1);
            libc::close(fds[1]);
            fds = [read, 1];
        }
    }
    println!("hello through fd 1");
    (fds[0], fds[1])
}

fn run(method: StartMethod, write_end_on_1: bool) {
    let started = Instant::now();
    let mut child = Process::new(print_into_a_pipe_on_fd_1, (write_end_on_1,))
        .start_method(method)
        .start()
        .unwrap();
    let result = child.join_timeout(WAIT);
    let took = started.elapsed();
    assert!(
        took < WAIT / 4,
        "{method:?} child with a pipe on fd 1 (write end: {write_end_on_1}) took {took:?}: {result:?}"
    );
    let fds = result.unwrap_or_else(|e| panic!("{method:?}: {e}"));
    if write_end_on_1 {
        assert_eq!(fds.1, 1);
    } else {
        assert_eq!(fds.0, 1, "the read end took fd 1");
    }
}

#[test]
fn a_forkserver_child_that_prints_into_a_pipe_on_fd_1_ends_in_time() {
    run(StartMethod::ForkServer, false);
    run(StartMethod::ForkServer, true);
}

#[test]
fn a_spawned_child_that_prints_into_a_pipe_on_fd_1_ends_in_time() {
    run(StartMethod::Spawn, false);
    run(StartMethod::Spawn, true);
}

/// As above with this crate's `pipe`, whose socket took fd 1: the print went into the socket
/// as a message, and the receive waited for ever for the rest of it.
fn print_into_a_connection_on_fd_1(print: bool) -> Result<u32, String> {
    // SAFETY: closing this process's standard output, which nothing else here uses after.
    unsafe { libc::close(1) };
    let (left, right) = process_ipc::pipe::<u32>().map_err(|e| e.to_string())?;
    if print {
        println!("hello through fd 1");
    }
    left.send(7).map_err(|e| e.to_string())?;
    right
        .recv_timeout(Duration::from_secs(2))
        .map_err(|e| e.to_string())
}

fn run_connection(method: StartMethod, print: bool) {
    let started = Instant::now();
    let mut child = Process::new(print_into_a_connection_on_fd_1, (print,))
        .start_method(method)
        .start()
        .unwrap();
    let result = child.join_timeout(WAIT);
    let took = started.elapsed();
    // Before: the child's 2 s receive waited for ever, and the join ran out after 20 s.
    assert!(took < WAIT / 4, "{method:?}: took {took:?}: {result:?}");
    assert_eq!(result.unwrap(), Ok(7), "{method:?}, printing: {print}");
}

#[test]
fn a_child_that_prints_into_a_connection_on_fd_1_ends_in_time() {
    for method in [StartMethod::ForkServer, StartMethod::Spawn] {
        run_connection(method, false);
        run_connection(method, true);
    }
}

/// Closes fd 1, makes a shared block (whose memfd took fd 1), prints, and attaches to it.
fn print_over_a_block_on_fd_1() -> Result<u8, String> {
    // SAFETY: closing this process's standard output, which nothing else here uses after.
    unsafe { libc::close(1) };
    let mut block = process_ipc::SharedMemory::create(64).map_err(|e| e.to_string())?;
    block.as_mut_slice()[0] = 9;
    println!("hello through fd 1");
    let again = process_ipc::SharedMemory::attach(block.name()).map_err(|e| e.to_string())?;
    Ok(again.as_slice()[0])
}

#[test]
fn a_childs_print_after_closing_fd_1_does_not_write_over_a_shared_block() {
    for method in [StartMethod::ForkServer, StartMethod::Spawn] {
        let mut child = Process::new(print_over_a_block_on_fd_1, ())
            .start_method(method)
            .start()
            .unwrap();
        assert_eq!(child.join_timeout(WAIT).unwrap(), Ok(9), "{method:?}");
    }
}

fn five() -> u32 {
    5
}

/// Closes fd 1, starts a process of its own (whose channels took fd 1), prints, and joins it.
fn print_while_a_grandchild_runs() -> Result<u32, String> {
    // SAFETY: closing this process's standard output, which nothing else here uses after.
    unsafe { libc::close(1) };
    let mut grandchild = Process::new(five, ()).start().map_err(|e| e.to_string())?;
    // Whatever took fd 1 (a descriptor that refuses writes, such as the grandchild's pidfd,
    // makes `println!` panic), the print must not reach the grandchild's channels.
    use std::io::Write;
    let _ = writeln!(std::io::stdout(), "hello through fd 1");
    grandchild
        .join_timeout(Duration::from_secs(4))
        .map_err(|e| e.to_string())
}

#[test]
fn a_child_that_closes_fd_1_starts_and_joins_its_own_child_while_printing() {
    for method in [StartMethod::ForkServer, StartMethod::Spawn] {
        let started = Instant::now();
        let mut child = Process::new(print_while_a_grandchild_runs, ())
            .start_method(method)
            .start()
            .unwrap();
        let result = child.join_timeout(WAIT);
        assert!(started.elapsed() < WAIT / 2, "{method:?}: {result:?}");
        assert_eq!(result.unwrap(), Ok(5), "{method:?}");
    }
}
