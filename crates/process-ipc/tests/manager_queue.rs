//! Manager queues: put/get/qsize, timeouts, handles that cross ipc, many producers and
//! consumers drained exactly once, and a gone manager reported as an error, never a hang.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use ipc_channel::ipc::IpcSender;
use process_ipc::manager::{ManagedQueue, Manager, ManagerError};
use process_ipc::{Pool, Process, ProcessError, current_pid};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize, Serializer};

mod common;
use common::{LIMIT, bounded, remove_sockets_of, wait_until};

/// The handle as another process would get it: serialized through a real ipc channel. Its
/// operations then go through the queue's server instead of the manager's local state.
fn through_ipc<T>(queue: &ManagedQueue<T>) -> ManagedQueue<T>
where
    T: Serialize + DeserializeOwned,
{
    let (tx, rx) = ipc_channel::ipc::channel::<ManagedQueue<T>>().expect("ipc channel");
    tx.send(queue.clone()).expect("send handle");
    rx.try_recv_timeout(LIMIT).expect("receive handle")
}

#[test]
fn smoke() {
    let manager = Manager::new().unwrap();
    let queue = manager.queue::<String>().unwrap();
    queue.put("hello".to_string()).unwrap();
    assert_eq!(queue.get_timeout(LIMIT).unwrap(), "hello");
}

#[test]
fn each_producers_items_come_out_in_its_put_order() {
    let manager = Manager::new().unwrap();
    let local = manager.queue::<u32>().unwrap();
    let remote = through_ipc(&local);
    for i in 0..10 {
        local.put(i).unwrap();
        remote.put(100 + i).unwrap();
    }
    let got: Vec<u32> = (0..20)
        .map(|i| {
            let from = if i % 2 == 0 { &local } else { &remote };
            from.get_timeout(LIMIT).unwrap()
        })
        .collect();
    // Remote puts are one-way messages, so how the two producers interleave is up to the
    // server; each producer's own order is kept.
    let of_local: Vec<u32> = got.iter().copied().filter(|&x| x < 100).collect();
    let of_remote: Vec<u32> = got.iter().copied().filter(|&x| x >= 100).collect();
    assert_eq!(of_local, (0..10).collect::<Vec<_>>());
    assert_eq!(of_remote, (100..110).collect::<Vec<_>>());
}

#[test]
fn qsize_and_empty_agree_everywhere() {
    let manager = Manager::new().unwrap();
    let local = manager.queue::<u8>().unwrap();
    let remote = through_ipc(&local);
    assert_eq!(local.qsize().unwrap(), 0);
    assert!(remote.empty().unwrap());
    for i in 0..3 {
        remote.put(i).unwrap();
    }
    // Remote puts are one-way: the remote qsize round trip queues behind them.
    assert_eq!(remote.qsize().unwrap(), 3);
    assert_eq!(local.qsize().unwrap(), 3);
    assert!(!local.empty().unwrap());
    local.get_timeout(LIMIT).unwrap();
    assert_eq!(remote.qsize().unwrap(), 2);
}

#[test]
fn get_timeout_on_an_empty_queue_times_out() {
    let manager = Manager::new().unwrap();
    let local = manager.queue::<u64>().unwrap();
    let remote = through_ipc(&local);
    for queue in [&local, &remote] {
        let started = Instant::now();
        let err = queue.get_timeout(Duration::from_millis(50)).unwrap_err();
        assert!(
            matches!(err, ManagerError::Timeout { timeout, .. } if timeout == Duration::from_millis(50)),
            "{err}"
        );
        assert!(started.elapsed() >= Duration::from_millis(50));
        assert!(err.to_string().contains("within 50ms"), "{err}");
    }
    // A timed-out get took nothing: the next item goes to the next getter.
    remote.put(7).unwrap();
    assert_eq!(local.get_timeout(LIMIT).unwrap(), 7);
    assert_eq!(local.getters_waiting().unwrap(), 0);
}

#[test]
fn get_nowait_reports_empty() {
    let manager = Manager::new().unwrap();
    let local = manager.queue::<u64>().unwrap();
    let remote = through_ipc(&local);
    assert!(matches!(
        local.get_nowait(),
        Err(ManagerError::Empty { .. })
    ));
    assert!(matches!(
        remote.get_nowait(),
        Err(ManagerError::Empty { .. })
    ));
    local.put(1).unwrap();
    local.put(2).unwrap();
    assert_eq!(remote.get_nowait().unwrap(), 1);
    assert_eq!(local.get_nowait().unwrap(), 2);
}

