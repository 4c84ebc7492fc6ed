//! The reader thread of a Redis pool: this pool's results, and, between reads, the scan for
//! its tasks held by workers whose heartbeat expired (each fails with `WorkerDied` naming the
//! worker's host and pid, or is added again while the pool's retries allow); it reconnects
//! when Redis goes away, failing the tasks in flight.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::{Connection, Value};

use crate::error::PoolError;

use super::super::RedisOptions;
use super::super::conn::{self, GROUP};
use super::super::frame::{self, F_BODY, F_MAC, F_TASK, RemoteOutcome, ResultBody};
use super::{RedisShared, run_completer};

/// Results read per `XREAD`.
const READ_BATCH: usize = 1000;
/// How long the reader blocks for results before it looks at its other duties.
const READ_BLOCK_MS: u64 = 100;
/// Pending entries examined per scan.
const SCAN_LINES: usize = 10_000;

impl RedisShared {
    /// The reader thread: results, the dead-worker scan, reconnection; it ends with the pool.
    ///
    /// Losing the connection fails nothing at once: the tasks in flight fail with
    /// [`PoolError::Broker`] once Redis stayed out of reach for the I/O timeout, or when it
    /// comes back as another run (its `run_id` changed: a restart, which without persistence
    /// forgot them). A Redis back in time as the same run loses nothing.
    pub(super) fn reader_loop(&self) {
        let results = self.keys.results(&self.pool_id);
        let scan_every = (self.options.heartbeat_timeout / 4)
            .clamp(Duration::from_millis(20), Duration::from_millis(500));
        let mut conn: Option<Connection> = None;
        let mut lost: Option<(Instant, PoolError)> = None;
        let mut last = "0-0".to_string();
        let mut last_scan = Instant::now();
        let mut backoff = Duration::from_millis(50);
        while !self.finished() {
            let c = match conn.as_mut() {
                Some(c) => c,
                None => match self.reconnect() {
                    Ok((c, run)) => {
                        backoff = Duration::from_millis(50);
                        if self.observe_run(run) {
                            last = "0-0".to_string();
                        }
                        lost = None;
                        conn.insert(c)
                    }
                    Err(e) => {
                        let (since, first) = lost.get_or_insert((Instant::now(), e));
                        if since.elapsed() >= self.options.io_timeout {
                            self.fail_all(first);
                        }
                        self.pause(backoff);
                        backoff = (backoff * 2).min(Duration::from_secs(1));
                        continue;
                    }
                },
            };
            let read = self.read_results(c, &results, &mut last);
            let scanned = match read {
                Ok(()) if last_scan.elapsed() >= scan_every => {
                    last_scan = Instant::now();
                    self.scan(c)
                }
                other => other,
            };
            if let Err(e) = scanned {
                conn = None;
                lost.get_or_insert((Instant::now(), e));
            }
        }
        if let Some(c) = conn.as_mut() {
            let _ = redis::cmd("DEL").arg(&results).query::<Value>(c);
        }
    }

    /// Waits `d`, or less if the pool changes (terminate).
    fn pause(&self, d: Duration) {
        let st = self.lock();
        if !st.terminated {
            let _ = self.changed.wait_timeout(st, d);
        }
    }

