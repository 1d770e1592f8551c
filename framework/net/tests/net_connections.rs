//! Connection management: simultaneous dials, peer restarts, reconnection, full queues.

mod common;

use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use common::{
    assert_link_works, config, endpoint, eventually, is_lost, is_unreachable, runtime, Endpoint,
};
use selfman_core::{CloseReason, LinkStatus, NodeAddr, NodeId};
use selfman_net::TcpNetwork;

#[test]
fn simultaneous_dial_yields_one_connection_without_loss() {
    let rt = runtime();
    let mut both_dialed = 0;
    for round in 0..10 {
        let a = TcpNetwork::start(&rt, config()).unwrap();
        let b = TcpNetwork::start(&rt, config()).unwrap();
        let ea: Endpoint<u64> = endpoint(&a, "x");
        let eb: Endpoint<u64> = endpoint(&b, "x");
        let barrier = Arc::new(Barrier::new(2));
        const N: u64 = 200;
        let senders: Vec<_> = [(ea.port.clone(), b.local()), (eb.port.clone(), a.local())]
            .into_iter()
            .map(|(port, to)| {
                let barrier = Arc::clone(&barrier);
                std::thread::spawn(move || {
                    barrier.wait();
                    for i in 0..N {
                        port.request(selfman_core::NetRequest::Send { to, msg: i }).unwrap();
                    }
                })
            })
            .collect();
        for s in senders {
            s.join().unwrap();
        }
        for i in 0..N {
            assert_eq!(ea.recv().msg, i, "round {round}");
            assert_eq!(eb.recv().msg, i, "round {round}");
        }
        let (sa, sb) = (a.stats(), b.stats());
        assert_eq!((sa.connections, sb.connections), (1, 1), "round {round}: {sa:?} {sb:?}");
        assert_eq!(
            (sa.connections_opened, sb.connections_opened),
            (1, 1),
            "round {round}: both keep the same single connection"
        );
        assert_eq!(sa.dropped_unreachable + sb.dropped_unreachable, 0);
        if sa.dials > 0 && sb.dials > 0 {
            both_dialed += 1;
        }
        // the losing connection (if any) is closed: only one socket pair remains
        eventually("redundant connection closed", || a.stats().connections == 1);
    }
    eprintln!("both nodes dialed in {both_dialed} of 10 rounds");
    rt.shutdown().unwrap();
}

#[test]
fn restarted_peer_gets_nothing_meant_for_its_old_incarnation() {
    let rt = runtime();
    let a = TcpNetwork::start(&rt, config()).unwrap();
    let b1 = TcpNetwork::start(&rt, config()).unwrap();
    let ea: Endpoint<String> = endpoint(&a, "x");
    let eb1: Endpoint<String> = endpoint(&b1, "x");
    let old = b1.local();
    ea.send(old, "to b1".into());
    assert_eq!(eb1.recv().msg, "to b1");
    b1.shutdown();
    ea.status("lost", |s| s.peer == old && matches!(s.status, LinkStatus::Lost(_)));

    let b2 = TcpNetwork::start(&rt, config().listen(old.addr)).unwrap();
    let eb2: Endpoint<String> = endpoint(&b2, "x");
    let new = b2.local();
    assert_eq!(new.addr, old.addr);
    assert_ne!(new.id, old.id);
    ea.send(old, "stale".into());
    let s = ea.status("unreachable old id", |s| {
        s.peer == old && matches!(s.status, LinkStatus::Unreachable(_))
    });
    assert!(
        matches!(
            &s.status,
            LinkStatus::Unreachable(CloseReason::Handshake(_))
                | LinkStatus::Unreachable(CloseReason::Io(_))
                | LinkStatus::Unreachable(CloseReason::PeerClosed)
        ),
        "{s:?}"
    );
    ea.send(new, "fresh".into());
    let d = eb2.recv();
    assert_eq!((d.msg.as_str(), d.from), ("fresh", a.local()), "only the new-id message arrives");
    assert!(eb2
        .drain_for(Duration::from_millis(100))
        .iter()
        .all(|e| !matches!(e, selfman_core::NetIndication::Deliver(_))));
    assert!(a.stats().dropped_unreachable >= 1);
    drop((a, b2));
    rt.shutdown().unwrap();
}

#[test]
fn reconnects_when_the_peer_comes_back() {
    let rt = runtime();
    let a = TcpNetwork::start(&rt, config()).unwrap();
    let fixed = config().node_id(Some(NodeId(0xb0b)));
    let b1 = TcpNetwork::start(&rt, fixed.clone()).unwrap();
    let addr = b1.local();
    let ea: Endpoint<u64> = endpoint(&a, "x");
    let eb1: Endpoint<u64> = endpoint(&b1, "x");
    ea.send(addr, 1);
    assert_eq!(eb1.recv().msg, 1);
    b1.shutdown();
    ea.status("lost", |s| s.peer == addr && matches!(s.status, LinkStatus::Lost(_)));
    ea.send(addr, 2);
    ea.status("unreachable", |s| s.peer == addr && matches!(s.status, LinkStatus::Unreachable(_)));

    let b2 = TcpNetwork::start(&rt, fixed.listen(addr.addr)).unwrap();
    assert_eq!(b2.local(), addr);
    let eb2: Endpoint<u64> = endpoint(&b2, "x");
    // keep sending until one gets through (the first may wait out the backoff)
    let mut n = 100;
    let got = loop {
        ea.send(addr, n);
        if let Ok(selfman_core::NetIndication::Deliver(d)) =
            eb2.rx.recv_timeout(Duration::from_millis(50))
        {
            break d.msg;
        }
        n += 1;
        assert!(n < 300, "no reconnection");
    };
    assert!(got >= 100);
    ea.status("connected again", |s| s.peer == addr && s.status == LinkStatus::Connected);
    assert!(a.stats().dials >= 2);
    drop((a, b2));
    rt.shutdown().unwrap();
}

