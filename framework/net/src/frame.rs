//! The wire format: length-prefixed frames, and a pure incremental decoder for them.
//!
//! Every frame is
//!
//! ```text
//! u32 little-endian  length  = number of bytes that follow (kind + body), 1 ..= max
//! u8                 kind    = 1 Hello | 2 Accept | 3 Data
//! ...                body    (depends on the kind)
//! ```
//!
//! * `Hello` (the first frame each side sends on a new connection): magic `SMN1`, protocol
//!   version (u16), the sender's [`NodeAddr`] (id u64, address family 4/6, IP bytes, port u16),
//!   the [`NodeId`] the sender expects to reach (0 when it accepted the connection and does not
//!   know), and the cluster name (u8 length + UTF-8, at most 255 bytes). At most
//!   [`HELLO_MAX_BYTES`].
//! * `Accept` (empty): sent by the node that decides which connection a pair of nodes uses, on
//!   the connection it chose (see `docs/networking.md`).
//! * `Data`: the [`ProtocolId`] (u32 little-endian) and the message payload as encoded by the
//!   protocol's [`Codec`](crate::Codec).
//!
//! All integers are little-endian. The decoder's invariants, which the property tests and the
//! fuzz target check: it never panics on any input; it never buffers more than the bytes it was
//! given, and never reserves room for a frame whose length prefix exceeds its maximum (it fails
//! with [`FrameError::Oversized`] after reading just the prefix); how the input is split into
//! pushes does not change the frames it yields; and every frame the encoders produce decodes to
//! itself.

use std::fmt;
use std::io::{self, Read};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use selfman_core::{NodeAddr, NodeId, ProtocolId};

/// The protocol version this crate speaks; peers with another version are refused.
pub const PROTOCOL_VERSION: u16 = 1;
/// The first bytes of every `Hello` body: garbage is recognised at once.
pub const MAGIC: [u8; 4] = *b"SMN1";
/// Size of the length prefix.
pub const LEN_PREFIX: usize = 4;
/// Bytes before the payload of a `Data` frame: prefix, kind and protocol id.
pub const DATA_HEADER: usize = LEN_PREFIX + 1 + 4;
/// The largest `Hello` frame (without its prefix); the decoder of a new connection refuses
/// longer frames until the handshake is done.
pub const HELLO_MAX_BYTES: usize = 512;
/// The longest cluster name a `Hello` can carry, in bytes.
pub const MAX_CLUSTER_LEN: usize = 255;

const KIND_HELLO: u8 = 1;
const KIND_ACCEPT: u8 = 2;
const KIND_DATA: u8 = 3;

/// The first frame on a connection: who the sender is and whom it wants to reach.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hello {
    /// The sender's [`PROTOCOL_VERSION`].
    pub version: u16,
    /// The sender's cluster name; nodes of different clusters refuse each other.
    pub cluster: String,
    /// The sender's address and incarnation.
    pub from: NodeAddr,
    /// The incarnation the sender expects to reach; [`NodeId::UNKNOWN`] when the sender accepted
    /// the connection (it does not know yet).
    pub expect: NodeId,
}

/// A decoded frame. `Data` borrows its payload from the decoder's buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame<'a> {
    /// The handshake.
    Hello(Hello),
    /// The deciding node chose this connection for the pair.
    Accept,
    /// A message of protocol `protocol`.
    Data {
        /// Which protocol the payload belongs to.
        protocol: ProtocolId,
        /// The encoded message.
        payload: &'a [u8],
    },
}

impl Frame<'_> {
    /// Appends this frame, prefix included, to `out`.
    ///
    /// # Errors
    ///
    /// [`FrameError::Malformed`] if a `Hello`'s cluster name is longer than
    /// [`MAX_CLUSTER_LEN`], [`FrameError::Oversized`] if the frame does not fit a u32 prefix.
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), FrameError> {
        match self {
            Frame::Hello(h) => encode_hello(h, out),
            Frame::Accept => {
                encode_accept(out);
                Ok(())
            }
            Frame::Data { protocol, payload } => {
                let start = begin_data(out, *protocol);
                out.extend_from_slice(payload);
                end_data(out, start, u32::MAX as usize)
            }
        }
    }
}

