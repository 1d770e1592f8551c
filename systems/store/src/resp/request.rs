//! Decoding client requests: multibulk and inline, incrementally, within [`Limits`].
//!
//! ```text
//! multibulk:  *<count>\r\n  then <count> times  $<len>\r\n<len bytes>\r\n
//! inline:     <arguments separated by blanks, "double" or 'single' quoted>\n   (\r\n too)
//! ```
//!
//! A `*0` or negative count, and an inline line with no argument, are empty requests: skipped,
//! as Redis skips them. Numbers are decimal, with an optional `-`, no `+`, no leading zero and
//! no blanks (Redis' `string2ll`).

use std::fmt;

use thiserror::Error;

/// Bounds on what one request may ask the server to hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The longest inline command, and the longest `*<count>` or `$<len>` line, in bytes
    /// (Redis: 64 KiB).
    pub max_inline: usize,
    /// The most arguments in one multibulk request: 1,048,576 by default. (Redis 7.0 accepts
    /// counts up to 2^31 - 1 and bounds memory with its query buffer limit instead; the
    /// differential test found the difference, which is deliberate.)
    pub max_args: usize,
    /// The longest single argument, in bytes (Redis' `proto-max-bulk-len`, 512 MiB by default).
    pub max_bulk: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_inline: 64 * 1024, max_args: 1024 * 1024, max_bulk: 512 * 1024 * 1024 }
    }
}

/// The tighter bounds Redis applies before a client has authenticated (when a password is
/// configured): at most this many arguments ...
pub const UNAUTHENTICATED_MAX_ARGS: usize = 10;
/// ... each at most this long.
pub const UNAUTHENTICATED_MAX_BULK: usize = 16 * 1024;

/// A malformed request. Its text is what Redis answers in the same case, without the leading
/// `ERR ` (see [`ProtocolError::message`]).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ProtocolError {
    /// An inline command, or the bytes before its end, longer than [`Limits::max_inline`].
    #[error("Protocol error: too big inline request")]
    TooBigInline,
    /// An inline command with a quote that is not closed, or closed and not followed by a blank.
    #[error("Protocol error: unbalanced quotes in request")]
    UnbalancedQuotes,
    /// A `*<count>` line longer than [`Limits::max_inline`].
    #[error("Protocol error: too big mbulk count string")]
    TooBigMultibulkCount,
    /// A `*<count>` that is not a number or exceeds [`Limits::max_args`].
    #[error("Protocol error: invalid multibulk length")]
    InvalidMultibulkLength,
    /// A count above [`UNAUTHENTICATED_MAX_ARGS`] before authentication.
    #[error("Protocol error: unauthenticated multibulk length")]
    UnauthenticatedMultibulkLength,
    /// A `$<len>` line longer than [`Limits::max_inline`].
    #[error("Protocol error: too big bulk count string")]
    TooBigBulkCount,
    /// An argument of a multibulk request that does not start with `$`.
    #[error("Protocol error: expected '$', got '{}'", char::from(*.0))]
    ExpectedDollar(u8),
    /// A `$<len>` that is not a number, is negative, or exceeds [`Limits::max_bulk`].
    #[error("Protocol error: invalid bulk length")]
    InvalidBulkLength,
    /// A length above [`UNAUTHENTICATED_MAX_BULK`] before authentication.
    #[error("Protocol error: unauthenticated bulk length")]
    UnauthenticatedBulkLength,
    /// An argument's bytes not followed by `\r\n`. (Redis skips the two bytes unread; we do
    /// not guess where the next request starts.)
    #[error("Protocol error: expected '\\r\\n' after a bulk argument")]
    MissingBulkTerminator,
}

impl ProtocolError {
    /// The error line a server answers, as Redis does: `ERR Protocol error: ...`.
    pub fn message(&self) -> String {
        format!("ERR {self}")
    }
}

/// One command: its arguments, the command name first, as the client sent them.
pub type Command = Vec<Vec<u8>>;

/// A multibulk request whose arguments have not all arrived.
struct Partial {
    remaining: usize,
    args: Command,
}

/// Turns a client's byte stream into commands, one at a time. One decoder per connection.
///
/// # Examples
///
/// ```
/// use selfman_store::resp::{Limits, RequestDecoder};
///
/// let mut d = RequestDecoder::new(Limits::default());
/// let input = b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\nPING\r\n";
/// let (used, cmd) = d.decode(input).unwrap();
/// assert_eq!(cmd, Some(vec![b"GET".to_vec(), b"k".to_vec()]));
/// let (more, cmd) = d.decode(&input[used..]).unwrap();
/// assert_eq!(cmd, Some(vec![b"PING".to_vec()]));
/// assert_eq!(used + more, input.len());
/// ```
pub struct RequestDecoder {
    limits: Limits,
    authenticated: bool,
    partial: Option<Partial>,
}

