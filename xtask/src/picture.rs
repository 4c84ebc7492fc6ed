//! The picture of `cargo xtask demo --trace DIR`: a story's traces (Chrome trace-event JSON,
//! one file per example run) drawn as one SVG timeline. Each example is a section with its own
//! time axis; in it, one lane per process, thread and coroutine: spans as bars (a thread's
//! life, a Pool task, a coroutine's run between parks, a child's target), waits longer than
//! 100 µs as red bars, and marks for a worker's death, its replacement and a refused deadlock.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde_json::Value;

/// Coroutine tracks start here (timeline's `CORO_TRACK_BASE`).
const CORO_TRACK_BASE: u64 = 0x4000_0000;
/// Lanes drawn per example; the rest are counted.
const MAX_LANES: usize = 28;
/// Bars drawn per lane.
const MAX_BARS: usize = 300;
const LABEL_W: f64 = 250.0;
const PLOT_W: f64 = 850.0;
const LANE_H: f64 = 16.0;

struct Bar {
    start: f64,
    end: f64,
    name: String,
    label: String,
    /// Still open when its process was seen to die.
    cut: bool,
}

struct Mark {
    ts: f64,
    name: String,
    label: String,
}

#[derive(Default)]
struct Lane {
    label: String,
    first: f64,
    bars: Vec<Bar>,
    marks: Vec<Mark>,
}

/// One example's lanes, grouped by process, and its time span.
struct Section {
    example: String,
    processes: Vec<(String, Vec<Lane>)>,
    t0: f64,
    t1: f64,
    hidden: usize,
}

fn label_of(args: &Value) -> String {
    let get = |k: &str| args.get(k).filter(|v| !v.is_null());
    if let Some(id) = get("id") {
        return format!("task {id}");
    }
    if let Some(name) = get("name").and_then(Value::as_str) {
        return name.to_owned();
    }
    String::new()
}

