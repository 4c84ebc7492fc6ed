//! Manager locks and events: across the manager's process, decoded handles, child processes
//! and pool tasks; timeouts; a lock whose holder is killed (the next acquire names its pid,
//! the one after works); a shutdown that wakes every waiter.

use std::thread;
use std::time::Duration;

use ipc_channel::ipc::IpcSender;
use process_ipc::manager::{ManagedEvent, ManagedLock, ManagedValue, Manager, ManagerError};
use process_ipc::{Pool, Process, current_pid};

mod common;
use common::{LIMIT, bounded, through_ipc, wait_until};

/// A wait that is meant to run out.
const SHORT: Duration = Duration::from_millis(30);

#[test]
fn smoke() {
    let manager = Manager::new().unwrap();
    let lock = manager.lock().unwrap();
    drop(lock.acquire_timeout(LIMIT).unwrap());
    let event = manager.event().unwrap();
    event.set().unwrap();
    assert!(event.wait_timeout(LIMIT).unwrap());
}

#[test]
fn a_lock_held_anywhere_excludes_everyone_else() {
    let manager = Manager::new().unwrap();
    let lock = manager.lock().unwrap();
    let remote = through_ipc(&lock);
    for (holder, other) in [(&lock, &remote), (&remote, &lock), (&remote, &remote)] {
        let guard = holder.acquire_timeout(LIMIT).unwrap();
        assert!(other.try_acquire().unwrap().is_none());
        let err = other.acquire_timeout(SHORT).unwrap_err();
        assert!(
            matches!(err, ManagerError::ObjectTimeout { timeout, .. } if timeout == SHORT),
            "{err}"
        );
        guard.release().unwrap();
        drop(
            other
                .try_acquire()
                .unwrap()
                .expect("free after the release"),
        );
    }
}

#[test]
fn a_waiting_acquire_gets_the_lock_when_it_is_released() {
    let manager = Manager::new().unwrap();
    let lock = manager.lock().unwrap();
    let remote = through_ipc(&lock);
    let guard = lock.acquire().unwrap();
    let (started_tx, started) = crossbeam_channel::bounded(1);
    let waiter = thread::spawn(move || {
        started_tx.send(()).unwrap();
        let guard = remote.acquire_timeout(LIMIT);
        guard.map(drop)
    });
    started.recv_timeout(LIMIT).unwrap();
    drop(guard);
    bounded(move || waiter.join().unwrap()).unwrap();
}

#[test]
fn a_release_hands_the_lock_to_the_longest_waiting_acquire() {
    let manager = Manager::new().unwrap();
    let lock = manager.lock().unwrap();
    let guard = lock.acquire().unwrap();
    let (order_tx, order) = crossbeam_channel::unbounded();
    let mut waiters = Vec::new();
    // Remote and local waiters, alternating; each starts once the one before it waits.
    for n in 0..4usize {
        let handle = if n % 2 == 0 {
            through_ipc(&lock)
        } else {
            lock.clone()
        };
        let order_tx = order_tx.clone();
        waiters.push(thread::spawn(move || {
            let guard = handle.acquire_timeout(LIMIT).map_err(|e| e.to_string())?;
            order_tx.send(n).map_err(|e| e.to_string())?;
            guard.release().map_err(|e| e.to_string())
        }));
        wait_until("the acquire waits", || lock.waiting().unwrap() == n + 1);
    }
    drop(guard);
    let got: Vec<usize> = (0..4).map(|_| order.recv_timeout(LIMIT).unwrap()).collect();
    assert_eq!(got, [0, 1, 2, 3]);
    for waiter in waiters {
        bounded(move || waiter.join().unwrap()).unwrap();
    }
}

/// A pool task: `n` increments of a managed value, each a read and a write under the lock.
fn locked_increments(lock: ManagedLock, value: ManagedValue<u64>, n: u64) -> u32 {
    for _ in 0..n {
        let _guard = lock.acquire_timeout(LIMIT).expect("acquire in a pool task");
        let v = value.get().expect("get in a pool task");
        value.set(v + 1).expect("set in a pool task");
    }
    current_pid()
}

#[test]
fn a_lock_makes_read_modify_write_from_four_pool_tasks_exact() {
    let manager = Manager::new().unwrap();
    let lock = manager.lock().unwrap();
    let value = manager.value(0u64).unwrap();
    let pool = Pool::new(4).unwrap();
    let tasks = (0..4).map(|_| (lock.clone(), value.clone(), 100));
    let pids = pool
        .starmap_async(locked_increments, tasks)
        .unwrap()
        .get_timeout(LIMIT)
        .unwrap();
    assert!(!pids.contains(&current_pid()));
    assert_eq!(value.get().unwrap(), 400);
}

/// A child process's target: takes the lock, says so, then waits (holding it) until killed.
fn hold_until_killed(lock: ManagedLock, holding: IpcSender<u32>, never: ManagedEvent) -> bool {
    let _guard = lock.acquire_timeout(LIMIT).expect("acquire in the child");
    holding.send(current_pid()).expect("tell the parent");
    never.wait_timeout(LIMIT).unwrap_or(false)
}

