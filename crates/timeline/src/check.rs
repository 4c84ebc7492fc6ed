//! A strict reader of one event line at the merge: the line must be one complete JSON object
//! (a torn or scribbled line is refused whole) with `ph`, `ts`, `pid` and `tid`. Hand-written
//! so that the recorder adds no JSON library to the programs it is built into.

/// Nesting deeper than this is refused (no line of ours nests past three).
const MAX_DEPTH: usize = 32;

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    fn space(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\r' | b'\n')) {
            self.at += 1;
        }
    }

    fn eat(&mut self, b: u8) -> Option<()> {
        self.space();
        (self.peek()? == b).then(|| self.at += 1)
    }

    /// A string; returns its raw (still escaped) text.
    fn string(&mut self) -> Option<&[u8]> {
        self.eat(b'"')?;
        let start = self.at;
        loop {
            match self.peek()? {
                b'"' => break,
                b'\\' => {
                    self.at += 1;
                    match self.peek()? {
                        b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => self.at += 1,
                        b'u' => {
                            let hex = self.bytes.get(self.at + 1..self.at + 5)?;
                            if !hex.iter().all(u8::is_ascii_hexdigit) {
                                return None;
                            }
                            self.at += 5;
                        }
                        _ => return None,
                    }
                }
                0..=0x1f => return None,
                _ => self.at += 1,
            }
        }
        let text = &self.bytes[start..self.at];
        self.at += 1;
        std::str::from_utf8(text).ok()?;
        Some(text)
    }

    fn number(&mut self) -> Option<f64> {
        self.space();
        let start = self.at;
        while matches!(
            self.peek(),
            Some(b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9')
        ) {
            self.at += 1;
        }
        std::str::from_utf8(&self.bytes[start..self.at])
            .ok()?
            .parse::<f64>()
            .ok()
            .filter(|n| n.is_finite())
    }

    /// Any value; a number's value when it is one.
    fn value(&mut self, depth: usize) -> Option<Option<f64>> {
        if depth > MAX_DEPTH {
            return None;
        }
        self.space();
        match self.peek()? {
            b'{' => {
                self.object(depth + 1, |_, _| {})?;
                Some(None)
            }
            b'[' => {
                self.at += 1;
                self.space();
                if self.peek()? == b']' {
                    self.at += 1;
                    return Some(None);
                }
                loop {
                    self.value(depth + 1)?;
                    self.space();
                    match self.peek()? {
                        b',' => self.at += 1,
                        b']' => {
                            self.at += 1;
                            return Some(None);
                        }
                        _ => return None,
                    }
                }
            }
            b'"' => self.string().map(|_| None),
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            _ => self.number().map(Some),
        }
    }

    fn literal(&mut self, word: &[u8]) -> Option<Option<f64>> {
        let end = self.at + word.len();
        (self.bytes.get(self.at..end)? == word).then(|| {
            self.at = end;
            None
        })
    }

    /// An object; calls `seen(key, number value)` for each member.
    fn object(&mut self, depth: usize, mut seen: impl FnMut(&[u8], Option<f64>)) -> Option<()> {
        self.eat(b'{')?;
        self.space();
        if self.peek()? == b'}' {
            self.at += 1;
            return Some(());
        }
        loop {
            let key = self.string()?.to_vec();
            self.eat(b':')?;
            let value = self.value(depth)?;
            seen(&key, value);
            self.space();
            match self.peek()? {
                b',' => self.at += 1,
                b'}' => {
                    self.at += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }
}

/// The timestamp of `line` if it is one whole trace event (an object with `ph`, a numeric
/// `ts`, `pid` and `tid`, and nothing after it); `None` for anything else.
pub(crate) fn event_ts(line: &str) -> Option<f64> {
    let mut r = Reader {
        bytes: line.as_bytes(),
        at: 0,
    };
    let (mut ph, mut ts, mut pid, mut tid) = (false, None, false, false);
    r.object(1, |key, number| match key {
        b"ph" => ph = true,
        b"ts" => ts = number,
        b"pid" => pid = number.is_some(),
        b"tid" => tid = number.is_some(),
        _ => {}
    })?;
    r.space();
    (r.at == line.len() && ph && pid && tid)
        .then_some(ts)
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_events_pass_and_anything_torn_or_foreign_is_refused() {
        let good = r#"{"ph":"B","ts":1.500,"pid":7,"tid":9,"name":"a\"b","args":{"x":[1,{"y":null}],"z":true}}"#;
        assert_eq!(event_ts(good), Some(1.5));
        for bad in [
            &good[..good.len() - 1],
            r#"{"ph":"B","ts":1.5,"pid":7}"#,
            r#"{"ph":"B","ts":"1","pid":7,"tid":9}"#,
            r#"{"ph":"B","ts":1,"pid":7,"tid":9} x"#,
            r#"{"ph":"B","ts":1,"pid":7,"tid":9,"n":"\q"}"#,
            "[1,2]",
            "",
            "not json",
        ] {
            assert_eq!(event_ts(bad), None, "{bad}");
        }
        let deep = format!(
            "{{\"ph\":\"i\",\"ts\":1,\"pid\":1,\"tid\":1,\"a\":{}1{}}}",
            "[".repeat(100),
            "]".repeat(100)
        );
        assert_eq!(
            event_ts(&deep),
            None,
            "nesting past the limit is refused, not recursed"
        );
    }
}
