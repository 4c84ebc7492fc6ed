//! The check of a soak's histories: what each invariant of `cargo xtask soak` (see mod.rs)
//! becomes in the lines its processes wrote, and the table.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// A late return allowed past a call's timeout.
const SLACK_NS: u64 = 50_000_000;
/// Descriptors (all memfds) the soak's own process may hold more at the end than after its
/// warm-up: process-ipc keeps small blocks that nothing maps any more for reuse, each with its
/// descriptor open, and at most `REUSE_MAX_COUNT` (16) of them
/// (crates/process-ipc/src/shared/mapping.rs); a run with more objects alive at once fills
/// more of that cache than the warm-up did. Nothing else of the crate holds a memfd once its
/// handles are dropped and its children are dead (blocks sent to a child at its start are
/// held only until the child has attached them), so anything past the cache's bound is a
/// leak.
const CACHED_BLOCKS: i64 = 16;

/// Every `*.log` history in `dir` but the soak's own, with its text.
pub(super) fn histories(dir: &Path) -> anyhow::Result<Vec<(PathBuf, String)>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir)? {
        let path = e?.path();
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
        if path.extension().is_some_and(|x| x == "log")
            && !matches!(name.as_deref(), Some("kills.log" | "leaks.log"))
        {
            let text = std::fs::read_to_string(&path)?;
            out.push((path, text));
        }
    }
    Ok(out)
}

/// One queue's counts.
#[derive(Default, Debug)]
pub(crate) struct Stream {
    put: usize,
    delivered: usize,
    duplicates: usize,
    lost_in_feeder: usize,
    lost_by_kill: usize,
    reader_kills: usize,
    /// Items got that no history shows put (their putter died before writing it down).
    unrecorded: usize,
}

/// What the check found.
#[derive(Default, Debug)]
pub(crate) struct Report {
    streams: [Stream; 3],
    kills: HashMap<String, usize>,
    stops: usize,
    calls: usize,
    overruns: usize,
    max_over_ns: i64,
    owner_died: usize,
    after_death_ok: usize,
    tasks: HashMap<String, usize>,
    leaks: Vec<(String, String)>,
    pub(super) shm_new: usize,
    pub(crate) violations: Vec<String>,
}

/// The shared `Queue`, the Manager's queue, the `Queue` with a lone reader.
const STREAMS: [&str; 3] = ["Q", "M", "L"];

/// The pid a history's file name ends with (0 if none).
fn pid_of_history(path: &Path) -> u32 {
    path.file_stem()
        .and_then(|stem| stem.to_str())
        .and_then(|stem| stem.rsplit('-').next())
        .and_then(|pid| pid.parse().ok())
        .unwrap_or(0)
}

