//! gevent's supervision: links, getcurrent, wait/iwait, killall, Group, Pool's map family.

use std::time::Duration;

use coro::{CoroError, Coroutine, Event, Group, Pool, Queue, Waitable};

const WAIT: Duration = Duration::from_secs(20);

#[test]
fn smoke_link_runs_when_the_greenlet_ends() {
    let seen = Queue::new();
    let gate = Event::new();
    let g = {
        let gate = gate.clone();
        coro::Builder::new()
            .name("linked")
            .spawn(move || gate.wait())
            .unwrap()
    };
    let tx = seen.clone();
    g.link(move |me| tx.put(me.name().to_string()).unwrap());
    assert_eq!(
        seen.get_timeout(Duration::from_millis(20)),
        Err(coro::GetError::Empty(coro::Empty))
    );
    gate.set();
    assert_eq!(seen.get_timeout(WAIT).unwrap(), "linked");
}

#[test]
fn link_to_a_finished_greenlet_runs_at_once_in_the_caller() {
    let g = coro::spawn(|| 5).unwrap();
    assert!(g.join_timeout(WAIT));
    let seen = Queue::new();
    let tx = seen.clone();
    g.link(move |me| tx.put(me.successful()).unwrap());
    // Already there: no wait needed.
    assert_eq!(seen.get_nowait(), Ok(Some(true)));
}

#[test]
fn link_value_and_link_exception_pick_the_outcome() {
    let seen = Queue::new();
    let ok = coro::spawn(|| 1).unwrap();
    let bad = coro::spawn(|| -> i32 { panic!("no") }).unwrap();
    for (name, g) in [("ok", &ok), ("bad", &bad)] {
        let (v, e) = (seen.clone(), seen.clone());
        g.link_value(move |_| v.put(format!("{name}: value")).unwrap());
        g.link_exception(move |_| e.put(format!("{name}: exception")).unwrap());
    }
    let mut got: Vec<String> = (0..2).map(|_| seen.get_timeout(WAIT).unwrap()).collect();
    got.sort();
    assert_eq!(got, ["bad: exception", "ok: value"]);
    assert_eq!(
        seen.get_timeout(Duration::from_millis(20)),
        Err(coro::GetError::Empty(coro::Empty))
    );
    assert_eq!(ok.successful(), Some(true));
    assert_eq!(bad.successful(), Some(false));
}

#[test]
fn a_killed_greenlet_is_a_value_to_its_links_as_in_gevent() {
    let seen = Queue::new();
    let g = coro::spawn(|| coro::sleep(Duration::from_secs(60))).unwrap();
    let (tx, tx2) = (seen.clone(), seen.clone());
    g.link_exception(move |_| tx.put(None).unwrap());
    g.link_value(move |me| tx2.put(me.successful()).unwrap());
    assert_eq!(g.successful(), None);
    g.kill();
    assert_eq!(seen.get_timeout(WAIT).unwrap(), Some(true));
    assert!(seen.empty(), "link_exception ran for a plain kill");
}

#[test]
fn unlink_removes_a_callback_before_it_runs() {
    let seen = Queue::new();
    let gate = Event::new();
    let g = {
        let gate = gate.clone();
        coro::spawn(move || gate.wait()).unwrap()
    };
    let (a, b) = (seen.clone(), seen.clone());
    let first = g.link(move |_| a.put("first").unwrap());
    g.link(move |_| b.put("second").unwrap());
    assert!(g.unlink(first));
    assert!(!g.unlink(first), "a second unlink finds nothing");
    gate.set();
    assert_eq!(seen.get_timeout(WAIT).unwrap(), "second");
    assert_eq!(
        seen.get_timeout(Duration::from_millis(20)),
        Err(coro::GetError::Empty(coro::Empty))
    );
}

#[test]
fn kill_of_a_finished_greenlet_is_a_no_op() {
    let mut g = coro::spawn(|| 9).unwrap();
    assert!(g.join_timeout(WAIT));
    g.kill();
    assert!(g.kill_timeout(WAIT));
    assert_eq!(g.successful(), Some(true));
    assert_eq!(g.get().unwrap(), 9);
    assert_eq!(
        g.successful(),
        Some(true),
        "unchanged after the value is taken"
    );
}

#[test]
fn getcurrent_names_the_running_greenlet() {
    assert!(coro::getcurrent().is_none());
    let g = Coroutine::new(
        |tag: &'static str| coro::getcurrent().map(|me| format!("{tag}:{}", me.name())),
        ("in",),
    )
    .named("worker-7")
    .start()
    .unwrap();
    assert_eq!(g.into_value().unwrap().as_deref(), Some("in:worker-7"));
    // The handle getcurrent gives is the same greenlet as the spawner's.
    let tx = Queue::new();
    let g = {
        let tx = tx.clone();
        coro::spawn(move || tx.put(coro::getcurrent().unwrap()).unwrap()).unwrap()
    };
    assert_eq!(tx.get_timeout(WAIT).unwrap(), g.as_ref());
}

#[test]
fn coroutine_new_takes_an_argument_tuple() {
    fn add3(a: u8, b: u16, c: u32) -> u64 {
        u64::from(a) + u64::from(b) + u64::from(c)
    }
    assert_eq!(
        Coroutine::new(add3, (1, 2, 3))
            .start()
            .unwrap()
            .into_value(),
        Ok(6)
    );
    assert_eq!(
        Coroutine::new(|| "none", ()).start().unwrap().into_value(),
        Ok("none")
    );
    let err = Coroutine::new(|| (), ()).stack_size(3).start().unwrap_err();
    assert!(matches!(err, CoroError::InvalidStackSize { bytes: 3, .. }));
}