#[test]
fn a_handle_sent_back_and_forth_reaches_the_same_queue() {
    let manager = Manager::new().unwrap();
    let queue = manager.queue::<Vec<String>>().unwrap();
    let twice = through_ipc(&through_ipc(&queue));
    twice.put(vec!["a".into(), "b".into()]).unwrap();
    assert_eq!(queue.get_timeout(LIMIT).unwrap(), vec!["a", "b"]);
    queue.put(vec![]).unwrap();
    assert_eq!(twice.get_timeout(LIMIT).unwrap(), Vec::<String>::new());
    assert_eq!(twice.manager_pid(), manager.pid());
}

#[test]
fn a_waiting_remote_getter_receives_the_next_put() {
    let manager = Manager::new().unwrap();
    let local = manager.queue::<u64>().unwrap();
    let remote = through_ipc(&local);
    let getter = thread::spawn(move || remote.get_timeout(LIMIT));
    wait_until("the remote getter waits", || {
        local.getters_waiting().unwrap() == 1
    });
    local.put(42).unwrap();
    assert_eq!(getter.join().unwrap().unwrap(), 42);
}

#[test]
fn getters_are_served_in_the_order_they_started_waiting() {
    let manager = Manager::new().unwrap();
    let local = manager.queue::<usize>().unwrap();
    let (done_tx, done_rx) = crossbeam_channel::unbounded();
    // Alternate remote and local getters; each starts only once the previous one waits.
    for i in 0..4 {
        let handle = if i % 2 == 0 {
            through_ipc(&local)
        } else {
            local.clone()
        };
        let done = done_tx.clone();
        thread::spawn(move || done.send((i, handle.get_timeout(LIMIT))));
        wait_until("the getter waits", || {
            local.getters_waiting().unwrap() == i + 1
        });
    }
    for item in 0..4 {
        local.put(item * 10).unwrap();
    }
    for _ in 0..4 {
        let (getter, got) = done_rx.recv_timeout(LIMIT).unwrap();
        assert_eq!(
            got.unwrap(),
            getter * 10,
            "getter {getter} got another's item"
        );
    }
}

/// `producers` threads each put `per` distinct numbers through `make_handle`; the parent
/// drains; every number must come out exactly once.
fn producers_drained_exactly_once(remote_producers: bool, producers: u64, per: u64) {
    let manager = Manager::new().unwrap();
    let queue = manager.queue::<u64>().unwrap();
    let threads: Vec<_> = (0..producers)
        .map(|p| {
            let handle = if remote_producers {
                through_ipc(&queue)
            } else {
                queue.clone()
            };
            thread::spawn(move || (0..per).try_for_each(|i| handle.put(p * per + i)))
        })
        .collect();
    let total = producers * per;
    let got = bounded({
        let queue = queue.clone();
        move || {
            (0..total)
                .map(|_| queue.get_timeout(LIMIT))
                .collect::<Result<Vec<_>, _>>()
        }
    })
    .unwrap();
    for t in threads {
        t.join().unwrap().unwrap();
    }
    let unique: BTreeSet<u64> = got.iter().copied().collect();
    assert_eq!(got.len() as u64, total);
    assert_eq!(unique, (0..total).collect::<BTreeSet<_>>());
    assert!(matches!(
        queue.get_nowait(),
        Err(ManagerError::Empty { .. })
    ));
}

#[test]
fn four_local_producers_of_5000_are_drained_exactly_once() {
    producers_drained_exactly_once(false, 4, 5000);
}

#[test]
fn four_remote_producers_of_5000_are_drained_exactly_once() {
    producers_drained_exactly_once(true, 4, 5000);
}

