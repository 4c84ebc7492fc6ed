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
    /// Also trace every example (built with the crates' `trace` feature) into DIR: each
    /// story's trace as Chrome trace-event JSON (`DIR/<story>.json`, open it in Perfetto) and
    /// its timeline as `DIR/<story>.svg`.
    #[arg(long, value_name = "DIR")]
    trace: Option<std::path::PathBuf>,
}

/// One chapter of the seed: a heading, what it shows, and the examples that show it.
struct Story {
    name: &'static str,
    title: &'static str,
    package: &'static str,
    /// The seed's points, one plain sentence each, printed under the heading.
    points: &'static [&'static str],
    /// Cargo features the examples need (`package/feature`).
    features: &'static [&'static str],
    examples: &'static [&'static str],
}

/// Examples that need a program on the PATH: (example, program, how to get it).
const NEEDS: &[(&str, &str, &str)] = &[(
    "cluster_pool",
    "redis-server",
    "apt-get install redis-server (Debian, Ubuntu), brew install redis (macOS)",
)];

/// Whether `program` is an executable file in a directory of the PATH.
fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}

/// The seed's order: threads, processes, iterators and generators, coroutines.
const STORIES: &[Story] = &[
    Story {
        name: "threads",
        points: &[
            "A thread runs a target function with args; the OS schedules it.",
            "Threads share globals, so an unlocked counter loses updates and a lock makes it exact.",
            "Spawning a thread per task costs; a pool of reused threads runs many tasks.",
            "Two locks taken in opposite orders deadlock: here the deadlock is reported, not hung.",
            "Python's everyday calls: Timer, local, PriorityQueue, wait/as_completed, daemon threads.",
        ],
        title: "Threads: the unit the OS schedules; shared state needs a lock",
        package: "threads-sync",
        features: &[],
        examples: &[
            "threads_race",
            "threads_pool",
            "threads_deadlock",
            "threads_everyday",
        ],
    },
    Story {
        name: "process",
        points: &[
            "A process runs a target with args in a real child OS process, with its own pid.",
            "Processes share no globals, so they talk through a Queue.",
            "Spawning a process is expensive, so a Pool of reused workers runs many tasks.",
            "A worker that dies fails only its own task; the pool goes on.",
            "A Manager queue works from inside pool workers; so do its dict, list, lock and event.",
            "When processes must share state: a Value with its lock is exact, a RawValue races, and a lock whose holder dies says so.",
            "A work queue: four consumer processes read one Queue, each item taken exactly once, and their loops end when the producer closes.",
            "Across hosts on Redis: the same Pool, two worker groups, one killed mid-map: exactly its items fail, or, with retries, none.",
        ],
        title: "Processes: the unit that owns resources; they talk through queues",
        package: "process-ipc",
        features: &["process-ipc/redis"],
        examples: &[
            "process_basics",
            "process_queue",
            "pool_basics",
            "pool_vs_processes",
            "manager_queue",
            "manager_dict",
            "shared_counter",
            "work_queue",
            "cluster_pool",
        ],
    },
    Story {
        name: "iter",
        points: &[
            "An iterable hands out an iterator; the iterator remembers the position.",
            "A generator is an iterator written with yield: it pauses there and resumes on next().",
            "A generator is consumed once: a second pass yields nothing.",
        ],
        title: "Iterators and generators: the walk remembers its place, and is spent once",
        package: "iter-gen",
        features: &[],
        examples: &["iterators", "generators"],
    },
    Story {
        name: "coro",
        points: &[
            "A coroutine is smaller than a thread and switches in user space.",
            "A blocking call must be the cooperative one, or every coroutine waits in line.",
            "The monkey shim turns blocking calls into cooperative ones inside coroutines.",
            "After patch_all(), unchanged std::net code fetches N pages in about the time of one.",
        ],
        title: "Coroutines: smaller than threads, switched in user space",
        package: "coro",
        features: &["coro/patch"],
        examples: &["coro_basics", "coro_sleep", "coro_echo", "coro_fetch"],
    },
];

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
    let started = Instant::now();
    build_examples(&root, &chosen, args.trace.is_some())?;
    for story in chosen {
        let mut traced = Vec::new();
        println!("\n=== {} ===", story.title);
        for point in story.points {
            println!("  * {point}");
        }
        for example in story.examples {
            if let Some((_, program, how)) =
                NEEDS.iter().find(|(e, p, _)| e == example && !on_path(p))
            {
                println!("\n--- {example}: skipped, it needs `{program}` on the PATH: {how}");
                continue;
            }
            println!(
                "\n--- {} (crates/{}/examples/{example}.rs)",
                story.package, story.package
            );
            let exe = crate::target_dir(&root)
                .join("release/examples")
                .join(example);
            let mut cmd = Command::new(&exe);
            if let Some(dir) = args.trace.as_deref().filter(|_| traceable(story)) {
                let path = dir.join(story.name).join(format!("{example}.json"));
                std::fs::create_dir_all(dir.join(story.name))?;
                cmd.env("MULTITASK_TRACE", &path);
                traced.push((example.to_string(), path));
            }
            let status = cmd
                .current_dir(&root)
                .status()
                .with_context(|| format!("could not start {}", exe.display()))?;
            if !status.success() {
                bail!("example {example} failed: {status}");
            }
        }
        if let Some(dir) = args.trace.as_deref().filter(|_| !traced.is_empty()) {
            let (json, svg) = crate::picture::story(story.title, &traced, dir, story.name)?;
            println!(
                "\ntrace: {} (Perfetto), timeline: {}",
                json.display(),
                svg.display()
            );
        }
    }
    println!(
        "\nall stories ran in {:.1} s, building included",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Builds every example of the chosen stories in release mode, so the timings they print are
/// real, saying so first and showing cargo's progress (the first run takes minutes).
fn build_examples(root: &Path, stories: &[&Story], trace: bool) -> anyhow::Result<()> {
    println!(
        "building the examples in release mode (the first run takes a few minutes; later \
         ones, seconds)"
    );
    let mut cmd = crate::cargo(root, &["build", "--release"]);
    for story in stories {
        cmd.args(["--package", story.package]);
        for feature in story.features {
            cmd.args(["--features", feature]);
        }
        if trace && traceable(story) {
            cmd.args(["--features", &format!("{}/trace", story.package)]);
        }
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

/// Whether the story's crate records a trace (iter-gen has nothing to put on a timeline).
fn traceable(story: &Story) -> bool {
    story.package != "iter-gen"
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
            trace: None,
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