#[test]
fn wait_returns_the_ready_ones_in_order_and_clamps_count() {
    let gate = Event::new();
    let stuck = {
        let gate = gate.clone();
        coro::spawn(move || gate.wait()).unwrap()
    };
    let done = coro::spawn(|| ()).unwrap();
    assert!(done.join_timeout(WAIT));
    // count larger than the set: waits for all, which times out here.
    let ready = coro::wait(&[&stuck, &done], Some(Duration::from_millis(30)), Some(10));
    assert_eq!(ready, [1]);
    gate.set();
    let ready = coro::wait(&[&stuck, &done], Some(WAIT), Some(10));
    assert_eq!(ready.len(), 2);
    // An empty set, or count 0, returns at once.
    assert!(coro::wait(&[], None, None).is_empty());
    assert!(coro::wait(&[&stuck], None, Some(0)).is_empty());
}

#[test]
fn wait_and_iwait_watch_events_and_async_results_too() {
    let ev = Event::new();
    let r: coro::AsyncResult<u8> = coro::AsyncResult::new();
    let setter = {
        let (ev, r) = (ev.clone(), r.clone());
        coro::spawn(move || {
            r.set(1);
            coro::sleep(Duration::from_millis(1));
            ev.set();
        })
        .unwrap()
    };
    let objects: [&dyn Waitable; 2] = [&ev, &r];
    let order: Vec<usize> = coro::iwait(&objects, Some(WAIT)).collect();
    assert_eq!(order.len(), 2);
    assert!(order.contains(&0) && order.contains(&1));
    assert!(setter.join_timeout(WAIT));
    // iwait ends at its timeout with what was ready.
    let never = Event::new();
    let got: Vec<usize> = coro::iwait(&[&never, &ev], Some(Duration::from_millis(20))).collect();
    assert_eq!(got, [1]);
}

#[test]
fn killall_stops_running_ones_and_leaves_finished_ones() {
    let mut finished = coro::spawn(|| 3).unwrap();
    assert!(finished.join_timeout(WAIT));
    let sleepers: Vec<_> = (0..5)
        .map(|_| coro::spawn(|| coro::sleep(Duration::from_secs(60))).unwrap())
        .collect();
    assert!(coro::killall(&sleepers, Some(WAIT)));
    for mut g in sleepers {
        assert!(matches!(g.get(), Err(CoroError::Killed { .. })));
    }
    assert!(coro::killall([&finished], Some(WAIT)));
    assert_eq!(finished.get().unwrap(), 3);
}

#[test]
fn group_joins_kills_and_maps() {
    let group = Group::new();
    assert!(group.is_empty());
    let gate = Event::new();
    let waiters: Vec<_> = (0..3)
        .map(|_| {
            let gate = gate.clone();
            group.spawn(move || gate.wait()).unwrap()
        })
        .collect();
    assert_eq!(group.len(), 3);
    assert!(!group.join_timeout(Duration::from_millis(20)));
    gate.set();
    assert!(group.join_timeout(WAIT));
    assert!(waiters.iter().all(|g| g.ready()));
    assert!(group.is_empty(), "finished greenlets leave the group");

    let sleeper = group
        .spawn(|| coro::sleep(Duration::from_secs(60)))
        .unwrap();
    assert!(group.kill_timeout(WAIT));
    assert_eq!(sleeper.successful(), Some(true)); // killed: a successful end, as in gevent
    assert!(sleeper.killed());

    assert_eq!(group.map(|x: u32| x + 1, 0..5).unwrap(), [1, 2, 3, 4, 5]);
    let err = group
        .map(|x: u32| if x == 2 { panic!("two") } else { x }, 0..4)
        .unwrap_err();
    assert!(matches!(err, CoroError::Panicked { ref message, .. } if message == "two"));
}

#[test]
fn pool_apply_map_and_imap() {
    let pool = Pool::new(2).unwrap();
    assert_eq!(pool.apply(|| 7).unwrap(), 7);
    let g = pool.apply_async(|| "later").unwrap();
    assert_eq!(g.into_value().unwrap(), "later");
    assert_eq!(
        pool.map(|x: u64| x * 10, 0..6).unwrap(),
        [0, 10, 20, 30, 40, 50]
    );
    let ordered: Vec<u64> = pool
        .imap(
            |x: u64| {
                // Later items finish first; imap still yields in item order.
                coro::sleep(Duration::from_millis(5 - x));
                x
            },
            0..5,
        )
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(ordered, [0, 1, 2, 3, 4]);
    let mut unordered: Vec<u64> = pool
        .imap_unordered(|x: u64| x * x, 0..7)
        .collect::<Result<_, _>>()
        .unwrap();
    unordered.sort();
    assert_eq!(unordered, [0, 1, 4, 9, 16, 25, 36]);
    // A panicking item is an Err at its place; the others still come.
    let results: Vec<_> = pool
        .imap(|x: u32| if x == 1 { panic!("one") } else { x }, 0..3)
        .collect();
    assert_eq!(results[0], Ok(0));
    assert!(matches!(results[1], Err(CoroError::Panicked { .. })));
    assert_eq!(results[2], Ok(2));
    assert!(pool.join_timeout(WAIT));
}

#[test]
fn pool_map_never_runs_more_than_size_at_once() {
    let pool = Pool::new(3).unwrap();
    let running = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let peak = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (r, p) = (running.clone(), peak.clone());
    pool.map(
        move |_: u32| {
            use std::sync::atomic::Ordering::SeqCst;
            let now = r.fetch_add(1, SeqCst) + 1;
            p.fetch_max(now, SeqCst);
            coro::sleep(Duration::from_millis(1));
            r.fetch_sub(1, SeqCst);
        },
        0..20,
    )
    .unwrap();
    assert!(peak.load(std::sync::atomic::Ordering::SeqCst) <= 3);
}
