//! Manager lists and dicts as containers, after CPython's `_TestContainers`: iteration (over a
//! snapshot taken in one round trip, where Python's proxy iterates live), slices, `count`,
//! `index`, `remove(value)`, `reverse`, `popitem`, `copy`, and handles nested in containers;
//! each from the manager's process, through a decoded handle and from a child process.

use std::collections::{BTreeMap, HashMap, VecDeque};

use process_ipc::Process;
use process_ipc::manager::{ManagedDict, ManagedList, Manager, ManagerError};

mod common;
use common::{LIMIT, through_ipc};

/// `_TestContainers.test_list`: a list made from items, slices of every shape, `l *= 2` and
/// `l + [5, 6]` (as `extend` of a copy and a copy extended here).
fn list_like_python(a: &ManagedList<u32>, b: &ManagedList<u32>) {
    a.clear().unwrap();
    b.clear().unwrap();
    a.extend(0..10).unwrap();
    assert_eq!(a.slice(..).unwrap(), (0..10).collect::<Vec<_>>());
    assert_eq!(b.slice(..).unwrap(), []);
    b.extend(0..5).unwrap();
    assert_eq!(b.slice(..).unwrap(), [0, 1, 2, 3, 4]);
    assert_eq!(b.get(2).unwrap(), Some(2));
    // Python's slices clamp: b[2:10] of five items is three.
    assert_eq!(b.slice(2..10).unwrap(), [2, 3, 4]);
    assert_eq!(b.slice(2..=3).unwrap(), [2, 3]);
    assert_eq!(b.slice(7..).unwrap(), []);
    // An end before the start is empty, as b[4:2] is.
    #[allow(clippy::reversed_empty_ranges)]
    let backwards = 4..2;
    assert_eq!(b.slice(backwards).unwrap(), []);
    // b *= 2
    b.extend(b.copy::<Vec<u32>>().unwrap()).unwrap();
    assert_eq!(b.slice(..).unwrap(), [0, 1, 2, 3, 4, 0, 1, 2, 3, 4]);
    // b + [5, 6] is a plain list; b is unchanged.
    let mut plus: Vec<u32> = b.copy().unwrap();
    plus.extend([5, 6]);
    assert_eq!(plus, [0, 1, 2, 3, 4, 0, 1, 2, 3, 4, 5, 6]);
    assert_eq!(b.len().unwrap(), 10);
    assert_eq!(a.slice(..).unwrap(), (0..10).collect::<Vec<_>>());
}

#[test]
fn a_list_slices_like_python_in_the_manager_and_through_a_decoded_handle() {
    let manager = Manager::new().unwrap();
    let (a, b) = (manager.list().unwrap(), manager.list().unwrap());
    list_like_python(&a, &b);
    list_like_python(&through_ipc(&a), &through_ipc(&b));
}

/// Python's `l[a:b] = items` and `del l[a:b]`, as `splice`.
fn splices(list: &ManagedList<u32>) {
    list.clear().unwrap();
    list.extend(0..6).unwrap();
    assert_eq!(list.splice(1..3, [10, 11, 12]).unwrap(), [1, 2]);
    assert_eq!(list.to_vec().unwrap(), [0, 10, 11, 12, 3, 4, 5]);
    // del l[4:]
    assert_eq!(list.splice(4.., []).unwrap(), [3, 4, 5]);
    // l[100:] = [7] appends, as in Python.
    assert!(list.splice(100.., [7]).unwrap().is_empty());
    // l[0:0] = [9] inserts at the front.
    assert!(list.splice(..0, [9]).unwrap().is_empty());
    assert_eq!(list.to_vec().unwrap(), [9, 0, 10, 11, 12, 7]);
}

#[test]
fn splice_assigns_and_deletes_slices_as_python_does() {
    let manager = Manager::new().unwrap();
    let list = manager.list().unwrap();
    splices(&list);
    splices(&through_ipc(&list));
}

/// `_TestContainers.test_list_iter`, with this crate's documented difference: the iterator
/// runs over a snapshot, so a change made after `iter()` does not show (Python's proxy shows
/// `a[0] = 100` at the next `next`).
fn iterates_a_snapshot(a: &ManagedList<u32>) {
    a.clear().unwrap();
    a.extend(0..10).unwrap();
    let mut it = a.iter().unwrap();
    assert_eq!(it.by_ref().collect::<Vec<_>>(), (0..10).collect::<Vec<_>>());
    assert_eq!(it.next(), None, "exhausted");
    let mut it = a.iter().unwrap();
    assert_eq!(a.set(0, 100).unwrap(), 0);
    assert_eq!(it.next(), Some(0), "a snapshot, taken at iter()");
    assert_eq!(a.iter().unwrap().next(), Some(100));
    // A `for` loop over it.
    let mut total = 0;
    for x in a.iter().unwrap() {
        total += x;
    }
    assert_eq!(total, 100 + (1..10).sum::<u32>());
}

