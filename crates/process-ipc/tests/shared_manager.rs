//! `SharedMemoryManager` (#25): its blocks are attachable by name while it lives and removed
//! when it ends: at `shutdown`, at drop, and when its process is killed with SIGKILL (its
//! watcher process removes them). Every wait is bounded.

use std::time::{Duration, Instant};

use process_ipc::{
    Connection, Process, ShareableItem, ShareableList, SharedError, SharedMemory,
    SharedMemoryManager, pipe,
};

const WAIT: Duration = Duration::from_secs(20);

fn gone(name: &str) -> bool {
    matches!(
        SharedMemory::attach(name),
        Err(SharedError::NotFound { .. })
    )
}

#[test]
fn shutdown_and_drop_remove_every_block_it_made() {
    let smm = SharedMemoryManager::new().unwrap();
    let mut block = smm.shared_memory(100).unwrap();
    block.as_mut_slice()[0] = 1;
    let list = smm
        .shareable_list(&[ShareableItem::Int(3), "x".into()])
        .unwrap();
    let names = smm.names();
    assert_eq!(names, [block.name().to_string(), list.name().to_string()]);
    assert_eq!(SharedMemory::attach(block.name()).unwrap().as_slice()[0], 1);
    assert_eq!(
        ShareableList::attach(list.name()).unwrap().get(0).unwrap(),
        ShareableItem::Int(3)
    );
    smm.shutdown();
    for name in &names {
        assert!(gone(name), "{name} still there");
    }
    // The mappings stay, as in Python.
    assert_eq!(block.as_slice()[0], 1);

    let smm = SharedMemoryManager::new().unwrap();
    let name = smm.shared_memory(8).unwrap().name().to_string();
    drop(smm);
    assert!(gone(&name));
}

/// Makes two blocks with a manager, sends their names, and waits to be killed.
fn make_and_wait(out: Connection<Vec<String>>) {
    let smm = SharedMemoryManager::new().unwrap();
    let a = smm.shared_memory(4096).unwrap();
    let b = smm.shareable_list(&[ShareableItem::Bool(true)]).unwrap();
    out.send(vec![a.name().to_string(), b.name().to_string()])
        .unwrap();
    loop {
        std::thread::park();
    }
}

#[test]
fn blocks_of_a_killed_managers_process_are_removed_by_its_watcher() {
    let (mine, theirs) = pipe::<Vec<String>>().unwrap();
    let mut child = Process::new(make_and_wait, (theirs,)).start().unwrap();
    let names = mine.recv_timeout(WAIT).unwrap();
    for name in &names {
        assert!(SharedMemory::attach(name).is_ok(), "{name} not made");
    }
    child.kill().unwrap();
    assert!(child.join_timeout(WAIT).is_err(), "killed");
    let deadline = Instant::now() + WAIT;
    while !names.iter().all(|name| gone(name)) {
        assert!(
            Instant::now() < deadline,
            "the watcher left {names:?} behind"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}
