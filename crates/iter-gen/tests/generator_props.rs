//! Property tests: a generator over any `Vec` yields exactly that `Vec`, once; sends arrive in order.

use iter_gen::{Generator, Yielder};
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn smoke(items in proptest::collection::vec(any::<u8>(), 0..4)) {
        let g = Generator::new(move |co| async move { co.yield_all(items).await });
        prop_assert!(g.count() < 4);
    }

    #[test]
    fn rc_generator_over_a_vec_yields_it_exactly_once(
        items in proptest::collection::vec(any::<i64>(), 0..200),
        extra_calls in 1usize..20,
    ) {
        let source = items.clone();
        let mut g = Generator::new(move |co| async move {
            let mut yielded = 0;
            for item in source {
                co.yield_(item).await;
                yielded += 1;
            }
            yielded
        });
        let first: Vec<i64> = g.by_ref().collect();
        let second: Vec<i64> = g.by_ref().collect();
        prop_assert_eq!(&first, &items);
        prop_assert!(second.is_empty());
        for _ in 0..extra_calls {
            prop_assert_eq!(g.next(), None);
        }
        prop_assert_eq!(g.return_value(), Some(&items.len()));
    }

    #[test]
    fn rc_generator_matches_its_source(items in proptest::collection::vec(any::<String>(), 0..50)) {
        let source = items.clone();
        let mut g = Generator::new(move |co| async move { co.yield_all(source).await });
        prop_assert_eq!(g.by_ref().collect::<Vec<_>>(), items);
        prop_assert_eq!(g.next(), None);
    }

    #[test]
    fn sync_generator_over_a_vec_yields_it_exactly_once(
        items in proptest::collection::vec(any::<u32>(), 0..200),
    ) {
        let source = items.clone();
        let mut g = iter_gen::threadsafe::Generator::new(move |co| async move {
            co.yield_all(source).await;
        });
        prop_assert_eq!(g.by_ref().collect::<Vec<_>>(), items);
        prop_assert_eq!(g.by_ref().count(), 0);
    }

    #[test]
    fn every_sent_value_arrives_in_order(sent in proptest::collection::vec(any::<u16>(), 0..100)) {
        let mut g = Generator::receiving(|co: Yielder<(), u16>| async move {
            let mut got = Vec::new();
            while let Some(x) = co.yield_(()).await {
                got.push(x);
            }
            got
        });
        prop_assert_eq!(g.next(), Some(()));
        for &x in &sent {
            prop_assert_eq!(g.send(x), Ok(Some(())));
        }
        prop_assert_eq!(g.next(), None);
        prop_assert_eq!(g.take_return_value(), Some(sent));
    }
}