#[test]
fn a_list_iterates_over_a_snapshot() {
    let manager = Manager::new().unwrap();
    let a = manager.list().unwrap();
    iterates_a_snapshot(&a);
    iterates_a_snapshot(&through_ipc(&a));
}

/// `count`, `index`, `remove(value)`, `reverse`, `x in l`, with Python's `ValueError` as
/// `NotInList`.
fn searches(list: &ManagedList<String>) {
    list.clear().unwrap();
    list.extend(["a", "b", "a", "c", "a"].map(String::from))
        .unwrap();
    assert_eq!(list.count("a").unwrap(), 3);
    assert_eq!(list.count("z").unwrap(), 0);
    assert_eq!(list.index("a").unwrap(), 0);
    assert_eq!(list.index("c").unwrap(), 3);
    assert_eq!(list.index_in("a", 1..).unwrap(), 2);
    assert_eq!(list.index_in("a", 3..5).unwrap(), 4);
    assert!(list.contains("b").unwrap());
    assert!(!list.contains("z").unwrap());
    for miss in [
        list.index("z").unwrap_err(),
        list.index_in("b", 2..).unwrap_err(),
        list.index_in("a", 1..2).unwrap_err(),
        list.remove_value("z").unwrap_err(),
    ] {
        assert!(matches!(miss, ManagerError::NotInList { .. }), "{miss}");
        assert!(miss.to_string().contains("not in the list"), "{miss}");
    }
    assert_eq!(list.len().unwrap(), 5, "a missed remove changes nothing");
    // remove takes the first equal item only.
    list.remove_value("a").unwrap();
    assert_eq!(list.to_vec().unwrap(), ["b", "a", "c", "a"]);
    list.reverse().unwrap();
    assert_eq!(list.to_vec().unwrap(), ["a", "c", "a", "b"]);
    list.clear().unwrap();
    list.reverse().unwrap();
    assert!(matches!(
        list.remove_value("a"),
        Err(ManagerError::NotInList { .. })
    ));
}

#[test]
fn count_index_remove_and_reverse_work_alike_in_the_manager_and_through_a_decoded_handle() {
    let manager = Manager::new().unwrap();
    let list = manager.list().unwrap();
    searches(&list);
    searches(&through_ipc(&list));
}

#[test]
fn a_list_copy_is_a_plain_collection_of_any_kind() {
    let manager = Manager::new().unwrap();
    let list = through_ipc(&manager.list::<u8>().unwrap());
    list.extend([3, 1, 2]).unwrap();
    let as_vec: Vec<u8> = list.copy().unwrap();
    let as_deque: VecDeque<u8> = list.copy().unwrap();
    assert_eq!(as_vec, [3, 1, 2]);
    assert_eq!(as_deque, [3, 1, 2]);
    // A copy is not the list: changing one leaves the other.
    list.append(4).unwrap();
    assert_eq!(as_vec.len(), 3);
}

/// `_TestContainers.test_list_proxy_in_list`: a list of list handles; each element reaches
/// its list live, and a handle stored before an append sees the append.
#[test]
fn lists_of_list_handles_reach_each_list() {
    let manager = Manager::new().unwrap();
    let a: ManagedList<u32> = manager.list().unwrap();
    let b: ManagedList<u32> = manager.list().unwrap();
    a.extend(0..10).unwrap();
    b.extend([0, 1, 2, 3, 4, 0, 1, 2, 3, 4]).unwrap();
    let e: ManagedList<ManagedList<u32>> = manager.list().unwrap();
    e.extend([a.clone(), b.clone()]).unwrap();
    let seen: Vec<Vec<u32>> = e
        .iter()
        .unwrap()
        .map(|element| element.slice(..).unwrap())
        .collect();
    assert_eq!(
        seen,
        [
            (0..10).collect::<Vec<_>>(),
            vec![0, 1, 2, 3, 4, 0, 1, 2, 3, 4]
        ]
    );
    let f: ManagedList<ManagedList<u32>> = through_ipc(&manager.list().unwrap());
    f.append(a.clone()).unwrap();
    a.append(10).unwrap();
    let first = f.get(0).unwrap().unwrap();
    assert_eq!(first.slice(..).unwrap(), (0..11).collect::<Vec<_>>());
}

