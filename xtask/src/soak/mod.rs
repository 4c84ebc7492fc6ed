//! `cargo xtask soak [--secs N]`: process-ipc under random SIGKILL / SIGSTOP / SIGCONT for N
//! seconds, then a check of everything its processes did.
//!
//! The processes are process-ipc's `soak` example (crates/process-ipc/examples/soak/, which
//! says what each one does and what it writes); this task builds it in release, runs it with a
//! deadline of its own (past it the example and every process it started are killed), reads
//! the history files it left and prints one table. Exit status: non-zero on any violation.
//!
//! The invariants, per queue (a `Queue` with two readers, the Manager's queue, and a `Queue`
//! with one reader at a time, which also returns normally now and then):
//! - no item is delivered twice;
//! - every item whose put returned is delivered exactly once, except an item put by a producer
//!   that was later SIGKILLed and not flushed before its death (it may still have been in the
//!   producer's feeder: counted apart), and items in a killed reader's hands: at most one per
//!   reader killed ("lost-by-kill");
//! - no call with a timeout returned later than its timeout + 50 ms, not counting the time its
//!   own process was stopped by the soak, nor the time its thread waited for a CPU (the run
//!   queue, from the thread's schedstat: on a busy machine the scheduler's, not the call's);
//!   the largest overrun is shown either way;
//! - after `OwnerDied`, the lock is taken again;
//! - every process asked to stop did, and none died unasked or hit an unexpected error;
//! - nothing is left: zombies, processes still alive, descriptors of the fork server, and of
//!   the example past a few blocks the crate keeps for reuse (counted after a warm-up round of
//!   the same objects; see `CACHED_BLOCKS`); new `/dev/shm` entries are shown.

use std::collections::HashSet;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

mod check;

use check::{check, histories};

/// Arguments of `cargo xtask soak`.
#[derive(clap::Args)]
pub(crate) struct SoakArgs {
    /// How long the chaos lasts, in seconds.
    #[arg(long, default_value_t = 60)]
    secs: u64,
    /// The random seed (a new one each run when left out; the table shows it).
    #[arg(long)]
    seed: Option<u64>,
    /// Keep the history files even when the check passes.
    #[arg(long)]
    keep: bool,
}

pub(crate) fn run(args: &SoakArgs) -> anyhow::Result<()> {
    let root = crate::workspace_root();
    let status = crate::cargo(
        &root,
        &[
            "build",
            "--quiet",
            "--release",
            "--package",
            "process-ipc",
            "--example",
            "soak",
        ],
    )
    .status()
    .context("could not run cargo build")?;
    if !status.success() {
        bail!("building the soak example failed: {status}");
    }
    let exe = crate::target_dir(&root).join("release/examples/soak");
    let dir = std::env::temp_dir().join(format!("multitask-soak-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let shm_before = shm_entries();
    let mut cmd = Command::new(&exe);
    cmd.arg("--secs")
        .arg(args.secs.to_string())
        .arg("--dir")
        .arg(&dir);
    if let Some(seed) = args.seed {
        cmd.arg("--seed").arg(seed.to_string());
    }
    println!(
        "soak: {} s of SIGKILL / SIGSTOP / SIGCONT, histories in {}",
        args.secs,
        dir.display()
    );
    let mut child = cmd
        .spawn()
        .with_context(|| format!("could not start {}", exe.display()))?;
    // The chaos, then up to a minute and a half to stop, drain and count.
    let deadline = Instant::now() + Duration::from_secs(args.secs + 90);
    let exit = loop {
        if let Some(status) = child.try_wait()? {
            break Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            kill_all_started(&dir);
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let shm_after = shm_entries();
    let mut report = check(&dir)?;
    report.shm_new = shm_after.difference(&shm_before).count();
    match exit {
        None => report
            .violations
            .push("the soak did not finish within its deadline (killed)".into()),
        Some(s) if !s.success() => report
            .violations
            .push(format!("the soak example failed: {s}")),
        Some(_) => {}
    }
    print!("{}", report.table());
    if report.violations.is_empty() {
        if !args.keep {
            let _ = std::fs::remove_dir_all(&dir);
        }
        println!("soak: no violation");
        Ok(())
    } else {
        bail!(
            "{} violation(s); histories kept in {}",
            report.violations.len(),
            dir.display()
        )
    }
}

fn shm_entries() -> HashSet<String> {
    std::fs::read_dir("/dev/shm")
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Kills every process a history file names (the soak overran its deadline).
fn kill_all_started(dir: &Path) {
    for (_, text) in histories(dir).unwrap_or_default() {
        if let Some(pid) = text
            .lines()
            .next()
            .and_then(|l| l.split(' ').nth(2))
            .and_then(|p| p.parse::<i32>().ok())
        {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
    }
}
