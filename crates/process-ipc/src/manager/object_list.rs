//! The manager's list calls that search, reorder or slice it: `count`, `index`,
//! `remove(value)`, `reverse`, `l[a:b]` and `l[a:b] = items`. Items are compared by their
//! encoded bytes (the manager never knows their types), and ranges are clamped to the list, as
//! Python's slices are.

use serde_bytes::ByteBuf;

use super::object_wire::{Answer, Op, Refusal};

/// `start..end` clamped to a list of `len` items (an `end` before `start` is empty at `start`).
fn clamp(len: usize, start: u64, end: u64) -> std::ops::Range<usize> {
    let at = |i: u64| usize::try_from(i).map_or(len, |i| i.min(len));
    let start = at(start);
    start..at(end).max(start)
}

/// Does one of the calls above on `list`; any other call comes back as `Err` (the caller
/// answers it).
pub(super) fn apply(list: &mut Vec<ByteBuf>, op: Op) -> Result<Answer, Op> {
    let answer = match op {
        Op::ListCount(item) => Answer::Len(list.iter().filter(|x| **x == item).count() as u64),
        Op::ListIndex(item, start, end) => {
            let range = clamp(list.len(), start, end);
            let offset = range.start;
            match list[range].iter().position(|x| *x == item) {
                Some(i) => Answer::Len((offset + i) as u64),
                None => Answer::Refused(Refusal::NotInList),
            }
        }
        Op::ListRemoveValue(item) => match list.iter().position(|x| *x == item) {
            Some(i) => {
                list.remove(i);
                Answer::Done
            }
            None => Answer::Refused(Refusal::NotInList),
        },
        Op::ListReverse => {
            list.reverse();
            Answer::Done
        }
        Op::ListSlice(start, end) => Answer::Many(list[clamp(list.len(), start, end)].to_vec()),
        Op::ListSplice(start, end, items) => {
            let range = clamp(list.len(), start, end);
            Answer::Many(list.splice(range, items).collect())
        }
        other => return Err(other),
    };
    Ok(answer)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(items: &[u8]) -> Vec<ByteBuf> {
        items.iter().map(|&x| ByteBuf::from(vec![x])).collect()
    }

    fn bytes(answer: Answer) -> Vec<u8> {
        match answer {
            Answer::Many(all) => all.iter().map(|b| b[0]).collect(),
            other => panic!("not Many: {other:?}"),
        }
    }

    fn one(x: u8) -> ByteBuf {
        ByteBuf::from(vec![x])
    }

    #[test]
    fn ranges_clamp_as_python_slices_do() {
        assert_eq!(clamp(5, 2, 10), 2..5);
        assert_eq!(clamp(5, 7, 9), 5..5);
        assert_eq!(clamp(5, 3, 1), 3..3);
        assert_eq!(clamp(5, u64::MAX, u64::MAX), 5..5);
        let mut l = list(&[0, 1, 2, 3, 4]);
        assert_eq!(
            bytes(apply(&mut l, Op::ListSlice(2, 10)).unwrap()),
            [2, 3, 4]
        );
        assert_eq!(bytes(apply(&mut l, Op::ListSlice(9, 10)).unwrap()), []);
    }

    #[test]
    fn index_searches_only_its_range() {
        let mut l = list(&[7, 1, 7, 2]);
        assert!(matches!(
            apply(&mut l, Op::ListIndex(one(7), 1, 4)),
            Ok(Answer::Len(2))
        ));
        assert!(matches!(
            apply(&mut l, Op::ListIndex(one(7), 3, 4)),
            Ok(Answer::Refused(Refusal::NotInList))
        ));
        assert!(matches!(
            apply(&mut l, Op::ListCount(one(7))),
            Ok(Answer::Len(2))
        ));
    }

    #[test]
    fn splice_replaces_and_hands_back_the_range() {
        let mut l = list(&[0, 1, 2, 3]);
        let out = apply(&mut l, Op::ListSplice(1, 3, list(&[9, 9, 9]))).unwrap();
        assert_eq!(bytes(out), [1, 2]);
        assert_eq!(l, list(&[0, 9, 9, 9, 3]));
        assert!(
            apply(&mut l, Op::ListPop).is_err(),
            "not a call of this module"
        );
    }
}
