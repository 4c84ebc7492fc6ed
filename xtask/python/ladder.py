#!/usr/bin/env python3
"""Python twins of `cargo xtask bench`'s cost ladder (see xtask/src/bench.rs for the
workload definitions, which this file mirrors one for one).

Prints one JSON object per line: {"rung", "kind", "variant", "value_ns", "reps_ns", "n"}.
Usage: python3 ladder.py [--quick]
Needs gevent for the coroutine rung; without it that rung is skipped with a note on stderr.
"""
import json
import multiprocessing as mp
import os
import queue
import statistics
import sys
import threading
import time

QUICK = "--quick" in sys.argv[1:]
REPS = 3 if QUICK else 5
clock = time.perf_counter


def emit(rung, kind, variant, n, reps):
    """One result: the median over repetitions, in nanoseconds per unit of work."""
    per = [r / n * 1e9 for r in reps]
    print(json.dumps({"rung": rung, "kind": kind, "variant": variant, "n": n,
                      "value_ns": statistics.median(per), "reps_ns": per}), flush=True)


def pin(cpu):
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})


def noop():
    return None


# --- spawn + join: start n, then join all n -----------------------------------
def spawn_join_process(n):
    t0 = clock()
    ps = [mp.Process(target=noop) for _ in range(n)]
    for p in ps:
        p.start()
    for p in ps:
        p.join()
    return clock() - t0


def spawn_join_thread(n):
    t0 = clock()
    ts = [threading.Thread(target=noop) for _ in range(n)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return clock() - t0


# --- switch: a ping-pong round trip is two switches ---------------------------
def _echo(qin, qout, cpu):
    pin(cpu)
    while True:
        x = qin.get()
        if x is None:
            return
        qout.put(x)


def _pingpong(n, cpu, make_queue, make_echo):
    """Times n round trips to an echo started by make_echo(target, args), pinned to cpu."""
    allowed = os.sched_getaffinity(0)
    pin(cpu)
    qin, qout = make_queue(), make_queue()
    echo = make_echo(target=_echo, args=(qin, qout, cpu))
    echo.start()
    qin.put(-1)
    qout.get()  # warm-up round trip
    t0 = clock()
    for i in range(n):
        qin.put(i)
        qout.get()
    dt = clock() - t0
    qin.put(None)
    echo.join()
    os.sched_setaffinity(0, allowed)
    return dt


def switch_process(n, cpu):
    return _pingpong(n, cpu, mp.Queue, mp.Process)


def switch_thread(n, cpu):
    return _pingpong(n, cpu, queue.Queue, threading.Thread)


# --- message: one producer puts n small ints, the consumer gets them all ------
def _produce(q, n):
    for i in range(n):
        q.put(i)


def _drain(n, make_queue, make_producer):
    """Times a producer started by make_producer(target, args) putting n ints, drained here."""
    q = make_queue()
    producer = make_producer(target=_produce, args=(q, n))
    t0 = clock()
    producer.start()
    for _ in range(n):
        q.get()
    dt = clock() - t0
    producer.join()
    return dt


def message_process(n):
    return _drain(n, mp.Queue, mp.Process)


def message_thread(n):
    return _drain(n, queue.Queue, threading.Thread)


def run_gevent():
    try:
        import gevent
        import gevent.queue
    except ImportError:
        print("gevent is not installed: the coroutine rung is skipped", file=sys.stderr)
        return
    n = 10_000 if QUICK else 100_000

    def spawn_join():
        t0 = clock()
        gs = [gevent.spawn(noop) for _ in range(n)]
        gevent.joinall(gs)
        return clock() - t0

    emit("spawn_join", "coroutine", "", n, [spawn_join() for _ in range(REPS)])

    def yields():
        def loop():
            for _ in range(n // 2):
                gevent.sleep(0)

        t0 = clock()
        gevent.joinall([gevent.spawn(loop), gevent.spawn(loop)])
        return clock() - t0

    # every sleep(0) is one switch, so n yields are n switches
    emit("switch", "coroutine", "samecpu", n, [yields() for _ in range(REPS)])

    def message():
        q = gevent.queue.Queue()

        def consume():
            for _ in range(n):
                q.get()

        t0 = clock()
        gevent.joinall([gevent.spawn(_produce, q, n), gevent.spawn(consume)])
        return clock() - t0

    emit("message", "coroutine", "", n, [message() for _ in range(REPS)])


def main():
    mp.set_start_method("fork")
    n = 50 if QUICK else 200
    emit("spawn_join", "process", "", n, [spawn_join_process(n) for _ in range(REPS)])
    n = 500 if QUICK else 2000
    emit("spawn_join", "thread", "", n, [spawn_join_thread(n) for _ in range(REPS)])
    n = 2000 if QUICK else 20_000
    for variant, cpu in (("samecpu", 0), ("unpinned", None)):
        # a round trip is two switches
        emit("switch", "process", variant, 2 * n, [switch_process(n, cpu) for _ in range(REPS)])
        emit("switch", "thread", variant, 2 * n, [switch_thread(n, cpu) for _ in range(REPS)])
    n = 20_000 if QUICK else 200_000
    emit("message", "process", "", n, [message_process(n) for _ in range(REPS)])
    emit("message", "thread", "", n, [message_thread(n) for _ in range(REPS)])
    run_gevent()


if __name__ == "__main__":
    main()