#[test]
fn mixed_consumers_take_every_item_exactly_once() {
    const TOTAL: usize = 3000;
    let manager = Manager::new().unwrap();
    let queue = manager.queue::<usize>().unwrap();
    let taken = Arc::new(AtomicUsize::new(0));
    // Two consumers through ipc and one local, all with short timeouts, so that cancelled
    // gets race with deliveries the whole time.
    let consumers: Vec<_> = (0..3)
        .map(|c| {
            let handle = if c == 0 {
                queue.clone()
            } else {
                through_ipc(&queue)
            };
            let taken = Arc::clone(&taken);
            thread::spawn(move || {
                let mut mine = Vec::new();
                let deadline = Instant::now() + LIMIT;
                while taken.load(Ordering::SeqCst) < TOTAL && Instant::now() < deadline {
                    match handle.get_timeout(Duration::from_micros(200)) {
                        Ok(item) => {
                            mine.push(item);
                            taken.fetch_add(1, Ordering::SeqCst);
                        }
                        Err(ManagerError::Timeout { .. }) => {}
                        Err(e) => panic!("consumer {c}: {e}"),
                    }
                }
                mine
            })
        })
        .collect();
    let producer = through_ipc(&queue);
    for i in 0..TOTAL {
        producer.put(i).unwrap();
    }
    let mut all: Vec<usize> = consumers
        .into_iter()
        .flat_map(|c| c.join().unwrap())
        .collect();
    all.sort_unstable();
    assert_eq!(all, (0..TOTAL).collect::<Vec<_>>());
    assert_eq!(queue.qsize().unwrap(), 0);
}