/// Reads the histories in `dir` and checks them.
pub(crate) fn check(dir: &Path) -> anyhow::Result<Report> {
    let mut r = Report::default();
    let kills_text = std::fs::read_to_string(dir.join("kills.log")).unwrap_or_default();
    let mut killed: HashMap<u32, String> = HashMap::new();
    let mut stop_at: HashMap<u32, u64> = HashMap::new();
    let mut stopped: HashMap<u32, Vec<(u64, u64)>> = HashMap::new();
    for line in kills_text.lines() {
        let f: Vec<&str> = line.split(' ').collect();
        let pid = || f.get(1).and_then(|p| p.parse::<u32>().ok()).unwrap_or(0);
        let at = || f.get(2).and_then(|p| p.parse::<u64>().ok()).unwrap_or(0);
        match f[0] {
            "K" => {
                let role = f.get(2).copied().unwrap_or("?").to_string();
                *r.kills.entry(role.clone()).or_default() += 1;
                killed.insert(pid(), role);
            }
            "STOP" => {
                r.stops += 1;
                stop_at.insert(pid(), at());
            }
            "CONT" => {
                if let Some(from) = stop_at.remove(&pid()) {
                    stopped.entry(pid()).or_default().push((from, at()));
                }
            }
            "H" => r.violations.push(format!(
                "{} {} did not stop when asked",
                f.get(2).unwrap_or(&"?"),
                pid()
            )),
            _ => {}
        }
    }
    for (pid, from) in stop_at {
        stopped.entry(pid).or_default().push((from, u64::MAX));
    }

    // Per stream: who put each id, each putter's last flushed id, how often each id was got.
    let mut put: [HashMap<u64, u32>; 3] = Default::default();
    let mut flushed: [HashMap<u32, u64>; 3] = Default::default();
    let mut got: [HashMap<u64, usize>; 3] = Default::default();
    // (slot, generation) of each producer process: the ids it would put.
    let mut producer_of: HashMap<(String, u64), u32> = HashMap::new();
    for (path, text) in histories(dir)? {
        let mut lines = text.lines();
        let head: Vec<&str> = lines.next().unwrap_or("").split(' ').collect();
        let (role, pid) = match head.as_slice() {
            ["S", role, pid, ..] => (role.to_string(), pid.parse::<u32>().unwrap_or(0)),
            // A process killed between creating its history and writing the first line leaves
            // an empty file (`<role>-<slot>-<generation>-<pid>.log`): nothing to check.
            _ if text.is_empty() && killed.contains_key(&pid_of_history(&path)) => continue,
            _ => {
                r.violations
                    .push(format!("{}: no start line", path.display()));
                continue;
            }
        };
        if let ["S", _, _, slot, generation] = head.as_slice() {
            let (slot, generation) = (slot.parse().unwrap_or(0), generation.parse().unwrap_or(0));
            producer_of.insert((role.clone(), (slot << 16) | generation), pid);
        }
        let mut ended = false;
        for line in lines {
            let f: Vec<&str> = line.split(' ').collect();
            let s = |f: &[&str]| STREAMS.iter().position(|x| Some(x) == f.get(1));
            let num = |i: usize| f.get(i).and_then(|x| x.parse::<u64>().ok()).unwrap_or(0);
            match f[0] {
                "P" => {
                    if let Some(s) = s(&f) {
                        put[s].insert(num(2), pid);
                    }
                }
                "F" => {
                    if let Some(s) = s(&f) {
                        let e = flushed[s].entry(pid).or_default();
                        *e = (*e).max(num(2));
                    }
                }
                "G" => {
                    if let Some(s) = s(&f) {
                        *got[s].entry(num(2)).or_default() += 1;
                    }
                }
                "C" => {
                    r.calls += 1;
                    let (start, end, timeout) = (num(2), num(3), num(4));
                    let paused: u64 = stopped
                        .get(&pid)
                        .map(|v| {
                            v.iter()
                                .map(|&(a, b)| end.min(b).saturating_sub(start.max(a)))
                                .sum()
                        })
                        .unwrap_or(0);
                    // Time stopped by the soak, or runnable with no CPU free (the 6th field,
                    // from the thread's schedstat), is not the call's.
                    let queued = num(6);
                    let over = end
                        .saturating_sub(start)
                        .saturating_sub(paused)
                        .saturating_sub(queued) as i64
                        - timeout as i64;
                    r.max_over_ns = r.max_over_ns.max(over);
                    if over > SLACK_NS as i64 {
                        r.overruns += 1;
                        if r.overruns <= 5 {
                            r.violations.push(format!(
                                "{role} {pid}: {} returned {} ms past its timeout",
                                f[1],
                                over / 1_000_000
                            ));
                        }
                    }
                }
                "L" => match f.get(1) {
                    Some(&"owner-died") => r.owner_died += 1,
                    Some(&"after-death") if f.get(2) == Some(&"ok") => r.after_death_ok += 1,
                    Some(&"after-death") => r.violations.push(format!(
                        "{role} {pid}: the lock could not be taken after OwnerDied: {line}"
                    )),
                    _ => {}
                },
                "T" => {
                    *r.tasks
                        .entry(f.get(1).unwrap_or(&"?").to_string())
                        .or_default() += 1
                }
                "X" => r.violations.push(format!("{role} {pid}: {}", &line[2..])),
                "E" => ended = true,
                _ => {}
            }
        }
        if !ended && !killed.contains_key(&pid) {
            r.violations.push(format!(
                "{role} {pid} ended without finishing and was not killed"
            ));
        }
    }

    let reader_roles = [["consumer"], ["mconsumer"], ["lconsumer"]];
    let producer_roles = ["producer", "mproducer", "lproducer"];
    for s in 0..3 {
        let st = &mut r.streams[s];
        st.put = put[s].len();
        st.delivered = got[s].len();
        st.reader_kills = reader_roles[s]
            .iter()
            .map(|role| r.kills.get(*role).copied().unwrap_or(0))
            .sum();
        for (&id, &n) in &got[s] {
            if n > 1 {
                st.duplicates += n - 1;
            }
            if !put[s].contains_key(&id) {
                // Its putter died between the put and writing it down?
                let key = (producer_roles[s].to_string(), id >> 32);
                match producer_of.get(&key) {
                    Some(pid) if killed.contains_key(pid) => st.unrecorded += 1,
                    _ => r.violations.push(format!(
                        "stream {}: item {id:#x} got but never put",
                        STREAMS[s]
                    )),
                }
            }
        }
        for (&id, &pid) in &put[s] {
            if got[s].contains_key(&id) {
                continue;
            }
            let flushed_to = flushed[s].get(&pid).copied().unwrap_or(0);
            if killed.contains_key(&pid) && id > flushed_to {
                st.lost_in_feeder += 1;
            } else {
                st.lost_by_kill += 1;
            }
        }
        if st.duplicates > 0 {
            r.violations.push(format!(
                "stream {}: {} item(s) delivered twice",
                STREAMS[s], st.duplicates
            ));
        }
        if st.lost_by_kill > st.reader_kills {
            r.violations.push(format!(
                "stream {}: {} item(s) lost, more than the {} reader(s) killed",
                STREAMS[s], st.lost_by_kill, st.reader_kills
            ));
        }
    }
    if r.overruns > 5 {
        r.violations
            .push(format!("... {} deadline overruns in all", r.overruns));
    }
    if r.owner_died > r.after_death_ok {
        r.violations.push(format!(
            "the lock was taken after only {} of {} OwnerDied",
            r.after_death_ok, r.owner_died
        ));
    }
    for t in ["wrong", "error"] {
        if let Some(n) = r.tasks.get(t) {
            r.violations.push(format!("{n} pool task(s) {t}"));
        }
    }

    let leaks = std::fs::read_to_string(dir.join("leaks.log")).unwrap_or_default();
    if leaks.is_empty() {
        r.violations
            .push("no leaks.log: the soak did not reach its end".into());
    }
    let mut new_fds = Vec::new();
    for line in leaks.lines() {
        let f: Vec<&str> = line.splitn(3, ' ').collect();
        match f.as_slice() {
            [what, before, after] if what.ends_with("fds") => {
                let (b, a): (i64, i64) = (before.parse().unwrap_or(0), after.parse().unwrap_or(0));
                r.leaks.push((what.to_string(), format!("{:+}", a - b)));
                let allowed = if what.starts_with("server") {
                    0
                } else {
                    CACHED_BLOCKS
                };
                if a - b > allowed {
                    r.violations
                        .push(format!("{what}: {before} before, {after} after"));
                }
            }
            ["zombies" | "leftover", n, ..] => {
                r.leaks.push((f[0].to_string(), n.to_string()));
                if *n != "0" {
                    r.violations.push(line.to_string());
                }
            }
            ["new-fd", fd, target] => new_fds.push(format!("{fd} {target}")),
            [what, _] if what.starts_with("memfds-after-dropping") => {}
            [what, rest @ ..] => r.leaks.push((what.to_string(), rest.join(" "))),
            _ => {}
        }
    }
    if r.violations
        .iter()
        .any(|v| v.starts_with("fds") || v.starts_with("memfds"))
    {
        for fd in new_fds {
            r.violations
                .push(format!("the soak's descriptor left open: {fd}"));
        }
    }
    Ok(r)
}

