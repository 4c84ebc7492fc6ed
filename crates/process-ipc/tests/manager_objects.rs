//! Manager dicts, lists, namespaces and values: every operation from the manager's process,
//! from decoded handles, from child processes and from pool tasks; concurrent one-round-trip
//! updates that come out exact; keys and values that do not (de)serialize; a manager that is
//! gone reported as an error, never a hang.

use std::collections::BTreeSet;

use ipc_channel::ipc::IpcSender;
use process_ipc::manager::{
    ManagedDict, ManagedList, ManagedNamespace, ManagedValue, Manager, ManagerError,
};
use process_ipc::{Pool, Process, ProcessError, current_pid};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

mod common;
use common::{LIMIT, bounded, remove_sockets_of, through_ipc};

/// A key or value whose `Serialize` refuses, with its own message.
#[derive(Debug, PartialEq)]
struct Refuses;

impl Serialize for Refuses {
    fn serialize<S: Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        Err(serde::ser::Error::custom("Refuses will not be serialized"))
    }
}

impl<'de> Deserialize<'de> for Refuses {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        <()>::deserialize(d).map(|()| Refuses)
    }
}

/// Either a plain value or one that refuses to serialize.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
enum Maybe {
    Fine(u32),
    Bad(Refuses),
}

#[test]
fn smoke() {
    let manager = Manager::new().unwrap();
    let dict = manager.dict::<String, u32>().unwrap();
    assert_eq!(dict.insert("a".into(), 1).unwrap(), None);
    assert_eq!(dict.get("a").unwrap(), Some(1));
}

/// Every dict operation, on a handle made by the manager or one decoded as in another process.
fn dict_api(dict: &ManagedDict<String, u32>) {
    dict.clear().unwrap();
    assert!(dict.is_empty().unwrap());
    assert_eq!(dict.insert("b".into(), 2).unwrap(), None);
    assert_eq!(dict.insert("a".into(), 1).unwrap(), None);
    assert_eq!(dict.insert("b".into(), 20).unwrap(), Some(2));
    assert_eq!(dict.get("b").unwrap(), Some(20));
    assert_eq!(dict.get("zz").unwrap(), None);
    assert!(dict.contains_key("a").unwrap());
    assert!(!dict.contains_key("zz").unwrap());
    dict.update([("c".to_string(), 3), ("a".to_string(), 10)])
        .unwrap();
    // Insertion order, as Python's: a key set again keeps its place.
    assert_eq!(dict.keys().unwrap(), ["b", "a", "c"]);
    assert_eq!(dict.values().unwrap(), [20, 10, 3]);
    assert_eq!(
        dict.items().unwrap(),
        [("b".into(), 20), ("a".into(), 10), ("c".into(), 3)]
    );
    assert_eq!(dict.setdefault("a".into(), 99).unwrap(), 10);
    assert_eq!(dict.setdefault("d".into(), 4).unwrap(), 4);
    assert_eq!(dict.remove("b").unwrap(), Some(20));
    assert_eq!(dict.remove("b").unwrap(), None);
    assert_eq!(dict.pop("c", 0).unwrap(), 3);
    assert_eq!(dict.pop("c", 0).unwrap(), 0);
    assert_eq!(dict.len().unwrap(), 2);
    assert_eq!(dict.keys().unwrap(), ["a", "d"]);
    dict.clear().unwrap();
    assert_eq!(dict.len().unwrap(), 0);
}

#[test]
fn a_dict_works_alike_in_the_manager_and_through_a_decoded_handle() {
    let manager = Manager::new().unwrap();
    let dict = manager.dict::<String, u32>().unwrap();
    dict_api(&dict);
    let remote = through_ipc(&dict);
    dict_api(&remote);
    remote.insert("seen".into(), 7).unwrap();
    assert_eq!(dict.get("seen").unwrap(), Some(7));
}