#[test]
fn shutdown_wakes_blocked_getters_local_and_remote() {
    let manager = Manager::new().unwrap();
    let local = manager.queue::<u64>().unwrap();
    let remote = through_ipc(&local);
    let local_getter = {
        let local = local.clone();
        thread::spawn(move || local.get())
    };
    let remote_getter = thread::spawn(move || remote.get());
    wait_until("both getters wait", || {
        local.getters_waiting().unwrap() == 2
    });
    let started = Instant::now();
    drop(manager);
    for getter in [local_getter, remote_getter] {
        let result = bounded(move || getter.join().unwrap());
        let err = result.unwrap_err();
        assert!(matches!(err, ManagerError::Gone { .. }), "{err}");
        assert!(err.to_string().contains("is gone"), "{err}");
    }
    // Promptly: far less than any timeout a caller would set.
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn every_call_fails_after_shutdown() {
    let manager = Manager::new().unwrap();
    let local = manager.queue::<u64>().unwrap();
    let remote = through_ipc(&local);
    remote.put(1).unwrap();
    assert_eq!(remote.qsize().unwrap(), 1);
    manager.shutdown();
    assert!(!manager.is_running());
    assert!(matches!(
        local.put(2).map_err(ManagerError::from),
        Err(ManagerError::Gone { .. })
    ));
    // From another process a put is handed to this process's feeder; the failed batch shows
    // at the flush, and every put after it fails at once.
    let _ = remote.put(2);
    assert!(matches!(
        remote.flush_timeout(LIMIT),
        Err(ManagerError::Gone { .. })
    ));
    assert!(matches!(
        remote.put(3).map_err(ManagerError::from),
        Err(ManagerError::Gone { .. })
    ));
    for queue in [&local, &remote] {
        let unbounded = queue.clone();
        assert!(matches!(
            bounded(move || unbounded.get()),
            Err(ManagerError::Gone { .. })
        ));
        assert!(matches!(
            queue.get_timeout(LIMIT),
            Err(ManagerError::Gone { .. })
        ));
        assert!(matches!(queue.get_nowait(), Err(ManagerError::Gone { .. })));
        assert!(matches!(queue.qsize(), Err(ManagerError::Gone { .. })));
    }
    // A handle that never talked to the server (so never registered) fails the same way.
    let fresh = through_ipc(&local);
    assert!(matches!(
        bounded(move || fresh.get()),
        Err(ManagerError::Gone { .. })
    ));
    assert!(matches!(
        manager.queue::<u64>(),
        Err(ManagerError::Gone { .. })
    ));
}

#[test]
fn flush_and_drop_leave_remote_puts_in_the_queue() {
    let manager = Manager::new().unwrap();
    let local = manager.queue::<u32>().unwrap();
    let remote = through_ipc(&local);
    for i in 0..1000 {
        remote.put(i).unwrap();
    }
    remote.flush_timeout(LIMIT).unwrap();
    assert_eq!(local.qsize().unwrap(), 1000);
    // A producer thread that puts and drops its handle, as a finished task does: its items
    // are sent by then; a flush from this process's other handle sees them held.
    let producer = through_ipc(&local);
    bounded(move || {
        for i in 0..1000 {
            producer.put(i).unwrap();
        }
    });
    remote.flush_timeout(LIMIT).unwrap();
    assert_eq!(local.qsize().unwrap(), 2000);
    // The local handle has nothing to wait for.
    local.flush_timeout(LIMIT).unwrap();
}

#[test]
fn a_handle_is_plain_data_for_any_encoder() {
    let manager = Manager::new().unwrap();
    let queue = manager.queue::<String>().unwrap();
    // Bytes, as a pool task's arguments travel; no file descriptor rides along.
    let bytes = postcard::to_stdvec(&queue).unwrap();
    let decoded: ManagedQueue<String> = postcard::from_bytes(&bytes).unwrap();
    decoded.put("through bytes".into()).unwrap();
    assert_eq!(queue.get_timeout(LIMIT).unwrap(), "through bytes");
    queue.put("and back".into()).unwrap();
    assert_eq!(decoded.get_timeout(LIMIT).unwrap(), "and back");
}

/// A child process's target: put `n` numbers from `start`, report the child's pid.
fn put_range(queue: ManagedQueue<u64>, start: u64, n: u64) -> u32 {
    for i in start..start + n {
        queue.put(i).expect("put from a child process");
    }
    current_pid()
}

#[test]
fn four_child_processes_of_5000_are_drained_exactly_once() {
    const PER: u64 = 5000;
    let manager = Manager::new().unwrap();
    let queue = manager.queue::<u64>().unwrap();
    let mut children: Vec<_> = (0..4)
        .map(|p| {
            Process::new(put_range, (queue.clone(), p * PER, PER))
                .start()
                .unwrap()
        })
        .collect();
    let got: Vec<u64> = (0..4 * PER)
        .map(|_| queue.get_timeout(LIMIT).unwrap())
        .collect();
    let pids: BTreeSet<u32> = children
        .iter_mut()
        .map(|c| {
            let pid = c.pid();
            assert_eq!(c.join_timeout(LIMIT).unwrap(), pid);
            pid
        })
        .collect();
    assert_eq!(pids.len(), 4);
    assert!(!pids.contains(&current_pid()));
    assert_eq!(
        got.iter().copied().collect::<BTreeSet<_>>().len(),
        got.len()
    );
    assert_eq!(got.len() as u64, 4 * PER);
    assert!(got.iter().all(|&x| x < 4 * PER));
    assert!(matches!(
        queue.get_nowait(),
        Err(ManagerError::Empty { .. })
    ));
}

#[test]
fn every_item_of_children_that_exit_right_after_putting_arrives() {
    // A child's batches may still be unread in the manager when it exits: the manager must
    // read them all, though it can no longer answer them.
    const PER: u64 = 5000;
    let manager = Manager::new().unwrap();
    let queue = manager.queue::<u64>().unwrap();
    for round in 0..6 {
        let mut children: Vec<_> = (0..2)
            .map(|p| {
                Process::new(put_range, (queue.clone(), p * PER, PER))
                    .start()
                    .unwrap()
            })
            .collect();
        let got: BTreeSet<u64> = (0..2 * PER)
            .map(|_| queue.get_timeout(LIMIT).unwrap())
            .collect();
        assert_eq!(got.len() as u64, 2 * PER, "round {round}");
        for child in &mut children {
            child.join_timeout(LIMIT).unwrap();
        }
    }
}

#[test]
fn four_pool_tasks_of_5000_are_drained_exactly_once() {
    const PER: u64 = 5000;
    let manager = Manager::new().unwrap();
    let queue = manager.queue::<u64>().unwrap();
    let pool = Pool::new(2).unwrap();
    let tasks = (0..4).map(|p| (queue.clone(), p * PER, PER));
    let result = pool.starmap_async(put_range, tasks).unwrap();
    let got: BTreeSet<u64> = (0..4 * PER)
        .map(|_| queue.get_timeout(LIMIT).unwrap())
        .collect();
    assert_eq!(got, (0..4 * PER).collect::<BTreeSet<_>>());
    let pids: BTreeSet<u32> = result.get_timeout(LIMIT).unwrap().into_iter().collect();
    assert!(!pids.is_empty() && pids.len() <= 2, "{pids:?}");
    assert!(!pids.contains(&current_pid()));
    // Each task's puts were in the queue by the time its result came back.
    assert!(matches!(
        queue.get_nowait(),
        Err(ManagerError::Empty { .. })
    ));
}

/// A child process's target: take `n` items and sum them.
fn take_and_sum(queue: ManagedQueue<u64>, n: u64) -> Result<u64, String> {
    (0..n)
        .map(|_| queue.get_timeout(LIMIT).map_err(|e| e.to_string()))
        .sum()
}

#[test]
fn a_child_process_consumes_what_the_parent_puts() {
    let manager = Manager::new().unwrap();
    let queue = manager.queue::<u64>().unwrap();
    let mut child = Process::new(take_and_sum, (queue.clone(), 100))
        .start()
        .unwrap();
    for i in 1..=100 {
        queue.put(i).unwrap();
    }
    assert_eq!(child.join_timeout(LIMIT).unwrap(), Ok(5050));
    assert_eq!(queue.qsize().unwrap(), 0);
}

/// A child process's target: wait for one item.
fn get_one(queue: ManagedQueue<u64>) -> Option<u64> {
    queue.get_timeout(LIMIT).ok()
}

#[test]
fn an_item_meant_for_a_killed_consumer_goes_to_the_next_getter() {
    let manager = Manager::new().unwrap();
    let queue = manager.queue::<u64>().unwrap();
    let mut consumer = Process::new(get_one, (queue.clone(),)).start().unwrap();
    wait_until("the child waits", || queue.getters_waiting().unwrap() == 1);
    consumer.kill().unwrap();
    assert!(consumer.join_timeout(LIMIT).is_err());
    // The dead child is still first in line; its closed reply channel sends the item on.
    queue.put(7).unwrap();
    assert_eq!(queue.get_timeout(LIMIT).unwrap(), 7);
    assert_eq!(queue.getters_waiting().unwrap(), 0);
}

/// A child process's target: host a manager, send a handle to one of its queues to the
/// parent, then wait on another queue until killed.
fn host_a_manager(handles: IpcSender<ManagedQueue<u64>>) -> bool {
    let manager = Manager::new().expect("manager in the child");
    let shared = manager.queue::<u64>().expect("queue in the child");
    let idle = manager.queue::<u64>().expect("queue in the child");
    handles.send(shared).expect("send the handle");
    idle.get_timeout(LIMIT).is_ok()
}

#[test]
fn a_dead_manager_process_wakes_getters_and_fails_putters() {
    let (tx, rx) = ipc_channel::ipc::channel::<ManagedQueue<u64>>().unwrap();
    let mut host = Process::new(host_a_manager, (tx,)).start().unwrap();
    let queue = rx.try_recv_timeout(LIMIT).unwrap();
    assert_eq!(queue.manager_pid(), host.pid());
    queue.put(1).unwrap();
    assert_eq!(queue.get_timeout(LIMIT).unwrap(), 1);
    let getter = {
        let queue = queue.clone();
        thread::spawn(move || queue.get())
    };
    wait_until("our getter waits in the manager process", || {
        queue.getters_waiting().unwrap() == 1
    });
    host.kill().unwrap();
    let joined = host.join_timeout(LIMIT);
    assert!(
        matches!(joined, Err(ProcessError::Killed { signal: 9, .. })),
        "{joined:?}"
    );
    remove_sockets_of(host.pid());
    let err = bounded(move || getter.join().unwrap()).unwrap_err();
    assert!(
        matches!(err, ManagerError::Gone { pid, .. } if pid == queue.manager_pid()),
        "{err}"
    );
    let _ = queue.put(2);
    let flushed = queue.flush_timeout(LIMIT);
    assert!(
        matches!(flushed, Err(ManagerError::Gone { .. })),
        "{flushed:?}"
    );
    assert!(matches!(
        queue.put(3).map_err(ManagerError::from),
        Err(ManagerError::Gone { .. })
    ));
    assert!(matches!(queue.qsize(), Err(ManagerError::Gone { .. })));
}

#[test]
fn a_get_timeout_keeps_its_deadline_when_the_manager_is_stopped() {
    let (tx, rx) = ipc_channel::ipc::channel::<ManagedQueue<u64>>().unwrap();
    let mut host = Process::new(host_a_manager, (tx,)).start().unwrap();
    let queue = rx.try_recv_timeout(LIMIT).unwrap();
    queue.put(1).unwrap();
    assert_eq!(queue.get_timeout(LIMIT).unwrap(), 1);
    // A getter that waits in the manager when it stops, and one that asks after.
    let waiting = {
        let queue = queue.clone();
        thread::spawn(move || {
            let started = Instant::now();
            (
                queue.get_timeout(Duration::from_millis(300)),
                started.elapsed(),
            )
        })
    };
    wait_until("our getter waits in the manager process", || {
        queue.getters_waiting().unwrap() == 1
    });
    // SAFETY: stops the child this test started (resumed and killed below).
    assert_eq!(unsafe { libc::kill(host.pid() as i32, libc::SIGSTOP) }, 0);
    let started = Instant::now();
    let late = queue.get_timeout(Duration::from_millis(200));
    let took = started.elapsed();
    let (early, early_took) = waiting.join().unwrap();
    // SAFETY: as above.
    unsafe { libc::kill(host.pid() as i32, libc::SIGCONT) };
    host.kill().unwrap();
    let _ = host.join_timeout(LIMIT);
    remove_sockets_of(host.pid());
    // Each came back with its timeout (+ a generous margin), where a manager that never
    // answers would hold a call without a client-side deadline for ever.
    for (result, took, timeout) in [(late, took, 200), (early, early_took, 300)] {
        assert!(
            matches!(result, Err(ManagerError::Timeout { .. })),
            "{result:?}"
        );
        assert!(took < Duration::from_millis(timeout + 1000), "{took:?}");
    }
}

#[test]
fn a_bounded_queue_refuses_a_put_when_full_and_hands_the_item_back() {
    let manager = Manager::new().unwrap();
    let local = manager.bounded_queue::<String>(2).unwrap();
    let remote = through_ipc(&local);
    assert_eq!(remote.maxsize(), Some(2));
    local.put("a".into()).unwrap();
    remote.put("b".into()).unwrap();
    assert!(local.full().unwrap());
    assert!(remote.full().unwrap());
    for queue in [&local, &remote] {
        let refused = queue.put_nowait("c".into()).unwrap_err();
        assert!(
            matches!(refused.error, ManagerError::Full { maxsize: 2, .. }),
            "{refused}"
        );
        assert_eq!(refused.into_inner().as_deref(), Some("c"));
        let refused = queue
            .put_timeout("d".into(), Duration::from_millis(20))
            .unwrap_err();
        assert!(matches!(refused.error, ManagerError::Full { .. }));
        assert_eq!(refused.item.as_deref(), Some("d"));
    }
    assert_eq!(remote.qsize().unwrap(), 2);
    assert_eq!(remote.get_timeout(LIMIT).unwrap(), "a");
    remote.put_nowait("e".into()).unwrap();
    assert_eq!(local.get_timeout(LIMIT).unwrap(), "b");
    assert_eq!(local.get_timeout(LIMIT).unwrap(), "e");
}

#[test]
fn a_waiting_putter_is_let_in_when_a_get_makes_room() {
    let manager = Manager::new().unwrap();
    let local = manager.bounded_queue::<u32>(1).unwrap();
    local.put(1).unwrap();
    let (done_tx, done_rx) = crossbeam_channel::unbounded();
    // A remote putter, then a local one; each starts once the one before it waits.
    for (n, handle) in [(2, through_ipc(&local)), (3, local.clone())] {
        let done = done_tx.clone();
        thread::spawn(move || done.send((n, handle.put_timeout(n, LIMIT).map_err(|e| e.error))));
        wait_until("the putter waits", || {
            local.putters_waiting().unwrap() == n as usize - 1
        });
    }
    // Each get makes room for exactly one waiting putter, first come first served.
    let got: Vec<u32> = (0..3).map(|_| local.get_timeout(LIMIT).unwrap()).collect();
    assert_eq!(got, vec![1, 2, 3]);
    for _ in 0..2 {
        let (n, result) = done_rx.recv_timeout(LIMIT).unwrap();
        assert!(result.is_ok(), "putter {n}: {result:?}");
    }
    assert_eq!(local.qsize().unwrap(), 0);
}

#[test]
fn bounded_producers_and_consumers_move_every_item_exactly_once() {
    const PER: u32 = 500;
    let manager = Manager::new().unwrap();
    let queue = manager.bounded_queue::<u32>(4).unwrap();
    let producers: Vec<_> = (0..3)
        .map(|p| {
            let handle = if p == 0 {
                queue.clone()
            } else {
                through_ipc(&queue)
            };
            thread::spawn(move || {
                (0..PER)
                    .try_for_each(|i| handle.put_timeout(p * PER + i, LIMIT).map_err(|e| e.error))
            })
        })
        .collect();
    let consumer = through_ipc(&queue);
    let got: Vec<u32> = bounded(move || {
        (0..3 * PER)
            .map(|_| consumer.get_timeout(LIMIT).unwrap())
            .collect()
    });
    for p in producers {
        p.join().unwrap().unwrap();
    }
    let unique: BTreeSet<u32> = got.iter().copied().collect();
    assert_eq!(unique, (0..3 * PER).collect::<BTreeSet<_>>());
    assert_eq!(got.len(), unique.len());
}

#[test]
fn shutdown_wakes_blocked_putters() {
    let manager = Manager::new().unwrap();
    let local = manager.bounded_queue::<u8>(1).unwrap();
    local.put(0).unwrap();
    let remote = through_ipc(&local);
    let putters = [local.clone(), remote].map(|q| thread::spawn(move || q.put(1)));
    wait_until("both putters wait", || {
        local.putters_waiting().unwrap() == 2
    });
    drop(manager);
    for putter in putters {
        let err = bounded(move || putter.join().unwrap()).unwrap_err();
        assert!(matches!(err.error, ManagerError::Gone { .. }), "{err}");
    }
}

#[test]
fn a_bound_of_zero_is_refused() {
    let manager = Manager::new().unwrap();
    let err = manager.bounded_queue::<u8>(0).unwrap_err();
    assert!(matches!(err, ManagerError::InvalidMaxsize { .. }));
    assert!(err.to_string().contains("maxsize >= 1"), "{err}");
}

/// An item type whose encoding fails for 13.
#[derive(Debug, PartialEq, Deserialize)]
struct Picky(u32);

impl Serialize for Picky {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if self.0 == 13 {
            return Err(serde::ser::Error::custom("13 does not travel"));
        }
        self.0.serialize(serializer)
    }
}

