//! Authenticated, encrypted links: a cluster secret, the Noise handshake every connection runs
//! before its hello, and the record layer that carries the frame stream afterwards.
//!
//! When [`NetConfig::secret`](crate::NetConfig::secret) is set, every connection starts with a
//! [Noise](https://noiseprotocol.org/noise.html) handshake, pattern [`NOISE_PARAMS`]
//! (`NNpsk0`: both sides contribute a fresh ephemeral key and the cluster secret is mixed in
//! before the first message). Only a peer that holds the same secret can produce a first message
//! that authenticates, or read and answer the second one; a connection whose handshake fails is
//! closed and counted in [`NetStats::auth_failures`](crate::NetStats::auth_failures) before any
//! of its bytes reach a frame decoder, let alone a component. Each connection gets fresh keys,
//! so bytes recorded from one connection and replayed on another fail to decrypt.
//!
//! On the wire:
//!
//! ```text
//! initiator (dialer)                          responder (listener)
//!   [len=48][-> psk, e            ]  ─────▶
//!                                    ◀─────  [len=48][<- e, ee]
//!   records ─────▶                   ◀─────  records
//! record = [u16 big-endian length L][L bytes: ChaCha20-Poly1305 ciphertext + 16-byte tag]
//! ```
//!
//! The plaintext of the records, concatenated, is exactly the frame stream of an unencrypted
//! link (hello, accept, data frames); record boundaries need not match frame boundaries. A
//! writer seals everything it writes in one go (a batch of queued frames, or one frame written
//! directly by its sender) into records of at most 65,535 bytes, so one authentication tag
//! covers a whole batch. Each direction counts its records; the count is the nonce, so a
//! dropped, reordered or replayed record fails to authenticate and closes the connection.
//!
//! The cipher suite is Noise's `25519_ChaChaPoly_BLAKE2s` as implemented by the `snow` crate;
//! this module only frames its messages.

use std::fmt;
use std::str::FromStr;

use snow::{HandshakeState, StatelessTransportState};

/// The Noise protocol every secured link speaks.
pub const NOISE_PARAMS: &str = "Noise_NNpsk0_25519_ChaChaPoly_BLAKE2s";

/// Bytes of a record's length prefix.
pub(crate) const RECORD_HEADER: usize = 2;
/// Bytes of the authentication tag at the end of each record.
const TAG: usize = 16;
/// The longest Noise message (record body).
const MAX_RECORD: usize = 65_535;
/// The most plaintext one record carries.
pub(crate) const MAX_RECORD_PLAIN: usize = MAX_RECORD - TAG;
/// Bytes of each of the two handshake messages (an ephemeral key and an empty payload's tag).
const HANDSHAKE_MSG: usize = 32 + TAG;

/// The 256-bit secret shared by every node of a cluster; nodes without it cannot connect.
///
/// Make one with [`ClusterSecret::random`] and give every node its hex form
/// ([`to_hex`](Self::to_hex), 64 hex digits), for example in a file only the node's user can
/// read. It must be random: the handshake's first message lets an eavesdropper test guesses
/// offline, so a secret derived from a memorable password would be weak, and this type accepts
/// only the full 32 bytes.
///
/// `Debug` does not print the secret.
///
/// ```
/// use selfman_net::ClusterSecret;
///
/// let secret = ClusterSecret::random();
/// let again: ClusterSecret = secret.to_hex().parse().unwrap();
/// assert_eq!(secret, again);
/// assert!("too short".parse::<ClusterSecret>().is_err());
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct ClusterSecret([u8; 32]);

impl ClusterSecret {
    /// The secret with these bytes.
    #[must_use]
    pub fn from_bytes(bytes: [u8; 32]) -> ClusterSecret {
        ClusterSecret(bytes)
    }

    /// A new secret from the operating system's random number generator.
    ///
    /// # Panics
    ///
    /// If the operating system has no random number generator (`getrandom` fails), which
    /// leaves no safe way to make a secret.
    #[must_use]
    pub fn random() -> ClusterSecret {
        let mut b = [0u8; 32];
        getrandom::fill(&mut b).expect("the operating system's random number generator failed");
        ClusterSecret(b)
    }

