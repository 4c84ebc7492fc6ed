//! The worker side of a Redis pool: [`PoolWorkers`] starts worker processes of this same
//! executable and replaces those that die; each worker renews its heartbeat from a thread of
//! its own and runs one task at a time: `XREADGROUP` (one round trip), run, then the result,
//! the `XACK` and the `XDEL` in one atomic pipeline (the second and last round trip).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use redis::{Client, Connection, Value};
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

use crate::error::PoolError;
use crate::process::{Process, ProcessHandle};

use super::super::worker::{TaskOutcome, call_at};
use super::RedisOptions;
use super::conn::{self, GROUP, Keys};
use super::frame::{
    self, F_BODY, F_BUILD, F_MAC, F_POOL, F_TASK, RemoteOutcome, ResultBody, TaskBody,
};

/// How long a worker's `XREADGROUP` blocks before it asks again.
const BLOCK_MS: u64 = 2000;
/// How often the supervisor looks at its workers.
const SUPERVISE_EVERY: Duration = Duration::from_millis(20);

/// What a worker process is started with.
#[derive(Serialize, Deserialize, Clone)]
struct WorkerSetup {
    url: String,
    namespace: String,
    consumer: String,
    host: String,
    build: String,
    heartbeat_ms: u64,
    io_timeout_ms: u64,
    max_frame: usize,
    authkey: Option<ByteBuf>,
}

/// Worker processes serving every Redis pool of one namespace, started by
/// [`PoolWorkers::start`] (or [`serve_pool`]): each runs tasks from the shared stream, one at a
/// time; one that dies is replaced, and the pools it served learn of it at once (its task
/// fails with `WorkerDied` and the signal). Dropping it kills its workers.
///
/// ```no_run
/// use process_ipc::PoolWorkers;
///
/// let workers = PoolWorkers::start("redis://127.0.0.1:6379", 4).unwrap();
/// println!("serving with pids {:?}", workers.pids());
/// workers.wait(); // until killed
/// ```
pub struct PoolWorkers {
    inner: Arc<Supervised>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for PoolWorkers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PoolWorkers")
            .field("pids", &self.pids())
            .finish_non_exhaustive()
    }
}

struct Child {
    consumer: String,
    handle: ProcessHandle<()>,
    /// Its end was reported (its replacement could not start yet).
    noted: bool,
}

struct Supervised {
    setup: WorkerSetup,
    children: Mutex<Vec<Child>>,
    stop: AtomicBool,
}

/// `serve_pool(url, workers)`: makes this process a host of `workers` pool workers for every
/// pool built with [`PoolBuilder::redis`](crate::PoolBuilder::redis) on the same Redis and
/// the same executable; runs until the process is killed. See [`PoolWorkers`] for a handle.
///
/// # Errors
/// [`PoolError::NoWorkers`] for 0 workers, [`PoolError::Broker`] for a URL that is not one,
/// [`PoolError::Spawn`] if a worker cannot start.
pub fn serve_pool(url: &str, workers: usize) -> Result<(), PoolError> {
    PoolWorkers::start(url, workers)?.wait();
    Ok(())
}

impl PoolWorkers {
    /// Starts `workers` worker processes with the default [`RedisOptions`].
    ///
    /// # Errors
    /// As [`serve_pool`].
    pub fn start(url: &str, workers: usize) -> Result<PoolWorkers, PoolError> {
        Self::start_with(url, workers, RedisOptions::new())
    }