/// Why bytes are not a valid frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// The length prefix claims more than the allowed maximum.
    #[error("frame of {len} bytes exceeds the limit of {max}")]
    Oversized {
        /// The claimed length.
        len: usize,
        /// The limit in force.
        max: usize,
    },
    /// A length prefix of 0 (every frame has at least its kind byte).
    #[error("empty frame")]
    Empty,
    /// An unknown frame kind.
    #[error("unknown frame kind {0}")]
    UnknownKind(u8),
    /// A frame of a known kind whose body is wrong.
    #[error("malformed frame: {0}")]
    Malformed(&'static str),
    /// The stream ended in the middle of a frame.
    #[error("stream ended inside a frame ({buffered} bytes buffered)")]
    Truncated {
        /// Bytes of the incomplete frame that had arrived.
        buffered: usize,
    },
}

/// Appends a `Hello` frame to `out`.
///
/// # Errors
///
/// [`FrameError::Malformed`] if the cluster name is longer than [`MAX_CLUSTER_LEN`].
pub fn encode_hello(h: &Hello, out: &mut Vec<u8>) -> Result<(), FrameError> {
    if h.cluster.len() > MAX_CLUSTER_LEN {
        return Err(FrameError::Malformed("cluster name longer than 255 bytes"));
    }
    let start = out.len();
    out.extend_from_slice(&[0; LEN_PREFIX]);
    out.push(KIND_HELLO);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&h.version.to_le_bytes());
    out.extend_from_slice(&h.from.id.0.to_le_bytes());
    match h.from.addr.ip() {
        IpAddr::V4(ip) => {
            out.push(4);
            out.extend_from_slice(&ip.octets());
        }
        IpAddr::V6(ip) => {
            out.push(6);
            out.extend_from_slice(&ip.octets());
        }
    }
    out.extend_from_slice(&h.from.addr.port().to_le_bytes());
    out.extend_from_slice(&h.expect.0.to_le_bytes());
    out.push(h.cluster.len() as u8); // checked above: at most 255
    out.extend_from_slice(h.cluster.as_bytes());
    patch_len(out, start);
    Ok(())
}

/// Appends an `Accept` frame to `out`.
pub fn encode_accept(out: &mut Vec<u8>) {
    out.extend_from_slice(&1u32.to_le_bytes());
    out.push(KIND_ACCEPT);
}

/// Starts a `Data` frame in `out`: writes its header with a placeholder length and returns the
/// frame's start, to pass to [`end_data`] once the payload has been appended.
#[inline]
pub fn begin_data(out: &mut Vec<u8>, protocol: ProtocolId) -> usize {
    let start = out.len();
    let mut header = [0u8; DATA_HEADER];
    header[LEN_PREFIX] = KIND_DATA;
    header[LEN_PREFIX + 1..].copy_from_slice(&protocol.0.to_le_bytes());
    out.extend_from_slice(&header);
    start
}

/// Finishes the `Data` frame started at `start`: fills in its length.
///
/// # Errors
///
/// [`FrameError::Oversized`] if the frame (without its prefix) is longer than `max`; the caller
/// should then truncate `out` back to `start`.
#[inline]
pub fn end_data(out: &mut [u8], start: usize, max: usize) -> Result<(), FrameError> {
    let len = out.len() - start - LEN_PREFIX;
    if len > max || len > u32::MAX as usize {
        return Err(FrameError::Oversized { len, max });
    }
    patch_len(out, start);
    Ok(())
}

fn patch_len(out: &mut [u8], start: usize) {
    let len = (out.len() - start - LEN_PREFIX) as u32;
    out[start..start + LEN_PREFIX].copy_from_slice(&len.to_le_bytes());
}