#[test]
fn a_lock_whose_holder_is_killed_names_its_pid_once_and_then_works() {
    let manager = Manager::new().unwrap();
    let lock = manager.lock().unwrap();
    let never = manager.event().unwrap();
    for acquirer in [lock.clone(), through_ipc(&lock)] {
        let (tx, rx) = ipc_channel::ipc::channel::<u32>().unwrap();
        let mut child = Process::new(hold_until_killed, (lock.clone(), tx, never.clone()))
            .start()
            .unwrap();
        let holder = rx.try_recv_timeout(LIMIT).unwrap();
        assert_eq!(holder, child.pid());
        assert!(acquirer.try_acquire().unwrap().is_none());
        child.kill().unwrap();
        assert!(child.join_timeout(LIMIT).is_err());
        // Whether the manager saw the death before this call or while it waits, it says so.
        let err = acquirer.acquire_timeout(LIMIT).unwrap_err();
        assert!(
            matches!(err, ManagerError::OwnerDied { owner, .. } if owner == holder),
            "{err}"
        );
        assert!(
            err.to_string().contains(&format!("process {holder}")),
            "{err}"
        );
        // Reported once; the lock is free again.
        acquirer.acquire_timeout(LIMIT).unwrap().release().unwrap();
    }
}

/// A child process's target: waits for the lock.
fn wait_for_lock(lock: ManagedLock) -> bool {
    lock.acquire_timeout(LIMIT).is_ok()
}

#[test]
fn a_waiter_killed_while_waiting_is_never_named_as_a_holder() {
    let manager = Manager::new().unwrap();
    let lock = manager.lock().unwrap();
    let guard = lock.acquire().unwrap();
    let mut child = Process::new(wait_for_lock, (lock.clone(),))
        .start()
        .unwrap();
    wait_until("the child waits for the lock", || {
        lock.waiting().unwrap() == 1
    });
    child.kill().unwrap();
    assert!(child.join_timeout(LIMIT).is_err());
    // The release hands the lock to the dead waiter (the first in line), whose answer cannot
    // be delivered: the manager takes it back without blaming anyone.
    drop(guard);
    lock.acquire_timeout(LIMIT).unwrap().release().unwrap();
}

/// A child process's target: waits for the event.
fn wait_for(event: ManagedEvent) -> bool {
    event.wait_timeout(LIMIT).expect("wait in the child")
}

#[test]
fn an_event_set_in_the_parent_wakes_a_child_and_pool_tasks() {
    let manager = Manager::new().unwrap();
    let event = manager.event().unwrap();
    let mut child = Process::new(wait_for, (event.clone(),)).start().unwrap();
    let pool = Pool::new(2).unwrap();
    let waiting = pool
        .map_async(wait_for, (0..4).map(|_| event.clone()))
        .unwrap();
    assert!(!event.is_set().unwrap());
    event.set().unwrap();
    assert!(child.join_timeout(LIMIT).unwrap());
    assert_eq!(waiting.get_timeout(LIMIT).unwrap(), [true; 4]);
}

/// A child process's target: sets the event.
fn set_it(event: ManagedEvent) -> bool {
    event.set().expect("set in the child");
    event.is_set().expect("is_set in the child")
}

#[test]
fn an_event_set_in_a_child_wakes_the_parent() {
    let manager = Manager::new().unwrap();
    let event = manager.event().unwrap();
    let remote = through_ipc(&event);
    assert!(!remote.wait_timeout(SHORT).unwrap());
    assert!(!event.wait_timeout(SHORT).unwrap());
    let waiter = {
        let event = event.clone();
        thread::spawn(move || event.wait())
    };
    let mut child = Process::new(set_it, (event.clone(),)).start().unwrap();
    assert!(child.join_timeout(LIMIT).unwrap());
    bounded(move || waiter.join().unwrap()).unwrap();
    assert!(remote.wait_timeout(LIMIT).unwrap());
    remote.clear().unwrap();
    assert!(!event.is_set().unwrap());
}

#[test]
fn shutdown_wakes_every_waiter_with_an_error() {
    let manager = Manager::new().unwrap();
    let lock = manager.lock().unwrap();
    let event = manager.event().unwrap();
    let guard = lock.acquire().unwrap();
    let (started_tx, started) = crossbeam_channel::unbounded();
    let mut waiters = Vec::new();
    for remote in [false, true] {
        let (lock, event) = if remote {
            (through_ipc(&lock), through_ipc(&event))
        } else {
            (lock.clone(), event.clone())
        };
        let started = started_tx.clone();
        waiters.push(thread::spawn(move || {
            started.send(()).unwrap();
            lock.acquire().map(drop)
        }));
        let started = started_tx.clone();
        waiters.push(thread::spawn(move || {
            started.send(()).unwrap();
            event.wait()
        }));
    }
    for _ in 0..4 {
        started.recv_timeout(LIMIT).unwrap();
    }
    // Whether each waiter is already waiting in the manager or not yet, it ends with an error.
    manager.shutdown();
    for waiter in waiters {
        let err = bounded(move || waiter.join().unwrap()).unwrap_err();
        assert!(matches!(err, ManagerError::ObjectGone { .. }), "{err}");
    }
    drop(guard);
    assert!(matches!(
        lock.try_acquire(),
        Err(ManagerError::ObjectGone { .. })
    ));
    assert!(matches!(event.set(), Err(ManagerError::ObjectGone { .. })));
}
