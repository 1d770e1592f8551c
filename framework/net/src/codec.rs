//! Codecs: how one protocol's messages become frame payloads and back.
//!
//! [`Codec`] is the plug-in point; [`BincodeCodec`] (serde + bincode 2, standard config) is the
//! default. Decoding **always** runs with a size limit: bincode 2's unlimited decoder trusts
//! length fields and would try to allocate whatever a few hostile bytes claim (and abort the
//! process). The limit is chosen per payload as the smallest of a few fixed tiers (64 KiB, 1 MiB,
//! 16 MiB, 256 MiB, 4 GiB) that is at least 16 times the payload's length — bincode counts 8
//! or 16 bytes for every integer it reads, however few bytes encode it — so an honest message
//! always fits, and what a lying length field can make the decoder reserve is bounded by 16× the
//! (already bounded) frame size.

use std::fmt;
use std::marker::PhantomData;

use bincode::config::{self, Config};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Why a message could not be encoded or decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    /// The message could not be encoded.
    #[error("cannot encode: {0}")]
    Encode(String),
    /// The payload is not a valid encoding of the message type.
    #[error("cannot decode: {0}")]
    Decode(String),
    /// The payload decoded, but bytes were left over.
    #[error("{0} trailing bytes after the message")]
    Trailing(usize),
}

/// Encodes messages of type `M` into frame payloads and decodes them back.
///
/// `decode` receives bytes from the network: it must not panic and must not allocate more than
/// a bounded multiple of `bytes.len()`, whatever the bytes are.
pub trait Codec<M>: Send + Sync + 'static {
    /// Appends the encoding of `msg` to `out` (which may already hold other bytes).
    ///
    /// # Errors
    ///
    /// [`CodecError::Encode`] if the message cannot be encoded; `out` may then hold a partial
    /// encoding, which the caller truncates.
    fn encode(&self, msg: &M, out: &mut Vec<u8>) -> Result<(), CodecError>;

    /// Decodes one message that occupies all of `bytes`.
    ///
    /// # Errors
    ///
    /// [`CodecError::Decode`] or [`CodecError::Trailing`] for bytes that are not exactly one
    /// valid message.
    fn decode(&self, bytes: &[u8]) -> Result<M, CodecError>;
}

/// The default codec: serde + bincode 2 (standard configuration: little-endian, variable-length
/// integers), decoding with a size limit.
///
/// # Examples
///
/// ```
/// use selfman_net::{BincodeCodec, Codec};
///
/// let codec = BincodeCodec::<(u32, String)>::new();
/// let mut bytes = Vec::new();
/// codec.encode(&(7, "seven".into()), &mut bytes).unwrap();
/// assert_eq!(codec.decode(&bytes).unwrap(), (7, "seven".to_string()));
/// // A tiny input claiming a huge string fails cleanly instead of aborting.
/// assert!(codec.decode(&[7, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]).is_err());
/// ```
pub struct BincodeCodec<M>(PhantomData<fn() -> M>);

impl<M> BincodeCodec<M> {
    /// The codec.
    pub const fn new() -> Self {
        BincodeCodec(PhantomData)
    }
}

impl<M> Default for BincodeCodec<M> {
    fn default() -> Self {
        Self::new()
    }
}

impl<M> Clone for BincodeCodec<M> {
    fn clone(&self) -> Self {
        Self::new()
    }
}

impl<M> fmt::Debug for BincodeCodec<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BincodeCodec<{}>", std::any::type_name::<M>())
    }
}

/// Decodes `bytes` as a `M` with bincode's standard configuration and the decode limit `LIMIT`.
fn decode_with<M: DeserializeOwned, const LIMIT: usize>(bytes: &[u8]) -> Result<M, CodecError> {
    let cfg = config::standard().with_limit::<LIMIT>();
    finish(bincode::serde::decode_from_slice(bytes, cfg), bytes.len())
}

fn finish<M>(
    r: Result<(M, usize), bincode::error::DecodeError>,
    len: usize,
) -> Result<M, CodecError> {
    match r {
        Ok((m, used)) if used == len => Ok(m),
        Ok((_, used)) => Err(CodecError::Trailing(len - used)),
        Err(e) => Err(CodecError::Decode(e.to_string())),
    }
}

/// The decode limit used for a payload of `len` bytes (see the module docs).
pub fn decode_limit(len: usize) -> usize {
    let need = len.saturating_mul(16);
    [0x1_0000, 0x10_0000, 0x100_0000, 0x1000_0000]
        .into_iter()
        .find(|&t| need <= t)
        .unwrap_or(0xffff_ffff)
}

impl<M: Serialize + DeserializeOwned + 'static> Codec<M> for BincodeCodec<M> {
    #[inline]
    fn encode(&self, msg: &M, out: &mut Vec<u8>) -> Result<(), CodecError> {
        bincode::serde::encode_into_std_write(msg, out, config::standard())
            .map(|_| ())
            .map_err(|e| CodecError::Encode(e.to_string()))
    }

    #[inline]
    fn decode(&self, bytes: &[u8]) -> Result<M, CodecError> {
        match decode_limit(bytes.len()) {
            0x1_0000 => decode_with::<M, 0x1_0000>(bytes),
            0x10_0000 => decode_with::<M, 0x10_0000>(bytes),
            0x100_0000 => decode_with::<M, 0x100_0000>(bytes),
            0x1000_0000 => decode_with::<M, 0x1000_0000>(bytes),
            _ => decode_with::<M, 0xffff_ffff>(bytes),
        }
    }
}

/// The configuration [`BincodeCodec`] encodes with (for tools that need the same bytes).
pub fn bincode_config() -> impl Config {
    config::standard()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_cover_sixteen_times_the_payload() {
        for len in [0, 1, 4096, 4097, 65_536, 1 << 20, (1 << 24) + 1, 1 << 28] {
            assert!(decode_limit(len) >= len.saturating_mul(16).min(0xffff_ffff), "{len}");
        }
    }

    #[test]
    fn many_small_integers_decode_within_the_limit() {
        // 4000 one-byte varints claim 16 bytes each for u128: 64,000 claimed bytes.
        let v: Vec<u128> = (0..4000).map(|i| i % 100).collect();
        let c = BincodeCodec::<Vec<u128>>::new();
        let mut out = Vec::new();
        c.encode(&v, &mut out).unwrap();
        assert_eq!(c.decode(&out).unwrap(), v);
        let s: Vec<String> = (0..3000).map(|i| i.to_string()).collect();
        let c = BincodeCodec::<Vec<String>>::new();
        out.clear();
        c.encode(&s, &mut out).unwrap();
        assert_eq!(c.decode(&out).unwrap(), s);
    }

    #[test]
    fn lying_lengths_fail_cleanly() {
        let c = BincodeCodec::<Vec<u8>>::new();
        // varint marker 0xfd = u64 follows: claims 2^60 bytes.
        let bytes = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0x10];
        assert!(matches!(c.decode(&bytes), Err(CodecError::Decode(_))));
        let c = BincodeCodec::<String>::new();
        assert!(c.decode(&bytes).is_err());
        assert_eq!(BincodeCodec::<u8>::new().decode(&[1, 2]), Err(CodecError::Trailing(1)));
    }
}