#[test]
fn an_item_that_does_not_encode_fails_its_own_put_and_costs_only_itself() {
    let manager = Manager::new().unwrap();
    let local = manager.queue::<Picky>().unwrap();
    let remote = through_ipc(&local);
    for i in 10..17 {
        // Encoded at the put, as Python pickles at put: the bad item is its putter's error.
        let put = remote.put(Picky(i));
        if i == 13 {
            let err = put.unwrap_err();
            assert!(
                matches!(err.error, ManagerError::Serialization { .. }),
                "{err}"
            );
            // The serde error keeps the impl's own words.
            assert!(err.to_string().contains("13 does not travel"), "{err}");
        } else {
            put.unwrap();
        }
    }
    // The queue goes on, with every other item in order.
    remote.flush_timeout(LIMIT).unwrap();
    let got: Vec<u32> = (0..6)
        .map(|_| local.get_timeout(LIMIT).unwrap().0)
        .collect();
    assert_eq!(got, vec![10, 11, 12, 14, 15, 16]);
    remote.put(Picky(17)).unwrap();
    assert_eq!(local.get_timeout(LIMIT).unwrap(), Picky(17));
}

/// An item type whose decoding fails for 1313 (it encodes fine).
#[derive(Debug, PartialEq, Serialize)]
struct Fussy(u32);