/// Reads fields front to back, failing with `Malformed` on a short body.
struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], FrameError> {
        if self.0.len() < n {
            return Err(FrameError::Malformed("hello too short"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], FrameError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }
}

fn decode_hello(body: &[u8]) -> Result<Hello, FrameError> {
    let mut c = Cursor(body);
    if c.array::<4>()? != MAGIC {
        return Err(FrameError::Malformed("bad magic: not a selfman peer"));
    }
    let version = u16::from_le_bytes(c.array()?);
    let id = NodeId(u64::from_le_bytes(c.array()?));
    let ip = match c.array::<1>()?[0] {
        4 => IpAddr::V4(Ipv4Addr::from(c.array::<4>()?)),
        6 => IpAddr::V6(Ipv6Addr::from(c.array::<16>()?)),
        _ => return Err(FrameError::Malformed("bad address family")),
    };
    let port = u16::from_le_bytes(c.array()?);
    let expect = NodeId(u64::from_le_bytes(c.array()?));
    let n = usize::from(c.array::<1>()?[0]);
    let cluster = std::str::from_utf8(c.take(n)?)
        .map_err(|_| FrameError::Malformed("cluster name is not UTF-8"))?
        .to_owned();
    if !c.0.is_empty() {
        return Err(FrameError::Malformed("trailing bytes after hello"));
    }
    Ok(Hello { version, cluster, from: NodeAddr::new(SocketAddr::new(ip, port), id), expect })
}

/// Incremental frame decoder: feed it bytes ([`push`](Self::push) or
/// [`read_from`](Self::read_from)), take frames with [`next`](Self::next).
///
/// Its buffer grows only with bytes actually received (doubling, up to one maximal frame) and
/// shrinks back after a large frame. After an error it stays failed and returns the same error.
///
/// # Examples
///
/// ```
/// use selfman_core::ProtocolId;
/// use selfman_net::frame::{Frame, FrameDecoder};
///
/// let mut bytes = Vec::new();
/// Frame::Data { protocol: ProtocolId::of("echo"), payload: b"hi" }.encode(&mut bytes).unwrap();
/// let mut dec = FrameDecoder::new(1024);
/// dec.push(&bytes[..3]);
/// assert_eq!(dec.next(), Ok(None)); // not complete yet
/// dec.push(&bytes[3..]);
/// assert_eq!(
///     dec.next(),
///     Ok(Some(Frame::Data { protocol: ProtocolId::of("echo"), payload: b"hi" }))
/// );
/// assert!(dec.finish().is_ok());
/// ```
pub struct FrameDecoder {
    buf: Vec<u8>,
    start: usize,
    end: usize,
    max: usize,
    initial: usize,
    failed: Option<FrameError>,
}

/// The default initial buffer size of [`FrameDecoder`] (64 KiB).
pub const DEFAULT_READ_BUFFER: usize = 64 * 1024;

impl FrameDecoder {
    /// A decoder refusing frames longer than `max` bytes (without the prefix).
    pub fn new(max: usize) -> FrameDecoder {
        FrameDecoder::with_buffer(max, DEFAULT_READ_BUFFER)
    }

    /// A decoder whose buffer starts at `initial` bytes (allocated on first use).
    pub fn with_buffer(max: usize, initial: usize) -> FrameDecoder {
        FrameDecoder {
            buf: Vec::new(),
            start: 0,
            end: 0,
            max,
            initial: initial.max(64),
            failed: None,
        }
    }

    /// Changes the maximum frame length (e.g. once the handshake is done).
    pub fn set_max(&mut self, max: usize) {
        self.max = max;
    }

    /// The maximum frame length in force.
    pub fn max(&self) -> usize {
        self.max
    }

    /// Bytes received but not yet returned as frames.
    pub fn buffered(&self) -> usize {
        self.end - self.start
    }

    /// Appends received bytes.
    pub fn push(&mut self, bytes: &[u8]) {
        self.compact();
        let need = self.end + bytes.len();
        if need > self.buf.len() {
            self.buf.resize(need, 0);
        }
        self.buf[self.end..need].copy_from_slice(bytes);
        self.end = need;
    }

    /// Reads once from `r` into the buffer (no copy), returning what `read` returned: `Ok(0)`
    /// means end of stream.
    ///
    /// Call [`next`](Self::next) until it returns `Ok(None)` before reading again.
    ///
    /// # Errors
    ///
    /// Whatever `read` returns, and [`io::ErrorKind::InvalidData`] if a complete frame is still
    /// buffered (the caller did not drain [`next`](Self::next)).
    pub fn read_from<R: Read + ?Sized>(&mut self, r: &mut R) -> io::Result<usize> {
        self.reserve();
        if self.end == self.buf.len() {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "frame decoder not drained"));
        }
        let n = r.read(&mut self.buf[self.end..])?;
        self.end += n;
        Ok(n)
    }

    /// Makes room after `end`: reset when empty, compact, or grow up to one maximal frame.
    fn reserve(&mut self) {
        self.compact();
        if self.end < self.buf.len() {
            return;
        }
        // The buffer is full of one incomplete frame (or is still unallocated): grow it, but
        // never past what one legal frame needs.
        let legal = self.max.saturating_add(LEN_PREFIX);
        let want = (self.buf.len() * 2).max(self.initial).min(legal.max(self.initial));
        if want > self.buf.len() {
            self.buf.resize(want, 0);
        }
    }

    fn compact(&mut self) {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
            if self.buf.len() > 4 * self.initial {
                self.buf = Vec::new(); // give back what a large frame needed
            }
        } else if self.start > 0 && self.end == self.buf.len() {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
    }

    /// The next complete frame, `Ok(None)` if more bytes are needed.
    ///
    /// # Errors
    ///
    /// A [`FrameError`] for invalid bytes; the decoder then stays failed.
    #[allow(clippy::should_implement_trait)] // borrows from self: not an Iterator
    pub fn next(&mut self) -> Result<Option<Frame<'_>>, FrameError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        match self.split() {
            Ok(None) => Ok(None),
            Ok(Some((a, b))) => match parse(&self.buf[a..b]) {
                Ok(f) => Ok(Some(f)),
                Err(e) => {
                    self.failed = Some(e.clone());
                    Err(e)
                }
            },
            Err(e) => {
                self.failed = Some(e.clone());
                Err(e)
            }
        }
    }

    /// Finds the next complete frame body and consumes it.
    fn split(&mut self) -> Result<Option<(usize, usize)>, FrameError> {
        let avail = self.end - self.start;
        if avail < LEN_PREFIX {
            return Ok(None);
        }
        let mut p = [0u8; LEN_PREFIX];
        p.copy_from_slice(&self.buf[self.start..self.start + LEN_PREFIX]);
        let len = u32::from_le_bytes(p) as usize;
        if len == 0 {
            return Err(FrameError::Empty);
        }
        if len > self.max {
            return Err(FrameError::Oversized { len, max: self.max });
        }
        if avail - LEN_PREFIX < len {
            return Ok(None);
        }
        let a = self.start + LEN_PREFIX;
        self.start = a + len;
        Ok(Some((a, a + len)))
    }

    /// Call at end of stream.
    ///
    /// # Errors
    ///
    /// [`FrameError::Truncated`] if part of a frame is buffered; the decoder's earlier error if
    /// it failed.
    pub fn finish(&self) -> Result<(), FrameError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        match self.buffered() {
            0 => Ok(()),
            buffered => Err(FrameError::Truncated { buffered }),
        }
    }
}

