//! Pipe: a duplex connection between two processes, ping-pong, timeouts, peer death.

use std::time::Duration;

use process_ipc::{Connection, PipeError, Process, ProcessError, pipe};

const WAIT: Duration = Duration::from_secs(30);

#[test]
fn smoke() {
    let (a, b) = pipe::<String>().unwrap();
    a.send("ping".into()).unwrap();
    assert_eq!(b.recv_timeout(WAIT).unwrap(), "ping");
    b.send("pong".into()).unwrap();
    assert_eq!(a.recv_timeout(WAIT).unwrap(), "pong");
}

fn echo(conn: Connection<u64>) -> u64 {
    let mut n = 0;
    while let Ok(x) = conn.recv() {
        conn.send(x + 1).unwrap();
        n += 1;
    }
    n
}

#[test]
fn ping_pong_with_a_child() {
    let (mine, theirs) = pipe::<u64>().unwrap();
    let mut child = Process::new(echo, (theirs,)).start().unwrap();
    for i in 0..1000 {
        mine.send(i).unwrap();
        assert_eq!(mine.recv_timeout(WAIT).unwrap(), i + 1);
    }
    drop(mine);
    assert_eq!(child.join_timeout(WAIT).unwrap(), 1000);
}

#[test]
fn recv_timeout_and_try_recv_on_an_empty_pipe() {
    let (a, _b) = pipe::<u8>().unwrap();
    assert_eq!(a.try_recv(), Err(PipeError::Empty { end: a.end() }));
    let t = Duration::from_millis(20);
    assert_eq!(
        a.recv_timeout(t),
        Err(PipeError::Timeout {
            end: a.end(),
            waited: t
        })
    );
}

fn hold(conn: Connection<u8>) -> u8 {
    conn.send(1).unwrap();
    std::thread::sleep(Duration::from_secs(60));
    0
}

#[test]
fn peer_death_is_disconnected() {
    let (mine, theirs) = pipe::<u8>().unwrap();
    let mut child = Process::new(hold, (theirs,)).start().unwrap();
    assert_eq!(mine.recv_timeout(WAIT), Ok(1));
    child.kill().unwrap();
    assert!(matches!(
        child.join_timeout(WAIT),
        Err(ProcessError::Killed { .. })
    ));
    let gone = PipeError::Disconnected { end: mine.end() };
    assert_eq!(mine.recv_timeout(WAIT), Err(gone.clone()));
    assert_eq!(mine.send(2), Err(gone.clone()));
    // The error names this end and its peer, not a queue.
    let shown = gone.to_string();
    assert!(shown.contains(&mine.end().to_string()), "{shown}");
    assert!(shown.contains(&mine.end().peer().to_string()), "{shown}");
    assert!(!shown.contains("queue"), "{shown}");
}

#[test]
fn a_refusal_reason_never_leaks_into_a_later_unrelated_send() {
    let q = process_ipc::Queue::<u8>::new().unwrap();
    assert!(postcard::to_stdvec(&q.sender().unwrap()).is_err());
    let (a, _b) = process_ipc::pipe::<Vec<Unsendable>>().unwrap();
    let err = a.send(vec![Unsendable]).unwrap_err();
    assert_eq!(
        err,
        PipeError::Serde {
            end: a.end(),
            reason: "unsendable".into()
        }
    );
    // The pipe still works.
    a.send(vec![]).unwrap();
}

struct Unsendable;

impl serde::Serialize for Unsendable {
    fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        Err(serde::ser::Error::custom("unsendable"))
    }
}

impl<'de> serde::Deserialize<'de> for Unsendable {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        <()>::deserialize(d).map(|()| Unsendable)
    }
}

/// Answers each message with its bytes, echoed from the given offset of a scratch buffer.
fn echo_bytes(conn: Connection<u64>) -> usize {
    let mut n = 0;
    let mut buf = [0u8; 64];
    while let Ok(len) = conn.recv_bytes_into(&mut buf, 8) {
        conn.send_bytes(&buf, 8, len).unwrap();
        n += 1;
    }
    n
}

#[test]
fn bytes_with_offsets_travel_to_a_child_and_back() {
    let (mine, theirs) = pipe::<u64>().unwrap();
    let mut child = Process::new(echo_bytes, (theirs,)).start().unwrap();
    let message = b"..hello, child..";
    mine.send_bytes(message, 2, 13).unwrap();
    assert_eq!(mine.recv_bytes_timeout(WAIT).unwrap(), b"hello, child.");
    // An item's bytes are its encoding: the child echoes them, and they decode as the item.
    mine.send(300).unwrap();
    assert_eq!(mine.recv_timeout(WAIT).unwrap(), 300);
    drop(mine);
    assert_eq!(child.join_timeout(WAIT).unwrap(), 2);
}

