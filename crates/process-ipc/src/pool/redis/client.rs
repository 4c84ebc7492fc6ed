//! The submitting side of a Redis pool: its books (which task is which stream entry), tasks
//! going out with `XADD` (one pipeline per submit), cancel, close, join and terminate. The
//! reader thread ([`reader`]) takes results and finds tasks whose worker died.

use std::collections::HashMap;
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
use super::conn::{self, Keys};
use super::frame::{self, F_BODY, F_BUILD, F_MAC, F_POOL, F_TASK, TaskBody};

mod reader;

/// Tasks added per pipeline.
const SUBMIT_BATCH: usize = 2000;

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
    /// The `run_id` of the Redis the tasks in `by_entry` were added to.
    run_id: Option<String>,
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
    let shared = Arc::new(RedisShared {
        url: url.to_string(),
        client,
        keys,
        options,
        pool_id: frame::random_id(8),
        processes,
        retries,
        conn: Mutex::new(None),
        state: Mutex::new(State::default()),
        changed: Condvar::new(),
    });
    // Reach Redis now, so a wrong address fails the build.
    shared.with_conn("cannot reach Redis", |_| Ok(()))?;
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
            let (mut c, run) = self.reconnect()?;
            conn::ensure_group(&mut c, &self.keys.tasks())
                .map_err(|e| conn::broker_error(&self.url, "cannot create the group", &e))?;
            self.observe_run(run);
            *guard = Some(c);
        }
        let c = guard.as_mut().expect("opened above");
        f(c).map_err(|e| {
            *guard = None;
            conn::broker_error(&self.url, what, &e)
        })
    }

    /// A fresh connection and the server's `run_id`.
    fn reconnect(&self) -> Result<(Connection, String), PoolError> {
        let broken = |e: redis::RedisError| conn::broker_error(&self.url, "cannot reach Redis", &e);
        let mut c = conn::connect(&self.client, self.options.io_timeout).map_err(broken)?;
        let info: String = redis::cmd("INFO")
            .arg("server")
            .query(&mut c)
            .map_err(broken)?;
        let run = info
            .lines()
            .find_map(|l| l.strip_prefix("run_id:"))
            .map(|r| r.trim().to_string())
            .unwrap_or_default();
        Ok((c, run))
    }

    /// Notes the `run_id` of the Redis just reached; if it is another run than the one the
    /// tasks in flight went to (a restart, which without persistence forgot them), they fail
    /// with [`PoolError::Broker`]. True if it was another run.
    fn observe_run(&self, run: String) -> bool {
        let lost: Vec<Task> = {
            let mut st = self.lock();
            let known = st.run_id.replace(run.clone());
            if known.is_none_or(|known| known == run) {
                return false;
            }
            let ids: Vec<TaskId> = std::mem::take(&mut st.by_entry).into_values().collect();
            let lost = ids.iter().filter_map(|id| st.tasks.remove(id)).collect();
            self.changed.notify_all();
            lost
        };
        let why = format!(
            "Redis at {} restarted (a new run): the tasks in flight were lost with it",
            self.url
        );
        for task in lost {
            run_completer(task.complete, Err(PoolError::Broker(why.clone())));
        }
        true
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

    /// The `XADD` of one task: pool, task id, build, body, and the signature under the
    /// authkey if there is one.
    fn task_cmd(&self, id: TaskId, body: &[u8]) -> redis::Cmd {
        let id = id.to_string();
        let build = frame::build_id();
        let mut cmd = redis::cmd("XADD");
        cmd.arg(self.keys.tasks())
            .arg("*")
            .arg(F_POOL)
            .arg(&self.pool_id)
            .arg(F_TASK)
            .arg(&id)
            .arg(F_BUILD)
            .arg(build)
            .arg(F_BODY)
            .arg(body);
        if let Some(key) = &self.options.authkey {
            let parts: [&[u8]; 4] = [
                self.pool_id.as_bytes(),
                id.as_bytes(),
                build.as_bytes(),
                body,
            ];
            cmd.arg(F_MAC).arg(frame::sign(&key.0, &parts));
        }
        cmd
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
                pipe.add_command(self.task_cmd(*id, body));
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
}
