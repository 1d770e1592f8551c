//! Secured links (`NetConfig::secret`): nodes with the same cluster secret talk, everything else
//! is refused and counted — another secret, no secret, a replayed connection, garbage or an
//! oversized frame inside the encrypted stream, silence.
//!
//! The raw peers here speak the documented wire format (module `selfman_net::secure`) through
//! the `snow` crate directly, so the format is checked by a second implementation of it.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{about, assert_link_works, config, endpoint, eventually, is_unreachable, runtime};
use selfman_core::{CloseReason, LinkStatus, NetIndication, NodeAddr, NodeId};
use selfman_net::frame::{Frame, PROTOCOL_VERSION};
use selfman_net::secure::NOISE_PARAMS;
use selfman_net::{ClusterSecret, NetConfig, TcpNetwork};

const KEY: [u8; 32] = [7; 32];

fn secured() -> NetConfig {
    config().secret(Some(ClusterSecret::from_bytes(KEY)))
}

fn prologue() -> Vec<u8> {
    let mut p = b"selfman-net/".to_vec();
    p.extend_from_slice(&PROTOCOL_VERSION.to_be_bytes());
    p
}

/// A hand-rolled client of a secured node: the Noise handshake by `snow`, then records.
struct SecurePeer {
    stream: TcpStream,
    keys: snow::TransportState,
}

impl SecurePeer {
    fn connect(to: &TcpNetwork, key: &[u8; 32]) -> std::io::Result<SecurePeer> {
        let mut stream = TcpStream::connect(to.local().addr)?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        let p = prologue();
        let mut hs = snow::Builder::new(NOISE_PARAMS.parse().unwrap())
            .prologue(&p)
            .unwrap()
            .psk(0, key)
            .unwrap()
            .build_initiator()
            .unwrap();
        let mut msg = [0u8; 64];
        let n = hs.write_message(&[], &mut msg).unwrap();
        stream.write_all(&(n as u16).to_be_bytes())?;
        stream.write_all(&msg[..n])?;
        let mut reply = [0u8; 50];
        stream.read_exact(&mut reply)?;
        assert_eq!(u16::from_be_bytes([reply[0], reply[1]]), 48);
        let mut none = [0u8; 64];
        hs.read_message(&reply[2..], &mut none)
            .map_err(|e| std::io::Error::other(format!("handshake: {e}")))?;
        Ok(SecurePeer { stream, keys: hs.into_transport_mode().unwrap() })
    }

    /// Sends `plain` (frame bytes) sealed into records.
    fn send(&mut self, plain: &[u8]) -> std::io::Result<()> {
        for chunk in plain.chunks(65_535 - 16) {
            let mut ct = vec![0u8; chunk.len() + 16];
            let n = self.keys.write_message(chunk, &mut ct).unwrap();
            self.stream.write_all(&(n as u16).to_be_bytes())?;
            self.stream.write_all(&ct[..n])?;
        }
        Ok(())
    }

    /// Completes the frame-level handshake as node `raw_addr(id)` (the decider).
    fn hello(&mut self, id: u64) {
        let mut out = common::hello("selfman", PROTOCOL_VERSION, id);
        Frame::Accept.encode(&mut out).unwrap();
        self.send(&out).unwrap();
    }

    /// Reads until the node closes the connection; true if it did within 5 s.
    fn closed_by_node(&mut self) -> bool {
        closed(&mut self.stream)
    }
}

fn closed(stream: &mut TcpStream) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return false,
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => return false,
            Err(_) => return true,
        }
    }
    false
}

#[test]
fn secured_nodes_exchange_messages_of_every_size_in_order() {
    let rt = runtime();
    let a = TcpNetwork::start(&rt, secured()).unwrap();
    let b = TcpNetwork::start(&rt, secured()).unwrap();
    let (ea, eb) = (endpoint::<u64>(&a, "probe"), endpoint::<u64>(&b, "probe"));
    assert_link_works(&ea, &eb, 1);
    let ba = endpoint::<Vec<u8>>(&a, "bulk");
    let bb = endpoint::<Vec<u8>>(&b, "bulk");
    // around the record size (65,519 plaintext bytes) and far beyond it
    let sizes = [0usize, 1, 65_500, 65_519, 65_520, 131_038, 200_000, 3 << 20];
    for (k, &n) in sizes.iter().enumerate() {
        ba.send(b.local(), vec![k as u8; n]);
    }
    for (k, &n) in sizes.iter().enumerate() {
        let d = bb.recv();
        assert_eq!(d.msg.len(), n);
        assert!(d.msg.iter().all(|&x| x == k as u8));
    }
    for i in 0..5_000u64 {
        eb.send(a.local(), i);
    }
    for i in 0..5_000u64 {
        assert_eq!(ea.recv().msg, i);
    }
    for s in [a.stats(), b.stats()] {
        assert_eq!(s.auth_failures, 0, "{s:?}");
        assert_eq!(s.closed_bad_input, 0, "{s:?}");
        assert_eq!(s.connections, 1, "{s:?}");
    }
    drop((ea, eb, ba, bb, a, b));
    rt.shutdown().unwrap();
}

