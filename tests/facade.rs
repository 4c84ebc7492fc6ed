//! The facade's re-exports: each chapter is reachable as `multitask::{threads, process, iter, coro}`
//! and names the same items as the crate it stands for.

use std::time::Duration;

#[test]
fn smoke() {
    let mut t = multitask::threads::Thread::new(|a: u32, b: u32| a + b, (2, 3))
        .start()
        .unwrap();
    assert_eq!(t.join_timeout(Duration::from_secs(10)).unwrap(), 5);
}

#[test]
fn each_chapter_is_the_crate_it_stands_for() {
    // Same types through both paths: these assignments only compile if the re-exports are the
    // crates themselves, not copies.
    let _: fn() -> threads_sync::Queue<u8> = multitask::threads::Queue::new;
    let _: fn() -> u32 = multitask::process::current_pid;
    let _: fn() -> bool = multitask::coro::is_coroutine;
    let g: iter_gen::Generator<u8> = multitask::iter::Generator::boxed(|co| async move {
        co.yield_(1).await;
    });
    assert_eq!(g.collect::<Vec<_>>(), [1]);
}

#[test]
fn the_pids_are_the_operating_systems() {
    assert_eq!(multitask::process::current_pid(), std::process::id());
}
