//! `cargo xtask bench --servers`: four echo/HTTP servers under one load generator, one run.
//!
//! Servers: coro's shim types, plain `std::net` under `coro::monkey::patch_all()`,
//! gevent's `StreamServer` (`xtask/python/servers.py`, skipped with a note when
//! python3 or gevent is missing) and tokio `current_thread`; each does its work on
//! one thread. The load generator and the Rust servers are
//! `crates/coro/examples/coro_servers.rs` (release build). For each workload
//! (echo of 1 KiB, HTTP/1.1 keep-alive GET) and each N (500 and 5 000
//! connections), the servers run one after another in the same order, and
//! the kernel's `TcpExtListenOverflows` counter (`nstat`) is read around each
//! load. Everything is on 127.0.0.1, and every server is stopped by closing
//! its stdin (or killed) once its load has run.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

/// Connections held at once.
const NS: [usize; 2] = [500, 5000];
const SERVERS: [&str; 4] = ["patched", "shim", "gevent", "tokio"];
const MODES: [&str; 2] = ["echo", "http"];

/// One load run's answer, as `coro_servers load` prints it.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Load {
    requests: u64,
    seconds: f64,
    rps: f64,
    p50_us: f64,
    p99_us: f64,
    failed_clients: u64,
}

#[derive(Serialize)]
struct Row {
    mode: String,
    clients: usize,
    server: String,
    load: Load,
    /// The server process's CPU time (user + system) during the load, in seconds.
    server_cpu_s: Option<f64>,
    listen_overflows: Option<u64>,
}

impl Row {
    /// Requests per second of the server's own CPU time: what it costs to
    /// serve, whatever else the machine's cores were doing.
    fn per_cpu_s(&self) -> Option<f64> {
        self.server_cpu_s
            .filter(|s| *s > 0.0)
            .map(|s| self.load.requests as f64 / s)
    }
}

/// A process's user + system CPU time from `/proc/<pid>/stat`, in seconds.
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command's closing parenthesis; utime and stime are the 14th and 15th.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    // /proc reports clock ticks of USER_HZ, which Linux fixes at 100 for user space.
    Some(ticks / 100.0)
}

/// Round trips per connection for `clients` connections.
fn trips(clients: usize, quick: bool) -> usize {
    let total = if quick { 40_000 } else { 200_000 };
    (total / clients).max(2)
}

pub(super) fn run(root: &Path, out: &Path, quick: bool) -> anyhow::Result<()> {
    println!("building crates/coro/examples/coro_servers.rs (release)...");
    crate::cargo(
        root,
        &[
            "build",
            "--quiet",
            "--release",
            "--package",
            "coro",
            "--features",
            "patch",
        ],
    )
    .args(["--example", "coro_servers"])
    .status()
    .context("could not run cargo build")?
    .success()
    .then_some(())
    .context("building coro_servers failed")?;
    let bin = crate::target_dir(root).join("release/examples/coro_servers");
    let gevent = gevent_here();
    if let Err(why) = &gevent {
        println!("gevent column skipped: {why}");
    }
    let mut rows = Vec::new();
    for mode in MODES {
        for clients in NS {
            for server in SERVERS {
                if server == "gevent" && gevent.is_err() {
                    continue;
                }
                let mut child = start(root, &bin, server, mode)?;
                let port = read_port(&mut child, server)?;
                let before = listen_overflows();
                let cpu_before = cpu_seconds(child.id());
                let load = Command::new(&bin)
                    .args(["load", &port.to_string(), mode])
                    .args([clients.to_string(), trips(clients, quick).to_string()])
                    .output()
                    .context("could not run the load generator")?;
                let after = listen_overflows();
                let cpu_after = cpu_seconds(child.id());
                stop(child);
                if !load.status.success() {
                    bail!(
                        "load against {server} failed: {}",
                        String::from_utf8_lossy(&load.stderr)
                    );
                }
                let text = String::from_utf8_lossy(&load.stdout);
                let load: Load = serde_json::from_str(text.trim())
                    .with_context(|| format!("bad load output: {text}"))?;
                let row = Row {
                    mode: mode.into(),
                    clients,
                    server: server.into(),
                    server_cpu_s: cpu_before.zip(cpu_after).map(|(b, a)| a - b),
                    listen_overflows: before.zip(after).map(|(b, a)| a.saturating_sub(b)),
                    load,
                };
                println!(
                    "  {mode:4} N={clients:5} {server:8} {:>9.0} req/s",
                    row.load.rps
                );
                rows.push(row);
            }
        }
    }
    print_table(&rows);
    let json = out.join("servers.json");
    std::fs::write(&json, serde_json::to_string_pretty(&rows)?)
        .with_context(|| format!("cannot write {}", json.display()))?;
    println!("\nwrote {}", json.display());
    Ok(())
}

