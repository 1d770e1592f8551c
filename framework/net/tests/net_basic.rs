//! Two nodes over real loopback TCP: typed messages of several protocols on one connection,
//! same-process delivery without serialisation, registration errors, shutdown.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::{config, endpoint, eventually, runtime, Endpoint, WAIT};
use selfman_core::{Error, Host, LinkStatus, NetIndication, ProtocolId};
use selfman_net::TcpNetwork;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Chat {
    Say(String),
    Bye,
}

#[test]
fn two_protocols_share_one_connection_and_keep_fifo_order() {
    let rt = runtime();
    let a = TcpNetwork::start(&rt, config()).unwrap();
    let b = TcpNetwork::start(&rt, config()).unwrap();
    let a_num: Endpoint<u64> = endpoint(&a, "numbers");
    let a_chat: Endpoint<Chat> = endpoint(&a, "chat");
    let b_num: Endpoint<u64> = endpoint(&b, "numbers");
    let b_chat: Endpoint<Chat> = endpoint(&b, "chat");
    const N: u64 = 2000;
    for i in 0..N {
        a_num.send(b.local(), i);
        a_chat.send(b.local(), Chat::Say(format!("m{i}")));
    }
    a_chat.send(b.local(), Chat::Bye);
    for i in 0..N {
        let d = b_num.recv();
        assert_eq!((d.msg, d.from), (i, a.local()));
        assert!(d.credit() > 0, "deliveries from the wire hold inbound budget");
    }
    for i in 0..N {
        assert_eq!(b_chat.recv().msg, Chat::Say(format!("m{i}")));
    }
    assert_eq!(b_chat.recv().msg, Chat::Bye);
    // replies travel over the same connection
    b_num.send(a.local(), 7);
    assert_eq!(a_num.recv().msg, 7);
    for (net, ep) in [(&a, &a_num), (&b, &b_num)] {
        let s = net.stats();
        assert_eq!((s.connections, s.connections_opened), (1, 1), "{s:?}");
        // status events reach every protocol's port
        ep.status("connected", |s| s.status == LinkStatus::Connected);
    }
    a_chat.status("connected", |s| s.status == LinkStatus::Connected && s.peer == b.local());
    b_chat.status("connected", |s| s.status == LinkStatus::Connected && s.peer == a.local());
    let (sa, sb) = (a.stats(), b.stats());
    assert_eq!(sa.frames_out, 2 * N + 1);
    assert_eq!(sb.frames_in, 2 * N + 1);
    assert!(sa.writes < sa.frames_out, "frames are coalesced into fewer writes: {sa:?}");
    assert_eq!(sa.dropped_queue_full + sa.dropped_unreachable, 0);
    assert_eq!(sa.local_deliveries, 0);
    drop((a, b));
    rt.shutdown().unwrap();
}

static SERIALISED: AtomicUsize = AtomicUsize::new(0);

/// Counts every time it is serialised.
#[derive(Debug, Clone, PartialEq, Deserialize)]
struct Counted(u32);

impl Serialize for Counted {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        SERIALISED.fetch_add(1, Ordering::SeqCst);
        s.serialize_newtype_struct("Counted", &self.0)
    }
}

#[test]
fn same_process_delivery_never_serialises() {
    let rt = runtime();
    let local = config().local_delivery(true);
    let a = TcpNetwork::start(&rt, local.clone()).unwrap();
    let b = TcpNetwork::start(&rt, local).unwrap();
    let ea: Endpoint<Counted> = endpoint(&a, "counted");
    let eb: Endpoint<Counted> = endpoint(&b, "counted");
    let before = SERIALISED.load(Ordering::SeqCst);
    for i in 0..100 {
        ea.send(b.local(), Counted(i));
    }
    ea.send(a.local(), Counted(1000)); // to itself
    for i in 0..100 {
        let d = eb.recv();
        assert_eq!((d.credit(), d.from), (0, a.local()));
        assert_eq!(d.msg, Counted(i));
    }
    assert_eq!(ea.recv().msg, Counted(1000));
    assert_eq!(SERIALISED.load(Ordering::SeqCst), before, "local messages were serialised");
    assert_eq!(a.stats().local_deliveries, 101);
    assert_eq!(a.stats().dials + b.stats().dials, 0, "no connection for local peers");

    // The same with local delivery off does serialise (so the check above can fail).
    let c = TcpNetwork::start(&rt, config()).unwrap();
    let ec: Endpoint<Counted> = endpoint(&c, "counted");
    ec.send(b.local(), Counted(5));
    assert_eq!(eb.recv().msg, Counted(5));
    assert!(SERIALISED.load(Ordering::SeqCst) > before);
    drop((a, b, c));
    rt.shutdown().unwrap();
}

#[test]
fn protocol_names_must_be_consistent() {
    let rt = runtime();
    let a = TcpNetwork::start(&rt, config()).unwrap();
    let p1 = a.network::<u64>("p").unwrap();
    let p2 = a.network::<u64>("p").unwrap();
    assert_eq!(p1.owner(), p2.owner(), "same name and type: same port");
    assert!(matches!(a.network::<String>("p"), Err(Error::Network(_))));
    // two names with the same 32-bit id
    let (x, y) = colliding_names();
    a.network::<u64>(&x).unwrap();
    let e = a.network::<u64>(&y).unwrap_err();
    assert!(matches!(e, Error::Network(ref m) if m.contains("same id")), "{e}");
    drop(a);
    rt.shutdown().unwrap();
}

