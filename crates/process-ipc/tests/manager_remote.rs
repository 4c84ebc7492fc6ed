//! A Manager served over TCP with an authkey: every handle kind works from a client that
//! connected with the right key; a wrong key is refused before the server says anything else;
//! oversized, undecodable and stalled frames end only their own connection; the number of
//! connections is bounded; a lock holder whose connection drops is named by the next acquire.
//!
//! The adversary here is a raw `TcpStream` that speaks (or half-speaks) the handshake itself,
//! so the server is probed with bytes no well-behaved client would send.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use ipc_channel::ipc::IpcSender;
use process_ipc::Process;
use process_ipc::manager::{
    ManagedDict, ManagedEvent, ManagedList, ManagedLock, ManagedNamespace, ManagedQueue,
    ManagedValue, Manager, ManagerError,
};
use sha2::Sha256;

mod common;
use common::{LIMIT, bounded};

const KEY: &[u8] = b"manager-remote-test-key";
const MAGIC: &[u8; 8] = b"mtmgr\0v1";

fn serve() -> Manager {
    Manager::builder()
        .address("127.0.0.1:0")
        .authkey(KEY)
        .serve()
        .unwrap()
}

fn addr(manager: &Manager) -> SocketAddr {
    manager.local_addr().expect("a TCP manager has an address")
}

/// A dict call from a fresh client: the server still serves.
fn still_serves(addr: SocketAddr) {
    bounded(move || {
        let client = Manager::connect(addr, KEY).unwrap();
        let d: ManagedDict<u32, u32> = client.lookup("probe").unwrap();
        d.insert(1, 2).unwrap();
        assert_eq!(d.get(&1).unwrap(), Some(2));
    });
}

/// Reads until the server closes the connection, within `within`; returns what it sent.
fn read_to_close(stream: &mut TcpStream, within: Duration) -> Vec<u8> {
    stream.set_read_timeout(Some(within)).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 256];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return got,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return got,
            Err(e) => panic!("the server did not close the connection within {within:?}: {e}"),
        }
    }
}

fn hmac(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().to_vec()
}

/// A raw TCP connection that does the client's half of the handshake by hand with `key`, and
/// returns the stream and the server's verdict byte (1: welcome, and the server's proof read).
fn raw_handshake(addr: SocketAddr, key: &[u8]) -> (TcpStream, u8) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(LIMIT)).unwrap();
    let nc = [7u8; 32];
    let pid = std::process::id().to_le_bytes();
    let mut hello = MAGIC.to_vec();
    hello.extend_from_slice(&nc);
    hello.extend_from_slice(&pid);
    stream.write_all(&hello).unwrap();
    let mut challenge = [0u8; 40];
    stream.read_exact(&mut challenge).unwrap();
    assert_eq!(&challenge[..8], MAGIC);
    let proof = hmac(key, &[b"client", &nc, &challenge[8..], &pid]);
    stream.write_all(&proof).unwrap();
    let mut verdict = [0u8; 1];
    stream.read_exact(&mut verdict).unwrap();
    if verdict[0] == 1 {
        let mut welcome = [0u8; 36];
        stream.read_exact(&mut welcome).unwrap();
        let expect = hmac(key, &[b"server", &challenge[8..], &nc, &welcome[..4]]);
        assert_eq!(
            &welcome[4..],
            &expect[..],
            "the server proves it holds the key"
        );
    }
    (stream, verdict[0])
}

fn probe_dict(manager: &Manager) {
    let d = manager.dict::<u32, u32>().unwrap();
    manager.register("probe", &d).unwrap();
}

#[test]
fn smoke() {
    let manager = serve();
    let d = manager.dict::<String, u32>().unwrap();
    manager.register("shared", &d).unwrap();
    let client = Manager::connect(addr(&manager), KEY).unwrap();
    assert_eq!(client.pid(), std::process::id());
    let remote: ManagedDict<String, u32> = client.lookup("shared").unwrap();
    remote.insert("a".into(), 1).unwrap();
    assert_eq!(d.get("a").unwrap(), Some(1));
}