    /// One `XREAD` of this pool's results (trimming what was read before); completes them.
    fn read_results(
        &self,
        c: &mut Connection,
        results: &str,
        last: &mut String,
    ) -> Result<(), PoolError> {
        let mut pipe = redis::pipe();
        pipe.cmd("XTRIM")
            .arg(results)
            .arg("MINID")
            .arg(last.as_str())
            .ignore();
        pipe.cmd("XREAD")
            .arg("COUNT")
            .arg(READ_BATCH)
            .arg("BLOCK")
            .arg(READ_BLOCK_MS)
            .arg("STREAMS")
            .arg(results)
            .arg(last.as_str());
        let (reply,): (Value,) = pipe
            .query(c)
            .map_err(|e| conn::broker_error(&self.url, "lost Redis", &e))?;
        let entries = conn::entries(&reply)
            .map_err(|e| PoolError::Broker(format!("Redis at {}: {e}", self.url)))?;
        for entry in entries {
            *last = entry.id.clone();
            let Some(id) = frame::field(&entry.fields, F_TASK).and_then(frame::checked_task_id)
            else {
                log::warn!("redis pool: a result entry without a task id; dropped");
                continue;
            };
            let Some(task) = self.take(id) else {
                continue;
            };
            let body = frame::field(&entry.fields, F_BODY).unwrap_or_default();
            let signed = self.options.authkey.as_ref().is_none_or(|key| {
                let id = id.to_string();
                let parts: [&[u8]; 3] = [self.pool_id.as_bytes(), id.as_bytes(), body];
                let mac = frame::field(&entry.fields, F_MAC).unwrap_or_default();
                frame::verify(&key.0, &parts, mac)
            });
            let result = if !signed {
                Err(PoolError::Serde(
                    "the result of this task is not signed with this pool's authkey".into(),
                ))
            } else {
                match frame::decode::<ResultBody>(body, self.options.max_frame_bytes) {
                    Ok(r) => outcome_result(r),
                    Err(why) => Err(PoolError::Serde(format!("the result of this task: {why}"))),
                }
            };
            run_completer(task.complete, result);
        }
        Ok(())
    }

    /// Finds this pool's tasks held by workers whose heartbeat expired: each fails with
    /// `WorkerDied` or, while retries allow, is added again.
    fn scan(&self, c: &mut Connection) -> Result<(), PoolError> {
        // Only the range of this pool's own entries: other pools' pending work stays unread.
        let range = {
            let st = self.lock();
            let ids = st.by_entry.keys().filter_map(|e| entry_order(e));
            ids.clone().min().zip(ids.max())
        };
        let Some((first, last)) = range else {
            return Ok(());
        };
        let lost = |e: redis::RedisError| conn::broker_error(&self.url, "lost Redis", &e);
        let reply: Value = redis::cmd("XPENDING")
            .arg(self.keys.tasks())
            .arg(GROUP)
            .arg(format!("{}-{}", first.0, first.1))
            .arg(format!("{}-{}", last.0, last.1))
            .arg(SCAN_LINES)
            .query(c)
            .map_err(lost)?;
        let held: Vec<(String, String)> = {
            let st = self.lock();
            conn::pending(&reply)
                .into_iter()
                .filter(|p| st.by_entry.contains_key(&p.id))
                .map(|p| (p.id, p.consumer))
                .collect()
        };
        if held.is_empty() {
            return Ok(());
        }
        let consumers: Vec<&String> = held
            .iter()
            .map(|(_, c)| c)
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        let mut pipe = redis::pipe();
        for name in &consumers {
            pipe.cmd("EXISTS").arg(self.keys.heartbeat(name));
            pipe.cmd("GET").arg(self.keys.death(name));
        }
        let answers: Vec<Value> = pipe.query(c).map_err(lost)?;
        let mut dead: HashMap<&String, Option<String>> = HashMap::new();
        for (name, pair) in consumers.iter().zip(answers.chunks(2)) {
            if matches!(pair.first(), Some(Value::Int(0))) {
                let note = match pair.get(1) {
                    Some(Value::BulkString(b)) => String::from_utf8(b.clone()).ok(),
                    _ => None,
                };
                dead.insert(*name, note);
            }
        }
        for (entry, consumer) in &held {
            let Some(note) = dead.get(consumer) else {
                continue;
            };
            // Out of the group's books first, so no other pool or scan handles it again.
            let acked: i64 = redis::pipe()
                .cmd("XACK")
                .arg(self.keys.tasks())
                .arg(GROUP)
                .arg(entry)
                .cmd("XDEL")
                .arg(self.keys.tasks())
                .arg(entry)
                .ignore()
                .query::<(i64,)>(c)
                .map_err(lost)?
                .0;
            if acked == 0 {
                continue;
            }
            self.worker_lost(c, entry, consumer, note.as_deref())?;
        }
        Ok(())
    }

