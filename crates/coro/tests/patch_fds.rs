//! `patch_all()` keeps a waited-on socket in its epoll set, and its mode and timeouts,
//! from one wait to the next; these are the ways that knowledge goes stale, each of which
//! would leave a coroutine waiting forever (or not at all) if it were missed.
//!
//! Each scenario makes a coroutine wait in a patched read once (so what the hooks know
//! of its fd is cached), changes the fd behind the cache's back in the way named, and
//! checks the next patched call on that fd number behaves as on a fresh socket. A
//! reader spawned before its writer parks first (one worker), as in `patch_net.rs`.

use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(20);

/// A connected pair: (the coroutine's side, the peer's side).
fn pair(listener: &TcpListener) -> (TcpStream, TcpStream) {
    let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (server, _) = listener.accept().unwrap();
    (client, server)
}

/// Spawns a reader of one byte from `s` that must wait, then a writer of it on `peer`;
/// gives `s` back once the byte arrived.
fn wait_once(mut s: TcpStream, mut peer: TcpStream) -> (TcpStream, TcpStream) {
    let mut reader = coro::spawn(move || {
        let mut b = [0u8; 1];
        s.read_exact(&mut b).unwrap();
        s
    })
    .unwrap();
    let mut writer = coro::spawn(move || {
        peer.write_all(b"x").unwrap();
        peer
    })
    .unwrap();
    let s = reader.get_timeout(WAIT).expect("the first wait ended");
    (s, writer.get_timeout(WAIT).unwrap())
}

/// Reads one byte from `s` in a coroutine while another writes it on `peer` later.
fn read_needs_writer(mut s: TcpStream, mut peer: TcpStream) -> Result<u8, ErrorKind> {
    let mut reader = coro::spawn(move || {
        let mut b = [0u8; 1];
        s.read_exact(&mut b).map_err(|e| e.kind())?;
        Ok(b[0])
    })
    .unwrap();
    let writer = coro::spawn(move || peer.write_all(b"y").unwrap()).unwrap();
    let got = reader
        .get_timeout(WAIT)
        .expect("the reader waited forever: a stale registration");
    assert!(writer.join_timeout(WAIT));
    got
}

#[test]
fn what_the_hooks_cache_of_a_fd_goes_stale_when_it_must() {
    coro::monkey::patch_all().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    a_fd_number_reused_after_close_is_registered_afresh(&listener);
    a_fd_replaced_by_dup2_is_registered_afresh(&listener);
    a_read_timeout_set_after_a_wait_is_honoured(&listener);
    non_blocking_set_after_a_wait_is_honoured(&listener);
}

fn a_fd_number_reused_after_close_is_registered_afresh(listener: &TcpListener) {
    let (s, peer) = pair(listener);
    let (s, _peer) = wait_once(s, peer);
    let number = s.as_raw_fd();
    drop(s); // close: the epoll set forgets the file
    let (again, peer) = pair(listener);
    assert_eq!(
        again.as_raw_fd(),
        number,
        "the lowest free number is reused"
    );
    assert_eq!(read_needs_writer(again, peer), Ok(b'y'));
}

fn a_fd_replaced_by_dup2_is_registered_afresh(listener: &TcpListener) {
    let (s, peer) = pair(listener);
    let (s, _old_peer) = wait_once(s, peer);
    let (other, other_peer) = pair(listener);
    let number = s.into_raw_fd();
    // SAFETY: both fds are open and owned here; dup2 closes `number`'s file and makes it
    // name `other`'s.
    assert_eq!(unsafe { libc::dup2(other.as_raw_fd(), number) }, number);
    // SAFETY: `number` is open and owned by nobody else now.
    let replaced = unsafe { TcpStream::from_raw_fd(number) };
    assert_eq!(read_needs_writer(replaced, other_peer), Ok(b'y'));
    drop(other);
}

fn a_read_timeout_set_after_a_wait_is_honoured(listener: &TcpListener) {
    let (s, peer) = pair(listener);
    let (s, _peer) = wait_once(s, peer);
    let mut g = coro::spawn(move || {
        let mut s = s;
        s.set_read_timeout(Some(Duration::from_millis(30))).unwrap();
        s.read(&mut [0u8; 1]).map_err(|e| e.kind())
    })
    .unwrap();
    assert_eq!(
        g.get_timeout(WAIT)
            .expect("the timeout set after a wait was ignored"),
        Err(ErrorKind::WouldBlock)
    );
}

fn non_blocking_set_after_a_wait_is_honoured(listener: &TcpListener) {
    for by_fcntl in [false, true] {
        let (s, peer) = pair(listener);
        let (s, _peer) = wait_once(s, peer);
        let mut g = coro::spawn(move || {
            let mut s = s;
            if by_fcntl {
                // SAFETY: F_GETFL/F_SETFL on an open fd.
                unsafe {
                    let flags = libc::fcntl(s.as_raw_fd(), libc::F_GETFL);
                    libc::fcntl(s.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK);
                }
            } else {
                s.set_nonblocking(true).unwrap(); // ioctl(FIONBIO)
            }
            s.read(&mut [0u8; 1]).map_err(|e| e.kind())
        })
        .unwrap();
        assert_eq!(
            g.get_timeout(WAIT)
                .expect("non-blocking set after a wait was ignored"),
            Err(ErrorKind::WouldBlock),
            "set by fcntl: {by_fcntl}"
        );
    }
}