/// Reads one example's trace into lanes.
fn section(example: &str, path: &Path) -> anyhow::Result<Section> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("could not read the trace {}", path.display()))?;
    let doc: Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))?;
    let events = doc["traceEvents"].as_array().cloned().unwrap_or_default();
    let mut proc_names: BTreeMap<u64, String> = BTreeMap::new();
    let mut track_names: BTreeMap<(u64, u64), String> = BTreeMap::new();
    let mut tracks: BTreeMap<(u64, u64), Vec<&Value>> = BTreeMap::new();
    let (mut t0, mut t1) = (f64::MAX, f64::MIN);
    for e in &events {
        let (Some(pid), Some(tid), Some(ph)) =
            (e["pid"].as_u64(), e["tid"].as_u64(), e["ph"].as_str())
        else {
            continue;
        };
        let name = e["args"]["name"].as_str().unwrap_or("").to_owned();
        match (ph, e["name"].as_str()) {
            ("M", Some("process_name")) => {
                proc_names.insert(pid, name);
            }
            ("M", Some("thread_name")) => {
                track_names.insert((pid, tid), name);
            }
            ("M", _) => {}
            _ => {
                let ts = e["ts"].as_f64().unwrap_or(0.0);
                let end = ts + e["dur"].as_f64().unwrap_or(0.0);
                t0 = t0.min(ts);
                t1 = t1.max(end);
                tracks.entry((pid, tid)).or_default().push(e);
            }
        }
    }
    if t0 > t1 {
        (t0, t1) = (0.0, 1.0);
    }
    // When each worker died, as its pool saw it: its open spans end there.
    let mut deaths: BTreeMap<u64, f64> = BTreeMap::new();
    // The children the parent itself sent a signal (a terminated pool kills its workers).
    let mut signalled: BTreeMap<u64, i64> = BTreeMap::new();
    for list in tracks.values() {
        for e in list {
            if e["name"] == "process signal" {
                if let (Some(pid), Some(sig)) =
                    (e["args"]["pid"].as_u64(), e["args"]["signal"].as_i64())
                {
                    signalled.insert(pid, sig);
                }
            }
            if e["name"] == "worker died" {
                if let Some(pid) = e["args"]["pid"].as_u64() {
                    deaths.insert(pid, e["ts"].as_f64().unwrap_or(t1));
                }
            }
        }
    }
    let first_death = deaths
        .iter()
        .filter(|(pid, _)| !signalled.contains_key(pid))
        .map(|(_, &ts)| ts)
        .fold(f64::MAX, f64::min);
    let mut lanes: BTreeMap<u64, Vec<(u64, Lane)>> = BTreeMap::new();
    for (&(pid, tid), list) in &mut tracks {
        list.sort_by(|a, b| {
            let (x, y) = (
                a["ts"].as_f64().unwrap_or(0.0),
                b["ts"].as_f64().unwrap_or(0.0),
            );
            x.total_cmp(&y)
        });
        let mut lane = Lane {
            label: track_names.get(&(pid, tid)).cloned().unwrap_or_else(|| {
                if tid >= CORO_TRACK_BASE {
                    format!("coroutine {}", tid - CORO_TRACK_BASE)
                } else {
                    format!("thread {tid}")
                }
            }),
            first: list.first().and_then(|e| e["ts"].as_f64()).unwrap_or(t0),
            ..Lane::default()
        };
        let mut open: Vec<(f64, String, String)> = Vec::new();
        for e in list.iter() {
            let ts = e["ts"].as_f64().unwrap_or(0.0);
            let name = e["name"].as_str().unwrap_or("").to_owned();
            match e["ph"].as_str() {
                Some("B") => open.push((ts, name, label_of(&e["args"]))),
                Some("E") => {
                    if let Some((start, name, label)) = open.pop() {
                        lane.bars.push(Bar {
                            start,
                            end: ts,
                            name,
                            label,
                            cut: false,
                        });
                    }
                }
                Some("X") => {
                    let object = e["args"]["object"].as_str().unwrap_or("");
                    lane.bars.push(Bar {
                        start: ts,
                        end: ts + e["dur"].as_f64().unwrap_or(0.0),
                        name: "wait".into(),
                        label: format!("{name} {object}").trim().to_owned(),
                        cut: false,
                    });
                }
                Some("i") => {
                    let victim = e["args"]["pid"].as_u64().unwrap_or(0);
                    let mut name = name;
                    let mut label = match name.as_str() {
                        "worker died" if signalled.contains_key(&victim) => {
                            name = "worker stopped".into();
                            format!(
                                "worker {victim} stopped by the pool (signal {})",
                                signalled[&victim]
                            )
                        }
                        "worker died" => format!(
                            "worker {victim} died: {}",
                            e["args"]["cause"].as_str().unwrap_or("")
                        ),
                        "process start" if ts > first_death => {
                            format!("replacement {} started", e["args"]["pid"])
                        }
                        _ => name.clone(),
                    };
                    if name == "process start" && ts <= first_death {
                        label.clear();
                    }
                    lane.marks.push(Mark { ts, name, label });
                }
                _ => {}
            }
        }
        // Spans still open at the end: a dead worker's (cut where it died, marked) or a
        // thread the process never joined (drawn to the end).
        let end = deaths.get(&pid).copied().unwrap_or(t1);
        let cut = deaths.contains_key(&pid) && !signalled.contains_key(&pid);
        for (start, name, label) in open {
            lane.bars.push(Bar {
                start,
                end,
                name,
                label,
                cut,
            });
        }
        if !lane.bars.is_empty() || !lane.marks.is_empty() {
            lanes.entry(pid).or_default().push((tid, lane));
        }
    }
    let mut processes: Vec<(f64, String, Vec<Lane>)> = lanes
        .into_iter()
        .map(|(pid, mut ls)| {
            // The main thread first, then threads by start, then coroutines by start.
            ls.sort_by(|(ta, a), (tb, b)| {
                let key = |t: u64| (t != pid, t >= CORO_TRACK_BASE);
                key(*ta).cmp(&key(*tb)).then(a.first.total_cmp(&b.first))
            });
            let first = ls.iter().map(|(_, l)| l.first).fold(f64::MAX, f64::min);
            let name = proc_names
                .get(&pid)
                .cloned()
                .unwrap_or_else(|| format!("process {pid}"));
            (first, name, ls.into_iter().map(|(_, l)| l).collect())
        })
        .collect();
    processes.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut shown = 0;
    let mut hidden = 0;
    let processes = processes
        .into_iter()
        .map(|(_, name, mut ls)| {
            let room = MAX_LANES.saturating_sub(shown);
            if ls.len() > room {
                hidden += ls.len() - room;
                ls.truncate(room);
            }
            shown += ls.len();
            (name, ls)
        })
        .filter(|(_, ls)| !ls.is_empty())
        .collect();
    Ok(Section {
        example: example.to_owned(),
        processes,
        t0,
        t1,
        hidden,
    })
}

