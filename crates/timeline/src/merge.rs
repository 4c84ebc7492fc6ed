//! The merge: every process's part file into one `{"traceEvents":[...]}` document.
//!
//! Part files are untrusted in the small: a process killed mid-write may leave a torn last
//! line, so every line is parsed and kept only if it is an object with `ph`, `ts`, `pid` and
//! `tid`.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How long the merge waits for processes still writing their parts.
const WRITER_GRACE: Duration = Duration::from_millis(500);

/// `<path>.parts`: where each process writes its part.
pub(crate) fn parts_dir(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".parts");
    PathBuf::from(name)
}

/// The owner's claim in the parts directory: its pid.
pub(crate) const OWNER_FILE: &str = "owner";

/// Whether `pid` names a running (not exited) process.
pub(crate) fn running(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the parenthesised command name: Z is a zombie, X dead.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

/// The pids of the part files in `parts`.
fn part_pids(parts: &Path) -> Vec<u32> {
    let Ok(dir) = fs::read_dir(parts) else {
        return Vec::new();
    };
    dir.filter_map(|e| {
        let name = e.ok()?.file_name();
        name.to_str()?.strip_suffix(".json")?.parse().ok()
    })
    .collect()
}

/// Merges every part in `parts` into `out` (written whole, then renamed into place), waits up
/// to [`WRITER_GRACE`] for the other processes that have parts and still run, and removes the
/// parts. Returns how many events it wrote.
pub(crate) fn merge(parts: &Path, out: &Path, me: u32) -> io::Result<usize> {
    let deadline = Instant::now() + WRITER_GRACE;
    while Instant::now() < deadline
        && part_pids(parts)
            .into_iter()
            .any(|pid| pid != me && running(pid))
    {
        std::thread::sleep(Duration::from_millis(5));
    }
    let mut events: Vec<(f64, String)> = Vec::new();
    for pid in part_pids(parts) {
        let bytes = fs::read(parts.join(format!("{pid}.json")))?;
        let text = String::from_utf8_lossy(&bytes);
        for line in text.lines() {
            let line = line.trim();
            if let Some(ts) = crate::check::event_ts(line) {
                events.push((ts, line.to_owned()));
            }
        }
    }
    // The order of time (stable: a track's events with equal stamps keep their order).
    events.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut tmp = out.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    {
        let mut file = io::BufWriter::new(fs::File::create(&tmp)?);
        file.write_all(b"{\"traceEvents\":[\n")?;
        for (i, (_, line)) in events.iter().enumerate() {
            if i > 0 {
                file.write_all(b",\n")?;
            }
            file.write_all(line.as_bytes())?;
        }
        file.write_all(b"\n],\"displayTimeUnit\":\"ms\"}\n")?;
        file.flush()?;
    }
    fs::rename(&tmp, out)?;
    let _ = fs::remove_dir_all(parts);
    Ok(events.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn torn_and_foreign_lines_are_left_out_and_the_rest_sorted() {
        let dir = std::env::temp_dir().join(format!("timeline-merge-{}", std::process::id()));
        let parts = parts_dir(&dir.join("t.json"));
        fs::create_dir_all(&parts).unwrap();
        fs::write(
            parts.join("4294000001.json"),
            "{\"ph\":\"i\",\"ts\":5.0,\"pid\":1,\"tid\":1}\n\
             {\"ph\":\"i\",\"ts\":1.0,\"pid\":1,\"tid\":1}\n\
             not json\n{\"ts\":2.0,\"pid\":1,\"tid\":1}\n{\"ph\":\"B\",\"ts\":3",
        )
        .unwrap();
        fs::write(
            parts.join("4294000002.json"),
            "{\"ph\":\"i\",\"ts\":2.0,\"pid\":2,\"tid\":2}\n",
        )
        .unwrap();
        let out = dir.join("t.json");
        assert_eq!(merge(&parts, &out, 4294000001).unwrap(), 3);
        let doc: serde_json::Value =
            serde_json::from_str(&fs::read_to_string(&out).unwrap()).unwrap();
        let ts: Vec<f64> = doc["traceEvents"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["ts"].as_f64().unwrap())
            .collect();
        assert_eq!(ts, [1.0, 2.0, 5.0]);
        assert!(!parts.exists());
        let _ = fs::remove_dir_all(&dir);
    }
}