    /// The secret as 64 lower-case hex digits (what [`FromStr`] reads).
    #[must_use]
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    pub(crate) fn bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for ClusterSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClusterSecret(..)")
    }
}

/// Why a string is not a [`ClusterSecret`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SecretError {
    /// Not 64 characters long (after trimming white space).
    #[error("a cluster secret is 64 hex digits (32 bytes), got {0} characters")]
    Length(usize),
    /// A character that is not a hex digit.
    #[error("a cluster secret is 64 hex digits; {0:?} is not a hex digit")]
    NotHex(char),
}

impl FromStr for ClusterSecret {
    type Err = SecretError;

    /// Reads 64 hex digits (either case), ignoring white space around them.
    fn from_str(s: &str) -> Result<ClusterSecret, SecretError> {
        let s = s.trim();
        if s.chars().count() != 64 {
            return Err(SecretError::Length(s.chars().count()));
        }
        let digit = |c: char| c.to_digit(16).ok_or(SecretError::NotHex(c));
        let mut out = [0u8; 32];
        let chars: Vec<char> = s.chars().collect();
        for (i, pair) in chars.chunks(2).enumerate() {
            out[i] = (digit(pair[0])? * 16 + digit(pair[1])?) as u8;
        }
        Ok(ClusterSecret(out))
    }
}

/// Why a secured link failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum LinkError {
    /// The peer's handshake message does not authenticate: it holds another secret (or none).
    #[error("the peer failed authentication (no or another cluster secret)")]
    Auth,
    /// The bytes are not a handshake message of this protocol.
    #[error("not a secure-link handshake: {0}")]
    Malformed(&'static str),
    /// A record does not authenticate (tampered, replayed, reordered or from another session).
    #[error("a record failed authentication")]
    Record,
    /// A record is shorter than its tag.
    #[error("a record of {0} bytes is shorter than its authentication tag")]
    ShortRecord(usize),
    /// The nonce space of this connection is used up (2^64 records).
    #[error("the connection's record counter is exhausted")]
    Exhausted,
}

/// One side of a connection's handshake, before keys exist.
pub(crate) struct Handshake {
    /// `None` once finished.
    state: Option<HandshakeState>,
    /// Bytes read but not yet consumed.
    raw: Vec<u8>,
}

impl fmt::Debug for Handshake {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handshake").field("raw", &self.raw.len()).finish_non_exhaustive()
    }
}

impl Handshake {
    /// Starts a handshake. `prologue` binds context both sides must agree on (the protocol
    /// version and cluster name). The initiator's first message is appended to `out`.
    pub(crate) fn new(
        secret: &ClusterSecret,
        prologue: &[u8],
        initiator: bool,
        out: &mut Vec<u8>,
    ) -> Handshake {
        let params = NOISE_PARAMS.parse().expect("NOISE_PARAMS names a valid Noise protocol");
        let b =
            snow::Builder::new(params).prologue(prologue).and_then(|b| b.psk(0, secret.bytes()));
        let mut state = b
            .and_then(|b| if initiator { b.build_initiator() } else { b.build_responder() })
            .expect("a Noise handshake with a 32-byte psk and a prologue builds");
        if initiator {
            write_handshake_message(&mut state, out);
        }
        Handshake { state: Some(state), raw: Vec::new() }
    }