#[test]
fn another_secret_is_refused_and_counted() {
    common::warnings::install();
    let rt = runtime();
    let a = TcpNetwork::start(&rt, secured()).unwrap();
    let b =
        TcpNetwork::start(&rt, config().secret(Some(ClusterSecret::from_bytes([8; 32])))).unwrap();
    let (ea, eb) = (endpoint::<u64>(&a, "probe"), endpoint::<u64>(&b, "probe"));
    eb.send(a.local(), 42);
    let st = eb.status("unreachable", |s| s.peer.addr == a.local().addr);
    assert!(
        is_unreachable(
            &st,
            |r| matches!(r, CloseReason::Handshake(m) if m.contains("cluster secret"))
        ),
        "{st:?}"
    );
    eventually("a counts the failed handshake", || a.stats().auth_failures >= 1);
    assert!(ea
        .drain_for(Duration::from_millis(200))
        .iter()
        .all(|e| !matches!(e, NetIndication::Deliver(_))));
    assert!(common::warnings::logged(&["closing connection", "failed authentication"]));
    assert_eq!(a.stats().connections, 0);
    drop((ea, eb, a, b));
    rt.shutdown().unwrap();
}

#[test]
fn plain_and_secured_nodes_refuse_each_other_both_ways() {
    let rt = runtime();
    let plain = TcpNetwork::start(&rt, config()).unwrap();
    let safe = TcpNetwork::start(&rt, secured()).unwrap();
    let (ep, es) = (endpoint::<u64>(&plain, "probe"), endpoint::<u64>(&safe, "probe"));
    // plain dials secured: its hello is not a handshake message
    ep.send(safe.local(), 1);
    ep.status("plain: unreachable", |s| {
        s.peer.addr == safe.local().addr && matches!(s.status, LinkStatus::Unreachable(_))
    });
    eventually("secured counts it", || safe.stats().auth_failures >= 1);
    // secured dials plain: the plain node's hello is not a handshake answer
    let before = safe.stats().auth_failures;
    es.send(plain.local(), 2);
    es.status("secured: unreachable", |s| {
        s.peer.addr == plain.local().addr && matches!(s.status, LinkStatus::Unreachable(_))
    });
    eventually("secured counts it again", || safe.stats().auth_failures > before);
    for e in [&ep, &es] {
        let got = e.drain_for(Duration::from_millis(200));
        assert!(got.iter().all(|e| !matches!(e, NetIndication::Deliver(_))), "{got:?}");
    }
    drop((ep, es, plain, safe));
    rt.shutdown().unwrap();
}

/// Forwards one connection to `target`, recording what the client sent.
fn recording_proxy(target: SocketAddr) -> (SocketAddr, Arc<Mutex<Vec<u8>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let log = Arc::new(Mutex::new(Vec::new()));
    let rec = Arc::clone(&log);
    std::thread::spawn(move || {
        let Ok((mut client, _)) = listener.accept() else { return };
        let Ok(mut server) = TcpStream::connect(target) else { return };
        let (mut c2, mut s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut s2, &mut c2);
            let _ = c2.shutdown(std::net::Shutdown::Both);
        });
        let mut buf = [0u8; 16 << 10];
        loop {
            match client.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    rec.lock().unwrap().extend_from_slice(&buf[..n]);
                    if server.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            }
        }
        let _ = server.shutdown(std::net::Shutdown::Both);
    });
    (addr, log)
}

