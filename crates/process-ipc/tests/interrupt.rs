//! Ctrl-C for real: this binary runs itself again as a program with a Pool and children, in
//! its own process group (so the signal never reaches the test harness), waits for its ready
//! line, signals it, and then looks in /proc for anything it left behind: no child alive, no
//! zombie. `harness = false`: `main` picks the role from `INTERRUPT_TEST_ROLE`.

use std::io::{BufRead, BufReader};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use process_ipc::{Pool, PoolError, Process};

/// Bound on every wait: far above what any step needs, so a hang fails.
const LIMIT: Duration = Duration::from_secs(60);
const ROLE: &str = "INTERRUPT_TEST_ROLE";

fn nap() -> u8 {
    // The work the signal interrupts, not a synchronisation.
    std::thread::sleep(Duration::from_secs(3600));
    0
}

fn main() {
    match std::env::var(ROLE).as_deref() {
        Ok("default") => program(false),
        Ok("then") => program(true),
        _ => tests(),
    }
}

/// The interrupted program: two pool workers busy, more tasks queued, two children (one a
/// daemon). `then`: the program handles the signal itself and reports what its blocked calls
/// returned; otherwise the default ending (death by the signal) after the cleanup.
fn program(then: bool) {
    let (after_tx, after_rx) = mpsc::channel();
    if then {
        process_ipc::shutdown_on_interrupt_then(move |signal| {
            println!("after {signal}");
            let _ = after_tx.send(());
        })
        .unwrap();
    } else {
        process_ipc::shutdown_on_interrupt().unwrap();
    }
    let pool = Pool::new(2).unwrap();
    let pending: Vec<_> = (0..4).map(|_| pool.apply_async(nap, ()).unwrap()).collect();
    for (i, r) in pending.iter().enumerate() {
        r.add_done_callback(move |r| println!("callback {i}: {r:?}"));
    }
    let child = Process::new(nap, ()).start().unwrap();
    let daemon = Process::new(nap, ()).daemon(true).start().unwrap();
    println!("ready");
    if !then {
        // The main thread waits; the process ends by the signal's default action.
        let first = pending.into_iter().next().unwrap();
        println!("get: {:?}", first.get());
        loop {
            std::thread::park();
        }
    }
    for r in pending {
        println!("get: {:?}", r.get());
    }
    pool.close();
    println!("pool join: {:?}", pool.join());
    println!("join: {:?}", child.join());
    println!("daemon join: {:?}", daemon.join());
    after_rx.recv_timeout(LIMIT).unwrap();
    println!("end");
}

/// What a run of the program printed and how it ended.
struct Run {
    lines: Vec<String>,
    status: std::process::ExitStatus,
}

/// Starts the program in its own process group, waits for "ready", sends `signal` (to the
/// whole group, as a terminal's Ctrl-C does, or to the program alone), collects its output
/// until every process holding its stdout is gone, then checks /proc for leftovers.
fn run(role: &str, signal: i32, group: bool) -> Run {
    let mut program = Command::new(std::env::current_exe().unwrap())
        .env(ROLE, role)
        .stdout(Stdio::piped())
        .process_group(0)
        .spawn()
        .unwrap();
    let pid = program.id() as i32;
    let (tx, rx) = mpsc::channel();
    let stdout = program.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            if tx.send(line.unwrap()).is_err() {
                return;
            }
        }
    });
    let mut lines = Vec::new();
    loop {
        let line = rx.recv_timeout(LIMIT).expect("no ready line in time");
        let ready = line == "ready";
        lines.push(line);
        if ready {
            break;
        }
    }
    let target = if group { -pid } else { pid };
    // SAFETY: kill takes plain integers; the group is the program's own.
    assert_eq!(unsafe { libc::kill(target, signal) }, 0);
    // The channel ends when every process holding the pipe (the program and its children,
    // which inherit it) has closed it: then none of them runs any more.
    loop {
        match rx.recv_timeout(LIMIT) {
            Ok(line) => lines.push(line),
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                // SAFETY: as above; do not leave the group running after a failure.
                unsafe { libc::kill(-pid, libc::SIGKILL) };
                panic!("the program or a child still runs {LIMIT:?} after the signal: {lines:?}");
            }
        }
    }
    let status = program.wait().unwrap();
    let left = leftovers(pid as u32);
    assert!(
        left.is_empty(),
        "left behind (pid, ppid, pgrp, state, name): {left:?}; output {lines:?}"
    );
    Run { lines, status }
}

/// Every process whose parent was the program or which is in its group: `(pid, ppid, pgrp,
/// state, name)`. A zombie counts: in a container init may never reap it.
fn leftovers(program: u32) -> Vec<(u32, u32, u32, char, String)> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // "pid (comm) state ppid pgrp ...": comm may hold spaces and parentheses.
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let comm = stat[open + 1..close].to_string();
        let Some(rest) = stat.get(close + 2..) else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let state = fields[0].chars().next().unwrap_or('?');
        let ppid: u32 = fields[1].parse().unwrap_or(0);
        let pgrp: u32 = fields[2].parse().unwrap_or(0);
        if ppid == program || pgrp == program {
            found.push((pid, ppid, pgrp, state, comm));
        }
    }
    found
}

