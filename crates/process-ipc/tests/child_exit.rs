//! How a child process ends: what it printed reaches its standard output, even a last line
//! without a newline, under either start method (a forked child ends with `_exit`, after
//! flushing).

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use process_ipc::{Process, StartMethod};

const WAIT: Duration = Duration::from_secs(20);
/// Set in the copy of this test binary that the outer test runs: the inner test runs only then.
const INNER: &str = "PROCESS_IPC_TEST_CHILD_EXIT_INNER";

fn says_without_newline(method: String) -> u8 {
    print!("unfinished line from the {method} child");
    1
}

/// Run by `a_childs_unfinished_last_line_is_printed`, with its standard output on a pipe.
#[test]
#[ignore = "run by a_childs_unfinished_last_line_is_printed"]
fn inner_children_print_without_newline() {
    if std::env::var_os(INNER).is_none() {
        return;
    }
    for method in [StartMethod::Spawn, StartMethod::ForkServer] {
        let mut child = Process::new(says_without_newline, (method.name().to_string(),))
            .start_method(method)
            .start()
            .unwrap();
        assert_eq!(child.join_timeout(WAIT).unwrap(), 1);
    }
}

#[test]
fn a_childs_unfinished_last_line_is_printed() {
    let mut run = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "inner_children_print_without_newline",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(INNER, "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Read on a thread, so that the wait for the end of the output is bounded.
    let mut out = run.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut text = String::new();
        let _ = out.read_to_string(&mut text);
        let _ = tx.send(text);
    });
    let text = rx.recv_timeout(WAIT);
    let deadline = Instant::now() + WAIT;
    let status = loop {
        if let Some(status) = run.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() >= deadline {
            let _ = run.kill();
            let _ = run.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let text = text.expect("the inner test's output did not end in time");
    assert!(status.is_some_and(|s| s.success()), "inner test: {text}");
    for method in ["spawn", "forkserver"] {
        assert!(
            text.contains(&format!("unfinished line from the {method} child")),
            "the {method} child's last line is missing from: {text:?}"
        );
    }
}