impl fmt::Debug for RequestDecoder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequestDecoder")
            .field("limits", &self.limits)
            .field("authenticated", &self.authenticated)
            .field("pending_args", &self.partial.as_ref().map(|p| (p.args.len(), p.remaining)))
            .finish()
    }
}

/// At most this many argument slots are reserved ahead of their arrival, whatever the count
/// says: a client announcing a million arguments gets room as they come.
const RESERVE_ARGS: usize = 64;

impl RequestDecoder {
    /// A decoder for an authenticated client (or a server with no password).
    pub fn new(limits: Limits) -> RequestDecoder {
        RequestDecoder { limits, authenticated: true, partial: None }
    }

    /// Applies (`false`) or lifts (`true`) Redis' tighter pre-authentication bounds
    /// ([`UNAUTHENTICATED_MAX_ARGS`], [`UNAUTHENTICATED_MAX_BULK`]).
    pub fn set_authenticated(&mut self, authenticated: bool) {
        self.authenticated = authenticated;
    }

    /// Whether a multibulk request is half-read (some of its arguments consumed).
    pub fn in_request(&self) -> bool {
        self.partial.is_some()
    }

    /// Reads from the front of `input`: returns how many bytes it consumed and the next complete
    /// command, if there is one.
    ///
    /// Consumed bytes are done with: the caller drops them and passes what follows (plus any
    /// newer bytes) next time. With `None`, everything usable was consumed and the rest is an
    /// incomplete request; call again once more bytes have arrived. Empty requests are skipped.
    ///
    /// # Errors
    ///
    /// A [`ProtocolError`] for a malformed or oversized request. The stream is then out of step:
    /// answer [`ProtocolError::message`] and close the connection.
    pub fn decode(&mut self, input: &[u8]) -> Result<(usize, Option<Command>), ProtocolError> {
        let mut pos = 0;
        loop {
            if let Some(partial) = &mut self.partial {
                while partial.remaining > 0 {
                    match bulk(&input[pos..], &self.limits, self.authenticated)? {
                        Some((arg, used)) => {
                            partial.args.push(arg);
                            partial.remaining -= 1;
                            pos += used;
                        }
                        None => return Ok((pos, None)),
                    }
                }
                let args = std::mem::take(&mut partial.args);
                self.partial = None;
                return Ok((pos, Some(args)));
            }
            let rest = &input[pos..];
            let Some(&first) = rest.first() else {
                return Ok((pos, None));
            };
            if first == b'*' {
                let Some((count, used)) =
                    number_line(rest, &self.limits, ProtocolError::TooBigMultibulkCount)?
                else {
                    return Ok((pos, None));
                };
                let count = count.ok_or(ProtocolError::InvalidMultibulkLength)?;
                pos += used;
                if count <= 0 {
                    continue; // an empty request
                }
                let count = usize::try_from(count).unwrap_or(usize::MAX);
                if count > self.limits.max_args {
                    return Err(ProtocolError::InvalidMultibulkLength);
                }
                if !self.authenticated && count > UNAUTHENTICATED_MAX_ARGS {
                    return Err(ProtocolError::UnauthenticatedMultibulkLength);
                }
                self.partial = Some(Partial {
                    remaining: count,
                    args: Vec::with_capacity(count.min(RESERVE_ARGS)),
                });
            } else {
                // The `\n` must come within `max_inline` bytes (as for `number_line`, the
                // decision depends on that window only).
                let window = self.limits.max_inline.saturating_add(1);
                let Some(nl) = rest[..rest.len().min(window)].iter().position(|&b| b == b'\n')
                else {
                    if rest.len() >= window {
                        return Err(ProtocolError::TooBigInline);
                    }
                    return Ok((pos, None));
                };
                let line = &rest[..nl];
                let line = line.strip_suffix(b"\r").unwrap_or(line);
                pos += nl + 1;
                let args = split_inline(line)?;
                if !args.is_empty() {
                    return Ok((pos, Some(args)));
                }
            }
        }
    }
}