/// `_TestContainers.test_dict`: `copy`, keys, values and items.
fn dict_like_python(d: &ManagedDict<u32, char>) {
    d.clear().unwrap();
    let indices: Vec<u32> = (65..70).collect();
    for &i in &indices {
        d.insert(i, char::from_u32(i).unwrap()).unwrap();
    }
    let expected: HashMap<u32, char> = indices
        .iter()
        .map(|&i| (i, char::from_u32(i).unwrap()))
        .collect();
    assert_eq!(d.copy::<HashMap<u32, char>>().unwrap(), expected);
    assert_eq!(
        d.copy::<BTreeMap<u32, char>>().unwrap(),
        expected.clone().into_iter().collect::<BTreeMap<_, _>>()
    );
    assert_eq!(d.keys().unwrap(), indices);
    assert_eq!(
        d.values().unwrap(),
        indices
            .iter()
            .map(|&i| char::from_u32(i).unwrap())
            .collect::<Vec<_>>()
    );
    assert_eq!(
        d.copy::<Vec<(u32, char)>>().unwrap(),
        d.items().unwrap(),
        "a copy keeps insertion order"
    );
}

#[test]
fn a_dict_copies_like_python_in_the_manager_and_through_a_decoded_handle() {
    let manager = Manager::new().unwrap();
    let d = manager.dict().unwrap();
    dict_like_python(&d);
    dict_like_python(&through_ipc(&d));
}

/// `_TestContainers.test_dict_iter`, with the snapshot difference: clearing the dict after
/// `iter()` leaves the iterator whole (Python's raises `RuntimeError` at the next `next`).
fn dict_iterates_a_snapshot(d: &ManagedDict<u32, char>) {
    d.clear().unwrap();
    let indices: Vec<u32> = (65..70).collect();
    for &i in &indices {
        d.insert(i, char::from_u32(i).unwrap()).unwrap();
    }
    let mut it = d.iter().unwrap();
    assert_eq!(it.by_ref().collect::<Vec<_>>(), indices);
    assert_eq!(it.next(), None, "exhausted");
    let it = d.iter().unwrap();
    d.clear().unwrap();
    assert_eq!(it.collect::<Vec<_>>(), indices);
    assert_eq!(d.iter().unwrap().next(), None);
}

#[test]
fn a_dict_iterates_over_a_snapshot_of_its_keys() {
    let manager = Manager::new().unwrap();
    let d = manager.dict().unwrap();
    dict_iterates_a_snapshot(&d);
    dict_iterates_a_snapshot(&through_ipc(&d));
}

/// `popitem`: last in, first out, as Python's; an empty dict gives `None` (Python's
/// `KeyError`).
fn pops_items(d: &ManagedDict<String, u32>) {
    d.clear().unwrap();
    assert_eq!(d.popitem().unwrap(), None);
    d.update([("a".into(), 1), ("b".into(), 2), ("c".into(), 3)])
        .unwrap();
    assert_eq!(d.remove("c").unwrap(), Some(3));
    assert_eq!(d.popitem().unwrap(), Some(("b".into(), 2)));
    // A key set again keeps its place; a key removed and set again goes last.
    d.insert("a".into(), 10).unwrap();
    d.insert("z".into(), 26).unwrap();
    assert_eq!(d.popitem().unwrap(), Some(("z".into(), 26)));
    assert_eq!(d.popitem().unwrap(), Some(("a".into(), 10)));
    assert_eq!(d.popitem().unwrap(), None);
    assert!(d.is_empty().unwrap());
    d.insert("again".into(), 1).unwrap();
    assert_eq!(d.items().unwrap(), [("again".into(), 1)]);
}

#[test]
fn popitem_takes_the_last_inserted_pair() {
    let manager = Manager::new().unwrap();
    let d = manager.dict().unwrap();
    pops_items(&d);
    pops_items(&through_ipc(&d));
}