impl Report {
    pub(super) fn table(&self) -> String {
        let mut t = String::new();
        t.push_str(&format!(
            "  {:<36} {:>12} {:>12} {:>12}\n",
            "", "Queue", "Manager q", "lone-reader q"
        ));
        let mut row = |name: &str, cell: &dyn Fn(&Stream) -> String| {
            t.push_str(&format!("  {name:<36}"));
            for st in &self.streams {
                t.push_str(&format!(" {:>12}", cell(st)));
            }
            t.push('\n');
        };
        row("items put (put returned)", &|s| s.put.to_string());
        row("items delivered", &|s| s.delivered.to_string());
        row("duplicates", &|s| s.duplicates.to_string());
        row("lost-by-kill (bound: readers killed)", &|s| {
            format!("{} ({})", s.lost_by_kill, s.reader_kills)
        });
        row("lost in a killed putter's feeder", &|s| {
            s.lost_in_feeder.to_string()
        });
        row("got, put not written down (killed)", &|s| {
            s.unrecorded.to_string()
        });
        let mut kills: Vec<_> = self.kills.iter().collect();
        kills.sort();
        let total: usize = self.kills.values().sum();
        t.push_str(&format!(
            "  kills (SIGKILL)                      {total}: {}\n",
            kills
                .iter()
                .map(|(k, n)| format!("{k} {n}"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
        t.push_str(&format!(
            "  stops (SIGSTOP, then SIGCONT)        {}\n",
            self.stops
        ));
        t.push_str(&format!(
            "  deadline overruns (> timeout+50 ms, CPU waits aside)  {} of {} calls; largest overrun {:.1} ms\n",
            self.overruns,
            self.calls,
            self.max_over_ns as f64 / 1e6
        ));
        t.push_str(&format!(
            "  lock: OwnerDied                      {}, taken again after {}\n",
            self.owner_died, self.after_death_ok
        ));
        let mut tasks: Vec<_> = self.tasks.iter().collect();
        tasks.sort();
        t.push_str(&format!(
            "  pool tasks                           {}\n",
            tasks
                .iter()
                .map(|(k, n)| format!("{k} {n}"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
        t.push_str(&format!(
            "  leaks                                {}, new /dev/shm entries {}\n",
            self.leaks
                .iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect::<Vec<_>>()
                .join(", "),
            self.shm_new
        ));
        t.push_str(&format!(
            "  violations                           {}\n",
            self.violations.len()
        ));
        for v in self.violations.iter().take(30) {
            t.push_str(&format!("    - {v}\n"));
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir_with(files: &[(&str, &str)]) -> PathBuf {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "xtask-soak-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        for (name, text) in files {
            std::fs::write(dir.join(name), text).unwrap();
        }
        dir
    }

    const LEAKS: &str = "fds 10 10\nmemfds 0 0\nzombies 0\nleftover 0 []\n";

    #[test]
    fn a_clean_history_passes() {
        let dir = dir_with(&[
            (
                "producer-0-0-10.log",
                "S producer 10 0 0\nP Q 1\nP Q 2\nF Q 2\nE\n",
            ),
            (
                "consumer-0-0-11.log",
                "S consumer 11 0 0\nG Q 1\nC get 0 100 200 ok\nG Q 2\nE\n",
            ),
            ("kills.log", ""),
            ("leaks.log", LEAKS),
        ]);
        let r = check(&dir).unwrap();
        assert!(r.violations.is_empty(), "{:?}", r.violations);
        assert_eq!(r.streams[0].delivered, 2);
    }

    #[test]
    fn time_waiting_for_a_cpu_is_not_an_overrun_and_the_rest_still_is() {
        let run = |call: &str| {
            let history = format!("S consumer 11 0 0\n{call}\nE\n");
            let dir = dir_with(&[
                ("consumer-0-0-11.log", &history),
                ("kills.log", ""),
                ("leaks.log", LEAKS),
            ]);
            check(&dir).unwrap().violations.join("\n")
        };
        // 400 ms for a 200 ms timeout, 190 of them in the run queue: on time.
        assert_eq!(run("C get 0 400000000 200000000 ok 190000000"), "");
        // Only 100 of them in the run queue: still 100 ms past its timeout.
        assert!(run("C get 0 400000000 200000000 ok 100000000").contains("past its timeout"));
    }

    #[test]
    fn an_empty_history_is_fine_only_for_a_process_killed_before_its_first_line() {
        let files = |kills| {
            dir_with(&[
                ("consumer-1-4-12.log", ""),
                ("kills.log", kills),
                ("leaks.log", LEAKS),
            ])
        };
        let r = check(&files("K 12 consumer 5\n")).unwrap();
        assert!(r.violations.is_empty(), "{:?}", r.violations);
        let r = check(&files("K 13 consumer 5\n")).unwrap();
        assert!(
            r.violations.join("\n").contains("no start line"),
            "{:?}",
            r.violations
        );
    }

    #[test]
    fn a_duplicate_a_loss_past_the_bound_and_an_overrun_are_violations() {
        let dir = dir_with(&[
            (
                "producer-0-0-10.log",
                "S producer 10 0 0\nP Q 1\nP Q 2\nP Q 3\nF Q 3\nE\n",
            ),
            (
                "consumer-0-0-11.log",
                "S consumer 11 0 0\nG Q 1\nG Q 1\nC get 0 400000000 200000000 ok\n",
            ),
            ("kills.log", "K 11 consumer\n"),
            ("leaks.log", LEAKS),
        ]);
        let r = check(&dir).unwrap();
        let all = r.violations.join("\n");
        assert!(all.contains("delivered twice"), "{all}");
        assert!(all.contains("2 item(s) lost, more than the 1"), "{all}");
        assert!(all.contains("past its timeout"), "{all}");
    }

    #[test]
    fn time_stopped_by_the_soak_does_not_count_as_an_overrun_and_an_unflushed_item_of_a_killed_putter_may_go()
     {
        let dir = dir_with(&[
            (
                "producer-0-0-10.log",
                "S producer 10 0 0\nP Q 1\nF Q 1\nP Q 2\n",
            ),
            (
                "consumer-0-0-11.log",
                "S consumer 11 0 0\nG Q 1\nC get 0 400000000 200000000 ok\nE\n",
            ),
            (
                "kills.log",
                "STOP 11 100000000\nCONT 11 350000000\nK 10 producer\n",
            ),
            ("leaks.log", LEAKS),
        ]);
        let r = check(&dir).unwrap();
        assert!(r.violations.is_empty(), "{:?}", r.violations);
        assert_eq!(r.streams[0].lost_in_feeder, 1);
        assert_eq!(r.overruns, 0);
    }

    #[test]
    fn leaks_and_an_unasked_death_are_violations() {
        let dir = dir_with(&[
            ("consumer-0-0-11.log", "S consumer 11 0 0\n"),
            ("kills.log", ""),
            ("leaks.log", "fds 10 30\nzombies 1\nleftover 0 []\n"),
        ]);
        let r = check(&dir).unwrap();
        let all = r.violations.join("\n");
        assert!(all.contains("fds: 10 before, 30 after"), "{all}");
        assert!(all.contains("zombies 1"), "{all}");
        assert!(all.contains("was not killed"), "{all}");
    }
}