    /// Takes bytes read from the peer. Returns `Ok(None)` while the peer's message is
    /// incomplete; `Ok(Some((keys, rest)))` once the handshake is done: the responder's answer
    /// has been appended to `out`, and `rest` holds the bytes that followed the handshake
    /// (records already).
    pub(crate) fn feed(
        &mut self,
        bytes: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<Option<(Keys, Vec<u8>)>, LinkError> {
        self.raw.extend_from_slice(bytes);
        if self.raw.len() < RECORD_HEADER {
            return Ok(None);
        }
        let len = u16::from_be_bytes([self.raw[0], self.raw[1]]) as usize;
        if len != HANDSHAKE_MSG {
            return Err(LinkError::Malformed("wrong handshake message length"));
        }
        if self.raw.len() < RECORD_HEADER + len {
            return Ok(None);
        }
        let Some(state) = self.state.as_mut() else {
            return Err(LinkError::Malformed("handshake already finished"));
        };
        let mut payload = [0u8; HANDSHAKE_MSG];
        let n = state
            .read_message(&self.raw[RECORD_HEADER..RECORD_HEADER + len], &mut payload)
            .map_err(|_| LinkError::Auth)?;
        if n != 0 {
            return Err(LinkError::Malformed("handshake payload must be empty"));
        }
        if !state.is_initiator() {
            write_handshake_message(state, out);
        }
        if !state.is_handshake_finished() {
            return Err(LinkError::Malformed("handshake did not finish"));
        }
        let rest = self.raw.split_off(RECORD_HEADER + len);
        let state = self.state.take().expect("checked above");
        let keys = state.into_stateless_transport_mode().map_err(|_| LinkError::Auth)?;
        Ok(Some((Keys(std::sync::Arc::new(keys)), rest)))
    }
}

fn write_handshake_message(state: &mut HandshakeState, out: &mut Vec<u8>) {
    let mut msg = [0u8; HANDSHAKE_MSG];
    let n = state.write_message(&[], &mut msg).expect("a handshake message fits 48 bytes");
    debug_assert_eq!(n, HANDSHAKE_MSG);
    out.extend_from_slice(&(n as u16).to_be_bytes());
    out.extend_from_slice(&msg[..n]);
}

/// A connection's session keys (both directions).
#[derive(Clone)]
pub(crate) struct Keys(std::sync::Arc<StatelessTransportState>);

impl fmt::Debug for Keys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Keys(..)")
    }
}

/// Seals outgoing bytes into records (one direction of one connection). Whoever holds the
/// connection's writer role seals, so records leave in nonce order.
#[derive(Debug)]
pub(crate) struct Sealer {
    keys: Keys,
    nonce: u64,
}

impl Sealer {
    pub(crate) fn new(keys: Keys) -> Sealer {
        Sealer { keys, nonce: 0 }
    }

    /// Appends `plain`, sealed into records, to `out`.
    pub(crate) fn seal(&mut self, plain: &[u8], out: &mut Vec<u8>) -> Result<(), LinkError> {
        for chunk in plain.chunks(MAX_RECORD_PLAIN) {
            if self.nonce == u64::MAX {
                return Err(LinkError::Exhausted);
            }
            let len = chunk.len() + TAG;
            let at = out.len();
            out.resize(at + RECORD_HEADER + len, 0);
            out[at..at + RECORD_HEADER].copy_from_slice(&(len as u16).to_be_bytes());
            let n = self
                .keys
                .0
                .write_message(self.nonce, chunk, &mut out[at + RECORD_HEADER..])
                .map_err(|_| LinkError::Record)?;
            debug_assert_eq!(n, len);
            self.nonce += 1;
        }
        Ok(())
    }

    /// Bytes `plain_len` bytes of plaintext take on the wire.
    pub(crate) fn sealed_len(plain_len: usize) -> usize {
        let records = plain_len.div_ceil(MAX_RECORD_PLAIN); // nothing to seal: no record
        plain_len + records * (RECORD_HEADER + TAG)
    }
}

/// Opens incoming records (the other direction of one connection; the I/O thread only).
#[derive(Debug)]
pub(crate) struct Opener {
    keys: Keys,
    nonce: u64,
    /// Bytes of an incomplete record.
    raw: Vec<u8>,
    scratch: Vec<u8>,
}

impl Opener {
    pub(crate) fn new(keys: Keys) -> Opener {
        Opener { keys, nonce: 0, raw: Vec::new(), scratch: Vec::new() }
    }

    /// Bytes of an incomplete record held back.
    pub(crate) fn pending(&self) -> usize {
        self.raw.len()
    }

