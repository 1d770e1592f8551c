//! Bad input: each case closes the offending connection with a status event and a warning,
//! counts it, and leaves every other connection working.

mod common;

use std::io::Read;
use std::net::Shutdown;
use std::time::Duration;

use common::{
    about, assert_link_works, config, endpoint, endpoint_with, eventually, hello, is_lost,
    is_unreachable, runtime, Endpoint, RawPeer,
};
use selfman_core::CloseReason;
use selfman_net::frame::PROTOCOL_VERSION;
use selfman_net::{NetConfig, TcpNetwork};
use selfman_runtime::Runtime;

/// A node `a` under attack, with a well-behaved peer `b` connected to it.
struct Setup {
    rt: Runtime,
    a: TcpNetwork,
    b: TcpNetwork,
    ea: Endpoint<u64>,
    eb: Endpoint<u64>,
}

fn setup(cfg: NetConfig) -> Setup {
    common::warnings::install();
    let rt = runtime();
    let a = TcpNetwork::start(&rt, cfg).unwrap();
    let b = TcpNetwork::start(&rt, config()).unwrap();
    let ea = endpoint(&a, "probe");
    let eb = endpoint(&b, "probe");
    assert_link_works(&ea, &eb, 1);
    Setup { rt, a, b, ea, eb }
}

impl Setup {
    fn finish(self) {
        assert_link_works(&self.ea, &self.eb, 100);
        assert_eq!(self.a.stats().connections, 1, "only the good connection remains");
        let Setup { rt, a, b, ea, eb } = self;
        drop((ea, eb, a, b));
        rt.shutdown().unwrap();
    }
}

/// The raw peer's socket is closed by the node (reads end).
fn assert_closed_by_node(raw: &mut RawPeer) {
    let mut buf = [0u8; 4096];
    loop {
        match raw.stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(_) => {} // the node's hello
        }
    }
}

#[test]
fn truncated_frame_then_eof() {
    let s = setup(config());
    let mut raw = RawPeer::connect(&s.a);
    raw.handshake(77);
    let from = raw.local();
    s.ea.status("connected", |st| {
        st.peer.id.0 == 77 && st.status == selfman_core::LinkStatus::Connected
    });
    let frame = RawPeer::data("probe", &[1, 2, 3, 4]);
    raw.send(&frame[..frame.len() - 2]).unwrap();
    raw.stream.shutdown(Shutdown::Write).unwrap();
    let st = s.ea.status("lost: truncated", |st| st.peer.id.0 == 77);
    assert!(
        is_lost(&st, |r| matches!(r, CloseReason::BadFrame(m) if m.contains("ended inside"))),
        "{st:?}"
    );
    assert_closed_by_node(&mut raw);
    assert_eq!(s.a.stats().closed_bad_input, 1);
    let remote = from.to_string();
    assert!(common::warnings::logged(&["closing connection", &remote, "ended inside"]));
    s.finish();
}

#[test]
fn oversized_length_prefix_before_and_after_the_handshake() {
    let s = setup(config().max_frame_bytes(1 << 20));
    // before the handshake, anything over the hello limit is refused
    let mut raw = RawPeer::connect(&s.a);
    raw.send(&(4096u32).to_le_bytes()).unwrap();
    let st = s.ea.status("unreachable: oversized", about(raw.local()));
    assert!(
        is_unreachable(&st, |r| matches!(r, CloseReason::BadFrame(m) if m.contains("exceeds"))),
        "{st:?}"
    );
    assert_closed_by_node(&mut raw);
    // after it, anything over max_frame_bytes — claimed, never allocated
    let mut raw = RawPeer::connect(&s.a);
    raw.handshake(78);
    raw.send(&u32::MAX.to_le_bytes()).unwrap();
    let st = s.ea.status("lost: oversized", |st| {
        st.peer.id.0 == 78 && !matches!(st.status, selfman_core::LinkStatus::Connected)
    });
    assert!(
        is_lost(&st, |r| matches!(r, CloseReason::BadFrame(m) if m.contains("exceeds"))),
        "{st:?}"
    );
    assert_closed_by_node(&mut raw);
    assert_eq!(s.a.stats().closed_bad_input, 2);
    s.finish();
}

#[test]
fn garbage_bytes() {
    let s = setup(config());
    let cases: [&[u8]; 4] = [
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",     // a huge "length"
        &[5, 0, 0, 0, 1, b'n', b'o', b'p', b'e'], // a hello without the magic
        &[1, 0, 0, 0, 200],                       // unknown frame kind
        &[0, 0, 0, 0],                            // empty frame
    ];
    for (n, bytes) in cases.iter().enumerate() {
        let mut raw = RawPeer::connect(&s.a);
        raw.send(bytes).unwrap();
        let st = s.ea.status("unreachable: garbage", about(raw.local()));
        assert!(is_unreachable(&st, |r| matches!(r, CloseReason::BadFrame(_))), "case {n}: {st:?}");
        let remote = raw.local().to_string();
        assert!(
            common::warnings::logged(&["closing connection", &remote, "bad frame"]),
            "case {n}"
        );
        assert_closed_by_node(&mut raw);
    }
    // garbage after a good handshake: a data frame for a protocol, with a payload that does
    // not decode as its message type (u64 varint marker without its bytes)
    let mut raw = RawPeer::connect(&s.a);
    raw.handshake(79);
    raw.send(&RawPeer::data("probe", &[0xfd])).unwrap();
    let st = s.ea.status("lost: undecodable", |st| {
        st.peer.id.0 == 79 && !matches!(st.status, selfman_core::LinkStatus::Connected)
    });
    assert!(
        is_lost(&st, |r| matches!(r, CloseReason::BadFrame(m) if m.contains("decode"))),
        "{st:?}"
    );
    assert_eq!(s.a.stats().closed_bad_input, 5);
    s.finish();
}

