//! `cargo xtask demo [NAME]`: each story is a list of crate examples, run in the seed's order.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, bail};

/// Arguments of `cargo xtask demo`.
#[derive(clap::Args)]
pub(crate) struct DemoArgs {
    /// The story to run (all of them when left out).
    name: Option<String>,
    /// Name the stories and exit.
    #[arg(long)]
    list: bool,
}

/// One chapter of the seed: a heading, what it shows, and the examples that show it.
struct Story {
    name: &'static str,
    title: &'static str,
    package: &'static str,
    examples: &'static [&'static str],
}

/// The seed's order: threads, processes, iterators and generators, coroutines.
const STORIES: &[Story] = &[Story {
    name: "threads",
    title: "Threads: the unit the OS schedules; shared state needs a lock",
    package: "threads-sync",
    examples: &["threads_race", "threads_pool", "threads_deadlock"],
}];

pub(crate) fn run(args: &DemoArgs) -> anyhow::Result<()> {
    if args.list {
        for story in STORIES {
            println!("{:<10} {}", story.name, story.title);
        }
        return Ok(());
    }
    let chosen: Vec<&Story> = match &args.name {
        None => STORIES.iter().collect(),
        Some(name) => match STORIES.iter().find(|s| s.name == name) {
            Some(story) => vec![story],
            None => {
                let names: Vec<&str> = STORIES.iter().map(|s| s.name).collect();
                bail!("unknown demo {name:?}; valid names: {}", names.join(", "));
            }
        },
    };
    let root = workspace_root();
    build_examples(&root, &chosen)?;
    let started = Instant::now();
    for story in chosen {
        println!("\n=== {} ===", story.title);
        for example in story.examples {
            println!("\n--- {} (crates/{}/examples/{example}.rs)", story.package, story.package);
            let exe = root.join("target/release/examples").join(example);
            let status = Command::new(&exe)
                .current_dir(&root)
                .status()
                .with_context(|| format!("could not start {}", exe.display()))?;
            if !status.success() {
                bail!("example {example} failed: {status}");
            }
        }
    }
    println!("\nall stories ran in {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}

/// Builds every example of the chosen stories in release mode, so the timings they print are real.
fn build_examples(root: &Path, stories: &[&Story]) -> anyhow::Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(root).args(["build", "--quiet", "--release"]);
    for story in stories {
        cmd.args(["--package", story.package]);
        for example in story.examples {
            cmd.args(["--example", example]);
        }
    }
    let status = cmd.status().context("could not run cargo build")?;
    if !status.success() {
        bail!("building the demo examples failed: {status}");
    }
    Ok(())
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one level below the workspace root")
        .to_path_buf()
}