fn colliding_names() -> (String, String) {
    let mut seen = std::collections::HashMap::new();
    for i in 0u64.. {
        let name = format!("proto-{i}");
        if let Some(other) = seen.insert(ProtocolId::of(&name), name.clone()) {
            return (other, name);
        }
    }
    unreachable!()
}

#[test]
fn shutdown_closes_sockets_and_joins() {
    let rt = runtime();
    let a = TcpNetwork::start(&rt, config()).unwrap();
    let b = TcpNetwork::start(&rt, config()).unwrap();
    let ea: Endpoint<u64> = endpoint(&a, "x");
    let eb: Endpoint<u64> = endpoint(&b, "x");
    ea.send(b.local(), 1);
    assert_eq!(eb.recv().msg, 1);
    let addr = a.local().addr;
    a.shutdown();
    a.shutdown(); // idempotent
    assert!(!a.is_running());
    eb.status("lost", |s| s.peer == a.local() && matches!(s.status, LinkStatus::Lost(_)));
    eventually("b notices", || b.stats().connections == 0);
    // the listening socket is closed: the port can be bound again
    let l = std::net::TcpListener::bind(addr).expect("port free after shutdown");
    drop(l);
    // the node's components are gone; a new protocol cannot be registered
    assert!(a.network::<u64>("y").is_err());
    eventually("adapter destroyed", || {
        ea.port.request(selfman_core::NetRequest::Send { to: b.local(), msg: 2 }).is_err()
    });
    // sending to the dead node reports it unreachable
    eb.send(a.local(), 3);
    eb.status("unreachable", |s| {
        s.peer == a.local() && matches!(s.status, LinkStatus::Unreachable(_))
    });
    let _ = eb.drain_for(Duration::from_millis(10));
    drop(b);
    rt.shutdown().unwrap();
}

#[test]
fn deliveries_report_the_sender_and_nothing_is_lost_under_load() {
    let rt = runtime();
    let a = TcpNetwork::start(&rt, config()).unwrap();
    let b = TcpNetwork::start(&rt, config()).unwrap();
    let ea: Endpoint<Vec<u8>> = endpoint(&a, "blob");
    let eb: Endpoint<Vec<u8>> = endpoint(&b, "blob");
    // mixed sizes, some larger than the read buffer
    let sizes = [0usize, 1, 100, 70_000, 5, 300_000, 64 * 1024 - 9];
    for (i, &n) in sizes.iter().cycle().take(70).enumerate() {
        ea.send(b.local(), vec![i as u8; n]);
    }
    for (i, &n) in sizes.iter().cycle().take(70).enumerate() {
        let d = eb.recv();
        assert_eq!(d.msg.len(), n);
        assert!(d.msg.iter().all(|&x| x == i as u8));
    }
    let _ = WAIT;
    let _ = ea.rx.try_iter().filter(|e| matches!(e, NetIndication::Deliver(_))).count();
    drop((a, b));
    rt.shutdown().unwrap();
}

#[test]
fn direct_and_queued_writes_interleave_without_loss_or_reordering() {
    interleave_direct_and_queued(config());
}

#[test]
fn direct_and_queued_writes_interleave_on_a_secured_link() {
    // The same with encryption: senders seal what they write directly, the I/O thread what it
    // takes from the queue, and a sender's partly written record goes out before the rest.
    let secret = selfman_net::ClusterSecret::random();
    interleave_direct_and_queued(config().secret(Some(secret)));
}

fn interleave_direct_and_queued(cfg: selfman_net::NetConfig) {
    // Several adapters send to one peer over the shared connection, alternating pauses (so
    // senders write directly) with bursts and large messages (queued, partly written).
    let rt = runtime();
    let a = TcpNetwork::start(&rt, cfg.clone()).unwrap();
    let b = TcpNetwork::start(&rt, cfg).unwrap();
    let names = ["s0", "s1", "s2", "s3"];
    let senders: Vec<Endpoint<(u32, Vec<u8>)>> = names.iter().map(|n| endpoint(&a, n)).collect();
    let receivers: Vec<Endpoint<(u32, Vec<u8>)>> = names.iter().map(|n| endpoint(&b, n)).collect();
    const N: u32 = 300;
    let threads: Vec<_> = senders
        .iter()
        .enumerate()
        .map(|(k, e)| {
            let port = e.port.clone();
            let to = b.local();
            std::thread::spawn(move || {
                for i in 0..N {
                    let size = match (i + k as u32) % 50 {
                        0 => 600_000,
                        1..=5 => 20_000,
                        _ => 8,
                    };
                    port.request(selfman_core::NetRequest::Send {
                        to,
                        msg: (i, vec![k as u8; size]),
                    })
                    .unwrap();
                    if i % 7 == 0 {
                        std::thread::sleep(Duration::from_micros(200));
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    for (k, r) in receivers.iter().enumerate() {
        for i in 0..N {
            let d = r.recv();
            assert_eq!(d.msg.0, i, "protocol {k}");
            assert!(d.msg.1.iter().all(|&x| x == k as u8));
        }
    }
    let s = a.stats();
    assert_eq!(s.frames_out, u64::from(N) * 4, "{s:?}");
    assert!(s.direct_frames > 0, "some frames were written directly: {s:?}");
    assert!(s.direct_frames < s.frames_out, "some were queued: {s:?}");
    assert_eq!(b.stats().auth_failures, 0, "{:?}", b.stats());
    drop((a, b));
    rt.shutdown().unwrap();
}