fn list_api(list: &ManagedList<String>) {
    list.clear().unwrap();
    list.append("b".into()).unwrap();
    list.extend(["c".to_string(), "d".to_string()]).unwrap();
    list.insert(0, "a".into()).unwrap();
    list.insert(4, "e".into()).unwrap();
    assert_eq!(list.to_vec().unwrap(), ["a", "b", "c", "d", "e"]);
    assert_eq!(list.len().unwrap(), 5);
    assert_eq!(list.get(1).unwrap().as_deref(), Some("b"));
    assert_eq!(list.get(5).unwrap(), None);
    assert_eq!(list.set(1, "B".into()).unwrap(), "b");
    assert_eq!(list.remove(0).unwrap(), "a");
    assert_eq!(list.pop().unwrap().as_deref(), Some("e"));
    assert_eq!(list.to_vec().unwrap(), ["B", "c", "d"]);
    for err in [
        list.set(3, "x".into()).unwrap_err(),
        list.remove(3).unwrap_err(),
        list.insert(4, "x".into()).unwrap_err(),
    ] {
        assert!(
            matches!(err, ManagerError::IndexOutOfRange { index, len: 3, .. } if index >= 3),
            "{err}"
        );
        assert!(
            err.to_string().contains("out of range for length 3"),
            "{err}"
        );
    }
    list.clear().unwrap();
    assert_eq!(list.pop().unwrap(), None);
    assert!(list.is_empty().unwrap());
}

#[test]
fn a_list_works_alike_in_the_manager_and_through_a_decoded_handle() {
    let manager = Manager::new().unwrap();
    let list = manager.list::<String>().unwrap();
    list_api(&list);
    list_api(&through_ipc(&list));
}

#[test]
fn a_namespace_and_a_value_work_through_decoded_handles() {
    let manager = Manager::new().unwrap();
    let ns = manager.namespace().unwrap();
    let value = manager.value(5i64).unwrap();
    let (rns, rvalue) = (through_ipc(&ns), through_ipc(&value));
    rns.set("x", 1u8).unwrap();
    ns.set("y", vec![1.5f64]).unwrap();
    assert_eq!(ns.get::<u8>("x").unwrap(), Some(1));
    assert_eq!(rns.get::<Vec<f64>>("y").unwrap(), Some(vec![1.5]));
    assert_eq!(rns.get::<u8>("nope").unwrap(), None);
    assert_eq!(rns.names().unwrap(), ["x", "y"]);
    assert_eq!(rns.remove::<u8>("x").unwrap(), Some(1));
    assert_eq!(ns.names().unwrap(), ["y"]);
    assert_eq!(rvalue.get().unwrap(), 5);
    assert_eq!(rvalue.set(-6).unwrap(), 5);
    assert_eq!(value.get().unwrap(), -6);
}

/// A child process's target: uses each kind of object, and reports what it saw.
fn child_uses_everything(
    dict: ManagedDict<u32, String>,
    list: ManagedList<u32>,
    ns: ManagedNamespace,
    value: ManagedValue<u64>,
) -> (Option<String>, u32) {
    let seen = dict.get(&1).expect("dict get in the child");
    dict.insert(2, format!("from {}", current_pid()))
        .expect("dict insert in the child");
    list.extend([10, 20, 30]).expect("list extend in the child");
    ns.set("child", current_pid())
        .expect("namespace set in the child");
    let v = value.get().expect("value get in the child");
    value.set(v * 2).expect("value set in the child");
    (seen, current_pid())
}

#[test]
fn every_kind_is_used_from_a_child_process() {
    let manager = Manager::new().unwrap();
    let dict = manager.dict::<u32, String>().unwrap();
    let list = manager.list::<u32>().unwrap();
    let ns = manager.namespace().unwrap();
    let value = manager.value(21u64).unwrap();
    dict.insert(1, "from the parent".into()).unwrap();
    let mut child = Process::new(
        child_uses_everything,
        (dict.clone(), list.clone(), ns.clone(), value.clone()),
    )
    .start()
    .unwrap();
    let (seen, pid) = child.join_timeout(LIMIT).unwrap();
    assert_eq!(pid, child.pid());
    assert_ne!(pid, current_pid());
    assert_eq!(seen.as_deref(), Some("from the parent"));
    assert_eq!(dict.get(&2).unwrap(), Some(format!("from {pid}")));
    assert_eq!(list.to_vec().unwrap(), [10, 20, 30]);
    assert_eq!(ns.get::<u32>("child").unwrap(), Some(pid));
    assert_eq!(value.get().unwrap(), 42);
}

/// A pool task: 250 appends to the list, and one `update` of 250 keys to the dict; each call
/// is one round trip done as one step in the manager.
fn task_updates(
    task: u32,
    dict: ManagedDict<(u32, u32), u32>,
    list: ManagedList<(u32, u32)>,
) -> u32 {
    for i in 0..250 {
        list.append((task, i)).expect("append from a pool task");
    }
    dict.update((0..250).map(|i| ((task, i), task * 1000 + i)))
        .expect("update from a pool task");
    current_pid()
}

