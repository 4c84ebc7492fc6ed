//! Pipe: a duplex connection between two processes, ping-pong, timeouts, peer death.

use std::time::Duration;

use process_ipc::{Connection, Process, ProcessError, QueueError, pipe};

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
    assert_eq!(a.try_recv(), Err(QueueError::Empty));
    let t = Duration::from_millis(20);
    assert_eq!(a.recv_timeout(t), Err(QueueError::Timeout(t)));
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
    assert_eq!(mine.recv_timeout(WAIT), Err(QueueError::Disconnected));
    assert_eq!(mine.send(2), Err(QueueError::Disconnected));
}

#[test]
fn a_refusal_reason_never_leaks_into_a_later_unrelated_send() {
    let q = process_ipc::Queue::<u8>::new().unwrap();
    assert!(postcard::to_stdvec(&q.sender().unwrap()).is_err());
    let (a, _b) = process_ipc::pipe::<Vec<Unsendable>>().unwrap();
    let err = a.send(vec![Unsendable]).unwrap_err();
    assert_eq!(err, QueueError::Serde("unsendable".into()));
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
