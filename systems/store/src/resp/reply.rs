//! Encoding replies in RESP2 or RESP3.
//!
//! RESP3 types that RESP2 lacks are written the way Redis writes them to a RESP2 client: a map
//! as a flat array of keys and values, a set or a push as an array, a double as a bulk string,
//! a boolean as the integer 1 or 0, a verbatim string as a bulk string, and both nulls as
//! RESP2's null bulk (`$-1`) or null array (`*-1`).

/// The protocol a connection speaks: RESP2 until the client says `HELLO 3`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Protocol {
    /// RESP2, every connection's start.
    #[default]
    Resp2,
    /// RESP3, after `HELLO 3`.
    Resp3,
}

/// One reply to a command.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// A status line, such as `OK` or `PONG` (`+OK`). Must not contain `\r` or `\n`.
    Simple(String),
    /// An error line, starting with its code (`ERR ...`, `WRONGTYPE ...`). Line breaks in it are
    /// written as spaces, as Redis does. Bytes, not text: Redis echoes a client's bytes in some
    /// errors (`ERR unknown command '...'`) unchanged, valid UTF-8 or not.
    Error(Vec<u8>),
    /// A signed 64-bit integer (`:1`).
    Integer(i64),
    /// A binary-safe string (`$3\r\nabc`).
    Bulk(Vec<u8>),
    /// "No value": a missing key (`$-1` in RESP2, `_` in RESP3).
    Null,
    /// "No array": EXEC after a WATCHed key changed (`*-1` in RESP2, `_` in RESP3).
    NullArray,
    /// An ordered list of replies.
    Array(Vec<Reply>),
    /// Key/value pairs (`%` in RESP3, a flat array in RESP2).
    Map(Vec<(Reply, Reply)>),
    /// An unordered collection (`~` in RESP3, an array in RESP2).
    Set(Vec<Reply>),
    /// A floating-point number (`,` in RESP3, a bulk string in RESP2).
    Double(f64),
    /// True or false (`#t` / `#f` in RESP3, `:1` / `:0` in RESP2).
    Boolean(bool),
    /// Out-of-band data the server sends unasked: a pub/sub message or a (un)subscribe
    /// confirmation (`>` in RESP3, an array in RESP2).
    Push(Vec<Reply>),
    /// Text with a three-letter format, such as `txt` for `INFO` (`=` in RESP3, a bulk string of
    /// the text alone in RESP2).
    Verbatim {
        /// The format: `txt` or `mkd`.
        format: [u8; 3],
        /// The text.
        text: Vec<u8>,
    },
}

impl Reply {
    /// `+OK`.
    pub fn ok() -> Reply {
        Reply::Simple("OK".to_owned())
    }

    /// An error reply with the given line (which should start with its code, e.g. `ERR`).
    pub fn error(line: impl Into<Vec<u8>>) -> Reply {
        Reply::Error(line.into())
    }

    /// A bulk string from anything byte-like.
    pub fn bulk(bytes: impl AsRef<[u8]>) -> Reply {
        Reply::Bulk(bytes.as_ref().to_vec())
    }

    /// Appends this reply, encoded for `protocol`, to `out`.
    ///
    /// # Examples
    ///
    /// ```
    /// use selfman_store::resp::{Protocol, Reply};
    ///
    /// let mut out = Vec::new();
    /// Reply::Array(vec![Reply::bulk("a"), Reply::Null]).encode(Protocol::Resp2, &mut out);
    /// assert_eq!(out, b"*2\r\n$1\r\na\r\n$-1\r\n");
    /// out.clear();
    /// Reply::Null.encode(Protocol::Resp3, &mut out);
    /// assert_eq!(out, b"_\r\n");
    /// ```
    pub fn encode(&self, protocol: Protocol, out: &mut Vec<u8>) {
        let resp3 = protocol == Protocol::Resp3;
        match self {
            Reply::Simple(s) => line(out, b'+', s.as_bytes()),
            Reply::Error(e) => line(out, b'-', e),
            Reply::Integer(i) => header(out, b':', *i),
            Reply::Bulk(b) => bulk(out, b),
            Reply::Null if resp3 => out.extend_from_slice(b"_\r\n"),
            Reply::Null => out.extend_from_slice(b"$-1\r\n"),
            Reply::NullArray if resp3 => out.extend_from_slice(b"_\r\n"),
            Reply::NullArray => out.extend_from_slice(b"*-1\r\n"),
            Reply::Array(items) => {
                header(out, b'*', items.len());
                items.iter().for_each(|r| r.encode(protocol, out));
            }
            Reply::Push(items) => {
                header(out, if resp3 { b'>' } else { b'*' }, items.len());
                items.iter().for_each(|r| r.encode(protocol, out));
            }
            Reply::Set(items) => {
                header(out, if resp3 { b'~' } else { b'*' }, items.len());
                items.iter().for_each(|r| r.encode(protocol, out));
            }
            Reply::Map(pairs) => {
                if resp3 {
                    header(out, b'%', pairs.len());
                } else {
                    header(out, b'*', pairs.len() * 2);
                }
                for (k, v) in pairs {
                    k.encode(protocol, out);
                    v.encode(protocol, out);
                }
            }
            Reply::Double(d) => {
                let text = double_text(*d);
                if resp3 {
                    line(out, b',', text.as_bytes());
                } else {
                    bulk(out, text.as_bytes());
                }
            }
            Reply::Boolean(b) if resp3 => {
                out.extend_from_slice(if *b { b"#t\r\n" } else { b"#f\r\n" })
            }
            Reply::Boolean(b) => header(out, b':', i64::from(*b)),
            Reply::Verbatim { format, text } if resp3 => {
                header(out, b'=', text.len() + 4);
                out.extend_from_slice(format);
                out.push(b':');
                out.extend_from_slice(text);
                out.extend_from_slice(b"\r\n");
            }
            Reply::Verbatim { text, .. } => bulk(out, text),
        }
    }
}