#[test]
fn bad_offsets_and_a_small_buffer_are_errors_that_lose_nothing() {
    let (a, b) = pipe::<u8>().unwrap();
    assert!(matches!(
        a.send_bytes(b"abc", 2, 2),
        Err(PipeError::OutOfBounds {
            offset: 2,
            size: 2,
            len: 3,
            ..
        })
    ));
    assert!(matches!(
        a.send_bytes(b"abc", usize::MAX, 2),
        Err(PipeError::OutOfBounds { .. })
    ));
    a.send_bytes(b"twelve bytes", 0, 12).unwrap();
    let mut small = [0u8; 10];
    assert!(matches!(
        b.recv_bytes_into(&mut small, 11),
        Err(PipeError::OutOfBounds { .. })
    ));
    assert_eq!(
        b.recv_bytes_into(&mut small, 2),
        Err(PipeError::BufferTooSmall {
            end: b.end(),
            needed: 12,
            room: 8
        })
    );
    // The message stayed: a buffer that fits gets it.
    let mut big = [0u8; 16];
    assert_eq!(b.recv_bytes_into(&mut big, 4).unwrap(), 12);
    assert_eq!(&big[4..], b"twelve bytes");
    // Bytes that are not an item's encoding are a Serde error on recv, naming the end.
    a.send_bytes(&[], 0, 0).unwrap();
    let err = b.recv_timeout(WAIT).unwrap_err();
    assert!(
        matches!(err, PipeError::Serde { end, .. } if end == b.end()),
        "{err}"
    );
}

fn send_after(conn: Connection<String>, go: process_ipc::Event) {
    assert!(go.wait_timeout(WAIT).unwrap());
    conn.send("late".into()).unwrap();
}

#[test]
fn poll_waits_at_most_its_timeout_and_never_takes_the_message() {
    let (mine, theirs) = pipe::<String>().unwrap();
    let go = process_ipc::Event::new().unwrap();
    let mut child = Process::new(send_after, (theirs, go.clone()))
        .start()
        .unwrap();
    assert!(!mine.poll(Duration::ZERO).unwrap(), "nothing yet");
    let t = Duration::from_millis(30);
    let start = std::time::Instant::now();
    assert!(!mine.poll(t).unwrap());
    assert!(start.elapsed() >= t && start.elapsed() < WAIT);
    go.set().unwrap();
    assert!(mine.poll(WAIT).unwrap(), "the child's message came");
    assert!(
        mine.poll(Duration::ZERO).unwrap(),
        "still there: poll did not take it"
    );
    assert_eq!(mine.try_recv().unwrap(), "late");
    child.join_timeout(WAIT).unwrap();
    // The peer is gone: poll says there is something (the end), recv says Disconnected.
    assert!(mine.poll(WAIT).unwrap());
    assert!(matches!(
        mine.recv_timeout(WAIT),
        Err(PipeError::Disconnected { .. })
    ));
}

fn read_one_way(reader: Connection<u32>) -> (u32, bool) {
    let got = reader.recv_timeout(WAIT).unwrap();
    let refused = matches!(reader.send(1), Err(PipeError::WrongWay { .. }));
    (got, refused)
}

#[test]
fn a_one_way_pipe_carries_one_way_and_refuses_the_other() {
    let (reader, writer) = process_ipc::pipe_one_way::<u32>().unwrap();
    assert!(matches!(
        writer.recv_timeout(WAIT),
        Err(PipeError::WrongWay { can: "sends", .. })
    ));
    assert!(matches!(
        writer.poll(Duration::ZERO),
        Err(PipeError::WrongWay { .. })
    ));
    let mut child = Process::new(read_one_way, (reader,)).start().unwrap();
    writer.send(42).unwrap();
    assert_eq!(child.join_timeout(WAIT).unwrap(), (42, true));
    // The reader is gone with the child (the parent's copy went when it was sent): a send
    // says so at once.
    let err = writer.send(1).unwrap_err();
    assert!(matches!(err, PipeError::Disconnected { .. }), "{err}");
}

#[test]
fn close_ends_the_peers_reads_after_what_was_sent() {
    let (a, b) = pipe::<u8>().unwrap();
    a.send(5).unwrap();
    a.close();
    assert_eq!(b.recv_timeout(WAIT).unwrap(), 5);
    assert!(matches!(
        b.recv_timeout(WAIT),
        Err(PipeError::Disconnected { .. })
    ));
}