#[test]
fn concurrent_appends_and_updates_from_four_pool_tasks_are_exact() {
    let manager = Manager::new().unwrap();
    let dict = manager.dict::<(u32, u32), u32>().unwrap();
    let list = manager.list::<(u32, u32)>().unwrap();
    let pool = Pool::new(4).unwrap();
    let tasks = (0..4).map(|t| (t, dict.clone(), list.clone()));
    let pids: BTreeSet<u32> = pool
        .starmap_async(task_updates, tasks)
        .unwrap()
        .get_timeout(LIMIT)
        .unwrap()
        .into_iter()
        .collect();
    assert!(!pids.contains(&current_pid()));
    let appended = list.to_vec().unwrap();
    assert_eq!(appended.len(), 1000);
    let distinct: BTreeSet<(u32, u32)> = appended.iter().copied().collect();
    assert_eq!(distinct.len(), 1000);
    // Each task's own appends kept their order.
    for t in 0..4 {
        let mine: Vec<u32> = appended.iter().filter(|p| p.0 == t).map(|p| p.1).collect();
        assert_eq!(mine, (0..250).collect::<Vec<_>>());
    }
    assert_eq!(dict.len().unwrap(), 1000);
    for (key, value) in dict.items().unwrap() {
        assert_eq!(value, key.0 * 1000 + key.1);
    }
}

/// A pool task: a read-modify-write on the dict without a lock (not atomic), and a counter of
/// its own through `setdefault` (one step).
fn task_setdefault(task: u32, dict: ManagedDict<String, u32>) -> u32 {
    dict.setdefault(format!("task {task}"), task)
        .expect("setdefault from a pool task")
}

#[test]
fn setdefault_from_pool_tasks_keeps_the_first_value() {
    let manager = Manager::new().unwrap();
    let dict = manager.dict::<String, u32>().unwrap();
    dict.insert("task 2".into(), 200).unwrap();
    let pool = Pool::new(2).unwrap();
    let tasks = (0..4).map(|t| (t, dict.clone()));
    let got = pool
        .starmap_async(task_setdefault, tasks)
        .unwrap()
        .get_timeout(LIMIT)
        .unwrap();
    assert_eq!(got, [0, 1, 200, 3]);
    assert_eq!(dict.len().unwrap(), 4);
}

#[test]
fn a_key_or_value_that_does_not_serialize_is_an_error_at_the_call_and_nothing_is_sent() {
    let manager = Manager::new().unwrap();
    let dict = manager.dict::<Maybe, Maybe>().unwrap();
    let list = manager.list::<Maybe>().unwrap();
    let ns = manager.namespace().unwrap();
    let value = manager.value(Maybe::Fine(0)).unwrap();
    for local in [true, false] {
        let (dict, list, ns, value) = if local {
            (dict.clone(), list.clone(), ns.clone(), value.clone())
        } else {
            (
                through_ipc(&dict),
                through_ipc(&list),
                through_ipc(&ns),
                through_ipc(&value),
            )
        };
        let errors = [
            (
                "key",
                dict.insert(Maybe::Bad(Refuses), Maybe::Fine(1))
                    .unwrap_err(),
            ),
            (
                "value",
                dict.insert(Maybe::Fine(1), Maybe::Bad(Refuses))
                    .unwrap_err(),
            ),
            ("key", dict.get(&Maybe::Bad(Refuses)).unwrap_err()),
            (
                "value",
                dict.update([
                    (Maybe::Fine(2), Maybe::Fine(2)),
                    (Maybe::Fine(3), Maybe::Bad(Refuses)),
                ])
                .unwrap_err(),
            ),
            ("item", list.append(Maybe::Bad(Refuses)).unwrap_err()),
            (
                "item",
                list.extend([Maybe::Fine(1), Maybe::Bad(Refuses)])
                    .unwrap_err(),
            ),
            ("value", ns.set("x", Maybe::Bad(Refuses)).unwrap_err()),
            ("value", value.set(Maybe::Bad(Refuses)).unwrap_err()),
        ];
        for (what, err) in errors {
            assert!(
                matches!(&err, ManagerError::Encode { what: w, message, .. }
                    if *w == what && message == "Refuses will not be serialized"),
                "{err:?}"
            );
            assert!(err.to_string().contains("nothing was sent"), "{err}");
        }
        // Nothing arrived, not even the good half of an update or an extend.
        assert_eq!(dict.len().unwrap(), 0);
        assert_eq!(list.len().unwrap(), 0);
        assert!(ns.names().unwrap().is_empty());
        assert_eq!(value.get().unwrap(), Maybe::Fine(0));
    }
    let refused = manager.value(Maybe::Bad(Refuses)).unwrap_err();
    assert!(matches!(refused, ManagerError::Encode { .. }), "{refused}");
}

