//! `cargo xtask`: the project's own tasks, one module per task (see `--help`).

mod demo;

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
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().task {
        Task::Demo(args) => demo::run(&args),
    }
}