    /// The task in `entry` lost its worker: it runs again while retries allow, else fails.
    fn worker_lost(
        &self,
        c: &mut Connection,
        entry: &str,
        consumer: &str,
        note: Option<&str>,
    ) -> Result<(), PoolError> {
        let again = {
            let mut st = self.lock();
            let Some(&id) = st.by_entry.get(entry) else {
                return Ok(());
            };
            st.by_entry.remove(entry);
            let retries = self.retries;
            match st.tasks.get_mut(&id) {
                Some(task) if task.deaths < retries => {
                    task.deaths += 1;
                    task.entry = None;
                    Some((id, Arc::clone(&task.body)))
                }
                _ => {
                    drop(st);
                    let Some(task) = self.take(id) else {
                        return Ok(());
                    };
                    let (host, pid) = conn::parse_consumer(consumer);
                    let (cause, signal) = death_cause(&host, note, &self.options, task.deaths);
                    let what = (task.what)();
                    run_completer(
                        task.complete,
                        Err(PoolError::WorkerDied {
                            pid,
                            cause,
                            signal,
                            what,
                        }),
                    );
                    return Ok(());
                }
            }
        };
        if let Some((id, body)) = again {
            let added: String = self
                .task_cmd(id, &body)
                .query(c)
                .map_err(|e| conn::broker_error(&self.url, "lost Redis", &e))?;
            let mut st = self.lock();
            if let Some(task) = st.tasks.get_mut(&id) {
                task.entry = Some(added.clone());
                st.by_entry.insert(added, id);
            }
        }
        Ok(())
    }
}

/// A stream entry id (`ms-seq`) as a pair that sorts as Redis does.
fn entry_order(id: &str) -> Option<(u64, u64)> {
    let (ms, seq) = id.split_once('-')?;
    Some((ms.parse().ok()?, seq.parse().ok()?))
}

/// Why a worker is taken for dead, and its signal if the process that started it saw one.
fn death_cause(
    host: &str,
    note: Option<&str>,
    options: &RedisOptions,
    deaths: usize,
) -> (String, Option<i32>) {
    let runs = if deaths > 0 {
        format!(" (run {} of this task)", deaths + 1)
    } else {
        String::new()
    };
    match note {
        Some(note) => {
            let signal = note
                .strip_prefix("killed by signal ")
                .and_then(|s| s.split_whitespace().next())
                .and_then(|s| s.parse().ok());
            (format!("{note} on host {host}{runs}"), signal)
        }
        None => (
            format!(
                "no heartbeat from host {host} for {:?}: the worker, its host or the network to it is gone{runs}",
                options.heartbeat_timeout
            ),
            None,
        ),
    }
}

/// A result frame as the pool reports it.
fn outcome_result(r: ResultBody) -> Result<Vec<u8>, PoolError> {
    match r.outcome {
        RemoteOutcome::Value(v) => Ok(v.into_vec()),
        RemoteOutcome::Panicked { message, location } => Err(PoolError::Panicked {
            pid: r.pid,
            message,
            location,
        }),
        RemoteOutcome::Serde(m) => Err(PoolError::Serde(m)),
        RemoteOutcome::BuildMismatch { worker_build } => Err(PoolError::BuildMismatch {
            pool_build: frame::build_id().to_string(),
            worker_build,
            host: r.host,
            pid: r.pid,
        }),
        RemoteOutcome::BadFrame(why) => Err(PoolError::Serde(format!(
            "worker {} on host {} could not read this task's frame: {why}",
            r.pid, r.host
        ))),
    }
}
