//! `cargo xtask`: the project's own tasks, one module per task (see `--help`).

mod bench;
mod demo;
mod picture;
mod soak;
#[cfg(test)]
mod tidy;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use clap::{Parser, Subcommand};

/// Project tasks for the multitask workspace.
#[derive(Parser)]
#[command(name = "cargo xtask", arg_required_else_help = true)]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Run the seed's stories with real output: all of them, or one by name.
    Demo(demo::DemoArgs),
    /// Measure the cost ladder (process > thread > coroutine) and chart it.
    Bench(bench::BenchArgs),
    /// Run process-ipc under random SIGKILL / SIGSTOP / SIGCONT and check what it did.
    Soak(soak::SoakArgs),
}

fn main() -> ExitCode {
    let outcome = match Cli::parse().task {
        Task::Demo(args) => demo::run(&args),
        Task::Bench(args) => bench::run(&args),
        Task::Soak(args) => soak::run(&args),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // The chain of causes, without a backtrace: the message is for the user.
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// The workspace root: xtask lives one level below it.
fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one level below the workspace root")
        .to_path_buf()
}

/// Where cargo puts its builds: `CARGO_TARGET_DIR` when set, else `target/` in the root.
fn target_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from)
}

/// A `cargo` command (the one that runs us, when known) in the workspace root.
fn cargo(root: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.current_dir(root).args(args);
    cmd
}