#[test]
fn full_outbound_queue_drops_new_messages_and_counts_them() {
    let rt = runtime();
    // a "peer" that accepts TCP connections but never answers the handshake
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let to = NodeAddr::new(silent.local_addr().unwrap(), NodeId(5));
    let a = TcpNetwork::start(
        &rt,
        config().outbound_queue_bytes(16 * 1024).handshake_timeout(Duration::from_secs(30)),
    )
    .unwrap();
    let ea: Endpoint<Vec<u8>> = endpoint(&a, "x");
    for _ in 0..100 {
        ea.send(to, vec![0u8; 1000]);
    }
    eventually("drops counted", || a.stats().dropped_queue_full >= 80);
    let s = a.stats();
    assert!(s.dropped_queue_full <= 90, "about 16 of 100 fit: {s:?}");
    assert_eq!(s.connections, 0);
    drop(a);
    drop(silent);
    rt.shutdown().unwrap();
}

/// A dial that gets no answer is given up after `connect_timeout`, reported as unreachable —
/// not before the timeout, and not never. The peer is a listener whose accept queue is full:
/// the kernel then drops new connection requests, so a connect hangs as it would towards a
/// machine that is down.
#[test]
fn connect_timeout_gives_up_on_a_peer_that_never_answers() {
    let rt = runtime();
    let timeout = Duration::from_millis(300);
    let a = TcpNetwork::start(&rt, config().connect_timeout(timeout)).unwrap();
    let ea: Endpoint<u64> = endpoint(&a, "x");
    let full = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = full.local_addr().unwrap();
    let mut queued = Vec::new();
    while let Ok(s) = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
        queued.push(s);
        assert!(queued.len() < 5_000, "the listener's accept queue never filled");
    }
    let sent = Instant::now();
    ea.send(NodeAddr::new(addr, NodeId::UNKNOWN), 1);
    ea.status("unreachable: connect timed out", |s| {
        s.peer.addr == addr
            && is_unreachable(s, |r| matches!(r, CloseReason::Io(m) if m.contains("timed out")))
    });
    assert!(sent.elapsed() >= timeout, "gave up after {:?}, before the timeout", sent.elapsed());
    assert!(a.stats().dials >= 1);
    drop((a, queued, full));
    rt.shutdown().unwrap();
}

/// Node `a` with `idle_timeout` = `idle`, node `b` without, a protocol endpoint on each, and a
/// first message from `a` to `b` (which opens the connection) received.
struct IdlePair {
    rt: selfman_runtime::Runtime,
    a: TcpNetwork,
    b: TcpNetwork,
    ea: Endpoint<u64>,
    eb: Endpoint<u64>,
}

fn idle_pair(idle: Duration) -> IdlePair {
    let rt = runtime();
    let a = TcpNetwork::start(&rt, config().idle_timeout(Some(idle))).unwrap();
    let b = TcpNetwork::start(&rt, config()).unwrap();
    let (ea, eb) = (endpoint(&a, "x"), endpoint(&b, "x"));
    ea.send(b.local(), 0);
    assert_eq!(eb.recv().msg, 0);
    IdlePair { rt, a, b, ea, eb }
}

impl IdlePair {
    fn shutdown(self) {
        let IdlePair { rt, a, b, .. } = self;
        drop((a, b));
        rt.shutdown().unwrap();
    }
}

/// With `idle_timeout`, a connection on which nothing arrives for that long is closed (`Lost`
/// with `Idle` on the node that timed out; the other side sees it lost too) — and the next
/// message simply reconnects.
#[test]
fn idle_timeout_closes_a_silent_connection_and_the_next_message_reconnects() {
    let idle = Duration::from_millis(300);
    let opened = Instant::now();
    let p = idle_pair(idle);
    let (a, b) = (p.a.local(), p.b.local());
    p.ea.status("lost: idle", |s| s.peer == b && is_lost(s, |r| *r == CloseReason::Idle));
    assert!(opened.elapsed() >= idle, "closed after {:?}, before the timeout", opened.elapsed());
    p.eb.status("lost", |s| s.peer == a && matches!(s.status, LinkStatus::Lost(_)));
    assert_link_works(&p.ea, &p.eb, 10);
    p.shutdown();
}

/// A connection that keeps receiving is not idle: a message every tenth of the idle timeout
/// (a wide margin for a loaded machine) keeps it open for two and a half timeouts' length.
#[test]
fn idle_timeout_spares_a_connection_that_receives() {
    let idle = Duration::from_secs(1);
    let p = idle_pair(idle);
    for n in 1..=25 {
        p.eb.send(p.a.local(), n);
        assert_eq!(p.ea.recv().msg, n);
        std::thread::sleep(idle / 10);
    }
    let lost = p.ea.skipped.borrow().iter().any(|s| matches!(s.status, LinkStatus::Lost(_)));
    assert!(!lost, "a connection that received every {:?} was closed as idle", idle / 10);
    assert_eq!(p.a.stats().dials + p.b.stats().dials, 1, "the connection was replaced");
    p.shutdown();
}
