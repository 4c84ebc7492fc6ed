//! `cargo xtask demo [NAME]`: each story is a list of crate examples, run in the seed's order.

use std::path::Path;
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
    let root = crate::workspace_root();
    build_examples(&root, &chosen)?;
    let started = Instant::now();
    for story in chosen {
        println!("\n=== {} ===", story.title);
        for example in story.examples {
            println!(
                "\n--- {} (crates/{}/examples/{example}.rs)",
                story.package, story.package
            );
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
    println!(
        "\nall stories ran in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Builds every example of the chosen stories in release mode, so the timings they print are real.
fn build_examples(root: &Path, stories: &[&Story]) -> anyhow::Result<()> {
    let mut cmd = crate::cargo(root, &["build", "--quiet", "--release"]);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_story_names_examples_that_exist() {
        let root = crate::workspace_root();
        for story in STORIES {
            for example in story.examples {
                let path = root
                    .join("crates")
                    .join(story.package)
                    .join("examples")
                    .join(format!("{example}.rs"));
                assert!(
                    path.is_file(),
                    "story {} names a missing example {}",
                    story.name,
                    path.display()
                );
            }
        }
    }

    #[test]
    fn an_unknown_name_is_an_error_that_lists_the_valid_ones() {
        let args = DemoArgs {
            name: Some("nope".to_owned()),
            list: false,
        };
        let err = run(&args)
            .expect_err("an unknown name must fail")
            .to_string();
        assert!(err.contains("nope"), "{err}");
        for story in STORIES {
            assert!(err.contains(story.name), "{err}");
        }
    }
}