    /// Takes bytes read from the peer and hands the plaintext of every complete record to
    /// `sink`, in order.
    pub(crate) fn open(
        &mut self,
        mut bytes: &[u8],
        sink: &mut dyn FnMut(&[u8]),
    ) -> Result<(), LinkError> {
        // Finish a record begun by an earlier read (its header may be incomplete too).
        while !self.raw.is_empty() {
            let need = self.missing();
            if need > 0 {
                if bytes.is_empty() {
                    break; // still incomplete: its header is checked below
                }
                let take = need.min(bytes.len());
                self.raw.extend_from_slice(&bytes[..take]);
                bytes = &bytes[take..];
                continue;
            }
            let raw = std::mem::take(&mut self.raw);
            self.open_one(&raw[RECORD_HEADER..], sink)?;
            self.raw = raw;
            self.raw.clear();
            if self.raw.capacity() > 2 * (MAX_RECORD + RECORD_HEADER) {
                self.raw = Vec::new();
            }
        }
        // Whole records straight from the read buffer.
        while bytes.len() >= RECORD_HEADER {
            let len = u16::from_be_bytes([bytes[0], bytes[1]]) as usize;
            if bytes.len() < RECORD_HEADER + len {
                break;
            }
            self.open_one(&bytes[RECORD_HEADER..RECORD_HEADER + len], sink)?;
            bytes = &bytes[RECORD_HEADER + len..];
        }
        self.raw.extend_from_slice(bytes);
        if self.raw.len() >= RECORD_HEADER {
            // validate the length early: a short record is bad however the rest arrives
            let len = u16::from_be_bytes([self.raw[0], self.raw[1]]) as usize;
            if len < TAG {
                return Err(LinkError::ShortRecord(len));
            }
        }
        Ok(())
    }

    fn missing(&self) -> usize {
        if self.raw.len() < RECORD_HEADER {
            return RECORD_HEADER - self.raw.len();
        }
        let len = u16::from_be_bytes([self.raw[0], self.raw[1]]) as usize;
        (RECORD_HEADER + len).saturating_sub(self.raw.len())
    }

    fn open_one(&mut self, record: &[u8], sink: &mut dyn FnMut(&[u8])) -> Result<(), LinkError> {
        if record.len() < TAG {
            return Err(LinkError::ShortRecord(record.len()));
        }
        if self.nonce == u64::MAX {
            return Err(LinkError::Exhausted);
        }
        if self.scratch.len() < record.len() {
            // grows to the largest record seen, at most 64 KiB; never zero-filled again
            self.scratch.resize(record.len(), 0);
        }
        let n = self
            .keys
            .0
            .read_message(self.nonce, record, &mut self.scratch)
            .map_err(|_| LinkError::Record)?;
        self.nonce += 1;
        sink(&self.scratch[..n]);
        Ok(())
    }
}

/// Entry points for fuzzing and property tests (not part of the API).
#[doc(hidden)]
pub mod fuzzing {
    use super::*;

    fn session() -> (Keys, Keys) {
        let s = ClusterSecret::from_bytes([9; 32]);
        let (mut m1, mut m2, mut none) = (Vec::new(), Vec::new(), Vec::new());
        let mut i = Handshake::new(&s, b"fuzz", true, &mut m1);
        let mut r = Handshake::new(&s, b"fuzz", false, &mut none);
        let (rk, _) = r.feed(&m1, &mut m2).expect("honest handshake").expect("complete");
        let (ik, _) = i.feed(&m2, &mut none).expect("honest handshake").expect("complete");
        (ik, rk)
    }

    /// What a run of input produced: plaintext (or the handshake's leftover) and the error.
    type Outcome = (Vec<u8>, Option<LinkError>);

    fn handshake(data: &[u8], split: usize) -> Outcome {
        let s = ClusterSecret::from_bytes([9; 32]);
        let mut out = Vec::new();
        let mut r = Handshake::new(&s, b"fuzz", false, &mut out);
        for piece in data.chunks(split) {
            match r.feed(piece, &mut out) {
                Ok(None) => {}
                Ok(Some((_, rest))) => return (rest, None),
                Err(e) => return (Vec::new(), Some(e)),
            }
        }
        (Vec::new(), None)
    }

