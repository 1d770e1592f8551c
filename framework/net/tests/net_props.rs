//! Property tests of the frame decoder and the codec (stable Rust; the fuzz target in
//! `framework/net/fuzz` explores the decoder further on nightly).

use proptest::prelude::*;
use selfman_core::{NodeAddr, NodeId, ProtocolId};
use selfman_net::frame::{Frame, FrameDecoder, FrameError, Hello};
use selfman_net::{BincodeCodec, Codec};
use serde::{Deserialize, Serialize};

/// Owned form of a frame, for comparisons.
#[derive(Debug, Clone, PartialEq)]
enum Owned {
    Hello(Hello),
    Accept,
    Data(u32, Vec<u8>),
}

impl Owned {
    fn of(f: Frame<'_>) -> Owned {
        match f {
            Frame::Hello(h) => Owned::Hello(h),
            Frame::Accept => Owned::Accept,
            Frame::Data { protocol, payload } => Owned::Data(protocol.0, payload.to_vec()),
        }
    }

    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Owned::Hello(h) => Frame::Hello(h.clone()).encode(out).unwrap(),
            Owned::Accept => Frame::Accept.encode(out).unwrap(),
            Owned::Data(p, d) => {
                Frame::Data { protocol: ProtocolId(*p), payload: d }.encode(out).unwrap()
            }
        }
    }
}

fn any_frame() -> impl Strategy<Value = Owned> {
    let hello = (
        any::<u16>(),
        "[a-z]{0,20}",
        any::<[u8; 4]>(),
        any::<u16>(),
        any::<u64>(),
        any::<u64>(),
        any::<bool>(),
    )
        .prop_map(|(version, cluster, ip, port, id, expect, v6)| {
            let ip: std::net::IpAddr = if v6 {
                std::net::Ipv6Addr::from([
                    ip[0], ip[1], ip[2], ip[3], 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1,
                ])
                .into()
            } else {
                std::net::Ipv4Addr::from(ip).into()
            };
            Owned::Hello(Hello {
                version,
                cluster,
                from: NodeAddr::new(std::net::SocketAddr::new(ip, port), NodeId(id)),
                expect: NodeId(expect),
            })
        });
    prop_oneof![
        hello,
        Just(Owned::Accept),
        (any::<u32>(), proptest::collection::vec(any::<u8>(), 0..300))
            .prop_map(|(p, d)| Owned::Data(p, d)),
    ]
}

/// Feeds `bytes` in chunks cut at `cuts`, collecting frames until an error.
fn decode_chunked(bytes: &[u8], cuts: &[usize], max: usize) -> (Vec<Owned>, Option<FrameError>) {
    let mut dec = FrameDecoder::with_buffer(max, 64);
    let mut points: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
    points.push(0);
    points.push(bytes.len());
    points.sort_unstable();
    let mut frames = Vec::new();
    for w in points.windows(2) {
        dec.push(&bytes[w[0]..w[1]]);
        loop {
            match dec.next() {
                Ok(Some(f)) => frames.push(Owned::of(f)),
                Ok(None) => break,
                Err(e) => return (frames, Some(e)),
            }
        }
    }
    (frames, dec.finish().err())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2000), max in 1usize..5000) {
        let mut dec = FrameDecoder::with_buffer(max, 64);
        dec.push(&bytes);
        let mut n = 0;
        while let Ok(Some(_)) = dec.next() {
            n += 1;
            prop_assert!(n <= bytes.len() / 5 + 1);
        }
        let _ = dec.finish();
    }

    #[test]
    fn read_from_never_panics_and_stays_bounded(bytes in proptest::collection::vec(any::<u8>(), 0..4000), max in 1usize..3000) {
        let mut dec = FrameDecoder::with_buffer(max, 64);
        let mut src = &bytes[..];
        loop {
            let mut failed = false;
            loop {
                match dec.next() {
                    Ok(Some(_)) => {}
                    Ok(None) => break,
                    Err(_) => { failed = true; break }
                }
            }
            if failed { break }
            prop_assert!(dec.buffered() <= max + 4);
            match dec.read_from(&mut src) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) => prop_assert!(false, "read error {e}"),
            }
        }
    }

    #[test]
    fn frames_round_trip_whatever_the_split(
        frames in proptest::collection::vec(any_frame(), 0..20),
        cuts in proptest::collection::vec(any::<usize>(), 0..10),
    ) {
        let mut bytes = Vec::new();
        for f in &frames {
            f.encode(&mut bytes);
        }
        let (got, err) = decode_chunked(&bytes, &cuts, 1 << 20);
        prop_assert_eq!(err, None);
        prop_assert_eq!(got, frames);
    }

    #[test]
    fn split_points_do_not_change_the_outcome(
        bytes in proptest::collection::vec(any::<u8>(), 0..600),
        cuts in proptest::collection::vec(any::<usize>(), 0..20),
    ) {
        let whole = decode_chunked(&bytes, &[], 400);
        let split = decode_chunked(&bytes, &cuts, 400);
        prop_assert_eq!(whole, split);
    }

    #[test]
    fn truncation_is_detected(frames in proptest::collection::vec(any_frame(), 1..5), cut in 1usize..1000) {
        let mut bytes = Vec::new();
        for f in &frames {
            f.encode(&mut bytes);
        }
        let keep = bytes.len() - 1 - cut % bytes.len();
        let (_, err) = decode_chunked(&bytes[..keep], &[], 1 << 20);
        // cutting inside a frame leaves a partial frame; at a boundary nothing is wrong
        let boundary = {
            let mut off = 0;
            let mut b = vec![0];
            for f in &frames { let mut v = Vec::new(); f.encode(&mut v); off += v.len(); b.push(off); }
            b.contains(&keep)
        };
        prop_assert_eq!(err.is_none(), boundary);
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Msg {
    Ping { seq: u64, from: String },
    Batch(Vec<(u32, Option<i64>)>),
    Blob(Vec<u8>),
    Nested(Vec<Vec<String>>, u128),
}

fn any_msg() -> impl Strategy<Value = Msg> {
    prop_oneof![
        (any::<u64>(), ".{0,40}").prop_map(|(seq, from)| Msg::Ping { seq, from }),
        proptest::collection::vec((any::<u32>(), any::<Option<i64>>()), 0..50).prop_map(Msg::Batch),
        proptest::collection::vec(any::<u8>(), 0..500).prop_map(Msg::Blob),
        (
            proptest::collection::vec(proptest::collection::vec("[a-z]{0,5}", 0..5), 0..5),
            any::<u128>()
        )
            .prop_map(|(v, n)| Msg::Nested(v, n)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn codec_round_trips(msg in any_msg()) {
        let c = BincodeCodec::<Msg>::new();
        let mut out = vec![9, 9]; // encode appends
        c.encode(&msg, &mut out).unwrap();
        prop_assert_eq!(c.decode(&out[2..]).unwrap(), msg);
    }

    #[test]
    fn codec_survives_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = BincodeCodec::<Msg>::new().decode(&bytes);
        let _ = BincodeCodec::<Vec<String>>::new().decode(&bytes);
        let _ = BincodeCodec::<Vec<Vec<u64>>>::new().decode(&bytes);
    }

    #[test]
    fn codec_survives_mutated_messages(msg in any_msg(), flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..4)) {
        let c = BincodeCodec::<Msg>::new();
        let mut out = Vec::new();
        c.encode(&msg, &mut out).unwrap();
        for (i, b) in flips {
            if !out.is_empty() {
                let n = out.len();
                out[i % n] = b;
            }
        }
        let _ = c.decode(&out);
    }
}
