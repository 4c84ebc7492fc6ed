//! The authkey handshake that opens every TCP connection to a manager, before any frame of
//! `object_wire`: Python's `deliver_challenge`/`answer_challenge` idea, mutual, HMAC-SHA256 over
//! fresh random nonces, in two round trips and fixed-size messages.
//!
//! ```text
//! client -> server   HELLO   magic(8) | client nonce Nc(32) | client pid(4)
//! server -> client   CHALLENGE magic(8) | server nonce Ns(32)
//! client -> server   PROOF   HMAC(key, "client" | Nc | Ns | client pid)(32)
//! server -> client   WELCOME 1 | server pid(4) | HMAC(key, "server" | Ns | Nc | server pid)(32)
//!               or   REFUSED 0, and the server closes the connection
//! ```
//!
//! The key is never sent. Each side checks the other's proof in constant time (`hmac`'s
//! `verify_slice`). The labels keep a proof of one direction from being replayed as the other,
//! and each proof covers both nonces, so it is worth nothing on another connection. The server
//! proves itself only after the client has: until then it has sent a nonce and nothing
//! derived from the key. Every message has a fixed size, so before authentication a peer can
//! make the server hold nothing beyond these few bytes, and the whole handshake must finish
//! within the server's frame deadline.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Opens every handshake message that carries it; names the protocol and its version.
const MAGIC: [u8; 8] = *b"mtmgr\0v1";
const NONCE: usize = 32;
const PROOF: usize = 32;
const HELLO: usize = MAGIC.len() + NONCE + 4;
const CHALLENGE: usize = MAGIC.len() + NONCE;
const WELCOME: usize = 1 + 4 + PROOF;

/// Why a handshake did not end with both sides proven.
#[derive(Debug)]
pub(crate) enum HandshakeError {
    /// The other side's proof did not match: it does not hold this key.
    WrongKey,
    /// What came was not this handshake (another protocol, or another version of ours).
    NotOurs(&'static str),
    /// The connection failed, closed, or the handshake ran out of time.
    Io(io::Error),
}

impl std::fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HandshakeError::WrongKey => f.write_str("wrong authkey"),
            HandshakeError::NotOurs(what) => write!(f, "not a manager handshake: {what}"),
            HandshakeError::Io(e) => write!(f, "handshake failed: {e}"),
        }
    }
}

impl From<io::Error> for HandshakeError {
    fn from(e: io::Error) -> Self {
        HandshakeError::Io(e)
    }
}

fn nonce() -> io::Result<[u8; NONCE]> {
    let mut nonce = [0u8; NONCE];
    getrandom::fill(&mut nonce).map_err(|e| io::Error::other(e.to_string()))?;
    Ok(nonce)
}

fn keyed(key: &[u8], label: &[u8], parts: &[&[u8]]) -> HmacSha256 {
    // HMAC takes a key of any length.
    let mut mac = HmacSha256::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    mac.update(label);
    for part in parts {
        mac.update(part);
    }
    mac
}

/// Reads exactly `buf.len()` bytes by `deadline`.
fn read_by(stream: &mut TcpStream, buf: &mut [u8], deadline: Instant) -> io::Result<()> {
    let mut filled = 0;
    while filled < buf.len() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the handshake did not finish in time",
            ));
        }
        stream.set_read_timeout(Some(left))?;
        match stream.read(&mut buf[filled..]) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// The client's half: proves it holds `key` and checks that the server does. Returns the
/// server's pid. The stream's read timeout is left unset.
pub(crate) fn client(
    stream: &mut TcpStream,
    key: &[u8],
    within: Duration,
) -> Result<u32, HandshakeError> {
    let deadline = Instant::now() + within;
    let nc = nonce()?;
    let pid = std::process::id().to_le_bytes();
    let mut hello = [0u8; HELLO];
    hello[..8].copy_from_slice(&MAGIC);
    hello[8..8 + NONCE].copy_from_slice(&nc);
    hello[8 + NONCE..].copy_from_slice(&pid);
    stream.write_all(&hello)?;
    let mut challenge = [0u8; CHALLENGE];
    read_by(stream, &mut challenge, deadline)?;
    if challenge[..8] != MAGIC {
        return Err(HandshakeError::NotOurs("the server's challenge"));
    }
    let ns = &challenge[8..];
    let proof = keyed(key, b"client", &[&nc, ns, &pid])
        .finalize()
        .into_bytes();
    stream.write_all(&proof)?;
    let mut verdict = [0u8; 1];
    match read_by(stream, &mut verdict, deadline) {
        // A server that refuses may close before the client reads its verdict.
        Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {
            return Err(HandshakeError::WrongKey);
        }
        other => other?,
    }
    match verdict[0] {
        0 => return Err(HandshakeError::WrongKey),
        1 => {}
        _ => return Err(HandshakeError::NotOurs("the server's verdict")),
    }
    let mut welcome = [0u8; WELCOME - 1];
    read_by(stream, &mut welcome, deadline)?;
    let (server_pid, server_proof) = welcome.split_at(4);
    keyed(key, b"server", &[ns, &nc, server_pid])
        .verify_slice(server_proof)
        .map_err(|_| HandshakeError::WrongKey)?;
    stream.set_read_timeout(None)?;
    let server_pid =
        u32::from_le_bytes([server_pid[0], server_pid[1], server_pid[2], server_pid[3]]);
    Ok(server_pid)
}

/// The server's half: checks that the client holds `key`, then proves it does too. Returns the
/// pid the client gave (covered by its proof). On a wrong key the client is told so in one
/// byte and nothing else. The stream's read timeout is left unset.
pub(crate) fn server(
    stream: &mut TcpStream,
    key: &[u8],
    within: Duration,
) -> Result<u32, HandshakeError> {
    let deadline = Instant::now() + within;
    let mut hello = [0u8; HELLO];
    read_by(stream, &mut hello, deadline)?;
    if hello[..8] != MAGIC {
        return Err(HandshakeError::NotOurs("the client's hello"));
    }
    let (nc, pid) = hello[8..].split_at(NONCE);
    let ns = nonce()?;
    let mut challenge = [0u8; CHALLENGE];
    challenge[..8].copy_from_slice(&MAGIC);
    challenge[8..].copy_from_slice(&ns);
    stream.write_all(&challenge)?;
    let mut proof = [0u8; PROOF];
    read_by(stream, &mut proof, deadline)?;
    if keyed(key, b"client", &[nc, &ns, pid])
        .verify_slice(&proof)
        .is_err()
    {
        let _ = stream.write_all(&[0]);
        return Err(HandshakeError::WrongKey);
    }
    let me = std::process::id().to_le_bytes();
    let mine = keyed(key, b"server", &[&ns, nc, &me])
        .finalize()
        .into_bytes();
    let mut welcome = [0u8; WELCOME];
    welcome[0] = 1;
    welcome[1..5].copy_from_slice(&me);
    welcome[5..].copy_from_slice(&mine);
    stream.write_all(&welcome)?;
    stream.set_read_timeout(None)?;
    Ok(u32::from_le_bytes([pid[0], pid[1], pid[2], pid[3]]))
}