    fn open(data: &[u8], split: usize, keys: &Keys) -> Outcome {
        let mut o = Opener::new(keys.clone());
        let mut plain = Vec::new();
        for piece in data.chunks(split) {
            if let Err(e) = o.open(piece, &mut |p| plain.extend_from_slice(p)) {
                return (plain, Some(e));
            }
        }
        (plain, None)
    }

    /// Feeds `data` to a listener's handshake, to a session's record opener, and through a
    /// sealer and opener, each at once and in pieces of a size taken from the input; panics if
    /// anything panics, if splitting changes an outcome, or if a sealed stream does not open
    /// to itself.
    pub fn secure_link(data: &[u8]) {
        let Some((&split, data)) = data.split_first() else { return };
        let split = usize::from(split).max(1);
        let whole = data.len().max(1);
        let (hs_whole, hs_split) = (handshake(data, whole), handshake(data, split));
        if hs_whole.1.is_none() || hs_split.1.is_none() {
            // a completed handshake hands back the same rest however it was split
            assert_eq!(hs_whole.1.is_none(), hs_split.1.is_none(), "split changed the outcome");
        }
        let (ik, rk) = session();
        let (a, b) = (open(data, whole, &rk), open(data, split, &rk));
        assert_eq!(a.1, b.1, "split changed the error");
        assert_eq!(a.0, b.0, "split changed the plaintext");
        // several records (sealed in three goes), opened in pieces that cut their headers too
        let mut wire = Vec::new();
        let mut sealer = Sealer::new(ik);
        let third = data.len() / 3;
        let mut expect_len = 0;
        for part in [&data[..third], &data[third..2 * third], &data[2 * third..]] {
            sealer.seal(part, &mut wire).expect("sealing fits");
            expect_len += Sealer::sealed_len(part.len());
        }
        assert_eq!(wire.len(), expect_len);
        for piece in [split, 1 + split % 5] {
            let (plain, err) = open(&wire, piece, &rk);
            assert_eq!(err, None);
            assert_eq!(plain, data, "a sealed stream opens to itself");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(a: &ClusterSecret, b: &ClusterSecret) -> Result<(Keys, Keys), LinkError> {
        let (mut m1, mut m2, mut none) = (Vec::new(), Vec::new(), Vec::new());
        let mut i = Handshake::new(a, b"p", true, &mut m1);
        let mut r = Handshake::new(b, b"p", false, &mut none);
        assert!(none.is_empty(), "the responder speaks second");
        let (rk, rest) = r.feed(&m1, &mut m2)?.expect("whole first message");
        assert!(rest.is_empty());
        let (ik, rest) = i.feed(&m2, &mut none)?.expect("whole second message");
        assert!(rest.is_empty() && none.is_empty());
        Ok((ik, rk))
    }

    fn open_all(o: &mut Opener, bytes: &[u8]) -> Result<Vec<u8>, LinkError> {
        let mut out = Vec::new();
        o.open(bytes, &mut |p| out.extend_from_slice(p))?;
        Ok(out)
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(300))]
        /// The fuzz target's checks on arbitrary bytes, in every test run.
        #[test]
        fn arbitrary_bytes_never_panic_and_splitting_changes_nothing(
            data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400)
        ) {
            fuzzing::secure_link(&data);
        }