#[test]
fn every_handle_kind_works_from_a_client_with_the_right_key() {
    let manager = serve();
    let jobs = manager.queue::<u64>().unwrap();
    manager.register("jobs", &jobs).unwrap();
    let client = Manager::connect(addr(&manager), KEY).unwrap();

    // Found by name: the server's own handle sees what the client did.
    let remote_jobs: ManagedQueue<u64> = client.lookup("jobs").unwrap();
    for i in 0..100 {
        remote_jobs.put(i).unwrap();
    }
    assert_eq!((0..100).map(|_| jobs.get().unwrap()).sum::<u64>(), 4950);
    jobs.put(9).unwrap();
    assert_eq!(remote_jobs.get_timeout(LIMIT).unwrap(), 9);

    // Made by the client.
    let q = client.bounded_queue::<String>(1).unwrap();
    q.put("x".into()).unwrap();
    assert!(matches!(
        q.put_nowait("y".into()).unwrap_err().error,
        ManagerError::Full { maxsize: 1, .. }
    ));
    assert_eq!(q.get().unwrap(), "x");
    let d = client.dict::<u32, String>().unwrap();
    d.insert(1, "one".into()).unwrap();
    assert_eq!(d.get(&1).unwrap().as_deref(), Some("one"));
    let l = client.list::<u8>().unwrap();
    l.extend([1, 2, 3]).unwrap();
    assert_eq!(l.len().unwrap(), 3);
    let ns = client.namespace().unwrap();
    ns.set("n", 5u16).unwrap();
    assert_eq!(ns.get::<u16>("n").unwrap(), Some(5));
    let v = client.value(1.5f64).unwrap();
    assert_eq!(v.set(2.5).unwrap(), 1.5);
    let lock = client.lock().unwrap();
    let guard = lock.acquire_timeout(LIMIT).unwrap();
    assert!(lock.try_acquire().unwrap().is_none());
    guard.release().unwrap();
    let event = client.event().unwrap();
    event.set().unwrap();
    assert!(event.wait_timeout(LIMIT).unwrap());

    // A client registers, another finds; a kind mismatch or an unknown name is an error.
    client.register("lock", &lock).unwrap();
    let other = Manager::connect(addr(&manager), KEY).unwrap();
    let _: ManagedLock = other.lookup("lock").unwrap();
    assert!(matches!(
        other.lookup::<ManagedEvent>("lock"),
        Err(ManagerError::ObjectRefused { .. })
    ));
    let missing = other.lookup::<ManagedList<u8>>("nobody").unwrap_err();
    assert!(missing.to_string().contains("nobody"), "{missing}");
    let _: (ManagedNamespace, ManagedValue<f64>) = (ns, v);
}