    /// Starts `workers` worker processes with these options (namespace, heartbeat timeout).
    ///
    /// # Errors
    /// As [`serve_pool`].
    pub fn start_with(
        url: &str,
        workers: usize,
        options: RedisOptions,
    ) -> Result<PoolWorkers, PoolError> {
        if workers == 0 {
            return Err(PoolError::NoWorkers(0));
        }
        Client::open(url).map_err(|e| conn::broker_error(url, "bad Redis URL", &e))?;
        let build = options
            .build
            .clone()
            .unwrap_or_else(|| frame::build_id().to_string());
        let setup = WorkerSetup {
            url: url.to_string(),
            namespace: options.namespace.clone(),
            consumer: String::new(),
            host: frame::host_name(),
            build,
            heartbeat_ms: options.heartbeat_timeout.as_millis().max(30) as u64,
            io_timeout_ms: options.io_timeout.as_millis().max(10) as u64,
            max_frame: options.max_frame_bytes,
            authkey: options.authkey.as_ref().map(|k| ByteBuf::from(k.0.clone())),
        };
        let inner = Arc::new(Supervised {
            setup,
            children: Mutex::new(Vec::new()),
            stop: AtomicBool::new(false),
        });
        for _ in 0..workers {
            let child = inner.start_child()?;
            inner.lock().push(child);
        }
        let watching = Arc::clone(&inner);
        let thread = std::thread::Builder::new()
            .name("process-ipc-redis-workers".into())
            .spawn(move || watching.supervise())
            .map_err(|e| PoolError::Spawn(e.to_string()))?;
        Ok(PoolWorkers {
            inner,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// The current workers' pids (they change as workers are replaced).
    pub fn pids(&self) -> Vec<u32> {
        self.inner.lock().iter().map(|c| c.handle.pid()).collect()
    }

    /// Blocks for as long as the workers are served (until [`terminate`](Self::terminate)
    /// from another thread, or the process is killed).
    pub fn wait(&self) {
        let thread = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(t) = thread {
            let _ = t.join();
        }
    }

    /// Kills the workers (a task one was running fails in its pool with `WorkerDied`) and
    /// waits for them.
    pub fn terminate(&self) {
        self.inner.stop.store(true, Ordering::SeqCst);
        self.wait();
        let children: Vec<Child> = std::mem::take(&mut *self.inner.lock());
        let mut notes = Vec::new();
        for mut child in children {
            let _ = child.handle.kill();
            let _ = child.handle.join_timeout(Duration::from_secs(10));
            notes.push((
                child.consumer,
                "killed by signal 9 (SIGKILL): its PoolWorkers was terminated".to_string(),
            ));
        }
        self.inner.note_deaths(&notes);
    }
}

impl Drop for PoolWorkers {
    fn drop(&mut self) {
        self.terminate();
    }
}

impl Supervised {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Child>> {
        self.children.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn start_child(&self) -> Result<Child, PoolError> {
        let mut setup = self.setup.clone();
        setup.consumer = conn::consumer_name(&setup.host, std::process::id());
        // The consumer name carries the worker's own pid: set it in the worker (below) and
        // keep the name the worker reports here.
        let handle = Process::new(worker_main, (setup.clone(),))
            .named("pool-redis-worker")
            .start()
            .map_err(|e| PoolError::Spawn(e.to_string()))?;
        let consumer = worker_consumer(&setup, handle.pid());
        Ok(Child {
            consumer,
            handle,
            noted: false,
        })
    }

    /// Replaces workers that died, telling their pools why (so their tasks fail at once
    /// rather than at the heartbeat timeout).
    fn supervise(&self) {
        while !self.stop.load(Ordering::SeqCst) {
            let mut notes = Vec::new();
            {
                let mut children = self.lock();
                for child in children.iter_mut() {
                    if child.noted || child.handle.is_alive() {
                        if child.noted {
                            if let Ok(fresh) = self.start_child() {
                                *child = fresh;
                            }
                        }
                        continue;
                    }
                    let why = match child.handle.exitcode() {
                        Some(code) if code < 0 => format!(
                            "killed by signal {} ({})",
                            -code,
                            crate::error::signal_name(-code)
                        ),
                        Some(code) => format!("exited with code {code}"),
                        None => "ended".to_string(),
                    };
                    notes.push((child.consumer.clone(), why));
                    child.noted = true;
                    if let Ok(fresh) = self.start_child() {
                        *child = fresh;
                    }
                }
            }
            self.note_deaths(&notes);
            std::thread::sleep(SUPERVISE_EVERY);
        }
    }

    /// Records why workers ended and ends their heartbeats (best effort: Redis may be away).
    fn note_deaths(&self, notes: &[(String, String)]) {
        if notes.is_empty() {
            return;
        }
        let keys = Keys::new(&self.setup.namespace);
        let timeout = Duration::from_millis(self.setup.io_timeout_ms);
        let Ok(client) = Client::open(self.setup.url.as_str()) else {
            return;
        };
        let Ok(mut c) = conn::connect(&client, timeout) else {
            return;
        };
        let mut pipe = redis::pipe();
        for (consumer, why) in notes {
            pipe.cmd("SET")
                .arg(keys.death(consumer))
                .arg(why)
                .arg("EX")
                .arg(3600)
                .ignore();
            pipe.cmd("DEL").arg(keys.heartbeat(consumer)).ignore();
            pipe.cmd("SREM").arg(keys.workers()).arg(consumer).ignore();
        }
        let _ = pipe.query::<()>(&mut c);
    }
}

/// The consumer name of the worker with this pid (the host/pid/nonce form, nonce from setup).
fn worker_consumer(setup: &WorkerSetup, pid: u32) -> String {
    let nonce = setup.consumer.rsplit('/').next().unwrap_or("0");
    format!("{}/{pid}/{nonce}", setup.host)
}

/// A worker's connection state and what it reports with.
struct Worker {
    setup: WorkerSetup,
    client: Client,
    keys: Keys,
    tasks: String,
    pid: u32,
}

/// The worker process: heartbeat thread, then tasks until killed.
fn worker_main(mut setup: WorkerSetup) {
    let pid = std::process::id();
    setup.consumer = worker_consumer(&setup, pid);
    let Ok(client) = Client::open(setup.url.as_str()) else {
        return;
    };
    let keys = Keys::new(&setup.namespace);
    let worker = Worker {
        tasks: keys.tasks(),
        keys,
        client,
        pid,
        setup,
    };
    let timeout = Duration::from_millis(worker.setup.io_timeout_ms);
    // The heartbeat must exist before the first task is read.
    let mut conn = worker.reconnect(None);
    // An answer whose connection broke on the way: sent again first, on the next connection
    // (a result that arrives twice is taken once; XACK and XDEL are idempotent).
    let mut unsent: Option<redis::Pipeline> = None;
    let beating = (worker.setup.clone(), worker.client.clone());
    let _ = std::thread::Builder::new()
        .name("pool-redis-heartbeat".into())
        .spawn(move || heartbeat_loop(&beating.0, &beating.1));
    loop {
        let c = match conn.as_mut() {
            Some(c) => c,
            None => {
                conn = worker.reconnect(Some(timeout));
                continue;
            }
        };
        if worker.step(c, &mut unsent).is_err() {
            conn = None;
        }
    }
}

/// Whether `e` broke the connection (so the same command may succeed on a new one), rather
/// than being Redis's answer.
fn connection_lost(e: &redis::RedisError) -> bool {
    e.is_io_error() || e.is_timeout() || e.is_connection_dropped() || e.is_connection_refusal()
}

/// Renews the heartbeat every third of its lifetime; reconnects as needed.
fn heartbeat_loop(setup: &WorkerSetup, client: &Client) {
    let keys = Keys::new(&setup.namespace);
    let ttl = Duration::from_millis(setup.heartbeat_ms);
    let timeout = Duration::from_millis(setup.io_timeout_ms).min(ttl);
    let mut conn: Option<Connection> = None;
    loop {
        if conn.is_none() {
            conn = conn::connect(client, timeout).ok();
        }
        if let Some(c) = conn.as_mut() {
            if beat(c, &keys, setup).is_err() {
                conn = None;
            }
        }
        std::thread::sleep(ttl / 3);
    }
}

fn beat(c: &mut Connection, keys: &Keys, setup: &WorkerSetup) -> redis::RedisResult<()> {
    redis::pipe()
        .cmd("SET")
        .arg(keys.heartbeat(&setup.consumer))
        .arg(&setup.build)
        .arg("PX")
        .arg(setup.heartbeat_ms)
        .ignore()
        .cmd("SADD")
        .arg(keys.workers())
        .arg(&setup.consumer)
        .ignore()
        .query(c)
}

impl Worker {
    /// Connects (waiting `pause` first after a failure), beats once and makes sure the group
    /// exists; `None` if Redis is still away.
    fn reconnect(&self, pause: Option<Duration>) -> Option<Connection> {
        if let Some(p) = pause {
            std::thread::sleep(p.min(Duration::from_secs(1)));
        }
        let timeout = Duration::from_millis(self.setup.io_timeout_ms);
        let mut c = conn::connect(&self.client, timeout).ok()?;
        c.set_read_timeout(Some(timeout + Duration::from_millis(BLOCK_MS)))
            .ok()?;
        beat(&mut c, &self.keys, &self.setup).ok()?;
        conn::ensure_group(&mut c, &self.tasks).ok()?;
        Some(c)
    }

    /// Reads one task (blocking up to `BLOCK_MS`), runs it and answers; an answer held back
    /// by a broken connection goes first.
    fn step(
        &self,
        c: &mut Connection,
        unsent: &mut Option<redis::Pipeline>,
    ) -> redis::RedisResult<()> {
        if let Some(pipe) = unsent.take() {
            if let Err(e) = pipe.query::<()>(c) {
                if connection_lost(&e) {
                    *unsent = Some(pipe);
                }
                return Err(e);
            }
        }
        let reply: redis::RedisResult<Value> = redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg(GROUP)
            .arg(&self.setup.consumer)
            .arg("COUNT")
            .arg(1)
            .arg("BLOCK")
            .arg(BLOCK_MS)
            .arg("STREAMS")
            .arg(&self.tasks)
            .arg(">")
            .query(c);
        let reply = match reply {
            Err(e) if e.code() == Some("NOGROUP") => {
                // Redis came back empty: make the group again.
                return conn::ensure_group(c, &self.tasks);
            }
            other => other?,
        };
        let entries = match conn::entries(&reply) {
            Ok(e) => e,
            Err(why) => {
                log::warn!("redis pool worker: {why}");
                return Ok(());
            }
        };
        for entry in entries {
            let pipe = self.answer(&entry, None);
            let refused = match pipe.query::<()>(c) {
                Ok(()) => continue,
                Err(e) if connection_lost(&e) => {
                    *unsent = Some(pipe);
                    return Err(e);
                }
                Err(e) => e,
            };
            // Redis refused the answer itself (too big for it, say): answer that instead, so
            // the task fails rather than waits for ever.
            let why = RemoteOutcome::Serde(format!("Redis refused this task's result: {refused}"));
            let pipe = self.answer(&entry, Some(why));
            if let Err(e) = pipe.query::<()>(c) {
                if connection_lost(&e) {
                    *unsent = Some(pipe);
                }
                return Err(e);
            }
        }
        Ok(())
    }

    /// Runs one entry's task (unless its outcome is `given`) and makes its answer: the result,
    /// the `XACK` and the `XDEL`, atomic; an entry that names no pool is only removed.
    fn answer(&self, entry: &conn::Entry, given: Option<RemoteOutcome>) -> redis::Pipeline {
        let pool = frame::field(&entry.fields, F_POOL).and_then(frame::checked_id);
        let task = frame::field(&entry.fields, F_TASK).and_then(frame::checked_task_id);
        let mut pipe = redis::pipe();
        pipe.atomic();
        match (pool, task) {
            (Some(pool), Some(task)) => {
                let outcome = match given {
                    Some(outcome) => outcome,
                    None if self.signed(&entry.fields) => self.run(&entry.fields),
                    None => RemoteOutcome::BadFrame(
                        "it is not signed with this worker's authkey".into(),
                    ),
                };
                let mut body = postcard::to_stdvec(&ResultBody {
                    host: self.setup.host.clone(),
                    pid: self.pid,
                    outcome,
                })
                .unwrap_or_default();
                if body.len() > self.setup.max_frame {
                    let outcome = RemoteOutcome::Serde(format!(
                        "a result of {} bytes is over the frame limit of {} bytes",
                        body.len(),
                        self.setup.max_frame
                    ));
                    body = postcard::to_stdvec(&ResultBody {
                        host: self.setup.host.clone(),
                        pid: self.pid,
                        outcome,
                    })
                    .unwrap_or_default();
                }
                let task = task.to_string();
                let xadd = pipe
                    .cmd("XADD")
                    .arg(self.keys.results(pool))
                    .arg("*")
                    .arg(F_TASK)
                    .arg(&task)
                    .arg(F_BODY)
                    .arg(&body);
                if let Some(key) = &self.setup.authkey {
                    let parts: [&[u8]; 3] = [pool.as_bytes(), task.as_bytes(), &body];
                    xadd.arg(F_MAC).arg(frame::sign(key, &parts));
                }
                xadd.ignore();
            }
            _ => log::warn!(
                "redis pool worker {}: entry {} names no pool or task; removed",
                self.pid,
                entry.id
            ),
        }
        pipe.cmd("XACK")
            .arg(&self.tasks)
            .arg(GROUP)
            .arg(&entry.id)
            .ignore();
        pipe.cmd("XDEL").arg(&self.tasks).arg(&entry.id).ignore();
        pipe
    }

    /// Whether the entry carries a valid signature under this worker's authkey (true when it
    /// has none).
    fn signed(&self, fields: &[(Vec<u8>, Vec<u8>)]) -> bool {
        let Some(key) = &self.setup.authkey else {
            return true;
        };
        let get = |name| frame::field(fields, name).unwrap_or_default();
        let parts = [get(F_POOL), get(F_TASK), get(F_BUILD), get(F_BODY)];
        frame::verify(key, &parts, get(F_MAC))
    }

    /// The task's outcome: refused for another build, failed for a frame that does not
    /// decode, else run.
    fn run(&self, fields: &[(Vec<u8>, Vec<u8>)]) -> RemoteOutcome {
        let build = frame::field(fields, F_BUILD).unwrap_or_default();
        if build != self.setup.build.as_bytes() {
            return RemoteOutcome::BuildMismatch {
                worker_build: self.setup.build.clone(),
            };
        }
        let body = frame::field(fields, F_BODY).unwrap_or_default();
        let task: TaskBody = match frame::decode(body, self.setup.max_frame) {
            Ok(t) => t,
            Err(why) => return RemoteOutcome::BadFrame(why),
        };
        let Ok(call) = isize::try_from(task.call) else {
            return RemoteOutcome::BadFrame(format!("no function at offset {}", task.call));
        };
        #[cfg(feature = "trace")]
        let _task = crate::trace::task_span(0);
        match call_at(call, &task.args) {
            TaskOutcome::Value(v) => RemoteOutcome::Value(v),
            TaskOutcome::Panicked { message, location } => {
                RemoteOutcome::Panicked { message, location }
            }
            TaskOutcome::Serde(m) => RemoteOutcome::Serde(m),
        }
    }
}