impl<'de> Deserialize<'de> for Fussy {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let n = u32::deserialize(deserializer)?;
        if n == 1313 {
            return Err(serde::de::Error::custom("1313 does not decode"));
        }
        Ok(Fussy(n))
    }
}

#[test]
fn one_undecodable_item_among_2000_fails_only_the_get_that_takes_it() {
    let manager = Manager::new().unwrap();
    let local = manager.queue::<Fussy>().unwrap();
    let remote = through_ipc(&local);
    let consumer = through_ipc(&local);
    for i in 0..2000 {
        remote.put(Fussy(i)).unwrap();
    }
    // The manager holds bytes and never decodes them: every item arrives.
    remote.flush_timeout(LIMIT).unwrap();
    assert_eq!(local.qsize().unwrap(), 2000);
    let mut got = Vec::new();
    for i in 0..2000u32 {
        // Local and remote getters alike: the one that takes 1313 fails, alone.
        let from = if i % 2 == 0 { &local } else { &consumer };
        match from.get_timeout(LIMIT) {
            Ok(item) => got.push(item.0),
            Err(err) => {
                assert_eq!(i, 1313, "{err}");
                assert!(matches!(err, ManagerError::Serialization { .. }), "{err}");
                assert!(err.to_string().contains("Fussy"), "{err}");
            }
        }
    }
    let expected: Vec<u32> = (0..2000).filter(|&i| i != 1313).collect();
    assert_eq!(got, expected);
    assert!(matches!(
        local.get_nowait(),
        Err(ManagerError::Empty { .. })
    ));
}