/// Whether python3 with gevent is here; why not, if not.
fn gevent_here() -> Result<(), String> {
    match Command::new("python3")
        .args(["-c", "import gevent"])
        .output()
    {
        Err(e) => Err(format!("python3 not found ({e})")),
        Ok(o) if !o.status.success() => {
            Err("gevent is not installed for python3 (pip install gevent)".into())
        }
        Ok(_) => Ok(()),
    }
}

fn start(root: &Path, bin: &Path, server: &str, mode: &str) -> anyhow::Result<Child> {
    let mut cmd = if server == "gevent" {
        let mut c = Command::new("python3");
        c.arg(root.join("xtask/python/servers.py")).arg(mode);
        c
    } else {
        let mut c = Command::new(bin);
        c.args(["serve", server, mode]);
        c
    };
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| format!("could not start the {server} server"))
}

fn read_port(child: &mut Child, server: &str) -> anyhow::Result<u16> {
    let stdout = child.stdout.take().context("stdout was piped")?;
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line)?;
    line.trim()
        .parse()
        .with_context(|| format!("the {server} server printed no port: {line:?}"))
}

/// Closes the server's stdin (its signal to stop) and reaps it; kills it if it lingers.
fn stop(mut child: Child) {
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.flush();
    }
    for _ in 0..50 {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(40));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// The kernel's `TcpExtListenOverflows` (iproute2's `nstat`), `None` without nstat.
fn listen_overflows() -> Option<u64> {
    let out = Command::new("nstat")
        .args(["-az", "TcpExtListenOverflows"])
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find(|l| l.starts_with("TcpExtListenOverflows"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn print_table(rows: &[Row]) {
    let find = |mode: &str, n: usize, server: &str| {
        rows.iter()
            .find(|r| r.mode == mode && r.clients == n && r.server == server)
    };
    println!(
        "\n{:<5} {:>5}  {:<8} {:>8} {:>9} {:>9} {:>7} {:>7}  {:>9} {:>7} {:>7} {:>5}",
        "load",
        "N",
        "server",
        "req/s",
        "p50",
        "p99",
        "xgevent",
        "xtokio",
        "req/cpu-s",
        "xgevent",
        "xtokio",
        "ovfl"
    );
    for mode in MODES {
        for n in NS {
            for server in SERVERS {
                let Some(r) = find(mode, n, server) else {
                    continue;
                };
                let ratio = |other: &str| {
                    find(mode, n, other)
                        .map(|o| format!("{:.2}", r.load.rps / o.load.rps))
                        .unwrap_or_else(|| "-".into())
                };
                let cpu_ratio = |other: &str| {
                    find(mode, n, other)
                        .and_then(|o| Some(r.per_cpu_s()? / o.per_cpu_s()?))
                        .map_or_else(|| "-".into(), |x| format!("{x:.2}"))
                };
                println!(
                    "{:<5} {:>5}  {:<8} {:>8.0} {:>7.1}ms {:>7.1}ms {:>7} {:>7}  {:>9} {:>7} {:>7} {:>5}",
                    mode,
                    n,
                    server,
                    r.load.rps,
                    r.load.p50_us / 1000.0,
                    r.load.p99_us / 1000.0,
                    ratio("gevent"),
                    ratio("tokio"),
                    r.per_cpu_s()
                        .map_or_else(|| "-".into(), |x| format!("{x:.0}")),
                    cpu_ratio("gevent"),
                    cpu_ratio("tokio"),
                    r.listen_overflows
                        .map_or_else(|| "?".into(), |o| o.to_string()),
                );
            }
        }
    }
}