fn colour(name: &str) -> &'static str {
    match name {
        "thread" => "#8fb3de",
        "task" => "#4caf50",
        "process" => "#d9d9d9",
        "run" => "#ff9800",
        "wait" => "#e53935",
        _ => "#b0bec5",
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Draws `runs` (example name, trace file) as one SVG at `out`.
pub(crate) fn render(title: &str, runs: &[(String, PathBuf)], out: &Path) -> anyhow::Result<()> {
    let mut sections = Vec::new();
    for (example, path) in runs {
        sections.push(section(example, path)?);
    }
    let mut body = String::new();
    let mut y = 40.0;
    for s in &sections {
        let mut notes: Vec<(&str, String)> = Vec::new();
        let span = (s.t1 - s.t0).max(1.0);
        let x = |ts: f64| LABEL_W + (ts - s.t0) / span * PLOT_W;
        let _ = writeln!(
            body,
            r#"<text x="8" y="{:.1}" font-weight="bold" font-size="13">{} — {:.1} ms</text>"#,
            y + 12.0,
            escape(&s.example),
            span / 1000.0
        );
        y += 22.0;
        for (pname, lanes) in &s.processes {
            // A process with one lane (its main thread) takes one row, under its own name.
            let alone = lanes.len() == 1 && lanes[0].label == "main";
            let _ = writeln!(
                body,
                r##"<line x1="8" x2="{:.1}" y1="{:.1}" y2="{:.1}" stroke="#ddd"/>"##,
                LABEL_W + PLOT_W,
                y + 1.0,
                y + 1.0
            );
            if !alone {
                let _ = writeln!(
                    body,
                    r##"<text x="8" y="{:.1}" font-size="11" fill="#333">{}</text>"##,
                    y + 13.0,
                    escape(pname),
                );
                y += 16.0;
            }
            for lane in lanes {
                let (lx, text) = if alone {
                    (8, pname.clone())
                } else {
                    (20, lane.label.chars().take(36).collect::<String>())
                };
                let _ = writeln!(
                    body,
                    r##"<text x="{lx}" y="{:.1}" font-size="10" fill="#555">{}</text>"##,
                    y + 12.0,
                    escape(&text)
                );
                // Spans first (outer ones under inner ones), then waits, then marks.
                let mut bars: Vec<&Bar> = lane.bars.iter().collect();
                bars.sort_by(|a, b| (b.end - b.start).total_cmp(&(a.end - a.start)));
                // Thousands of tiny tasks on one lane would be a grey smear and megabytes:
                // the longest bars are drawn, the rest are below a pixel anyway.
                bars.truncate(MAX_BARS);
                for bar in bars {
                    let (x0, x1) = (x(bar.start), x(bar.end).max(x(bar.start) + 1.0));
                    let inset = if bar.name == "process" || bar.name == "thread" {
                        1.0
                    } else {
                        3.0
                    };
                    let _ = writeln!(
                        body,
                        r#"<rect x="{x0:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="{}"><title>{} {} ({:.3} ms)</title></rect>"#,
                        y + inset,
                        x1 - x0,
                        LANE_H - 2.0 * inset,
                        colour(&bar.name),
                        escape(&bar.name),
                        escape(&bar.label),
                        (bar.end - bar.start) / 1000.0
                    );
                    if x1 - x0 > 7.0 * bar.label.len() as f64 && !bar.label.is_empty() {
                        let _ = writeln!(
                            body,
                            r#"<text x="{:.1}" y="{:.1}" font-size="9">{}</text>"#,
                            x0 + 2.0,
                            y + 11.0,
                            escape(&bar.label)
                        );
                    }
                    if bar.cut {
                        let _ = writeln!(
                            body,
                            r##"<text x="{:.1}" y="{:.1}" font-size="13" fill="#c62828" font-weight="bold">✕</text>"##,
                            x1 - 4.0,
                            y + 12.0
                        );
                    }
                }
                for mark in &lane.marks {
                    let mx = x(mark.ts);
                    let fill = match mark.name.as_str() {
                        "worker died" | "deadlock refused" | "process killed by signal" => {
                            "#c62828"
                        }
                        "process start" | "spawn" => "#2e7d32",
                        _ => "#555",
                    };
                    let _ = writeln!(
                        body,
                        r#"<path d="M{:.1},{:.1} l4,7 l-8,0 z" fill="{fill}"><title>{}</title></path>"#,
                        mx,
                        y + 2.0,
                        escape(&format!("{} {}", mark.name, mark.label))
                    );
                    let important =
                        matches!(mark.name.as_str(), "worker died" | "deadlock refused")
                            || mark.label.starts_with("replacement");
                    if important {
                        // A number by the mark; its words in the notes under the section.
                        notes.push((fill, mark.label.clone()));
                        if mark.label.is_empty() {
                            notes.last_mut().expect("just pushed").1 = mark.name.clone();
                        }
                        let _ = writeln!(
                            body,
                            r#"<text x="{:.1}" y="{:.1}" font-size="10" fill="{fill}" font-weight="bold">{}</text>"#,
                            mx + 5.0,
                            y + 10.0,
                            notes.len()
                        );
                    }
                }
                y += LANE_H + 2.0;
            }
        }
        for (i, (fill, text)) in notes.iter().enumerate() {
            let _ = writeln!(
                body,
                r#"<text x="{:.1}" y="{:.1}" font-size="10" fill="{fill}" font-weight="bold">{}: {}</text>"#,
                LABEL_W,
                y + 12.0,
                i + 1,
                escape(text)
            );
            y += 14.0;
        }
        if s.hidden > 0 {
            let _ = writeln!(
                body,
                r##"<text x="20" y="{:.1}" font-size="10" fill="#777">… {} more lanes not drawn</text>"##,
                y + 11.0,
                s.hidden
            );
            y += 16.0;
        }
        y += 14.0;
    }
    let legend = [
        ("thread", "thread's life"),
        ("task", "pool task"),
        ("run", "coroutine running"),
        ("process", "child's target"),
        ("wait", "wait > 100 µs"),
    ];
    let mut lx = LABEL_W;
    let mut head = format!(
        r#"<text x="8" y="18" font-size="15" font-weight="bold">{}</text>"#,
        escape(title)
    );
    for (name, what) in legend {
        let _ = write!(
            head,
            r#"<rect x="{lx:.1}" y="24" width="10" height="10" fill="{}"/><text x="{:.1}" y="33" font-size="10">{what}</text>"#,
            colour(name),
            lx + 13.0
        );
        lx += 18.0 + 6.0 * what.len() as f64;
    }
    let svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{:.0}\" height=\"{:.0}\" font-family=\"sans-serif\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n{head}\n{body}</svg>\n",
        LABEL_W + PLOT_W + 10.0,
        y + 10.0
    );
    std::fs::write(out, svg).with_context(|| format!("could not write {}", out.display()))
}

