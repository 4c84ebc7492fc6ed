//! Process basics: a target runs in another OS process with its own pid, and its typed return
//! value comes back through `join`; failures come back as values too.
//!
//! Python's version:
//! ```python
//! p = Process(target=work, args=(6,)); p.start(); p.join()
//! ```

use std::time::Duration;

use process_ipc::{Process, ProcessError, current_pid, parent_pid};

/// What the child reports about itself.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Report {
    pid: u32,
    parent: u32,
    square: u64,
}

fn work(x: u64) -> Report {
    Report {
        pid: current_pid(),
        parent: parent_pid(),
        square: x * x,
    }
}

fn crash(why: String) -> u8 {
    // On purpose, so its report is one line (not the default report, or a backtrace under
    // RUST_BACKTRACE); the parent then prints the panic `join` returns.
    std::panic::set_hook(Box::new(|info| {
        let at = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()));
        eprintln!(
            "  [child {}] panicked on purpose at {}",
            current_pid(),
            at.unwrap_or_default()
        );
    }));
    panic!("{why}")
}

fn main() -> anyhow::Result<()> {
    println!("parent: pid {}", current_pid());

    let mut child = Process::new(work, (6,)).start()?;
    println!("started child: pid {}", child.pid());
    let report = child.join_timeout(Duration::from_secs(10))?;
    println!(
        "child said: my pid is {}, my parent is {}, 6 squared is {}",
        report.pid, report.parent, report.square
    );
    assert_eq!(report.pid, child.pid());
    assert_eq!(report.parent, current_pid());
    println!("exit code: {:?}", child.exitcode());

    let mut failing = Process::new(crash, ("out of coffee".to_string(),)).start()?;
    match failing.join_timeout(Duration::from_secs(10)) {
        Err(e @ ProcessError::Panicked { .. }) => println!("a panicking child is an Err: {e}"),
        other => anyhow::bail!("expected a panic, got {other:?}"),
    }

    let mut sleeper = Process::new(|| std::thread::sleep(Duration::from_secs(30)), ()).start()?;
    sleeper.kill()?;
    match sleeper.join_timeout(Duration::from_secs(10)) {
        Err(e @ ProcessError::Killed { .. }) => println!("a killed child is an Err: {e}"),
        other => anyhow::bail!("expected a kill, got {other:?}"),
    }
    Ok(())
}
