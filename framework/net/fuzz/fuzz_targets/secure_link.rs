//! Arbitrary bytes as a listener's secure handshake and as a session's records, at once and in
//! pieces (the piece size is the first byte): never a panic, the same outcome however split,
//! and a sealed stream always opens to itself. See `selfman_net::secure::fuzzing`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    selfman_net::secure::fuzzing::secure_link(data);
});