#[test]
fn wrong_version_or_cluster() {
    let s = setup(config());
    for (bytes, what) in [
        (hello("selfman", PROTOCOL_VERSION + 1, 80), "version"),
        (hello("other-cluster", PROTOCOL_VERSION, 81), "cluster"),
    ] {
        let mut raw = RawPeer::connect(&s.a);
        raw.send(&bytes).unwrap();
        let st = s.ea.status(what, about(raw.local()));
        assert!(
            is_unreachable(&st, |r| matches!(r, CloseReason::Handshake(m) if m.contains(what))),
            "{st:?}"
        );
        assert_closed_by_node(&mut raw);
    }
    // and a real node of another cluster cannot talk to a
    let rt2 = runtime();
    let c = TcpNetwork::start(&rt2, config().cluster("elsewhere")).unwrap();
    let ec: Endpoint<u64> = endpoint(&c, "probe");
    ec.send(s.a.local(), 5);
    let st = ec.status("rejected", |st| st.peer == s.a.local());
    assert!(is_unreachable(&st, |r| matches!(r, CloseReason::Handshake(_))), "{st:?}");
    drop((ec, c));
    rt2.shutdown().unwrap();
    // `c` can read `a`'s refusal before `a` has closed its side and counted it.
    common::eventually("a counts the refused handshake", || s.a.stats().closed_bad_input >= 3);
    s.finish();
}

#[test]
fn silent_peer_times_out() {
    let s = setup(config().handshake_timeout(Duration::from_millis(200)));
    let mut raw = RawPeer::connect(&s.a);
    let t = std::time::Instant::now();
    let st = s.ea.status("idle", about(raw.local()));
    assert!(is_unreachable(&st, |r| *r == CloseReason::Idle), "{st:?}");
    let remote = raw.local().to_string();
    assert!(common::warnings::logged(&["closing connection", &remote, "idle timeout"]));
    assert!(t.elapsed() >= Duration::from_millis(150), "closed too early: {:?}", t.elapsed());
    assert_closed_by_node(&mut raw);
    // a peer that completes the hello but never sends Accept (it should decide) also times out
    let mut raw = RawPeer::connect(&s.a);
    raw.send(&hello("selfman", PROTOCOL_VERSION, 82)).unwrap();
    let st = s.ea.status("idle after hello", |st| st.peer.id.0 == 82);
    assert!(is_unreachable(&st, |r| *r == CloseReason::Idle), "{st:?}");
    assert_closed_by_node(&mut raw);
    assert_eq!(s.a.stats().closed_bad_input, 2);
    s.finish();
}

#[test]
fn flooding_peer_is_cut_off_and_memory_stays_bounded() {
    let budget = 256 * 1024;
    let s = setup(config().inbound_budget_bytes(budget));
    // a protocol whose receiver never handles anything (passive): deliveries pile up
    let _sink: Endpoint<Vec<u8>> = endpoint_with(&s.a, "flood", false);
    let mut raw = RawPeer::connect(&s.a);
    raw.handshake(83);
    let payload = {
        let mut out = Vec::new();
        selfman_net::Codec::encode(
            &selfman_net::BincodeCodec::<Vec<u8>>::new(),
            &vec![7u8; 4000],
            &mut out,
        )
        .unwrap();
        out
    };
    let frame = RawPeer::data("flood", &payload);
    let mut batch = Vec::new();
    for _ in 0..64 {
        batch.extend_from_slice(&frame);
    }
    let mut sent = 0usize;
    while sent < 64 << 20 {
        if raw.send(&batch).is_err() {
            break; // the node closed the connection
        }
        sent += batch.len();
    }
    let st = s.ea.status("overloaded", |st| {
        st.peer.id.0 == 83 && !matches!(st.status, selfman_core::LinkStatus::Connected)
    });
    assert!(is_lost(&st, |r| *r == CloseReason::Overloaded), "{st:?}");
    assert!(common::warnings::logged(&["closing connection", "inbound budget exceeded"]));
    let stats = s.a.stats();
    assert_eq!(stats.closed_overloaded, 1);
    // what was accepted is bounded by the budget plus one read turn
    assert!(stats.frames_in as usize * frame.len() < budget + (2 << 20), "{stats:?} sent {sent}");
    eventually("sender sees the close", || raw.send(&batch).is_err());
    s.finish();
}
