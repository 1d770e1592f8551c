//! Property tests of the RESP request decoder: encoded commands decode to themselves however the
//! bytes are split, arbitrary bytes never panic it, and nothing is reserved beyond what arrived.

use proptest::collection::vec;
use proptest::prelude::*;
use selfman_store::resp::{Limits, ProtocolError, RequestDecoder};

/// A command as every client library sends it.
fn multibulk(args: &[Vec<u8>]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Feeds `input` to a decoder in pieces cut at `cuts` (as reads would deliver it), keeping
/// unconsumed bytes like a connection's buffer does. Returns the commands, or the first error.
fn decode_in_pieces(
    input: &[u8],
    cuts: &[usize],
    limits: Limits,
) -> Result<Vec<Vec<Vec<u8>>>, ProtocolError> {
    let mut points: Vec<usize> = cuts.iter().map(|c| c % (input.len() + 1)).collect();
    points.push(input.len());
    points.sort_unstable();
    let mut d = RequestDecoder::new(limits);
    let mut buf: Vec<u8> = Vec::new();
    let mut out = Vec::new();
    let mut from = 0;
    for p in points {
        buf.extend_from_slice(&input[from..p]);
        from = p;
        loop {
            let (used, cmd) = d.decode(&buf)?;
            assert!(used <= buf.len(), "consumed more than it was given");
            buf.drain(..used);
            match cmd {
                Some(c) => out.push(c),
                None => break,
            }
        }
    }
    Ok(out)
}

fn arg() -> impl Strategy<Value = Vec<u8>> {
    vec(any::<u8>(), 0..40)
}

proptest! {
    #[test]
    fn multibulk_commands_decode_to_themselves_however_split(
        cmds in vec(vec(arg(), 1..6), 1..8),
        cuts in vec(any::<usize>(), 0..12),
    ) {
        let input: Vec<u8> = cmds.iter().flat_map(|c| multibulk(c)).collect();
        prop_assert_eq!(decode_in_pieces(&input, &cuts, Limits::default()), Ok(cmds));
    }

    #[test]
    fn inline_commands_of_plain_words_decode_however_split(
        cmds in vec(vec("[a-zA-Z0-9_:.-]{1,12}", 1..5), 1..6),
        cuts in vec(any::<usize>(), 0..8),
    ) {
        let input: Vec<u8> = cmds.iter().flat_map(|c| format!("{}\r\n", c.join(" ")).into_bytes()).collect();
        let want: Vec<Vec<Vec<u8>>> =
            cmds.iter().map(|c| c.iter().map(|a| a.as_bytes().to_vec()).collect()).collect();
        prop_assert_eq!(decode_in_pieces(&input, &cuts, Limits::default()), Ok(want));
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_results_do_not_depend_on_splits(
        input in vec(any::<u8>(), 0..300),
        cuts in vec(any::<usize>(), 0..10),
    ) {
        let limits = Limits { max_inline: 64, max_args: 8, max_bulk: 32 };
        let whole = decode_in_pieces(&input, &[], limits);
        let split = decode_in_pieces(&input, &cuts, limits);
        // Commands before an error are the same; an error is the same error.
        prop_assert_eq!(whole, split);
    }

    #[test]
    fn mostly_valid_input_with_one_byte_changed_never_panics(
        cmds in vec(vec(arg(), 1..4), 1..4),
        at in any::<usize>(),
        byte in any::<u8>(),
    ) {
        let mut input: Vec<u8> = cmds.iter().flat_map(|c| multibulk(c)).collect();
        let i = at % input.len();
        input[i] = byte;
        let _ = decode_in_pieces(&input, &[i], Limits::default());
    }
}

#[test]
fn announced_sizes_reserve_nothing_before_the_bytes_arrive() {
    // A client announcing the largest allowed argument, then sending a trickle of it, must not
    // make the decoder hold more than what arrived: it consumes nothing until the argument is
    // whole, so the caller's buffer is all there is.
    let mut d = RequestDecoder::new(Limits::default());
    let head = format!("*1\r\n${}\r\n", 512 * 1024 * 1024).into_bytes();
    let (used, cmd) = d.decode(&head).unwrap();
    assert_eq!((used, cmd), (4, None));
    let mut buf = head[used..].to_vec();
    buf.extend_from_slice(&[b'x'; 1000]);
    assert_eq!(d.decode(&buf).unwrap(), (0, None));
    // One byte over the limit is refused from the header alone.
    let mut d = RequestDecoder::new(Limits::default());
    let over = format!("*1\r\n${}\r\n", 512 * 1024 * 1024 + 1).into_bytes();
    assert_eq!(d.decode(&over), Err(ProtocolError::InvalidBulkLength));
}

/// Pieces of the protocol, so random inputs are mostly near-requests.
const TOKENS: &[&[u8]] =
    &[b"*", b"$", b"\r\n", b"\r", b"\n", b"1", b"12", b"0", b"-1", b"a", b" ", b"\"", b"'", b"\0"];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn tiny_limits_and_protocol_pieces_do_not_make_splits_matter(
        tokens in vec(0..TOKENS.len(), 0..20),
        cuts in vec(any::<usize>(), 0..6),
        max_inline in 1usize..5,
        max_args in 1usize..4,
        max_bulk in 0usize..4,
    ) {
        // Limits at the edge of the input's line lengths: the decision must depend on a fixed
        // window, not on how much happened to arrive (a case the fuzzer found).
        let input: Vec<u8> = tokens.iter().flat_map(|&t| TOKENS[t].iter().copied()).collect();
        let limits = Limits { max_inline, max_args, max_bulk };
        prop_assert_eq!(decode_in_pieces(&input, &[], limits), decode_in_pieces(&input, &cuts, limits));
    }
}