#[test]
fn a_wrong_key_is_refused_at_connect() {
    let manager = serve();
    probe_dict(&manager);
    let err = Manager::connect(addr(&manager), b"not the key").unwrap_err();
    assert!(
        matches!(err, ManagerError::AuthenticationFailed { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("refused"), "{err}");
    still_serves(addr(&manager));
}

#[test]
fn a_wrong_key_gets_one_refusal_byte_and_nothing_else() {
    let manager = serve();
    probe_dict(&manager);
    let (mut stream, verdict) = raw_handshake(addr(&manager), b"wrong");
    assert_eq!(verdict, 0);
    // A call sent anyway is never answered: the server has closed.
    let _ = stream.write_all(&[5, 0, 0, 0, 1, 2, 3, 4, 5]);
    assert_eq!(read_to_close(&mut stream, LIMIT), Vec::<u8>::new());
    // The right key by hand is welcomed.
    let (_ok, verdict) = raw_handshake(addr(&manager), KEY);
    assert_eq!(verdict, 1);
}

#[test]
fn a_frame_before_the_handshake_gets_no_answer() {
    let manager = serve();
    probe_dict(&manager);
    let mut stream = TcpStream::connect(addr(&manager)).unwrap();
    // 44 bytes of something else where the hello belongs: closed, nothing sent back.
    stream.write_all(&[0xab; 44]).unwrap();
    assert_eq!(read_to_close(&mut stream, LIMIT), Vec::<u8>::new());
    still_serves(addr(&manager));
}

#[test]
fn an_oversized_frame_closes_that_connection_only() {
    let manager = Manager::builder()
        .address("127.0.0.1:0")
        .authkey(KEY)
        .max_frame(1024)
        .serve()
        .unwrap();
    probe_dict(&manager);
    let (mut stream, verdict) = raw_handshake(addr(&manager), KEY);
    assert_eq!(verdict, 1);
    stream.write_all(&1025u32.to_le_bytes()).unwrap();
    assert!(read_to_close(&mut stream, LIMIT).is_empty());
    let (mut huge, _) = raw_handshake(addr(&manager), KEY);
    huge.write_all(&u32::MAX.to_le_bytes()).unwrap();
    assert!(read_to_close(&mut huge, LIMIT).is_empty());
    still_serves(addr(&manager));
}

#[test]
fn garbage_bytes_close_that_connection_only() {
    let manager = serve();
    probe_dict(&manager);
    let (mut stream, _) = raw_handshake(addr(&manager), KEY);
    // A whole frame that is not a call.
    stream
        .write_all(&[6, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff])
        .unwrap();
    assert!(read_to_close(&mut stream, LIMIT).is_empty());
    still_serves(addr(&manager));
}

#[test]
fn a_peer_stalled_mid_frame_is_dropped_at_the_deadline_and_others_are_served_meanwhile() {
    let deadline = Duration::from_millis(400);
    let manager = Manager::builder()
        .address("127.0.0.1:0")
        .authkey(KEY)
        .frame_timeout(deadline)
        .serve()
        .unwrap();
    probe_dict(&manager);
    let (mut stalled, _) = raw_handshake(addr(&manager), KEY);
    // Both deadlines start after this.
    let start = Instant::now();
    // Half a frame: a length of 100, then 10 bytes, then nothing.
    stalled.write_all(&100u32.to_le_bytes()).unwrap();
    stalled.write_all(&[0; 10]).unwrap();
    // Half a handshake, too.
    let mut half = TcpStream::connect(addr(&manager)).unwrap();
    half.write_all(&MAGIC[..]).unwrap();
    still_serves(addr(&manager));
    assert!(read_to_close(&mut stalled, LIMIT).is_empty());
    assert!(read_to_close(&mut half, LIMIT).is_empty());
    // Dropped no earlier than its deadline (the deadline is what dropped it).
    assert!(start.elapsed() >= deadline);
}

#[test]
fn connections_past_the_limit_are_closed_unanswered() {
    let manager = Manager::builder()
        .address("127.0.0.1:0")
        .authkey(KEY)
        .max_connections(2)
        .serve()
        .unwrap();
    probe_dict(&manager);
    let (first, _) = raw_handshake(addr(&manager), KEY);
    let (second, _) = raw_handshake(addr(&manager), KEY);
    let mut third = TcpStream::connect(addr(&manager)).unwrap();
    assert!(read_to_close(&mut third, LIMIT).is_empty());
    let err = Manager::connect(addr(&manager), KEY).unwrap_err();
    assert!(matches!(err, ManagerError::Connect { .. }), "{err}");
    assert!(err.to_string().contains("connection limit"), "{err}");
    // Slots come back when connections close.
    drop((first, second));
    let deadline = Instant::now() + LIMIT;
    loop {
        match Manager::connect(addr(&manager), KEY) {
            Ok(_) => break,
            Err(e) => assert!(Instant::now() < deadline, "no slot came back: {e}"),
        }
        std::thread::yield_now();
    }
}

/// A child's target: connects with the key, takes the lock, says so, waits until killed.
fn hold_until_killed(addr: String, key: Vec<u8>, holding: IpcSender<u32>) -> bool {
    let client = Manager::connect(addr.as_str(), key).expect("connect in the child");
    let lock: ManagedLock = client.lookup("lock").expect("lookup in the child");
    let never: ManagedEvent = client.lookup("never").expect("lookup in the child");
    let _guard = lock.acquire_timeout(LIMIT).expect("acquire in the child");
    holding
        .send(process_ipc::current_pid())
        .expect("tell the parent");
    never.wait_timeout(LIMIT).unwrap_or(false)
}

#[test]
fn a_lock_holder_whose_connection_drops_is_named_by_the_next_acquire() {
    let manager = serve();
    let lock = manager.lock().unwrap();
    manager.register("lock", &lock).unwrap();
    let never = manager.event().unwrap();
    manager.register("never", &never).unwrap();
    let client = Manager::connect(addr(&manager), KEY).unwrap();
    let remote_lock: ManagedLock = client.lookup("lock").unwrap();
    let (tx, rx) = ipc_channel::ipc::channel::<u32>().unwrap();
    let mut child = Process::new(
        hold_until_killed,
        (addr(&manager).to_string(), KEY.to_vec(), tx),
    )
    .start()
    .unwrap();
    let holder = rx.try_recv_timeout(LIMIT).unwrap();
    assert_eq!(holder, child.pid());
    assert!(remote_lock.try_acquire().unwrap().is_none());
    child.kill().unwrap();
    assert!(child.join_timeout(LIMIT).is_err());
    let err = remote_lock.acquire_timeout(LIMIT).unwrap_err();
    match &err {
        ManagerError::OwnerDied { owner, peer, .. } => {
            assert_eq!(*owner, holder);
            assert!(
                peer.as_deref().is_some_and(|p| p.starts_with("127.0.0.1:")),
                "{err}"
            );
        }
        other => panic!("expected OwnerDied, got {other}"),
    }
    assert!(
        err.to_string()
            .contains(&format!("process {holder} at 127.0.0.1:")),
        "{err}"
    );
    // Reported once; the lock is free again.
    remote_lock
        .acquire_timeout(LIMIT)
        .unwrap()
        .release()
        .unwrap();
}

#[test]
fn a_tcp_manager_needs_a_nonempty_key_and_a_key_needs_an_address() {
    let no_key = Manager::builder()
        .address("127.0.0.1:0")
        .serve()
        .unwrap_err();
    assert!(matches!(no_key, ManagerError::Start { .. }), "{no_key}");
    let empty = Manager::builder()
        .address("127.0.0.1:0")
        .authkey("")
        .serve();
    assert!(empty.is_err());
    let key_without_address = Manager::builder().authkey(KEY).serve();
    assert!(key_without_address.is_err());
}

/// A child's target: uses a TCP manager's handle without having connected.
fn use_without_key(d: ManagedDict<u32, u32>) -> String {
    match d.get(&1) {
        Ok(_) => "answered".into(),
        Err(e) => e.to_string(),
    }
}

/// A child's target: connects with the key first, then uses the handle it was given.
fn use_after_connect(addr: String, d: ManagedDict<u32, u32>) -> String {
    let _client = Manager::connect(addr.as_str(), KEY).expect("connect in the child");
    match d.get(&1) {
        Ok(v) => format!("{v:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn a_handle_carries_the_address_never_the_key() {
    let manager = serve();
    let client = Manager::connect(addr(&manager), KEY).unwrap();
    let d = client.dict::<u32, u32>().unwrap();
    d.insert(1, 11).unwrap();
    let encoded = postcard::to_stdvec(&d).unwrap();
    assert!(
        !encoded.windows(KEY.len()).any(|w| w == KEY),
        "the key is not in the handle"
    );
    let refused = Process::new(use_without_key, (d.clone(),))
        .start()
        .unwrap()
        .join()
        .unwrap();
    assert!(refused.contains("no authkey"), "{refused}");
    let answered = Process::new(use_after_connect, (addr(&manager).to_string(), d))
        .start()
        .unwrap()
        .join()
        .unwrap();
    assert_eq!(answered, "Some(11)");
}