        /// Arbitrary records (length prefixes that fit, garbage bodies) are refused cleanly.
        #[test]
        fn arbitrary_records_are_refused(
            split in 1usize..64,
            bodies in proptest::collection::vec(proptest::collection::vec(proptest::prelude::any::<u8>(), 0..80), 1..6)
        ) {
            let mut data = vec![split as u8];
            for b in &bodies {
                data.extend_from_slice(&(b.len() as u16).to_be_bytes());
                data.extend_from_slice(b);
            }
            fuzzing::secure_link(&data);
        }
    }

    #[test]
    fn secrets_parse_from_hex_and_hide_in_debug() {
        let s = ClusterSecret::from_bytes([0xab; 32]);
        assert_eq!(s.to_hex(), "ab".repeat(32));
        assert_eq!(format!(" {} \n", "AB".repeat(32)).parse::<ClusterSecret>().unwrap(), s);
        assert_eq!(format!("{s:?}"), "ClusterSecret(..)");
        assert_eq!("abc".parse::<ClusterSecret>(), Err(SecretError::Length(3)));
        let bad = format!("{}g", "a".repeat(63));
        assert_eq!(bad.parse::<ClusterSecret>(), Err(SecretError::NotHex('g')));
        assert_eq!("é".repeat(64).parse::<ClusterSecret>(), Err(SecretError::NotHex('é')));
        assert_ne!(ClusterSecret::random(), ClusterSecret::random());
    }

    #[test]
    fn records_round_trip_however_the_bytes_are_split() {
        let s = ClusterSecret::random();
        let (ik, rk) = pair(&s, &s).unwrap();
        let mut seal = Sealer::new(ik);
        let mut open = Opener::new(rk);
        let plain: Vec<u8> = (0..200_000u32).map(|i| (i * 7) as u8).collect();
        let mut wire = Vec::new();
        seal.seal(&plain[..10], &mut wire).unwrap();
        seal.seal(&plain[10..], &mut wire).unwrap();
        assert_eq!(wire.len(), Sealer::sealed_len(10) + Sealer::sealed_len(plain.len() - 10));
        let mut got = Vec::new();
        for piece in wire.chunks(777) {
            got.extend(open_all(&mut open, piece).unwrap());
        }
        assert_eq!(got, plain);
        assert_eq!(open.pending(), 0);
    }

    #[test]
    fn a_short_record_is_refused_however_its_header_arrives() {
        // found by the fuzz target: a header split in two escaped the early length check
        fuzzing::secure_link(&[0, 0, 10]);
        let (_, rk) =
            pair(&ClusterSecret::from_bytes([3; 32]), &ClusterSecret::from_bytes([3; 32])).unwrap();
        let mut o = Opener::new(rk);
        assert_eq!(open_all(&mut o, &[0]), Ok(Vec::new()));
        assert_eq!(open_all(&mut o, &[10]), Err(LinkError::ShortRecord(10)));
    }

    #[test]
    fn records_split_inside_their_headers_open() {
        let s = ClusterSecret::random();
        for step in 1..=7 {
            let (ik, rk) = pair(&s, &s).unwrap();
            let (mut seal, mut open) = (Sealer::new(ik), Opener::new(rk));
            let mut wire = Vec::new();
            for k in 0..20u8 {
                seal.seal(&vec![k; usize::from(k) * 3], &mut wire).unwrap();
            }
            let mut got = Vec::new();
            for piece in wire.chunks(step) {
                got.extend(open_all(&mut open, piece).unwrap());
            }
            let want: Vec<u8> = (0..20u8).flat_map(|k| vec![k; usize::from(k) * 3]).collect();
            assert_eq!(got, want, "pieces of {step} bytes");
        }
    }

    #[test]
    fn another_secret_fails_at_the_first_message() {
        let r = pair(&ClusterSecret::from_bytes([1; 32]), &ClusterSecret::from_bytes([2; 32]));
        assert_eq!(r.err(), Some(LinkError::Auth));
    }

    #[test]
    fn another_prologue_fails() {
        let s = ClusterSecret::random();
        let (mut m1, mut none) = (Vec::new(), Vec::new());
        let _i = Handshake::new(&s, b"cluster a", true, &mut m1);
        let mut r = Handshake::new(&s, b"cluster b", false, &mut none);
        assert_eq!(r.feed(&m1, &mut none).err(), Some(LinkError::Auth));
    }

    #[test]
    fn garbage_and_wrong_lengths_are_refused() {
        let s = ClusterSecret::random();
        let mut none = Vec::new();
        let mut r = Handshake::new(&s, b"p", false, &mut none);
        assert!(matches!(r.feed(b"SMN1 hello", &mut none), Err(LinkError::Malformed(_))));
        let mut r = Handshake::new(&s, b"p", false, &mut none);
        let mut junk = vec![0, 48];
        junk.extend([7u8; 48]);
        assert_eq!(r.feed(&junk, &mut none).err(), Some(LinkError::Auth));
    }

    #[test]
    fn tampered_replayed_and_reordered_records_fail() {
        let s = ClusterSecret::random();
        let (ik, rk) = pair(&s, &s).unwrap();
        let mut seal = Sealer::new(ik.clone());
        let (mut a, mut b) = (Vec::new(), Vec::new());
        seal.seal(b"first", &mut a).unwrap();
        seal.seal(b"second", &mut b).unwrap();

        let mut tampered = a.clone();
        *tampered.last_mut().unwrap() ^= 1;
        assert_eq!(open_all(&mut Opener::new(rk.clone()), &tampered), Err(LinkError::Record));

        let mut o = Opener::new(rk.clone());
        assert_eq!(open_all(&mut o, &a).unwrap(), b"first");
        assert_eq!(open_all(&mut o, &a), Err(LinkError::Record), "replayed");
        assert_eq!(open_all(&mut Opener::new(rk.clone()), &b), Err(LinkError::Record), "reordered");

        // the same bytes under another session's keys
        let (_, other) = pair(&s, &s).unwrap();
        assert_eq!(open_all(&mut Opener::new(other), &a), Err(LinkError::Record));

        let short = [0u8, 3, 1, 2, 3];
        assert_eq!(open_all(&mut Opener::new(rk), &short), Err(LinkError::ShortRecord(3)));
    }

    #[test]
    fn bytes_after_the_handshake_are_handed_back() {
        let s = ClusterSecret::random();
        let (mut m1, mut m2, mut none) = (Vec::new(), Vec::new(), Vec::new());
        let mut i = Handshake::new(&s, b"p", true, &mut m1);
        let mut r = Handshake::new(&s, b"p", false, &mut none);
        // the responder's answer and its first record arrive in one read, split oddly
        let (rk, _) = r.feed(&m1, &mut m2).unwrap().unwrap();
        let mut rseal = Sealer::new(rk);
        rseal.seal(b"hello", &mut m2).unwrap();
        assert_eq!(i.feed(&m2[..20], &mut none).unwrap().map(|_| ()), None);
        let (ik, rest) = i.feed(&m2[20..], &mut none).unwrap().unwrap();
        assert_eq!(open_all(&mut Opener::new(ik), &rest).unwrap(), b"hello");
    }
}

