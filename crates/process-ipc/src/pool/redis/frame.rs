//! What travels through Redis: the task and result frames (postcard bodies in stream entry
//! fields), the build identity they are checked against, and the checks every frame read from
//! Redis goes through (Redis data is untrusted: sizes are bounded and nothing read panics).

use std::io::Read;
use std::sync::OnceLock;

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;
use sha2::{Digest, Sha256};

/// Stream entry field: the submitting pool's id.
pub(super) const F_POOL: &str = "p";
/// Stream entry field: the task's id in its pool (decimal).
pub(super) const F_TASK: &str = "t";
/// Stream entry field: the submitting program's build.
pub(super) const F_BUILD: &str = "b";
/// Stream entry field: the postcard body.
pub(super) const F_BODY: &str = "f";
/// Stream entry field: the HMAC-SHA256 of the other fields, under the authkey (if one is set).
pub(super) const F_MAC: &str = "m";

/// The longest pool id or build id accepted from Redis.
const MAX_ID: usize = 64;

/// A task's body: the function (its offset in the executable) and its encoded arguments.
#[derive(Serialize, Deserialize)]
pub(super) struct TaskBody {
    pub(super) call: i64,
    pub(super) args: ByteBuf,
}

/// How a task ended on a worker.
#[derive(Serialize, Deserialize)]
pub(super) enum RemoteOutcome {
    /// The encoded value.
    Value(ByteBuf),
    /// The task panicked (the worker survives).
    Panicked { message: String, location: String },
    /// The arguments or the value did not (de)serialize.
    Serde(String),
    /// The worker runs another build and refused the task.
    BuildMismatch { worker_build: String },
    /// The task frame did not decode; only this task fails.
    BadFrame(String),
}

/// A result's body: who ran the task and how it ended.
#[derive(Serialize, Deserialize)]
pub(super) struct ResultBody {
    pub(super) host: String,
    pub(super) pid: u32,
    pub(super) outcome: RemoteOutcome,
}

/// This executable's build identity: the first 16 bytes of the sha256 of `/proc/self/exe`, in
/// hex, computed once. Two processes run the same build exactly when their executables have
/// the same bytes, so a code offset from one means the same function in the other.
pub fn build_id() -> &'static str {
    static ID: OnceLock<String> = OnceLock::new();
    ID.get_or_init(|| match hash_exe() {
        Ok(id) => id,
        // Unreadable: a value no other build can have, so every task is refused with a clear
        // error rather than run on a guess.
        Err(e) => format!("unreadable-exe-{}-{}", std::process::id(), e.kind()),
    })
}

fn hash_exe() -> std::io::Result<String> {
    let mut file = std::fs::File::open("/proc/self/exe")?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher.finalize()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// The HMAC-SHA256 under `key` of `parts`, each length-prefixed (so no two lists of parts
/// sign alike).
pub(super) fn sign(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    mac_of(key, parts).finalize().into_bytes().to_vec()
}

/// Whether `mac` is the HMAC-SHA256 of `parts` under `key` (compared in constant time).
pub(super) fn verify(key: &[u8], parts: &[&[u8]], mac: &[u8]) -> bool {
    mac_of(key, parts).verify_slice(mac).is_ok()
}

fn mac_of(key: &[u8], parts: &[&[u8]]) -> Hmac<Sha256> {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    for part in parts {
        mac.update(&(part.len() as u64).to_le_bytes());
        mac.update(part);
    }
    mac
}

/// A pool or build id read from Redis, if it is one: 1 to 64 characters of `[0-9a-zA-Z_-]`
/// (it becomes part of a key name, so nothing else is accepted).
pub(super) fn checked_id(bytes: &[u8]) -> Option<&str> {
    let ok = !bytes.is_empty()
        && bytes.len() <= MAX_ID
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_');
    if ok {
        std::str::from_utf8(bytes).ok()
    } else {
        None
    }
}

/// A task id read from Redis: decimal, at most 20 digits.
pub(super) fn checked_task_id(bytes: &[u8]) -> Option<u64> {
    if bytes.is_empty() || bytes.len() > 20 || !bytes.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(bytes).ok()?.parse().ok()
}

/// Decodes a body of at most `max` bytes; any failure is a message, never a panic.
pub(super) fn decode<'a, T: Deserialize<'a>>(bytes: &'a [u8], max: usize) -> Result<T, String> {
    if bytes.len() > max {
        return Err(format!(
            "a frame of {} bytes is over the limit of {max}",
            bytes.len()
        ));
    }
    postcard::from_bytes(bytes).map_err(|e| format!("the frame does not decode: {e}"))
}

/// The value of `name` among an entry's fields (the first, if repeated).
pub(super) fn field<'a>(fields: &'a [(Vec<u8>, Vec<u8>)], name: &str) -> Option<&'a [u8]> {
    fields
        .iter()
        .find(|(k, _)| k == name.as_bytes())
        .map(|(_, v)| v.as_slice())
}

/// A fresh random id in hex (`bytes` random bytes).
pub(super) fn random_id(bytes: usize) -> String {
    let mut raw = vec![0u8; bytes];
    if getrandom::fill(&mut raw).is_err() {
        // No randomness: the pid and the clock still separate pools and workers.
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        return format!("{:x}{now:x}", std::process::id());
    }
    raw.iter().map(|b| format!("{b:02x}")).collect()
}

/// This host's name (the kernel's, as `uname -n`), for errors naming where a worker ran.
pub(super) fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown-host".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_from_redis_are_checked() {
        assert_eq!(checked_id(b"ab12-_"), Some("ab12-_"));
        assert_eq!(checked_id(b""), None);
        assert_eq!(checked_id(b"a:b"), None);
        assert_eq!(checked_id(&[b'a'; 65]), None);
        assert_eq!(checked_task_id(b"42"), Some(42));
        assert_eq!(checked_task_id(b"-1"), None);
        assert_eq!(checked_task_id(b"99999999999999999999"), None);
    }

    #[test]
    fn bad_bodies_are_errors() {
        assert!(decode::<TaskBody>(&[0xff; 8], 1024).is_err());
        assert!(decode::<TaskBody>(&[0; 2048], 1024).is_err());
        let body = postcard::to_stdvec(&TaskBody {
            call: -5,
            args: ByteBuf::from(vec![1, 2]),
        })
        .unwrap();
        let back: TaskBody = decode(&body, 1024).unwrap();
        assert_eq!((back.call, back.args.into_vec()), (-5, vec![1, 2]));
        assert_eq!(build_id().len(), 32);
        let mac = sign(b"key", &[b"a", b"bc"]);
        assert!(verify(b"key", &[b"a", b"bc"], &mac));
        assert!(!verify(b"key", &[b"ab", b"c"], &mac));
        assert!(!verify(b"other", &[b"a", b"bc"], &mac));
        assert!(!verify(b"key", &[b"a", b"bc"], &mac[..31]));
    }
}
