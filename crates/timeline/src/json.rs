//! The trace-event lines, written by hand into the thread's buffer (no allocation per event).
//!
//! Each line is one object of the Chrome trace-event format: `ph` (the phase: `B`/`E` a span's
//! start and end, `X` a complete event with `dur`, `i` an instant, `M` metadata), `ts` in
//! microseconds, `pid`, `tid`, and for the named ones `name`, `cat` and `args`.

use std::fmt::Write as _;
use std::io::Write as _;

/// Appends `s` as a JSON string (quoted, escaped).
pub(crate) fn string(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    let mut start = 0;
    for (i, &b) in s.as_bytes().iter().enumerate() {
        let escaped: Option<&[u8]> = match b {
            b'"' => Some(b"\\\""),
            b'\\' => Some(b"\\\\"),
            b'\n' => Some(b"\\n"),
            b'\r' => Some(b"\\r"),
            b'\t' => Some(b"\\t"),
            0..=0x1f => None,
            _ => continue,
        };
        out.extend_from_slice(&s.as_bytes()[start..i]);
        match escaped {
            Some(e) => out.extend_from_slice(e),
            None => {
                let _ = write!(out, "\\u{b:04x}");
            }
        }
        start = i + 1;
    }
    out.extend_from_slice(&s.as_bytes()[start..]);
    out.push(b'"');
}

