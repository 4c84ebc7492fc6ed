//! `cargo xtask bench`: the cost ladder process > thread > coroutine, measured the same way
//! for all three kinds, printed as a table with ratios, and written as JSON and an SVG chart.
//!
//! The measuring itself happens in the root package's `examples/ladder.rs`, built in release
//! mode, which prints one JSON line per result; `xtask/python/ladder.py` is its Python twin.
//! The rungs (both sides define them identically):
//! - `spawn_join`: start n, then join all n (process: `Process` running a no-op; thread:
//!   `Thread`; coroutine: `spawn`); value per unit.
//! - `switch`: a ping-pong over two queues between two processes or two threads, each round
//!   trip counting as two switches; two coroutines yielding (`sleep(0)`) to each other, each
//!   yield one switch. `samecpu` pins both sides to CPU 0; `unpinned` lets the scheduler choose.
//! - `message`: one producer puts n small integers into a queue, the consumer gets them all.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};

mod servers;

/// Arguments of `cargo xtask bench`.
#[derive(clap::Args)]
pub(crate) struct BenchArgs {
    /// Fewer repetitions and smaller counts: finishes in under a minute.
    #[arg(long)]
    quick: bool,
    /// Also run the Python twins (needs python3; gevent for the coroutine rung).
    #[arg(long)]
    python: bool,
    /// Run the server benchmark instead (coro's servers against gevent's and tokio's).
    #[arg(long)]
    servers: bool,
    /// Where the JSON and the SVG go (default: target/multitask-bench).
    #[arg(long)]
    out: Option<PathBuf>,
}

/// One measured value: the median over repetitions, in nanoseconds per unit of work.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Sample {
    rung: String,
    kind: String,
    #[serde(default)]
    variant: String,
    n: u64,
    value_ns: f64,
    reps_ns: Vec<f64>,
}

/// A line of the ladder's output: either the number of results to expect, or one result.
#[derive(Deserialize)]
#[serde(untagged)]
enum Line {
    Plan { plan: u64 },
    Sample(Sample),
}

/// Everything one run wrote to `results.json`.
#[derive(Serialize)]
struct Report<'a> {
    machine: BTreeMap<&'static str, String>,
    quick: bool,
    ours: &'a [Sample],
    python: &'a [Sample],
}

const KINDS: [&str; 3] = ["process", "thread", "coroutine"];
/// The rows of the table and the groups of the chart: (rung, variant, label).
const ROWS: [(&str, &str, &str); 4] = [
    ("spawn_join", "", "spawn+join"),
    ("switch", "samecpu", "switch, one CPU"),
    ("switch", "unpinned", "switch, unpinned"),
    ("message", "", "message"),
];

pub(crate) fn run(args: &BenchArgs) -> anyhow::Result<()> {
    let root = crate::workspace_root();
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| crate::target_dir(&root).join("multitask-bench"));
    std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
    if args.servers {
        return servers::run(&root, &out, args.quick);
    }

    println!("building the ladder (release)...");
    crate::cargo(
        &root,
        &["build", "--quiet", "--release", "--package", "multitask"],
    )
    .args(["--example", "ladder"])
    .status()
    .context("could not run cargo build")?
    .success()
    .then_some(())
    .context("building examples/ladder.rs failed")?;
    let mut ladder = Command::new(crate::target_dir(&root).join("release/examples/ladder"));
    if args.quick {
        ladder.arg("--quick");
    }
    let ours = collect(ladder.current_dir(&root), "rust")?;

    let python = if args.python {
        run_python(&root, args.quick)?
    } else {
        Vec::new()
    };

    print_table(&ours, &python);
    let json = out.join("results.json");
    let report = Report {
        machine: machine(),
        quick: args.quick,
        ours: &ours,
        python: &python,
    };
    std::fs::write(&json, serde_json::to_string_pretty(&report)?)
        .with_context(|| format!("cannot write {}", json.display()))?;
    let svg = out.join("ladder.svg");
    draw_chart(&svg, &ours, &python)?;
    println!("\nwrote {} and {}", json.display(), svg.display());
    Ok(())
}