#[test]
fn a_value_that_does_not_decode_is_an_error_naming_the_type() {
    let manager = Manager::new().unwrap();
    let ns = manager.namespace().unwrap();
    ns.set("label", "hello".to_string()).unwrap();
    for ns in [ns.clone(), through_ipc(&ns)] {
        let err = ns.get::<bool>("label").unwrap_err();
        assert!(
            matches!(
                &err,
                ManagerError::Decode {
                    type_name: "bool",
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(err.to_string().contains("does not decode as bool"), "{err}");
    }
    // A handle decoded with other types than it was made with.
    let dict = manager.dict::<u8, String>().unwrap();
    dict.insert(1, "hello".into()).unwrap();
    let bytes = postcard::to_stdvec(&dict).unwrap();
    let retyped: ManagedDict<u8, bool> = postcard::from_bytes(&bytes).unwrap();
    let err = retyped.get(&1).unwrap_err();
    assert!(
        matches!(
            err,
            ManagerError::Decode {
                type_name: "bool",
                ..
            }
        ),
        "{err}"
    );
    // A handle decoded as another kind of object.
    let as_list: ManagedList<u8> = postcard::from_bytes(&bytes).unwrap();
    let err = as_list.len().unwrap_err();
    assert!(err.to_string().contains("is a dict, not a list"), "{err}");
}

#[test]
fn every_call_fails_after_shutdown() {
    let manager = Manager::new().unwrap();
    let dict = manager.dict::<u8, u8>().unwrap();
    let list = manager.list::<u8>().unwrap();
    let remote_dict = through_ipc(&dict);
    let remote_list = through_ipc(&list);
    remote_dict.insert(1, 1).unwrap();
    manager.shutdown();
    let gone = |r: Result<_, ManagerError>| {
        let err = r.unwrap_err();
        assert!(
            matches!(err, ManagerError::ObjectGone { pid, .. } if pid == current_pid()),
            "{err}"
        );
    };
    gone(dict.get(&1).map(drop));
    gone(remote_dict.get(&1).map(drop));
    gone(list.append(1));
    gone(remote_list.len().map(drop));
    gone(manager.dict::<u8, u8>().map(drop));
    gone(manager.namespace().map(drop));
}

/// A child process's target: host a manager, send a dict handle to the parent, then wait until
/// killed.
fn host_a_manager(handles: IpcSender<ManagedDict<u8, u8>>) -> bool {
    let manager = Manager::new().expect("manager in the child");
    let dict = manager.dict().expect("dict in the child");
    let never = manager.event().expect("event in the child");
    handles.send(dict).expect("send the handle");
    never.wait_timeout(LIMIT).unwrap_or(false)
}

#[test]
fn a_dead_manager_process_is_an_error_not_a_hang() {
    let (tx, rx) = ipc_channel::ipc::channel::<ManagedDict<u8, u8>>().unwrap();
    let mut host = Process::new(host_a_manager, (tx,)).start().unwrap();
    let dict = rx.try_recv_timeout(LIMIT).unwrap();
    assert_eq!(dict.manager_pid(), host.pid());
    dict.insert(1, 2).unwrap();
    assert_eq!(dict.get(&1).unwrap(), Some(2));
    host.kill().unwrap();
    let joined = host.join_timeout(LIMIT);
    assert!(
        matches!(joined, Err(ProcessError::Killed { signal: 9, .. })),
        "{joined:?}"
    );
    remove_sockets_of(host.pid());
    let err = bounded(move || dict.get(&1)).unwrap_err();
    assert!(matches!(err, ManagerError::ObjectGone { .. }), "{err}");
}

#[test]
fn handles_are_send_and_sync_whatever_they_hold() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<ManagedDict<std::rc::Rc<u8>, std::cell::Cell<u8>>>();
    send_sync::<ManagedList<std::rc::Rc<u8>>>();
    send_sync::<ManagedValue<std::rc::Rc<u8>>>();
    send_sync::<ManagedNamespace>();
}