/// `_TestContainers.test_dict_proxy_nested`: a dict holding a list handle and a dict handle;
/// each element reaches its object live.
#[test]
fn dicts_of_handles_reach_each_object() {
    let manager = Manager::new().unwrap();
    let pets: ManagedDict<String, u32> = manager.dict().unwrap();
    pets.update([("ferrets".into(), 2), ("hamsters".into(), 4)])
        .unwrap();
    let supplies: ManagedList<String> = manager.list().unwrap();
    supplies.append("water".into()).unwrap();
    let d: ManagedDict<String, ManagedDict<String, u32>> = manager.dict().unwrap();
    d.insert("pets".into(), pets.clone()).unwrap();
    let l: ManagedDict<String, ManagedList<String>> = through_ipc(&manager.dict().unwrap());
    l.insert("supplies".into(), supplies.clone()).unwrap();
    supplies.append("blankets".into()).unwrap();
    assert_eq!(
        l.get("supplies").unwrap().unwrap().to_vec().unwrap(),
        ["water", "blankets"]
    );
    let inner = d.get("pets").unwrap().unwrap();
    inner.insert("marmots".into(), 1).unwrap();
    assert_eq!(pets.get("marmots").unwrap(), Some(1));
    assert_eq!(
        d.iter().unwrap().collect::<Vec<_>>(),
        ["pets"],
        "iter(d) yields the keys"
    );
    pets.clear().unwrap();
    assert!(inner.is_empty().unwrap());
}

/// What the child saw: a slice, a count, an index, the pair it popped and the keys left.
type ChildSaw = (Vec<u32>, usize, usize, Option<(u32, u32)>, Vec<u32>);

/// A child's target: every new call on the list and the dict, reporting what it saw.
fn child_uses_containers(list: ManagedList<u32>, dict: ManagedDict<u32, u32>) -> ChildSaw {
    let seen = list.slice(1..4).expect("slice in the child");
    let count = list.count(&7).expect("count in the child");
    let index = list.index(&7).expect("index in the child");
    list.remove_value(&7).expect("remove_value in the child");
    list.reverse().expect("reverse in the child");
    let missed = list.index(&1000);
    assert!(matches!(missed, Err(ManagerError::NotInList { .. })));
    let popped = dict.popitem().expect("popitem in the child");
    let keys = dict.iter().expect("iter in the child").collect();
    (seen, count, index, popped, keys)
}

#[test]
fn every_container_call_works_from_a_child_process() {
    let manager = Manager::new().unwrap();
    let list = manager.list::<u32>().unwrap();
    let dict = manager.dict::<u32, u32>().unwrap();
    list.extend([1, 7, 2, 7, 3]).unwrap();
    dict.update([(1, 10), (2, 20), (3, 30)]).unwrap();
    let mut child = Process::new(child_uses_containers, (list.clone(), dict.clone()))
        .start()
        .unwrap();
    let (seen, count, index, popped, keys) = child.join_timeout(LIMIT).unwrap();
    assert_eq!(seen, [7, 2, 7]);
    assert_eq!((count, index), (2, 1));
    assert_eq!(popped, Some((3, 30)));
    assert_eq!(keys, [1, 2]);
    assert_eq!(list.to_vec().unwrap(), [3, 7, 2, 1]);
    assert_eq!(dict.len().unwrap(), 2);
}

#[test]
fn a_container_call_on_a_shut_down_manager_is_an_error() {
    let manager = Manager::new().unwrap();
    let list = through_ipc(&manager.list::<u32>().unwrap());
    let dict = through_ipc(&manager.dict::<u32, u32>().unwrap());
    manager.shutdown();
    assert!(list.slice(..).is_err());
    assert!(list.iter().is_err());
    assert!(list.count(&1).is_err());
    assert!(list.reverse().is_err());
    assert!(dict.popitem().is_err());
    assert!(dict.copy::<Vec<(u32, u32)>>().is_err());
}

#[test]
fn a_list_call_on_a_dict_handle_is_refused_as_the_wrong_kind() {
    let manager = Manager::new().unwrap();
    let dict = manager.dict::<u32, u32>().unwrap();
    dict.insert(1, 1).unwrap();
    // The dict's handle decoded as a list's (another process's mistake).
    let bytes = postcard::to_stdvec(&dict).unwrap();
    let list: ManagedList<u32> = postcard::from_bytes(&bytes).unwrap();
    for err in [
        list.reverse().unwrap_err(),
        list.count(&1).unwrap_err(),
        list.slice(..).unwrap_err(),
    ] {
        assert!(err.to_string().contains("is a dict, not a list"), "{err}");
    }
    let as_dict: ManagedDict<u32, u32> =
        postcard::from_bytes(&postcard::to_stdvec(&list).unwrap()).unwrap();
    assert_eq!(as_dict.popitem().unwrap(), Some((1, 1)));
}