fn parse(body: &[u8]) -> Result<Frame<'_>, FrameError> {
    let (&kind, rest) = body.split_first().ok_or(FrameError::Empty)?;
    match kind {
        KIND_DATA => {
            if rest.len() < 4 {
                return Err(FrameError::Malformed("data frame without a protocol id"));
            }
            let (id, payload) = rest.split_at(4);
            let protocol = ProtocolId(u32::from_le_bytes([id[0], id[1], id[2], id[3]]));
            Ok(Frame::Data { protocol, payload })
        }
        KIND_HELLO => decode_hello(rest).map(Frame::Hello),
        KIND_ACCEPT if rest.is_empty() => Ok(Frame::Accept),
        KIND_ACCEPT => Err(FrameError::Malformed("accept frame with a body")),
        k => Err(FrameError::UnknownKind(k)),
    }
}

impl Default for FrameDecoder {
    fn default() -> Self {
        FrameDecoder::new(HELLO_MAX_BYTES)
    }
}

impl fmt::Debug for FrameDecoder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FrameDecoder")
            .field("buffered", &self.buffered())
            .field("capacity", &self.buf.len())
            .field("max", &self.max)
            .field("failed", &self.failed)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hello() -> Hello {
        Hello {
            version: PROTOCOL_VERSION,
            cluster: "test".into(),
            from: NodeAddr::new("127.0.0.1:4000".parse().unwrap(), NodeId(7)),
            expect: NodeId(9),
        }
    }

    #[test]
    fn hello_round_trips_v4_and_v6() {
        for addr in ["127.0.0.1:4000", "[::1]:5"] {
            let mut h = hello();
            h.from.addr = addr.parse().unwrap();
            let mut out = Vec::new();
            encode_hello(&h, &mut out).unwrap();
            assert!(out.len() - LEN_PREFIX <= HELLO_MAX_BYTES);
            let mut d = FrameDecoder::new(HELLO_MAX_BYTES);
            d.push(&out);
            assert_eq!(d.next(), Ok(Some(Frame::Hello(h))));
            assert_eq!(d.next(), Ok(None));
        }
    }

    #[test]
    fn longest_hello_fits_the_limit() {
        let mut h = hello();
        h.from.addr = "[::1]:5".parse().unwrap();
        h.cluster = "x".repeat(MAX_CLUSTER_LEN);
        let mut out = Vec::new();
        encode_hello(&h, &mut out).unwrap();
        assert!(out.len() - LEN_PREFIX <= HELLO_MAX_BYTES);
        h.cluster.push('x');
        assert!(encode_hello(&h, &mut out).is_err());
    }

    #[test]
    fn oversized_prefix_fails_without_allocating_it() {
        let mut d = FrameDecoder::with_buffer(1000, 64);
        d.push(&u32::MAX.to_le_bytes());
        assert_eq!(d.next(), Err(FrameError::Oversized { len: u32::MAX as usize, max: 1000 }));
        assert!(d.buf.len() < 1000);
        assert!(d.next().is_err(), "stays failed");
    }

    #[test]
    fn read_from_grows_only_with_data() {
        let mut bytes = Vec::new();
        let payload = vec![5u8; 300_000];
        Frame::Data { protocol: ProtocolId(1), payload: &payload }.encode(&mut bytes).unwrap();
        let mut d = FrameDecoder::with_buffer(1 << 20, 1024);
        let mut src = &bytes[..];
        loop {
            match d.next().unwrap() {
                Some(Frame::Data { payload: p, .. }) => {
                    assert_eq!(p.len(), 300_000);
                    break;
                }
                Some(f) => panic!("unexpected {f:?}"),
                None => {
                    assert!(d.read_from(&mut src).unwrap() > 0);
                }
            }
        }
        assert!(d.buf.len() <= 2 * bytes.len());
        d.compact();
        assert_eq!(d.buf.len(), 0, "large buffer released");
    }

    #[test]
    fn bad_kinds_and_bodies_are_errors() {
        let cases: &[(&[u8], FrameError)] = &[
            (&[0, 0, 0, 0], FrameError::Empty),
            (&[1, 0, 0, 0, 9], FrameError::UnknownKind(9)),
            (&[2, 0, 0, 0, 2, 0], FrameError::Malformed("accept frame with a body")),
            (&[3, 0, 0, 0, 3, 1, 2], FrameError::Malformed("data frame without a protocol id")),
            (
                &[5, 0, 0, 0, 1, b'n', b'o', b'p', b'e'],
                FrameError::Malformed("bad magic: not a selfman peer"),
            ),
        ];
        for (bytes, err) in cases {
            let mut d = FrameDecoder::new(100);
            d.push(bytes);
            assert_eq!(d.next().as_ref().map(|_| ()), Err(err), "{bytes:?}");
        }
    }

    #[test]
    fn truncated_frame_is_reported_at_finish() {
        let mut d = FrameDecoder::new(100);
        d.push(&[10, 0, 0, 0, 3, 1]);
        assert_eq!(d.next(), Ok(None));
        assert_eq!(d.finish(), Err(FrameError::Truncated { buffered: 6 }));
    }
}