/// A story's traces: one Perfetto file (`DIR/<name>.json`, the examples' events together: they
/// ran one after another on one clock) and the SVG (`DIR/<name>.svg`). Returns both paths.
pub(crate) fn story(
    title: &str,
    runs: &[(String, PathBuf)],
    dir: &Path,
    name: &str,
) -> anyhow::Result<(PathBuf, PathBuf)> {
    // An example that made no instrumented call (std threads only, say) wrote no trace.
    let runs: Vec<(String, PathBuf)> = runs.iter().filter(|(_, p)| p.exists()).cloned().collect();
    let runs = &runs[..];
    let mut all = Vec::new();
    for (_, path) in runs {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("no trace at {} (did the example run?)", path.display()))?;
        let doc: Value = serde_json::from_str(&text)?;
        all.extend(doc["traceEvents"].as_array().cloned().unwrap_or_default());
    }
    let json = dir.join(format!("{name}.json"));
    std::fs::write(
        &json,
        serde_json::to_string(&serde_json::json!({ "traceEvents": all }))?,
    )?;
    let svg = dir.join(format!("{name}.svg"));
    render(title, runs, &svg)?;
    // And each example alone (the README shows the pool's).
    for (example, path) in runs {
        let one = dir.join(name).join(format!("{example}.svg"));
        render(
            &format!("{title}: {example}"),
            &[(example.clone(), path.clone())],
            &one,
        )?;
    }
    Ok((json, svg))
}