/// Reads `<sigil><number>\r\n` from the front of `input`: `None` if the line is not complete;
/// otherwise the number (`None` if it is not one) and the bytes the line takes.
fn number_line(
    input: &[u8],
    limits: &Limits,
    too_long: ProtocolError,
) -> Result<Option<(Option<i64>, usize)>, ProtocolError> {
    // The `\r` must come right after the sigil and at most `max_inline` more bytes. Deciding on
    // that window alone is what makes the outcome independent of how the input is split.
    let window = limits.max_inline.saturating_add(2);
    let Some(cr) = input[..input.len().min(window)].iter().position(|&b| b == b'\r') else {
        if input.len() >= window {
            return Err(too_long);
        }
        return Ok(None);
    };
    match input.get(cr + 1) {
        None => Ok(None),
        Some(b'\n') => Ok(Some((parse_i64(&input[1..cr]), cr + 2))),
        // A `\r` inside the number: not a number.
        Some(_) => Ok(Some((None, cr + 1))),
    }
}

/// Reads one `$<len>\r\n<bytes>\r\n` argument from the front of `input`, or `None` if it has
/// not fully arrived (nothing is consumed until it has).
fn bulk(
    input: &[u8],
    limits: &Limits,
    authenticated: bool,
) -> Result<Option<(Vec<u8>, usize)>, ProtocolError> {
    let Some(&first) = input.first() else {
        return Ok(None);
    };
    if first != b'$' {
        return Err(ProtocolError::ExpectedDollar(first));
    }
    let Some((len, header)) = number_line(input, limits, ProtocolError::TooBigBulkCount)? else {
        return Ok(None);
    };
    let len = len
        .and_then(|l| usize::try_from(l).ok())
        .filter(|&l| l <= limits.max_bulk)
        .ok_or(ProtocolError::InvalidBulkLength)?;
    if !authenticated && len > UNAUTHENTICATED_MAX_BULK {
        return Err(ProtocolError::UnauthenticatedBulkLength);
    }
    let body = &input[header..];
    let terminator = body.get(len..).unwrap_or(&[]);
    if !b"\r\n".starts_with(&terminator[..terminator.len().min(2)]) {
        return Err(ProtocolError::MissingBulkTerminator); // visibly wrong already: no waiting
    }
    if terminator.len() < 2 {
        return Ok(None);
    }
    Ok(Some((body[..len].to_vec(), header + len + 2)))
}

/// Redis' `string2ll`: an optional `-`, then digits with no leading zero (or just `0`), fitting
/// an `i64`; nothing else.
pub(crate) fn parse_i64(s: &[u8]) -> Option<i64> {
    let (neg, digits) = match s.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, s),
    };
    match digits {
        [] => return None,
        [b'0'] if !neg => return Some(0),
        [b'0', ..] => return None,
        _ => {}
    }
    let mut v: i64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        let d = i64::from(d - b'0');
        v = v.checked_mul(10)?;
        v = if neg { v.checked_sub(d)? } else { v.checked_add(d)? };
    }
    Some(v)
}

/// Blanks between inline arguments (C's `isspace`).
fn is_blank(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)
}

fn hex(b: u8) -> Option<u8> {
    char::from(b).to_digit(16).and_then(|d| u8::try_from(d).ok())
}

