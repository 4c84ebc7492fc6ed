//! The story of generators: pausing at `yield`, one pass only, `send`, the return value.
//!
//! Run with `cargo run -p iter-gen --example generators` (or `cargo xtask demo iter`).

use std::cell::Cell;
use std::rc::Rc;
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use anyhow::{Context, anyhow};
use iter_gen::{GenState, Generator, Yielder};

/// Prints when dropped: the generator body's `finally:`.
struct Finally(&'static str, Rc<Cell<u32>>);

impl Drop for Finally {
    fn drop(&mut self) {
        self.1.set(self.1.get() + 1);
        println!("    [body] cleanup runs: {}", self.0);
    }
}

fn main() -> anyhow::Result<()> {
    println!("A generator pauses at each yield and carries on at the next next().");
    let mut g = Generator::new(|co| async move {
        println!("    [body] starts running");
        for i in 1..=3 {
            println!("    [body] yield {i}, then pause");
            co.yield_(i).await;
            println!("    [body] resumed after {i}");
        }
        println!("    [body] falls off the end");
    });
    println!(
        "  g = count_to(3)             # nothing has run yet: {:?}",
        g.state()
    );
    println!("  next(g) ...");
    println!("  ... -> {:?}", g.next());
    println!("  next(g) ...");
    println!("  ... -> {:?}", g.next());

    println!();
    println!("It is walked once: the rest, then nothing.");
    let rest: Vec<i32> = g.by_ref().collect();
    println!("  list(g) -> {rest:?}");
    let second: Vec<i32> = g.by_ref().collect();
    println!("  list(g) -> {second:?}            # spent, as in Python");
    println!(
        "  next(g) -> {:?} (state {:?})  # and no panic, however often you ask",
        g.next(),
        g.state()
    );
    println!("  (`for x in g` takes g by value: a second loop over g does not compile)");

    println!();
    println!("send(): `x = yield y` receives the value; the return value is kept.");
    let mut averager = Generator::receiving(|co: Yielder<f64, f64>| async move {
        let (mut total, mut count) = (0.0, 0u32);
        while let Some(x) = co
            .yield_(if count == 0 {
                0.0
            } else {
                total / f64::from(count)
            })
            .await
        {
            total += x;
            count += 1;
        }
        format!("{count} values, total {total}")
    });
    match averager.send(10.0) {
        Err(err) => println!("  averager.send(10) before start -> error: {err}"),
        Ok(step) => return Err(anyhow!("send before start was accepted: {step:?}")),
    }
    println!(
        "  next(averager) -> {:?}      # runs to the first yield",
        averager.next()
    );
    for x in [10.0, 20.0, 60.0] {
        let avg = averager
            .send(x)
            .context("the averager takes values while it runs")?;
        println!("  averager.send({x}) -> {avg:?}");
    }
    println!(
        "  next(averager) -> {:?}       # next() sends None: the loop ends",
        averager.next()
    );
    println!("  StopIteration.value -> {:?}", averager.return_value());

    println!();
    println!("close() (or drop) runs the body's cleanup, once.");
    let cleanups = Rc::new(Cell::new(0));
    let seen = cleanups.clone();
    let mut reader = Generator::new(move |co| async move {
        let _finally = Finally("closing the file", seen);
        for line in ["line 1", "line 2", "line 3"] {
            co.yield_(line).await;
        }
    });
    println!("  next(reader) -> {:?}", reader.next());
    println!("  reader.close()");
    reader.close();
    reader.close();
    drop(reader);
    println!(
        "  closed twice and dropped: cleanup ran {} time(s)",
        cleanups.get()
    );

    println!();
    println!("yield from: delegate to an inner generator, forwarding send, keeping its result.");
    let inner = Generator::receiving(|co: Yielder<String, String>| async move {
        let name = co
            .yield_("inner: your name?".into())
            .await
            .unwrap_or_default();
        co.yield_(format!("inner: hello, {name}")).await;
        name.len()
    });
    let mut outer = Generator::receiving(|co: Yielder<String, String>| async move {
        let length = co.yield_from(inner).await.unwrap_or_default();
        co.yield_(format!("outer: the inner generator returned {length}"))
            .await;
    });
    println!("  next(outer) -> {:?}", outer.next().unwrap_or_default());
    let reply = outer.send("Ada".into()).context("outer takes values")?;
    println!("  outer.send(\"Ada\") -> {:?}", reply.unwrap_or_default());
    println!("  next(outer) -> {:?}", outer.next().unwrap_or_default());

    println!();
    println!("The Send flavour walks on another thread (slower: a mutex per step).");
    let mut squares = iter_gen::threadsafe::Generator::new(|co| async move {
        for i in 1..=5u64 {
            co.yield_(i * i).await;
        }
    });
    let first = squares.next();
    let (tx, rx) = mpsc::channel();
    let worker = thread::spawn(move || {
        let rest: Vec<u64> = squares.by_ref().collect();
        // The receiver waits with a timeout; if it has gone, there is nobody left to tell.
        let _ = tx.send((rest, squares.state()));
    });
    let (rest, state) = rx
        .recv_timeout(Duration::from_secs(10))
        .context("the worker thread answers")?;
    worker
        .join()
        .map_err(|_| anyhow!("the worker thread panicked"))?;
    println!("  here: next(squares) -> {first:?}; on another thread: {rest:?}");
    println!("  state afterwards: {state:?}");
    assert_eq!(state, GenState::Closed);
    Ok(())
}