/// Appends `v` in decimal (without `core::fmt`, which costs a third of an event).
pub(crate) fn number(out: &mut Vec<u8>, mut v: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

/// Appends a timestamp in microseconds with nanosecond digits.
fn micros(out: &mut Vec<u8>, ns: u64) {
    number(out, ns / 1000);
    let frac = ns % 1000;
    out.extend_from_slice(&[
        b'.',
        b'0' + (frac / 100) as u8,
        b'0' + (frac / 10 % 10) as u8,
        b'0' + (frac % 10) as u8,
    ]);
}

/// The common head of an event: `{"ph":..,"ts":..,"pid":..,"tid":..`.
fn head(out: &mut Vec<u8>, ph: &str, ts_ns: u64, pid: u32, tid: u32) {
    out.extend_from_slice(b"{\"ph\":\"");
    out.extend_from_slice(ph.as_bytes());
    out.extend_from_slice(b"\",\"ts\":");
    micros(out, ts_ns);
    out.extend_from_slice(b",\"pid\":");
    number(out, u64::from(pid));
    out.extend_from_slice(b",\"tid\":");
    number(out, u64::from(tid));
}

/// A named event: `B`, `i` (thread-scoped) or `X` (with `dur_ns`).
#[allow(clippy::too_many_arguments)]
pub(crate) fn named(
    out: &mut Vec<u8>,
    ph: &str,
    name: &str,
    cat: &str,
    ts_ns: u64,
    dur_ns: Option<u64>,
    pid: u32,
    tid: u32,
    args: &[u8],
) {
    head(out, ph, ts_ns, pid, tid);
    out.extend_from_slice(b",\"name\":");
    string(out, name);
    out.extend_from_slice(b",\"cat\":");
    string(out, cat);
    if let Some(dur) = dur_ns {
        out.extend_from_slice(b",\"dur\":");
        micros(out, dur);
    }
    if ph == "i" {
        out.extend_from_slice(b",\"s\":\"t\"");
    }
    out.extend_from_slice(b",\"args\":{");
    out.extend_from_slice(args);
    out.extend_from_slice(b"}}\n");
}

/// A span's end.
pub(crate) fn end(out: &mut Vec<u8>, ts_ns: u64, pid: u32, tid: u32) {
    head(out, "E", ts_ns, pid, tid);
    out.extend_from_slice(b"}\n");
}

/// A metadata event naming a process or a track (`process_name`, `thread_name`).
pub(crate) fn metadata(out: &mut Vec<u8>, what: &str, pid: u32, tid: u32, name: &str) {
    head(out, "M", 0, pid, tid);
    out.extend_from_slice(b",\"name\":");
    string(out, what);
    out.extend_from_slice(b",\"args\":{\"name\":");
    string(out, name);
    out.extend_from_slice(b"}}\n");
}

/// The fields of a span or event as the body of a JSON object, plus the ones the layer reads.
#[derive(Default)]
pub(crate) struct Fields {
    /// `"key":value,...` (no braces).
    pub(crate) args: Vec<u8>,
    /// The `coro` field: the coroutine whose track the event goes on.
    pub(crate) coro: Option<u64>,
    /// The `coro_name` field: that track's name (empty: none).
    pub(crate) coro_name: String,
    /// The `dur_us` field: the event is a complete event (`X`) that ended now.
    pub(crate) dur_us: Option<f64>,
    /// The `message` field: an event's name (empty: none).
    pub(crate) message: String,
    /// Where `Debug` values are formatted (kept, so that a reused `Fields` does not allocate).
    pub(crate) scratch: String,
}

impl Fields {
    /// Empties it for the next event, keeping its allocations.
    pub(crate) fn clear(&mut self) {
        self.args.clear();
        self.coro = None;
        self.coro_name.clear();
        self.dur_us = None;
        self.message.clear();
    }

    fn key(&mut self, field: &tracing::field::Field) {
        if !self.args.is_empty() {
            self.args.push(b',');
        }
        string(&mut self.args, field.name());
        self.args.push(b':');
    }
}

impl tracing::field::Visit for Fields {
    fn record_u64(&mut self, field: &tracing::field::Field, value: u64) {
        match field.name() {
            "coro" => self.coro = Some(value),
            "dur_us" => self.dur_us = Some(value as f64),
            _ => {}
        }
        self.key(field);
        number(&mut self.args, value);
    }

    fn record_i64(&mut self, field: &tracing::field::Field, value: i64) {
        match field.name() {
            "coro" if value >= 0 => self.coro = Some(value as u64),
            "dur_us" => self.dur_us = Some(value as f64),
            _ => {}
        }
        self.key(field);
        if value < 0 {
            self.args.push(b'-');
        }
        number(&mut self.args, value.unsigned_abs());
    }

    fn record_f64(&mut self, field: &tracing::field::Field, value: f64) {
        if field.name() == "dur_us" {
            self.dur_us = Some(value);
        }
        self.key(field);
        if value.is_finite() {
            let _ = write!(self.args, "{value}");
        } else {
            self.args.extend_from_slice(b"null");
        }
    }

    fn record_bool(&mut self, field: &tracing::field::Field, value: bool) {
        self.key(field);
        self.args
            .extend_from_slice(if value { b"true" } else { b"false" });
    }

    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        match field.name() {
            "message" => {
                // The event's name; not repeated in its args.
                self.message.clear();
                self.message.push_str(value);
                return;
            }
            "coro_name" => {
                self.coro_name.clear();
                self.coro_name.push_str(value);
            }
            _ => {}
        }
        self.key(field);
        string(&mut self.args, value);
    }

    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        let mut text = std::mem::take(&mut self.scratch);
        text.clear();
        let _ = write!(text, "{value:?}");
        self.record_str(field, &text);
        self.scratch = text;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_escaped_into_valid_json() {
        let mut out = Vec::new();
        string(&mut out, "a\"b\\c\nd\u{1}é");
        let text = String::from_utf8(out).unwrap();
        let back: String = serde_json::from_str(&text).unwrap();
        assert_eq!(back, "a\"b\\c\nd\u{1}é");
    }

    #[test]
    fn an_event_line_is_one_json_object_with_the_required_keys() {
        let mut out = Vec::new();
        named(
            &mut out,
            "X",
            "wait",
            "lock",
            1_234_567,
            Some(2_500),
            7,
            9,
            b"\"k\":1",
        );
        end(&mut out, 2_000_001, 7, 9);
        metadata(&mut out, "thread_name", 7, 9, "main");
        for line in String::from_utf8(out).unwrap().lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            for key in ["ph", "ts", "pid", "tid"] {
                assert!(v.get(key).is_some(), "{line} lacks {key}");
            }
        }
    }
}