/// Splits an inline command into arguments as Redis' `sdssplitargs` does: blanks separate;
/// `"..."` takes the escapes `\n \r \t \b \a \\ \"` and `\xHH`; `'...'` takes `\'`; a closing
/// quote must be followed by a blank or the end. Redis splits a C string, so a NUL byte ends
/// the line there.
fn split_inline(line: &[u8]) -> Result<Vec<Vec<u8>>, ProtocolError> {
    let line = line.iter().position(|&b| b == 0).map_or(line, |nul| &line[..nul]);
    let mut args = Vec::new();
    let mut i = 0;
    loop {
        while i < line.len() && is_blank(line[i]) {
            i += 1;
        }
        if i == line.len() {
            return Ok(args);
        }
        let mut arg = Vec::new();
        #[derive(PartialEq)]
        enum Mode {
            Plain,
            Double,
            Single,
        }
        let mut mode = Mode::Plain;
        loop {
            let c = line.get(i).copied();
            match mode {
                Mode::Double => match c {
                    None => return Err(ProtocolError::UnbalancedQuotes),
                    Some(b'\\') if line.get(i + 1) == Some(&b'x') => {
                        match (
                            line.get(i + 2).and_then(|&b| hex(b)),
                            line.get(i + 3).and_then(|&b| hex(b)),
                        ) {
                            (Some(h), Some(l)) => {
                                arg.push(h * 16 + l);
                                i += 4;
                            }
                            _ => {
                                arg.push(b'x');
                                i += 2;
                            }
                        }
                    }
                    Some(b'\\') if i + 1 < line.len() => {
                        arg.push(match line[i + 1] {
                            b'n' => b'\n',
                            b'r' => b'\r',
                            b't' => b'\t',
                            b'b' => 0x08,
                            b'a' => 0x07,
                            other => other,
                        });
                        i += 2;
                    }
                    Some(b'"') => {
                        i += 1;
                        if line.get(i).is_some_and(|&b| !is_blank(b)) {
                            return Err(ProtocolError::UnbalancedQuotes);
                        }
                        break;
                    }
                    Some(b) => {
                        arg.push(b);
                        i += 1;
                    }
                },
                Mode::Single => match c {
                    None => return Err(ProtocolError::UnbalancedQuotes),
                    Some(b'\\') if line.get(i + 1) == Some(&b'\'') => {
                        arg.push(b'\'');
                        i += 2;
                    }
                    Some(b'\'') => {
                        i += 1;
                        if line.get(i).is_some_and(|&b| !is_blank(b)) {
                            return Err(ProtocolError::UnbalancedQuotes);
                        }
                        break;
                    }
                    Some(b) => {
                        arg.push(b);
                        i += 1;
                    }
                },
                Mode::Plain => match c {
                    None => break,
                    Some(b) if is_blank(b) => break,
                    Some(b'"') => {
                        mode = Mode::Double;
                        i += 1;
                    }
                    Some(b'\'') => {
                        mode = Mode::Single;
                        i += 1;
                    }
                    Some(b) => {
                        arg.push(b);
                        i += 1;
                    }
                },
            }
        }
        args.push(arg);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(input: &[u8]) -> Result<Option<Vec<Vec<u8>>>, ProtocolError> {
        RequestDecoder::new(Limits::default()).decode(input).map(|(_, c)| c)
    }

    fn args(v: &[&str]) -> Option<Vec<Vec<u8>>> {
        Some(v.iter().map(|s| s.as_bytes().to_vec()).collect())
    }

    #[test]
    fn numbers_follow_string2ll() {
        assert_eq!(parse_i64(b"0"), Some(0));
        assert_eq!(parse_i64(b"-12"), Some(-12));
        assert_eq!(parse_i64(b"9223372036854775807"), Some(i64::MAX));
        assert_eq!(parse_i64(b"-9223372036854775808"), Some(i64::MIN));
        for bad in
            [&b""[..], b"-", b"01", b"-0", b"+1", b" 1", b"1 ", b"9223372036854775808", b"1a"]
        {
            assert_eq!(parse_i64(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn inline_commands_split_like_redis() {
        assert_eq!(one(b"SET k v\r\n"), Ok(args(&["SET", "k", "v"])));
        assert_eq!(one(b"  GET   k \n"), Ok(args(&["GET", "k"])));
        assert_eq!(one(b"SET k \"a b\\n\\x41\"\r\n"), Ok(args(&["SET", "k", "a b\nA"])));
        assert_eq!(one(b"SET k 'it\\'s'\r\n"), Ok(args(&["SET", "k", "it's"])));
        assert_eq!(one(b"SET k \"\"\r\n"), Ok(args(&["SET", "k", ""])));
        assert_eq!(one(b"a\"b c\"d\r\n"), Err(ProtocolError::UnbalancedQuotes));
        assert_eq!(one(b"ab\"c d\" e\r\n"), Ok(args(&["abc d", "e"])));
        assert_eq!(one(b"SET k \"open\r\n"), Err(ProtocolError::UnbalancedQuotes));
        assert_eq!(one(b"SET k 'open\r\n"), Err(ProtocolError::UnbalancedQuotes));
        assert_eq!(one(b"\"\\xZZ\"\r\n"), Ok(args(&["xZZ"])));
        assert_eq!(one(b"GET k\0ignored\r\n"), Ok(args(&["GET", "k"])));
        assert_eq!(one(b"\0\r\nPING\r\n"), Ok(args(&["PING"])));
        assert_eq!(one(b"SET \"a\0b\"\r\n"), Err(ProtocolError::UnbalancedQuotes));
    }

    #[test]
    fn empty_requests_are_skipped() {
        let mut d = RequestDecoder::new(Limits::default());
        let input = b"\r\n   \r\n*0\r\n*-1\r\nPING\r\n";
        assert_eq!(d.decode(input), Ok((input.len(), args(&["PING"]))));
        assert_eq!(d.decode(b"\r\n"), Ok((2, None)));
    }

    #[test]
    fn multibulk_errors_match_redis() {
        let m = |e: ProtocolError| e.message();
        assert_eq!(
            one(b"*x\r\n").map_err(m),
            Err("ERR Protocol error: invalid multibulk length".into())
        );
        assert_eq!(
            one(b"*2\r\n+a\r\n").map_err(m),
            Err("ERR Protocol error: expected '$', got '+'".into())
        );
        assert_eq!(
            one(b"*1\r\n$-1\r\n").map_err(m),
            Err("ERR Protocol error: invalid bulk length".into())
        );
        assert_eq!(one(b"*1\r\n$1x\r\n"), Err(ProtocolError::InvalidBulkLength));
        assert_eq!(one(b"*1\r\n$1\r\nab\r\n"), Err(ProtocolError::MissingBulkTerminator));
        assert_eq!(one(b"*1\r2\n"), Err(ProtocolError::InvalidMultibulkLength));
        let limits = Limits { max_inline: 8, max_args: 3, max_bulk: 4 };
        let dec = |input: &[u8]| RequestDecoder::new(limits).decode(input).map(|(_, c)| c);
        assert_eq!(dec(b"*4\r\n"), Err(ProtocolError::InvalidMultibulkLength));
        assert_eq!(dec(b"*1\r\n$5\r\n"), Err(ProtocolError::InvalidBulkLength));
        assert_eq!(dec(b"*0000000001"), Err(ProtocolError::TooBigMultibulkCount));
        assert_eq!(dec(b"*1\r\n$0000000001"), Err(ProtocolError::TooBigBulkCount));
        assert_eq!(dec(b"GET abcdefgh"), Err(ProtocolError::TooBigInline));
        assert_eq!(dec(b"GET abcdefgh\r\n"), Err(ProtocolError::TooBigInline));
        assert_eq!(dec(b"GET ab\r\n"), Ok(args(&["GET", "ab"])));
    }

    #[test]
    fn line_limits_decide_on_a_fixed_window_so_splits_do_not_matter() {
        // Found by the fuzzer: with the `\r` just past the limit, the whole input waited for
        // more while the same bytes one at a time were refused.
        let limits = Limits { max_inline: 1, max_args: 1, max_bulk: 0 };
        let dec = |input: &[u8]| RequestDecoder::new(limits).decode(input);
        assert_eq!(dec(b"*\0\r"), Ok((0, None)));
        assert_eq!(dec(b"*\0"), Ok((0, None)));
        assert_eq!(dec(b"*"), Ok((0, None)));
        assert_eq!(dec(b"*\0\r\n"), Err(ProtocolError::InvalidMultibulkLength));
        assert_eq!(dec(b"*\0x"), Err(ProtocolError::TooBigMultibulkCount));
        assert_eq!(dec(b"*12"), Err(ProtocolError::TooBigMultibulkCount));
        assert_eq!(dec(b"ab"), Err(ProtocolError::TooBigInline));
        assert_eq!(dec(b"a\n"), Ok((2, Some(vec![b"a".to_vec()]))));
    }

    #[test]
    fn unauthenticated_clients_get_redis_tighter_bounds() {
        let mut d = RequestDecoder::new(Limits::default());
        d.set_authenticated(false);
        assert_eq!(d.decode(b"*11\r\n"), Err(ProtocolError::UnauthenticatedMultibulkLength));
        let mut d = RequestDecoder::new(Limits::default());
        d.set_authenticated(false);
        assert_eq!(
            d.decode(b"*1\r\n$16385\r\n").map(|(_, c)| c),
            Err(ProtocolError::UnauthenticatedBulkLength)
        );
        d.set_authenticated(true);
        let mut d = RequestDecoder::new(Limits::default());
        assert_eq!(d.decode(b"*11\r\n"), Ok((5, None)));
        assert!(d.in_request());
    }

    #[test]
    fn partial_multibulk_consumes_whole_arguments_only() {
        let mut d = RequestDecoder::new(Limits::default());
        let input = b"*2\r\n$3\r\nGET\r\n$5\r\nab";
        let (used, cmd) = d.decode(input).unwrap();
        assert_eq!((used, cmd), (13, None), "the count and the first argument");
        assert!(d.in_request());
        assert_eq!(d.decode(b"$5\r\nabcde\r\n"), Ok((11, args(&["GET", "abcde"]))));
        assert!(!d.in_request());
    }

    #[test]
    fn a_huge_count_reserves_nothing_up_front() {
        let mut d = RequestDecoder::new(Limits::default());
        assert_eq!(d.decode(b"*1048576\r\n"), Ok((10, None)));
        let cap = d.partial.as_ref().map(|p| p.args.capacity());
        assert!(cap.is_some_and(|c| c <= RESERVE_ARGS), "{cap:?}");
        let mut fresh = RequestDecoder::new(Limits::default());
        assert_eq!(fresh.decode(b"*1048577\r\n"), Err(ProtocolError::InvalidMultibulkLength));
    }
}
