//! Talking to Redis: key names, connections that never block longer than their timeout, the
//! consumer group, and a tolerant reader of stream replies (a reply that is not the expected
//! shape is an error, never a panic).

use std::time::Duration;

use redis::{Client, Connection, RedisResult, Value};

use crate::error::PoolError;

/// The consumer group every worker reads tasks through.
pub(super) const GROUP: &str = "workers";

/// The keys of one namespace.
#[derive(Debug, Clone)]
pub(super) struct Keys {
    prefix: String,
}

impl Keys {
    pub(super) fn new(namespace: &str) -> Self {
        Keys {
            prefix: format!("mt:{namespace}"),
        }
    }

    /// The stream every pool adds its tasks to.
    pub(super) fn tasks(&self) -> String {
        format!("{}:tasks", self.prefix)
    }

    /// The stream a pool's results come back on.
    pub(super) fn results(&self, pool: &str) -> String {
        format!("{}:results:{pool}", self.prefix)
    }

    /// A worker's heartbeat (expires unless renewed).
    pub(super) fn heartbeat(&self, consumer: &str) -> String {
        format!("{}:hb:{consumer}", self.prefix)
    }

    /// Why a worker ended, when the process that started it saw it end.
    pub(super) fn death(&self, consumer: &str) -> String {
        format!("{}:dead:{consumer}", self.prefix)
    }

    /// The set of worker (consumer) names.
    pub(super) fn workers(&self) -> String {
        format!("{}:workers", self.prefix)
    }
}

/// A worker's consumer name: `host/pid/nonce` (host names hold no `/`).
pub(super) fn consumer_name(host: &str, pid: u32) -> String {
    format!("{host}/{pid}/{}", super::frame::random_id(4))
}

/// The host and pid in a consumer name read from Redis (`?` and 0 where it is not one).
pub(super) fn parse_consumer(name: &str) -> (String, u32) {
    let mut parts = name.rsplitn(3, '/');
    let _nonce = parts.next();
    let pid = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    let host = parts.next().unwrap_or("?").to_string();
    (host, pid)
}

/// A connection whose connect, reads and writes each give up after `timeout` (a blocking
/// command's own block time is added by the caller).
pub(super) fn connect(client: &Client, timeout: Duration) -> RedisResult<Connection> {
    let conn = client.get_connection_with_timeout(timeout)?;
    conn.set_read_timeout(Some(timeout))?;
    conn.set_write_timeout(Some(timeout))?;
    Ok(conn)
}

/// Creates the tasks stream and its group if missing (from the start of the stream, so tasks
/// added before the group existed are read too).
pub(super) fn ensure_group(conn: &mut Connection, tasks: &str) -> RedisResult<()> {
    let made: RedisResult<Value> = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(tasks)
        .arg(GROUP)
        .arg("0")
        .arg("MKSTREAM")
        .query(conn);
    match made {
        Err(e) if e.code() == Some("BUSYGROUP") => Ok(()),
        other => other.map(|_| ()),
    }
}

/// A Redis failure as the pool reports it, naming the address.
pub(super) fn broker_error(url: &str, what: &str, e: &redis::RedisError) -> PoolError {
    PoolError::Broker(format!("{what} at {url}: {e}"))
}

/// One stream entry: its id and its fields.
pub(super) struct Entry {
    pub(super) id: String,
    pub(super) fields: Vec<(Vec<u8>, Vec<u8>)>,
}

fn bytes(v: &Value) -> Option<Vec<u8>> {
    match v {
        Value::BulkString(b) => Some(b.clone()),
        Value::SimpleString(s) => Some(s.clone().into_bytes()),
        Value::Int(i) => Some(i.to_string().into_bytes()),
        _ => None,
    }
}

fn text(v: &Value) -> Option<String> {
    bytes(v).and_then(|b| String::from_utf8(b).ok())
}

/// The entries of an `XREAD`/`XREADGROUP` reply (nil, when the block timed out, is none).
/// Entries whose fields are not pairs of strings come back with no fields (they then fail as
/// undecodable, alone); a reply of another shape is an error.
pub(super) fn entries(reply: &Value) -> Result<Vec<Entry>, String> {
    let streams: Vec<&Value> = match reply {
        Value::Nil => return Ok(Vec::new()),
        Value::Array(streams) => streams.iter().collect(),
        Value::Map(pairs) => pairs.iter().map(|(_, v)| v).collect(),
        other => return Err(format!("unexpected stream reply {other:?}")),
    };
    let mut out = Vec::new();
    for stream in streams {
        let list = match stream {
            Value::Array(pair) if pair.len() == 2 => &pair[1],
            list @ Value::Array(_) => list,
            other => return Err(format!("unexpected stream in reply {other:?}")),
        };
        let Value::Array(items) = list else {
            return Err(format!("unexpected entry list {list:?}"));
        };
        for item in items {
            let Value::Array(parts) = item else {
                return Err(format!("unexpected entry {item:?}"));
            };
            let Some(id) = parts.first().and_then(text) else {
                return Err(format!("entry without an id {item:?}"));
            };
            let fields = match parts.get(1) {
                Some(Value::Array(kv)) if kv.len() % 2 == 0 => kv
                    .chunks(2)
                    .map(|p| Some((bytes(&p[0])?, bytes(&p[1])?)))
                    .collect::<Option<Vec<_>>>()
                    .unwrap_or_default(),
                Some(Value::Map(kv)) => kv
                    .iter()
                    .map(|(k, v)| Some((bytes(k)?, bytes(v)?)))
                    .collect::<Option<Vec<_>>>()
                    .unwrap_or_default(),
                _ => Vec::new(),
            };
            out.push(Entry { id, fields });
        }
    }
    Ok(out)
}

/// One line of an extended `XPENDING` reply: entry id, consumer, deliveries.
pub(super) struct Pending {
    pub(super) id: String,
    pub(super) consumer: String,
}

/// The lines of an extended `XPENDING` reply; lines of another shape are skipped.
pub(super) fn pending(reply: &Value) -> Vec<Pending> {
    let Value::Array(lines) = reply else {
        return Vec::new();
    };
    lines
        .iter()
        .filter_map(|line| {
            let Value::Array(parts) = line else {
                return None;
            };
            Some(Pending {
                id: text(parts.first()?)?,
                consumer: text(parts.get(1)?)?,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consumer_names_round_trip_and_bad_ones_do_not_panic() {
        let name = consumer_name("box-1", 4242);
        assert_eq!(parse_consumer(&name), ("box-1".to_string(), 4242));
        assert_eq!(parse_consumer("garbage"), ("?".to_string(), 0));
        assert_eq!(parse_consumer("a/b/c/d"), ("a/b".to_string(), 0));
    }

    #[test]
    fn odd_replies_are_errors_or_empty() {
        assert!(entries(&Value::Nil).unwrap().is_empty());
        assert!(entries(&Value::Int(3)).is_err());
        let bad = Value::Array(vec![Value::Array(vec![
            Value::BulkString(b"s".to_vec()),
            Value::Array(vec![Value::Array(vec![
                Value::BulkString(b"1-0".to_vec()),
                Value::Array(vec![Value::BulkString(b"odd".to_vec())]),
            ])]),
        ])]);
        let got = entries(&bad).unwrap();
        assert_eq!(got.len(), 1);
        assert!(got[0].fields.is_empty());
        assert!(pending(&Value::Okay).is_empty());
    }
}