fn interrupted(lines: &[String], prefix: &str, signal: i32) -> usize {
    let pool = format!("{:?}", Err::<u8, _>(PoolError::Interrupted { signal }));
    lines
        .iter()
        .filter(|l| l.starts_with(prefix) && l.ends_with(&pool))
        .count()
}

/// Ctrl-C at a terminal: SIGINT to the whole group. The program dies of SIGINT after the
/// cleanup, leaving nothing behind; the pending results it saw failed with `Interrupted`.
fn sigint_to_the_group_ends_the_program_by_sigint_and_leaves_nothing() {
    let run = run("default", libc::SIGINT, true);
    assert_eq!(run.status.signal(), Some(libc::SIGINT), "{:?}", run.lines);
    // Those callbacks that ran before the end (the watcher runs each one it fails itself)
    // all say Interrupted; none says anything else.
    let callbacks: Vec<_> = run
        .lines
        .iter()
        .filter(|l| l.starts_with("callback"))
        .collect();
    assert_eq!(
        callbacks.len(),
        interrupted(&run.lines, "callback", libc::SIGINT),
        "{:?}",
        run.lines
    );
}

/// SIGTERM to the program alone: its children get no signal from outside, so the cleanup
/// itself must end them (and reap them) before the program dies of SIGTERM.
fn sigterm_to_the_program_alone_ends_and_reaps_every_child() {
    let run = run("default", libc::SIGTERM, false);
    assert_eq!(run.status.signal(), Some(libc::SIGTERM), "{:?}", run.lines);
    // Every task was failed by the cleanup itself, before the program died.
    assert_eq!(
        interrupted(&run.lines, "callback", libc::SIGTERM),
        4,
        "{:?}",
        run.lines
    );
}

/// The program handles the signal: every blocked `get`, the pool's `join` and each child's
/// `join` return `Interrupted`, then `main` ends normally.
fn a_program_that_handles_the_signal_sees_interrupted_everywhere() {
    let run = run("then", libc::SIGINT, true);
    assert_eq!(run.status.code(), Some(0), "{:?}", run.lines);
    let l = &run.lines;
    assert_eq!(interrupted(l, "get", libc::SIGINT), 4, "{l:?}");
    assert_eq!(interrupted(l, "callback", libc::SIGINT), 4, "{l:?}");
    let pool_join = format!(
        "pool join: {:?}",
        Err::<(), _>(PoolError::Interrupted { signal: 2 })
    );
    assert!(l.contains(&pool_join), "{l:?}");
    for prefix in ["join: Err(Interrupted {", "daemon join: Err(Interrupted {"] {
        assert!(l.iter().any(|x| x.starts_with(prefix)), "{prefix} in {l:?}");
    }
    assert!(l.contains(&"after 2".to_string()), "{l:?}");
    assert_eq!(l.last().map(String::as_str), Some("end"), "{l:?}");
}

fn tests() {
    let all: [(&str, fn()); 3] = [
        (
            "sigint_to_the_group_ends_the_program_by_sigint_and_leaves_nothing",
            sigint_to_the_group_ends_the_program_by_sigint_and_leaves_nothing,
        ),
        (
            "sigterm_to_the_program_alone_ends_and_reaps_every_child",
            sigterm_to_the_program_alone_ends_and_reaps_every_child,
        ),
        (
            "a_program_that_handles_the_signal_sees_interrupted_everywhere",
            a_program_that_handles_the_signal_sees_interrupted_everywhere,
        ),
    ];
    // `cargo test -- NAME` runs the tests whose names contain NAME, as libtest does, and
    // `--skip NAME` leaves them out; libtest's other flags are ignored (with their values).
    let (mut filters, mut skips) = (Vec::new(), Vec::new());
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--list" => {
                for (name, _) in all {
                    println!("{name}: test");
                }
                return;
            }
            "--skip" => skips.extend(args.next()),
            "--test-threads" | "--color" | "--format" | "--logfile" | "-Z" | "--shuffle-seed" => {
                args.next();
            }
            flag if flag.starts_with('-') => {}
            name => filters.push(name.to_string()),
        }
    }
    let mut ran = 0;
    for (name, test) in all {
        let chosen = filters.is_empty() || filters.iter().any(|f| name.contains(f.as_str()));
        if !chosen || skips.iter().any(|s| name.contains(s.as_str())) {
            continue;
        }
        println!("test {name} ...");
        test();
        println!("test {name} ... ok");
        ran += 1;
    }
    println!("test result: ok. {ran} passed");
}
