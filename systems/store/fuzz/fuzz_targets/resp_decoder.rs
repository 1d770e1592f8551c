//! Fuzzes the RESP request decoder: any bytes, split anywhere, with small limits, must decode
//! without panicking, never consume more than it was given, never hold more than the limits
//! allow, and yield the same commands (and the same error) however the bytes are split.
#![no_main]

use libfuzzer_sys::fuzz_target;
use selfman_store::resp::{Command, Limits, ProtocolError, RequestDecoder};

fn run(data: &[u8], limits: Limits, chunk: usize) -> (Vec<Command>, Option<ProtocolError>) {
    let mut dec = RequestDecoder::new(limits);
    let mut buf: Vec<u8> = Vec::new();
    let mut out = Vec::new();
    for piece in data.chunks(chunk.max(1)) {
        buf.extend_from_slice(piece);
        loop {
            match dec.decode(&buf) {
                Ok((used, cmd)) => {
                    assert!(used <= buf.len());
                    buf.drain(..used);
                    match cmd {
                        Some(c) => {
                            // An inline command is bounded by its length, a multibulk one by its count.
                            assert!(!c.is_empty() && c.len() <= limits.max_args.max(limits.max_inline));
                            assert!(c.iter().all(|a| a.len() <= limits.max_bulk.max(limits.max_inline)));
                            out.push(c);
                        }
                        None => break,
                    }
                }
                Err(e) => return (out, Some(e)),
            }
        }
    }
    (out, None)
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 3 {
        return;
    }
    let limits = Limits {
        max_inline: 1 + usize::from(data[0]),
        max_args: 1 + usize::from(data[1] % 16),
        max_bulk: usize::from(data[1] / 16) * 8,
    };
    let chunk = 1 + usize::from(data[2]);
    let body = &data[3..];
    let whole = run(body, limits, body.len());
    let split = run(body, limits, chunk);
    assert_eq!(whole, split, "splitting changed the outcome");
});