#[cfg(test)]
mod speed {
    use super::*;
    use std::time::Instant;

    /// Not a benchmark of record (those live in selfman-bench): a quick look at what sealing
    /// and opening cost per record size, run by hand with `--release --ignored --nocapture`.
    #[test]
    #[ignore = "timing, run by hand"]
    fn seal_and_open_speed() {
        let s = ClusterSecret::random();
        let (mut m1, mut m2, mut none) = (Vec::new(), Vec::new(), Vec::new());
        let mut i = Handshake::new(&s, b"p", true, &mut m1);
        let mut r = Handshake::new(&s, b"p", false, &mut none);
        let (rk, _) = r.feed(&m1, &mut m2).unwrap().unwrap();
        let (ik, _) = i.feed(&m2, &mut none).unwrap().unwrap();
        let (mut seal, mut open) = (Sealer::new(ik), Opener::new(rk));
        for size in [20usize, 200, 2_000, 20_000, 65_519] {
            let plain = vec![1u8; size];
            let n = (50_000_000 / size).max(1000);
            let mut wire = Vec::with_capacity(Sealer::sealed_len(size));
            let t = Instant::now();
            let mut got = 0usize;
            for _ in 0..n {
                wire.clear();
                seal.seal(&plain, &mut wire).unwrap();
                open.open(&wire, &mut |p| got += p.len()).unwrap();
            }
            let e = t.elapsed();
            assert_eq!(got, n * size);
            println!(
                "record {size:>6} B: {:.2} us per seal+open, {:.0} MB/s",
                e.as_secs_f64() * 1e6 / n as f64,
                (n * size) as f64 / e.as_secs_f64() / 1e6
            );
        }
    }
}
