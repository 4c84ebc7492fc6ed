//! `ShareableList` (#25) across real processes, and the adversary's probes: another process
//! scribbling the list's header and slots gets a clear `Corrupt` error out of every later
//! call, never an out-of-bounds access or a panic. Every wait is bounded.

use std::time::Duration;

use process_ipc::{Process, ShareableItem as It, ShareableList, SharedError, SharedMemory};

const WAIT: Duration = Duration::from_secs(20);

fn change(list: ShareableList) -> usize {
    list.set(0, It::Str("changed".into())).unwrap();
    list.set(2, It::Float(0.5)).unwrap();
    list.set(3, It::Bool(true)).unwrap();
    list.len()
}

fn sample() -> Vec<It> {
    vec![
        It::Str("sixteen chars!!!".into()),
        It::Int(-7),
        It::None,
        It::Bytes(b"\x00\x01".to_vec()),
        It::Int(-7),
    ]
}

#[test]
fn a_child_changes_the_items_the_parent_reads() {
    let list = ShareableList::new(&sample()).unwrap();
    assert_eq!(list.to_vec().unwrap(), sample());
    assert_eq!(list.count(&It::Int(-7)).unwrap(), 2);
    assert_eq!(list.index(&It::None).unwrap(), Some(2));
    assert_eq!(list.index(&It::Int(8)).unwrap(), None);
    let mut child = Process::new(change, (ShareableList::attach(list.name()).unwrap(),))
        .start()
        .unwrap();
    assert_eq!(child.join_timeout(WAIT).unwrap(), 5);
    assert_eq!(
        list.to_vec().unwrap(),
        [
            It::Str("changed".into()),
            It::Int(-7),
            It::Float(0.5),
            It::Bool(true),
            It::Int(-7)
        ]
    );
}

#[test]
fn a_named_list_is_attached_by_name_and_limits_are_python_s() {
    let name = format!("mt-test-list-{}", std::process::id());
    let list = ShareableList::create_named(&name, &sample()).unwrap();
    let other = ShareableList::attach(&name).unwrap();
    assert_eq!(other.get(1).unwrap(), It::Int(-7));
    // A string gets its length rounded up past the next multiple of 8: 16 -> 24.
    other.set(0, It::Str("x".repeat(24))).unwrap();
    assert!(matches!(
        other.set(0, It::Str("x".repeat(25))),
        Err(SharedError::TooLong {
            index: 0,
            needed: 25,
            capacity: 24
        })
    ));
    // A number's slot of 8 takes any other small type, and short bytes.
    other.set(1, It::Bytes(vec![1; 8])).unwrap();
    assert!(other.set(1, It::Bytes(vec![1; 9])).is_err());
    assert!(matches!(
        list.get(5),
        Err(SharedError::IndexOutOfRange { index: 5, len: 5 })
    ));
    assert!(list.set(9, It::None).is_err());
    list.shm().try_clone().unwrap().unlink();
}

/// Writes `word` at byte `at` of the block `name`, as a scribbling process would.
fn scribble(name: String, at: usize, word: u64) {
    let mut block = SharedMemory::attach(&name).unwrap();
    block.as_mut_slice()[at..at + 8].copy_from_slice(&word.to_le_bytes());
}

fn scribbled(list: &ShareableList, at: usize, word: u64) {
    let mut child = Process::new(scribble, (list.name().to_string(), at, word))
        .start()
        .unwrap();
    child.join_timeout(WAIT).unwrap();
}

fn assert_corrupt(r: Result<impl std::fmt::Debug, SharedError>, what: &str) {
    match r {
        Err(SharedError::Corrupt { what: said, .. }) => {
            assert!(said.contains(what), "{said:?} does not mention {what:?}")
        }
        other => panic!("expected Corrupt ({what}), got {other:?}"),
    }
}

const HEAD: usize = 32;
const SLOT: usize = 32;

#[test]
fn scribbled_slots_are_corrupt_errors_never_out_of_bounds() {
    let list = ShareableList::new(&sample()).unwrap();
    let slot0 = HEAD;
    // A tag that is no type.
    scribbled(&list, slot0, 99);
    assert_corrupt(list.get(0), "tag 99");
    assert_corrupt(list.set(0, It::None), "tag 99");
    scribbled(&list, slot0, 4); // back to a string
    // An offset far past the block.
    scribbled(&list, slot0 + 16, u64::MAX - 3);
    assert_corrupt(list.get(0), "past a data area");
    assert_corrupt(list.set(0, It::Str("x".into())), "past a data area");
    scribbled(&list, slot0 + 16, 0);
    // A capacity past the data area, then a length past the capacity.
    scribbled(&list, slot0 + 8, 1 << 40);
    assert_corrupt(list.get(0), "past a data area");
    scribbled(&list, slot0 + 8, 24);
    scribbled(&list, slot0 + 24, 25);
    assert_corrupt(list.get(0), "a length of 25");
    // Bytes that are not UTF-8 in a string.
    scribbled(&list, slot0 + 24, 8);
    let data = HEAD + 5 * SLOT;
    scribbled(&list, data, u64::MAX);
    assert_corrupt(list.get(0), "UTF-8");
    // The other items are untouched and readable.
    assert_eq!(list.get(1).unwrap(), It::Int(-7));
    assert!(list.to_vec().is_err(), "item 0 still corrupt");
}

#[test]
fn a_scribbled_header_is_refused_at_attach() {
    let list = ShareableList::new(&sample()).unwrap();
    // An item count that would put the slots past the block.
    scribbled(&list, 8, u64::MAX / 2);
    assert_corrupt(ShareableList::attach(list.name()), "a header of");
    scribbled(&list, 8, 5);
    scribbled(&list, 16, 1 << 50);
    assert_corrupt(ShareableList::attach(list.name()), "a header of");
    scribbled(&list, 0, 0);
    assert_corrupt(ShareableList::attach(list.name()), "magic");
    // A plain block of the right size is not a list either.
    let plain = SharedMemory::create(64).unwrap();
    assert_corrupt(ShareableList::attach(plain.name()), "magic");
    let tiny = SharedMemory::create(8).unwrap();
    assert_corrupt(ShareableList::attach(tiny.name()), "too small");
}
