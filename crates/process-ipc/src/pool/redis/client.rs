//! The submitting side of a Redis pool: tasks go out with `XADD` (one pipeline per submit),
//! a reader thread takes results from this pool's own stream, and, between reads, looks for
//! tasks held by workers whose heartbeat expired: each such task fails with
//! [`PoolError::WorkerDied`] naming the worker's host and pid, or runs again while the pool's
//! retries allow.

use std::collections::{HashMap, HashSet};
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use redis::{Client, Connection, Value};
use serde_bytes::ByteBuf;

use crate::error::PoolError;

use super::super::collector::{Completer, Describe};
use super::super::schedule::TaskId;
use super::RedisOptions;
use super::conn::{self, GROUP, Keys};
use super::frame::{self, F_BODY, F_BUILD, F_POOL, F_TASK, RemoteOutcome, ResultBody, TaskBody};

/// Results read per `XREAD`.
const READ_BATCH: usize = 1000;
/// How long the reader blocks for results before it looks at its other duties.
const READ_BLOCK_MS: u64 = 100;
/// Tasks added per pipeline.
const SUBMIT_BATCH: usize = 2000;
/// Pending entries examined per scan.
const SCAN_LINES: usize = 10_000;

/// Withdraws a set of entries only if no worker has read any of them yet.
const CANCEL_SCRIPT: &str = r"
for _, id in ipairs(ARGV) do
  if #redis.call('XPENDING', KEYS[1], 'workers', id, id, 1) > 0 then return 0 end
  if #redis.call('XRANGE', KEYS[1], id, id) == 0 then return 0 end
end
for _, id in ipairs(ARGV) do redis.call('XDEL', KEYS[1], id) end
return 1
";

struct Task {
    /// Its entry in the tasks stream, once added.
    entry: Option<String>,
    body: Arc<Vec<u8>>,
    what: Describe,
    complete: Completer,
    deaths: usize,
}

#[derive(Default)]
struct State {
    tasks: HashMap<TaskId, Task>,
    by_entry: HashMap<String, TaskId>,
    next_id: TaskId,
    closed: bool,
    terminated: bool,
}

/// What a Redis pool's API and its reader thread share.
pub(in crate::pool) struct RedisShared {
    url: String,
    client: Client,
    keys: Keys,
    options: RedisOptions,
    pool_id: String,
    processes: usize,
    retries: usize,
    /// The API's connection (submit, cancel, pids), opened again after a failure.
    conn: Mutex<Option<Connection>>,
    state: Mutex<State>,
    changed: Condvar,
}

fn run_completer(complete: Completer, result: Result<Vec<u8>, PoolError>) {
    // A panicking user callback must not take the reader down with it.
    let _ = std::panic::catch_unwind(AssertUnwindSafe(move || complete(result)));
}

/// Connects, makes sure the group exists, and starts the reader.
pub(in crate::pool) fn start(
    url: &str,
    options: RedisOptions,
    processes: usize,
    retries: usize,
) -> Result<(Arc<RedisShared>, JoinHandle<()>), PoolError> {
    let client = Client::open(url).map_err(|e| conn::broker_error(url, "bad Redis URL", &e))?;
    let keys = Keys::new(&options.namespace);
    let mut first = conn::connect(&client, options.io_timeout)
        .map_err(|e| conn::broker_error(url, "cannot connect to Redis", &e))?;
    conn::ensure_group(&mut first, &keys.tasks())
        .map_err(|e| conn::broker_error(url, "cannot create the consumer group", &e))?;
    let shared = Arc::new(RedisShared {
        url: url.to_string(),
        client,
        keys,
        options,
        pool_id: frame::random_id(8),
        processes,
        retries,
        conn: Mutex::new(Some(first)),
        state: Mutex::new(State::default()),
        changed: Condvar::new(),
    });
    let reading = Arc::clone(&shared);
    let reader = std::thread::Builder::new()
        .name("process-ipc-redis-pool-reader".into())
        .spawn(move || reading.reader_loop())
        .map_err(|e| PoolError::Spawn(e.to_string()))?;
    Ok((shared, reader))
}