/// Runs a ladder program, shows progress while it runs, and gathers its results.
fn collect(cmd: &mut Command, label: &str) -> anyhow::Result<Vec<Sample>> {
    let mut child = cmd
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| format!("could not start the {label} ladder"))?;
    let stdout = child.stdout.take().expect("stdout was piped");
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template("{spinner} {prefix} [{bar:30}] {pos}/{len} {msg}")
            .expect("a valid template")
            .progress_chars("=> "),
    );
    bar.set_prefix(label.to_owned());
    bar.enable_steady_tick(std::time::Duration::from_millis(120));
    let mut samples = Vec::new();
    for line in BufReader::new(stdout).lines() {
        let line = line?;
        match serde_json::from_str::<Line>(&line) {
            Ok(Line::Plan { plan }) => bar.set_length(plan),
            Ok(Line::Sample(s)) => {
                bar.set_message(format!("{} {} {}", s.rung, s.kind, s.variant));
                bar.inc(1);
                samples.push(s);
            }
            Err(_) => bar.println(line),
        }
    }
    bar.finish_and_clear();
    let status = child.wait()?;
    if !status.success() {
        bail!("the {label} ladder failed: {status}");
    }
    Ok(samples)
}

/// The Python twins, when python3 is here; a missing interpreter is said, not fatal.
fn run_python(root: &Path, quick: bool) -> anyhow::Result<Vec<Sample>> {
    let found = Command::new("python3").arg("--version").output();
    if !matches!(found, Ok(ref o) if o.status.success()) {
        println!("python3 was not found: the Python column is left out");
        return Ok(Vec::new());
    }
    let has_gevent = Command::new("python3")
        .args(["-c", "import gevent"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !has_gevent {
        println!(
            "gevent is not installed (pip install gevent): the Python coroutine rung is left out"
        );
    }
    let mut cmd = Command::new("python3");
    cmd.arg(root.join("xtask/python/ladder.py"))
        .stderr(Stdio::null());
    if quick {
        cmd.arg("--quick");
    }
    collect(cmd.current_dir(root), "python")
}

fn find<'a>(samples: &'a [Sample], rung: &str, kind: &str, variant: &str) -> Option<&'a Sample> {
    samples.iter().find(|s| {
        s.rung == rung
            && s.kind == kind
            // coroutines live on one worker thread: their switch is a one-CPU switch
            && (s.variant == variant || (kind == "coroutine" && rung == "switch"))
    })
}

fn human(ns: f64) -> String {
    match ns {
        x if x >= 1e6 => format!("{:.2} ms", x / 1e6),
        x if x >= 1e3 => format!("{:.2} µs", x / 1e3),
        x => format!("{x:.1} ns"),
    }
}

fn ratio(a: Option<&Sample>, b: Option<&Sample>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b.value_ns > 0.0 => format!("{:.1}×", a.value_ns / b.value_ns),
        _ => "-".to_owned(),
    }
}

fn print_table(ours: &[Sample], python: &[Sample]) {
    println!(
        "\n{:<28} {:>11} {:>11} {:>11}   {:>14} {:>16}",
        "per unit", "process", "thread", "coroutine", "process/thread", "thread/coroutine"
    );
    for (rung, variant, label) in ROWS {
        for (who, samples) in [("multitask", ours), ("python", python)] {
            if samples.is_empty() {
                continue;
            }
            let cells: Vec<Option<&Sample>> = KINDS
                .iter()
                .map(|k| find(samples, rung, k, variant))
                .collect();
            let show = |s: Option<&Sample>| s.map_or("-".to_owned(), |s| human(s.value_ns));
            let name = if python.is_empty() {
                label.to_owned()
            } else {
                format!("{label} {who}")
            };
            println!(
                "{name:<28} {:>11} {:>11} {:>11}   {:>14} {:>16}",
                show(cells[0]),
                show(cells[1]),
                show(cells[2]),
                ratio(cells[0], cells[1]),
                ratio(cells[1], cells[2]),
            );
        }
    }
    if !python.is_empty() {
        println!("\nPython ÷ multitask (higher: multitask is faster by that much)");
        for (rung, variant, label) in ROWS {
            let cells: Vec<String> = KINDS
                .iter()
                .map(|k| ratio(find(python, rung, k, variant), find(ours, rung, k, variant)))
                .collect();
            println!(
                "{label:<28} {:>11} {:>11} {:>11}",
                cells[0], cells[1], cells[2]
            );
        }
    }
}

