//! The run digest ([`Simulation::record_digest`](crate::Simulation::record_digest)): an opt-in
//! hash over every delivery of the simulated network, **message contents included**.
//!
//! The trace hash folds in each turn (time, component), each timer firing and each delivery's
//! header (time, sender, receiver, protocol), but not what a message says: two builds whose
//! peers send the same messages at the same times with different contents (a list in another
//! order, a counter off by one) have the same trace until the difference changes what happens
//! next, if it ever does. The digest adds each delivered message's bincode encoding (its wire
//! form, as `selfman-net` would send it), so two runs have the same digest only if the same
//! messages, byte for byte, reached the same nodes at the same virtual times. It costs an
//! encoding per delivery, so it is off unless asked for (sweeps that compare two builds turn it
//! on; the benchmarks do not).

use serde::Serialize;

/// The running digest: FNV-1a over the bytes of each delivery (its header words, little
/// endian, then the message's encoding), so it does not depend on how the encoder splits its
/// writes.
pub(crate) struct Digest {
    hash: u64,
    /// Deliveries folded in.
    pub(crate) deliveries: u64,
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

impl Default for Digest {
    fn default() -> Self {
        Digest { hash: FNV_OFFSET, deliveries: 0 }
    }
}

impl Digest {
    /// The digest so far.
    pub(crate) fn value(&self) -> u64 {
        self.hash
    }

    fn bytes(&mut self, bytes: &[u8]) {
        let mut h = self.hash;
        for &b in bytes {
            h = (h ^ u64::from(b)).wrapping_mul(FNV_PRIME);
        }
        self.hash = h;
    }

    /// Starts a delivery: its header words (time, sender, receiver, protocol or hint marker).
    pub(crate) fn delivery(&mut self, words: &[u64]) {
        self.deliveries += 1;
        for w in words {
            self.bytes(&w.to_le_bytes());
        }
    }

    /// Folds in a message's bincode encoding (standard configuration). A message the encoder
    /// refuses folds in the error's text instead (the same in every run of the same build).
    pub(crate) fn message<M: Serialize>(&mut self, msg: &M) {
        let config = bincode::config::standard();
        let mut w = Writer { digest: self, len: 0 };
        match bincode::serde::encode_into_std_write(msg, &mut w, config) {
            Ok(_) => {
                // The length too, so that two messages cannot trade bytes at their boundary.
                let len = w.len;
                self.bytes(&len.to_le_bytes());
            }
            Err(e) => self.bytes(format!("unencodable: {e}").as_bytes()),
        }
    }
}

/// Feeds the encoder's output into the digest, storing nothing.
struct Writer<'a> {
    digest: &'a mut Digest,
    len: u64,
}

impl std::io::Write for Writer<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.digest.bytes(buf);
        self.len += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::Digest;

    #[derive(serde::Serialize)]
    struct Msg {
        list: Vec<u32>,
        n: u64,
    }

    fn digest_of(msgs: &[Msg]) -> u64 {
        let mut d = Digest::default();
        for (i, m) in msgs.iter().enumerate() {
            d.delivery(&[i as u64, 1, 2, 3]);
            d.message(m);
        }
        d.value()
    }

    /// The digest sees what a message says, not only that it was delivered: a list in another
    /// order, or a counter off by one, changes it; the same messages give the same digest.
    #[test]
    fn contents_change_the_digest() {
        let a = || vec![Msg { list: vec![1, 2, 3], n: 7 }, Msg { list: vec![], n: 0 }];
        assert_eq!(digest_of(&a()), digest_of(&a()));
        let mut b = a();
        b[0].list.swap(0, 1);
        assert_ne!(digest_of(&a()), digest_of(&b));
        let mut c = a();
        c[1].n = 1;
        assert_ne!(digest_of(&a()), digest_of(&c));
        // Bytes moved across a message boundary are caught by the lengths.
        let d = vec![Msg { list: vec![1, 2], n: 7 }, Msg { list: vec![3], n: 0 }];
        assert_ne!(digest_of(&a()), digest_of(&d));
    }

    #[test]
    fn headers_change_the_digest() {
        let mut x = Digest::default();
        x.delivery(&[1, 2, 3, 4]);
        let mut y = Digest::default();
        y.delivery(&[1, 2, 4, 3]);
        assert_ne!(x.value(), y.value());
        assert_eq!(x.deliveries, 1);
    }
}