#[test]
fn a_recorded_connection_replayed_is_refused_and_was_never_readable() {
    common::warnings::install();
    let rt = runtime();
    let a = TcpNetwork::start(&rt, secured()).unwrap();
    let b = TcpNetwork::start(&rt, secured()).unwrap();
    let ea = endpoint::<Vec<u8>>(&a, "probe");
    let eb = endpoint::<Vec<u8>>(&b, "probe");
    let (proxy, log) = recording_proxy(b.local().addr);
    let secret_text = b"the quarterly numbers, in plain words".to_vec();
    // a reaches b only through the proxy ("whoever runs at the proxy's address")
    ea.send(NodeAddr::new(proxy, NodeId::UNKNOWN), secret_text.clone());
    assert_eq!(eb.recv().msg, secret_text);
    let recorded = log.lock().unwrap().clone();
    assert!(recorded.len() > 50, "the proxy saw the session: {} bytes", recorded.len());
    assert!(
        !recorded.windows(secret_text.len()).any(|w| w == &secret_text[..]),
        "the message crossed the wire in clear"
    );

    // Replay everything a sent, on a fresh connection straight to b.
    let failures = b.stats().auth_failures;
    let mut replay = TcpStream::connect(b.local().addr).unwrap();
    replay.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    replay.write_all(&recorded).unwrap();
    assert!(closed(&mut replay), "b closes the replayed connection");
    eventually("b counts the replay", || b.stats().auth_failures > failures);
    let got = eb.drain_for(Duration::from_millis(300));
    assert!(got.iter().all(|e| !matches!(e, NetIndication::Deliver(_))), "replayed: {got:?}");
    assert!(common::warnings::logged(&["closing connection", "record failed authentication"]));
    drop((ea, eb, a, b));
    rt.shutdown().unwrap();
}

#[test]
fn garbage_after_the_handshake_is_refused() {
    let rt = runtime();
    let a = TcpNetwork::start(&rt, secured()).unwrap();
    let ea = endpoint::<u64>(&a, "probe");
    let mut p = SecurePeer::connect(&a, &KEY).unwrap();
    // a record header and bytes that are no ciphertext of this session
    let mut junk = vec![0u8, 100];
    junk.extend((0..100u32).map(|i| (i * 31) as u8));
    p.stream.write_all(&junk).unwrap();
    assert!(p.closed_by_node());
    eventually("counted", || a.stats().auth_failures == 1 && a.stats().closed_bad_input == 1);
    // a record too short to hold its tag
    let mut p = SecurePeer::connect(&a, &KEY).unwrap();
    p.stream.write_all(&[0, 3, 1, 2, 3]).unwrap();
    assert!(p.closed_by_node());
    eventually("counted", || a.stats().auth_failures == 2);
    // a handshake message of the wrong size, before any key exists
    let mut raw = TcpStream::connect(a.local().addr).unwrap();
    raw.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    raw.write_all(&[0xff, 0xff, 1, 2, 3]).unwrap();
    assert!(closed(&mut raw));
    eventually("counted", || a.stats().auth_failures == 3);
    drop((ea, a));
    rt.shutdown().unwrap();
}

#[test]
fn an_authenticated_peer_announcing_an_oversized_frame_is_cut_off() {
    let rt = runtime();
    let a = TcpNetwork::start(&rt, secured().max_frame_bytes(1 << 20)).unwrap();
    let ea = endpoint::<u64>(&a, "probe");
    let mut p = SecurePeer::connect(&a, &KEY).unwrap();
    p.hello(91);
    ea.status("connected", |s| s.peer.id.0 == 91 && s.status == LinkStatus::Connected);
    // frames still work inside records ...
    p.send(&common::RawPeer::data("probe", &bincode_u64(5))).unwrap();
    assert_eq!(ea.recv().msg, 5);
    // ... and a frame longer than max_frame_bytes is refused, not allocated
    p.send(&u32::MAX.to_le_bytes()).unwrap();
    let st = ea.status("lost", |s| s.peer.id.0 == 91 && s.status != LinkStatus::Connected);
    assert!(
        matches!(&st.status, LinkStatus::Lost(CloseReason::BadFrame(m)) if m.contains("exceeds")),
        "{st:?}"
    );
    assert!(p.closed_by_node());
    assert_eq!(a.stats().closed_bad_input, 1);
    assert_eq!(a.stats().auth_failures, 0, "the peer held the secret");
    drop((ea, a));
    rt.shutdown().unwrap();
}

fn bincode_u64(v: u64) -> Vec<u8> {
    use selfman_net::Codec;
    let mut out = Vec::new();
    selfman_net::BincodeCodec::<u64>::new().encode(&v, &mut out).unwrap();
    out
}

#[test]
fn a_silent_or_half_finished_handshake_times_out() {
    let rt = runtime();
    let a = TcpNetwork::start(&rt, secured()).unwrap();
    let ea = endpoint::<u64>(&a, "probe");
    let mut silent = TcpStream::connect(a.local().addr).unwrap();
    let mut half = TcpStream::connect(a.local().addr).unwrap();
    half.write_all(&[0, 48, 1, 2, 3]).unwrap();
    for s in [&mut silent, &mut half] {
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let from = s.local_addr().unwrap();
        let st = ea.status("unreachable: idle", about(from));
        assert!(is_unreachable(&st, |r| *r == CloseReason::Idle), "{st:?}");
        assert!(closed(s));
    }
    drop((ea, a));
    rt.shutdown().unwrap();
}
