//! Fuzzes the frame decoder: any bytes, split anywhere, with any limit, must decode without
//! panicking, keep its buffer bounded, yield the same frames however they are split, and
//! re-encode every frame it yields to the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use selfman_net::frame::{Frame, FrameDecoder, FrameError};

/// Owned copy of a frame's bytes, re-encoded.
fn reencode(f: &Frame<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    f.encode(&mut out).expect("a decoded frame re-encodes");
    out
}

fn run(data: &[u8], max: usize, chunk: usize) -> (Vec<Vec<u8>>, Option<FrameError>) {
    let mut dec = FrameDecoder::with_buffer(max, 64);
    let mut frames = Vec::new();
    for piece in data.chunks(chunk.max(1)) {
        dec.push(piece);
        loop {
            match dec.next() {
                Ok(Some(f)) => frames.push(reencode(&f)),
                Ok(None) => break,
                Err(e) => return (frames, Some(e)),
            }
        }
        assert!(dec.buffered() <= data.len());
    }
    (frames, dec.finish().err())
}

fuzz_target!(|input: &[u8]| {
    if input.len() < 3 {
        return;
    }
    // the first bytes choose the limit and the split
    let max = 1 + usize::from(u16::from_le_bytes([input[0], input[1]]));
    let chunk = 1 + usize::from(input[2]);
    let data = &input[3..];
    let whole = run(data, max, data.len().max(1));
    let split = run(data, max, chunk);
    assert_eq!(whole, split, "split points changed the outcome");
    // every frame decoded re-encodes to exactly the bytes it came from
    let consumed: Vec<u8> = whole.0.concat();
    assert_eq!(&data[..consumed.len()], &consumed[..]);
});