#[test]
fn a_bounded_put_of_an_undecodable_item_fails_only_the_get_that_takes_it() {
    let manager = Manager::new().unwrap();
    let local = manager.bounded_queue::<Fussy>(4).unwrap();
    let remote = through_ipc(&local);
    remote.put_timeout(Fussy(1313), LIMIT).unwrap();
    remote.put_timeout(Fussy(1), LIMIT).unwrap();
    let err = remote.get_timeout(LIMIT).unwrap_err();
    assert!(matches!(err, ManagerError::Serialization { .. }), "{err}");
    assert_eq!(local.get_timeout(LIMIT).unwrap(), Fussy(1));
}

#[test]
fn a_local_put_is_encoded_at_put_so_no_consumer_is_wedged() {
    let manager = Manager::new().unwrap();
    let local = manager.queue::<Picky>().unwrap();
    let consumer = through_ipc(&local);
    // The putter's error, in the impl's own words; nothing reaches the queue.
    let err = ManagerError::from(local.put(Picky(13)).unwrap_err());
    assert!(
        matches!(err, ManagerError::Serialization { ref message, .. } if message.contains("13 does not travel")),
        "{err}"
    );
    let bounded = manager.bounded_queue::<Picky>(2).unwrap();
    let refused = bounded.put_nowait(Picky(13)).unwrap_err();
    assert!(matches!(refused.error, ManagerError::Serialization { .. }));
    assert_eq!(refused.item, Some(Picky(13)));
    // Every consumer, old or fresh, gets the next good item.
    local.put(Picky(14)).unwrap();
    assert_eq!(consumer.get_timeout(LIMIT).unwrap(), Picky(14));
    local.put(Picky(15)).unwrap();
    let fresh = through_ipc(&local);
    assert_eq!(fresh.get_timeout(LIMIT).unwrap(), Picky(15));
    assert_eq!(local.qsize().unwrap(), 0);
}