fn machine() -> BTreeMap<&'static str, String> {
    let run = |cmd: &str, args: &[&str]| {
        Command::new(cmd)
            .args(args)
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default()
    };
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split_once(':').map_or(l, |(_, v)| v).trim().to_owned())
        })
        .unwrap_or_default();
    BTreeMap::from([
        (
            "cpus",
            std::thread::available_parallelism()
                .map_or(0, |n| n.get())
                .to_string(),
        ),
        ("cpu", cpu),
        ("kernel", run("uname", &["-sr"])),
        ("rustc", run("rustc", &["--version"])),
        ("date", run("date", &["-u", "+%Y-%m-%dT%H:%M:%SZ"])),
    ])
}

/// A grouped bar chart on a log scale: one group per row, one bar per kind; Python's
/// twins, when measured, as hollow bars beside ours.
fn draw_chart(path: &Path, ours: &[Sample], python: &[Sample]) -> anyhow::Result<()> {
    use plotters::prelude::*;

    let colors = [
        RGBColor(200, 60, 50),
        RGBColor(50, 110, 190),
        RGBColor(40, 150, 80),
    ];
    let all: Vec<f64> = ours
        .iter()
        .chain(python)
        .map(|s| s.value_ns)
        .filter(|v| *v > 0.0)
        .collect();
    let top = all.iter().copied().fold(10.0, f64::max) * 3.0;
    let bottom = all
        .iter()
        .copied()
        .fold(f64::INFINITY, f64::min)
        .min(top / 10.0)
        / 3.0;
    let root = SVGBackend::new(path, (960, 540)).into_drawing_area();
    root.fill(&WHITE)?;
    let caption = if python.is_empty() {
        "multitask cost ladder (ns per unit, log scale)"
    } else {
        "multitask (filled) vs Python (hollow), ns per unit, log scale"
    };
    let mut chart = ChartBuilder::on(&root)
        .caption(caption, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(80)
        .build_cartesian_2d(0f64..ROWS.len() as f64, (bottom..top).log_scale())?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(ROWS.len() * 2 + 1)
        .x_label_formatter(&|x| {
            let i = x.floor() as usize;
            if (x - i as f64 - 0.5).abs() < 0.01 && i < ROWS.len() {
                ROWS[i].2.to_owned()
            } else {
                String::new()
            }
        })
        .y_desc("ns per unit")
        .y_label_formatter(&|y| human(*y))
        .draw()?;
    let sides: &[(&[Sample], bool)] = if python.is_empty() {
        &[(ours, true)]
    } else {
        &[(ours, true), (python, false)]
    };
    let slot = 0.8 / (KINDS.len() * sides.len()) as f64;
    for (k, kind) in KINDS.iter().enumerate() {
        let color = colors[k];
        let mut legend_drawn = false;
        for (side, (samples, filled)) in sides.iter().enumerate() {
            let bars: Vec<Rectangle<(f64, f64)>> = ROWS
                .iter()
                .enumerate()
                .filter_map(|(g, (rung, variant, _))| {
                    let s = find(samples, rung, kind, variant)?;
                    let x0 = g as f64 + 0.1 + slot * (k * sides.len() + side) as f64;
                    let style = if *filled {
                        color.filled()
                    } else {
                        color.stroke_width(2)
                    };
                    Some(Rectangle::new(
                        [(x0, bottom), (x0 + slot * 0.9, s.value_ns)],
                        style,
                    ))
                })
                .collect();
            let series = chart.draw_series(bars)?;
            if !legend_drawn {
                legend_drawn = true;
                series.label(*kind).legend(move |(x, y)| {
                    Rectangle::new([(x, y - 5), (x + 12, y + 5)], color.filled())
                });
            }
        }
    }
    chart
        .configure_series_labels()
        .border_style(BLACK)
        .background_style(WHITE.mix(0.8))
        .position(SeriesLabelPosition::UpperRight)
        .draw()?;
    root.present()?;
    Ok(())
}