impl RedisShared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` on the API connection, opening it first if needed; a failure drops it.
    fn with_conn<T>(
        &self,
        what: &str,
        f: impl FnOnce(&mut Connection) -> redis::RedisResult<T>,
    ) -> Result<T, PoolError> {
        let mut guard = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        if guard.is_none() {
            let mut c = conn::connect(&self.client, self.options.io_timeout)
                .map_err(|e| conn::broker_error(&self.url, "cannot connect to Redis", &e))?;
            conn::ensure_group(&mut c, &self.keys.tasks())
                .map_err(|e| conn::broker_error(&self.url, "cannot create the group", &e))?;
            *guard = Some(c);
        }
        let c = guard.as_mut().expect("opened above");
        f(c).map_err(|e| {
            *guard = None;
            conn::broker_error(&self.url, what, &e)
        })
    }

    /// The number of workers the pool plans for (the `map` chunk size follows it).
    pub(in crate::pool) fn size(&self) -> usize {
        self.processes
    }

    /// The pids of the workers whose heartbeat is current, on every host, sorted; empty if
    /// Redis cannot be asked.
    pub(in crate::pool) fn pids(&self) -> Vec<u32> {
        let names: Vec<String> = self
            .with_conn("cannot list the workers", |c| {
                redis::cmd("SMEMBERS").arg(self.keys.workers()).query(c)
            })
            .unwrap_or_default();
        let live = self.live(&names).unwrap_or_default();
        let mut pids: Vec<u32> = names
            .iter()
            .zip(live)
            .filter(|(_, alive)| *alive)
            .map(|(name, _)| conn::parse_consumer(name).1)
            .collect();
        pids.sort_unstable();
        pids
    }

    /// Whether each named worker's heartbeat is current.
    fn live(&self, names: &[String]) -> Result<Vec<bool>, PoolError> {
        if names.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for name in names {
            pipe.cmd("EXISTS").arg(self.keys.heartbeat(name));
        }
        self.with_conn("cannot read heartbeats", |c| pipe.query(c))
    }

    /// Adds tasks to the tasks stream (all, or none if Redis fails: the error says so).
    pub(in crate::pool) fn submit(
        &self,
        tasks: Vec<(isize, Vec<u8>, Describe, Completer)>,
    ) -> Result<Vec<TaskId>, PoolError> {
        let mut bodies = Vec::with_capacity(tasks.len());
        for (call, args, _, _) in &tasks {
            let body = postcard::to_stdvec(&TaskBody {
                call: *call as i64,
                args: ByteBuf::from(args.clone()),
            })
            .map_err(|e| PoolError::Serde(e.to_string()))?;
            if body.len() > self.options.max_frame_bytes {
                return Err(PoolError::Serde(format!(
                    "a task of {} bytes is over the Redis pool's frame limit of {} bytes",
                    body.len(),
                    self.options.max_frame_bytes
                )));
            }
            #[cfg(feature = "test-fault")]
            let body = super::scribbled(body);
            bodies.push(Arc::new(body));
        }
        let ids: Vec<TaskId> = {
            let mut st = self.lock();
            if st.closed || st.terminated {
                return Err(PoolError::Closed);
            }
            let mut ids = Vec::with_capacity(tasks.len());
            for ((_, _, what, complete), body) in tasks.into_iter().zip(&bodies) {
                let id = st.next_id;
                st.next_id += 1;
                ids.push(id);
                let task = Task {
                    entry: None,
                    body: Arc::clone(body),
                    what,
                    complete,
                    deaths: 0,
                };
                st.tasks.insert(id, task);
            }
            ids
        };
        let added = self.add(ids.iter().copied().zip(bodies.iter().map(|b| &b[..])));
        let mut st = self.lock();
        match added {
            Ok(entries) => {
                for (id, entry) in ids.iter().zip(entries) {
                    // A fast worker may have answered already: then there is nothing to note.
                    if let Some(task) = st.tasks.get_mut(id) {
                        task.entry = Some(entry.clone());
                        st.by_entry.insert(entry, *id);
                    }
                }
                Ok(ids)
            }
            Err(e) => {
                // No result handle exists for these: they simply never were.
                for id in &ids {
                    st.tasks.remove(id);
                }
                self.changed.notify_all();
                Err(e)
            }
        }
    }

    /// `XADD`s the given tasks, in pipelines; their entry ids in order.
    fn add<'a>(
        &self,
        tasks: impl Iterator<Item = (TaskId, &'a [u8])>,
    ) -> Result<Vec<String>, PoolError> {
        let tasks: Vec<(TaskId, &[u8])> = tasks.collect();
        let mut entries = Vec::with_capacity(tasks.len());
        for batch in tasks.chunks(SUBMIT_BATCH) {
            let mut pipe = redis::pipe();
            for (id, body) in batch {
                pipe.cmd("XADD")
                    .arg(self.keys.tasks())
                    .arg("*")
                    .arg(F_POOL)
                    .arg(&self.pool_id)
                    .arg(F_TASK)
                    .arg(id.to_string())
                    .arg(F_BUILD)
                    .arg(frame::build_id())
                    .arg(F_BODY)
                    .arg(*body);
            }
            let got: Vec<String> = self.with_conn("cannot add tasks", |c| pipe.query(c))?;
            entries.extend(got);
        }
        Ok(entries)
    }

    /// Withdraws tasks no worker has read yet (all or none); true if it did.
    pub(in crate::pool) fn cancel(&self, ids: &[TaskId]) -> bool {
        let entries: Option<Vec<String>> = {
            let st = self.lock();
            ids.iter()
                .map(|id| st.tasks.get(id).and_then(|t| t.entry.clone()))
                .collect()
        };
        let Some(entries) = entries else {
            return false;
        };
        let withdrawn: Result<i64, PoolError> = self.with_conn("cannot cancel", |c| {
            redis::cmd("EVAL")
                .arg(CANCEL_SCRIPT)
                .arg(1)
                .arg(self.keys.tasks())
                .arg(&entries)
                .query(c)
        });
        if withdrawn.ok() != Some(1) {
            return false;
        }
        let tasks: Vec<Task> = {
            let mut st = self.lock();
            for entry in &entries {
                st.by_entry.remove(entry);
            }
            let tasks = ids.iter().filter_map(|id| st.tasks.remove(id)).collect();
            self.changed.notify_all();
            tasks
        };
        for task in tasks {
            run_completer(task.complete, Err(PoolError::Cancelled));
        }
        true
    }

    /// No new tasks.
    pub(in crate::pool) fn close(&self) {
        self.lock().closed = true;
        self.changed.notify_all();
    }

    /// Waits until every task is done (after `close`) or the pool is terminated.
    pub(in crate::pool) fn join_until(
        &self,
        deadline: Option<(Instant, Duration)>,
    ) -> Result<(), PoolError> {
        let mut st = self.lock();
        if !st.closed && !st.terminated {
            return Err(PoolError::StillOpen);
        }
        while !st.terminated && !st.tasks.is_empty() {
            st = match deadline {
                None => self.changed.wait(st).unwrap_or_else(|p| p.into_inner()),
                Some((at, timeout)) => {
                    let now = Instant::now();
                    if now >= at {
                        return Err(PoolError::Timeout { timeout });
                    }
                    self.changed
                        .wait_timeout(st, at - now)
                        .unwrap_or_else(|p| p.into_inner())
                        .0
                }
            };
        }
        Ok(())
    }

    /// Fails every unfinished task with [`PoolError::Terminated`] and withdraws those no
    /// worker has read. Workers on other hosts cannot be killed from here: a task already
    /// running finishes there, and its result is dropped.
    pub(in crate::pool) fn terminate(&self) {
        let tasks: Vec<Task> = {
            let mut st = self.lock();
            st.terminated = true;
            st.by_entry.clear();
            let tasks = st.tasks.drain().map(|(_, t)| t).collect();
            self.changed.notify_all();
            tasks
        };
        let entries: Vec<&String> = tasks.iter().filter_map(|t| t.entry.as_ref()).collect();
        if !entries.is_empty() {
            let _ = self.with_conn("cannot withdraw tasks", |c| {
                redis::cmd("XDEL")
                    .arg(self.keys.tasks())
                    .arg(&entries)
                    .query::<Value>(c)
            });
        }
        for task in tasks {
            run_completer(task.complete, Err(PoolError::Terminated));
        }
    }

    /// Fails every task in flight with `err` (the connection to Redis was lost with them).
    fn fail_all(&self, err: &PoolError) {
        let tasks: Vec<Task> = {
            let mut st = self.lock();
            st.by_entry.clear();
            let tasks = st.tasks.drain().map(|(_, t)| t).collect();
            self.changed.notify_all();
            tasks
        };
        for task in tasks {
            run_completer(task.complete, Err(err.clone()));
        }
    }

    /// Takes the task with this id out of the pool's books, if it is still there.
    fn take(&self, id: TaskId) -> Option<Task> {
        let mut st = self.lock();
        let task = st.tasks.remove(&id)?;
        if let Some(entry) = &task.entry {
            st.by_entry.remove(entry);
        }
        self.changed.notify_all();
        Some(task)
    }

    fn finished(&self) -> bool {
        let st = self.lock();
        st.terminated || (st.closed && st.tasks.is_empty())
    }

    /// The reader thread: results, the dead-worker scan, reconnection; it ends with the pool.
    fn reader_loop(&self) {
        let results = self.keys.results(&self.pool_id);
        let scan_every = (self.options.heartbeat_timeout / 4)
            .clamp(Duration::from_millis(20), Duration::from_millis(500));
        let mut conn: Option<Connection> = None;
        let mut last = "0-0".to_string();
        let mut last_scan = Instant::now();
        let mut backoff = Duration::from_millis(50);
        while !self.finished() {
            let c = match conn.as_mut() {
                Some(c) => c,
                None => match conn::connect(&self.client, self.options.io_timeout) {
                    Ok(c) => {
                        backoff = Duration::from_millis(50);
                        conn.insert(c)
                    }
                    Err(e) => {
                        self.fail_all(&conn::broker_error(&self.url, "lost Redis", &e));
                        self.pause(backoff);
                        backoff = (backoff * 2).min(Duration::from_secs(1));
                        continue;
                    }
                },
            };
            if let Err(e) = self.read_results(c, &results, &mut last) {
                conn = None;
                self.fail_all(&e);
                continue;
            }
            if last_scan.elapsed() >= scan_every {
                last_scan = Instant::now();
                if let Err(e) = self.scan(c) {
                    conn = None;
                    self.fail_all(&e);
                }
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
            let result = match frame::decode::<ResultBody>(body, self.options.max_frame_bytes) {
                Ok(r) => outcome_result(r),
                Err(why) => Err(PoolError::Serde(format!("the result of this task: {why}"))),
            };
            run_completer(task.complete, result);
        }
        Ok(())
    }

    /// Finds this pool's tasks held by workers whose heartbeat expired: each fails with
    /// `WorkerDied` or, while retries allow, is added again.
    fn scan(&self, c: &mut Connection) -> Result<(), PoolError> {
        if self.lock().by_entry.is_empty() {
            return Ok(());
        }
        let lost = |e: redis::RedisError| conn::broker_error(&self.url, "lost Redis", &e);
        let reply: Value = redis::cmd("XPENDING")
            .arg(self.keys.tasks())
            .arg(GROUP)
            .arg("-")
            .arg("+")
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
            let added: String = redis::cmd("XADD")
                .arg(self.keys.tasks())
                .arg("*")
                .arg(F_POOL)
                .arg(&self.pool_id)
                .arg(F_TASK)
                .arg(id.to_string())
                .arg(F_BUILD)
                .arg(frame::build_id())
                .arg(F_BODY)
                .arg(&body[..])
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