/// Encodes until `MOODY_REFUSES` is set: an item that passed the check at put and fails later.
#[derive(Debug, PartialEq, Deserialize)]
struct Moody(u32);

static MOODY_REFUSES: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

impl Serialize for Moody {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if self.0 == 0 && MOODY_REFUSES.load(Ordering::SeqCst) {
            return Err(serde::ser::Error::custom("not in the mood"));
        }
        self.0.serialize(serializer)
    }
}

#[test]
fn an_item_encoded_at_put_travels_whatever_its_encoder_does_later() {
    let manager = Manager::new().unwrap();
    let local = manager.queue::<Moody>().unwrap();
    let consumer = through_ipc(&local);
    local.put(Moody(0)).unwrap();
    local.put(Moody(1)).unwrap();
    MOODY_REFUSES.store(true, Ordering::SeqCst);
    // The items are bytes since their puts: both reach the consumer.
    assert_eq!(consumer.get_timeout(LIMIT).unwrap(), Moody(0));
    assert_eq!(consumer.get_timeout(LIMIT).unwrap(), Moody(1));
    // A put now fails itself, in the impl's own words, and nothing reaches the queue.
    let err = ManagerError::from(local.put(Moody(0)).unwrap_err());
    assert!(
        matches!(err, ManagerError::Serialization { ref message, .. } if message.contains("not in the mood")),
        "{err}"
    );
    local.put(Moody(2)).unwrap();
    assert_eq!(through_ipc(&local).get_timeout(LIMIT).unwrap(), Moody(2));
    assert_eq!(local.qsize().unwrap(), 0);
}

#[test]
fn handles_are_send_and_sync() {
    fn send_sync<X: Send + Sync>() {}
    send_sync::<Manager>();
    send_sync::<ManagedQueue<u64>>();
    send_sync::<ManagedQueue<String>>();
    send_sync::<ManagerError>();
}

/// The manager keeps small items inline and larger ones as ranges of their batch: items of
/// every size around that line, put locally and from another process's handle, come out
/// whole and in put order.
#[test]
fn items_of_every_size_come_out_whole_and_in_order() {
    let manager = Manager::new().unwrap();
    let queue = manager.queue::<Vec<u8>>().unwrap();
    let remote = through_ipc(&queue);
    let items: Vec<Vec<u8>> = (0..64u8).map(|n| (0..n).collect()).collect();
    for item in &items {
        remote.put(item.clone()).unwrap();
    }
    remote.flush_timeout(LIMIT).unwrap();
    for item in &items {
        queue.put(item.clone()).unwrap();
    }
    for item in items.iter().chain(&items) {
        assert_eq!(&queue.get_timeout(LIMIT).unwrap(), item);
    }
    assert!(queue.empty().unwrap());
}