/// `<sigil><n>\r\n`.
fn header(out: &mut Vec<u8>, sigil: u8, n: impl std::fmt::Display) {
    use std::io::Write;
    out.push(sigil);
    // Writing to a Vec cannot fail.
    let _ = write!(out, "{n}\r\n");
}

fn bulk(out: &mut Vec<u8>, bytes: &[u8]) {
    header(out, b'$', bytes.len());
    out.extend_from_slice(bytes);
    out.extend_from_slice(b"\r\n");
}

/// A status or error line: line breaks become spaces, so the reply stays one line.
fn line(out: &mut Vec<u8>, sigil: u8, text: &[u8]) {
    out.push(sigil);
    out.extend(text.iter().map(|&b| if b == b'\r' || b == b'\n' { b' ' } else { b }));
    out.extend_from_slice(b"\r\n");
}

/// A double as Redis writes it: `inf`, `-inf`, `nan`, or the shortest text that reads back as
/// the same number.
fn double_text(d: f64) -> String {
    if d.is_nan() {
        "nan".to_owned()
    } else if d.is_infinite() {
        if d > 0.0 { "inf" } else { "-inf" }.to_owned()
    } else {
        format!("{d}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(r: &Reply, p: Protocol) -> String {
        let mut out = Vec::new();
        r.encode(p, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn each_type_in_both_protocols() {
        use Protocol::{Resp2, Resp3};
        let cases: Vec<(Reply, &str, &str)> = vec![
            (Reply::ok(), "+OK\r\n", "+OK\r\n"),
            (Reply::error("ERR bad\r\nthing"), "-ERR bad  thing\r\n", "-ERR bad  thing\r\n"),
            (Reply::Integer(-3), ":-3\r\n", ":-3\r\n"),
            (Reply::bulk(""), "$0\r\n\r\n", "$0\r\n\r\n"),
            (Reply::Null, "$-1\r\n", "_\r\n"),
            (Reply::NullArray, "*-1\r\n", "_\r\n"),
            (Reply::Array(vec![]), "*0\r\n", "*0\r\n"),
            (
                Reply::Map(vec![(Reply::bulk("k"), Reply::Integer(1))]),
                "*2\r\n$1\r\nk\r\n:1\r\n",
                "%1\r\n$1\r\nk\r\n:1\r\n",
            ),
            (Reply::Set(vec![Reply::bulk("a")]), "*1\r\n$1\r\na\r\n", "~1\r\n$1\r\na\r\n"),
            (Reply::Push(vec![Reply::bulk("a")]), "*1\r\n$1\r\na\r\n", ">1\r\n$1\r\na\r\n"),
            (Reply::Double(1.5), "$3\r\n1.5\r\n", ",1.5\r\n"),
            (Reply::Double(f64::NEG_INFINITY), "$4\r\n-inf\r\n", ",-inf\r\n"),
            (Reply::Boolean(true), ":1\r\n", "#t\r\n"),
            (
                Reply::Verbatim { format: *b"txt", text: b"hi".to_vec() },
                "$2\r\nhi\r\n",
                "=6\r\ntxt:hi\r\n",
            ),
        ];
        for (r, two, three) in cases {
            assert_eq!(enc(&r, Resp2), two, "{r:?} in RESP2");
            assert_eq!(enc(&r, Resp3), three, "{r:?} in RESP3");
        }
    }
}
