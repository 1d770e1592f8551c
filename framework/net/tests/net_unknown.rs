//! Sending to `NodeId::UNKNOWN`: "whichever incarnation runs at this address", over TCP and in
//! process, across a restart of the destination; deliveries always name the real sender.

mod common;

use std::time::Duration;

use common::{config, endpoint, eventually, runtime, Endpoint};
use selfman_core::{LinkStatus, NetIndication, NodeAddr, NodeId};
use selfman_net::TcpNetwork;

fn unknown_at(net: &TcpNetwork) -> NodeAddr {
    NodeAddr::new(net.local().addr, NodeId::UNKNOWN)
}

fn no_delivery(ep: &Endpoint<String>) {
    let extra: Vec<_> = ep
        .drain_for(Duration::from_millis(150))
        .into_iter()
        .filter_map(|e| match e {
            NetIndication::Deliver(d) => Some(d.msg),
            NetIndication::Status(_) => None,
        })
        .collect();
    assert!(extra.is_empty(), "unexpected deliveries: {extra:?}");
}

/// `a` contacts `b` knowing only its address, `b` answers the reported sender; then `b`
/// restarts on the same port with a new id: the address still reaches it, the old id does not.
fn contact_by_address_then_restart(local_delivery: bool) {
    let rt = runtime();
    let cfg = config().local_delivery(local_delivery);
    let a = TcpNetwork::start(&rt, cfg.clone()).unwrap();
    let b1 = TcpNetwork::start(&rt, cfg.clone()).unwrap();
    let ea: Endpoint<String> = endpoint(&a, "x");
    let eb1: Endpoint<String> = endpoint(&b1, "x");
    let old = b1.local();

    ea.send(unknown_at(&b1), "hello seed".into());
    let d = eb1.recv();
    assert_eq!((d.msg.as_str(), d.from), ("hello seed", a.local()));
    eb1.send(d.from, "welcome".into());
    let r = ea.recv();
    assert_eq!((r.msg.as_str(), r.from), ("welcome", old), "the reply names b's real id");

    // by address and by id alike: one connection (or none, in process)
    ea.send(old, "by id".into());
    ea.send(unknown_at(&b1), "by address".into());
    assert_eq!(eb1.recv().msg, "by id");
    assert_eq!(eb1.recv().msg, "by address");
    let (sa, sb) = (a.stats(), b1.stats());
    if local_delivery {
        assert_eq!(sa.local_deliveries, 3);
        assert_eq!(sa.dials + sb.dials, 0, "{sa:?} {sb:?}");
    } else {
        ea.status("connected", |s| s.peer == old && s.status == LinkStatus::Connected);
        assert_eq!((sa.dials, sb.dials), (1, 0), "{sa:?} {sb:?}");
        assert_eq!((sa.connections_opened, sb.connections_opened), (1, 1), "{sa:?} {sb:?}");
        assert_eq!(sa.frames_out, 3);
    }

    b1.shutdown();
    if !local_delivery {
        ea.status("lost", |s| s.peer == old && matches!(s.status, LinkStatus::Lost(_)));
    }
    let b2 = TcpNetwork::start(&rt, cfg.listen(old.addr)).unwrap();
    let eb2: Endpoint<String> = endpoint(&b2, "x");
    let new = b2.local();
    assert_eq!(new.addr, old.addr);
    assert_ne!(new.id, old.id);

    ea.send(old, "stale".into());
    ea.send(unknown_at(&b2), "fresh".into());
    let d = eb2.recv();
    assert_eq!((d.msg.as_str(), d.from), ("fresh", a.local()));
    ea.status("unreachable old id", |s| {
        s.peer == old && matches!(s.status, LinkStatus::Unreachable(_))
    });
    eb2.send(d.from, "welcome back".into());
    let r = ea.recv();
    assert_eq!((r.msg.as_str(), r.from), ("welcome back", new));
    no_delivery(&eb2);
    assert!(a.stats().dropped_unreachable >= 1);

    // and the old id stays unreachable while the address keeps working
    ea.send(old, "stale again".into());
    ea.send(unknown_at(&b2), "fresh again".into());
    assert_eq!(eb2.recv().msg, "fresh again");
    no_delivery(&eb2);
    drop((a, b2));
    rt.shutdown().unwrap();
}

#[test]
fn unknown_id_reaches_whoever_runs_at_the_address_over_tcp() {
    contact_by_address_then_restart(false);
}

#[test]
fn unknown_id_reaches_whoever_runs_at_the_address_in_process() {
    contact_by_address_then_restart(true);
}

#[test]
fn unknown_id_of_the_node_itself_is_a_local_delivery() {
    let rt = runtime();
    let a = TcpNetwork::start(&rt, config()).unwrap();
    let ea: Endpoint<String> = endpoint(&a, "x");
    ea.send(unknown_at(&a), "me".into());
    let d = ea.recv();
    assert_eq!((d.msg.as_str(), d.from), ("me", a.local()));
    assert_eq!(a.stats().dials, 0);
    drop(a);
    rt.shutdown().unwrap();
}

/// Messages by address and by id, sent at once before any connection exists (so both keys may
/// dial): everything arrives, each stream in order, over one connection.
#[test]
fn by_address_and_by_id_share_one_connection_without_loss() {
    let rt = runtime();
    let mut two_dials = 0;
    for round in 0..5 {
        let a = TcpNetwork::start(&rt, config()).unwrap();
        let b = TcpNetwork::start(&rt, config()).unwrap();
        let ea: Endpoint<u64> = endpoint(&a, "x");
        let eb: Endpoint<u64> = endpoint(&b, "x");
        let by_addr = NodeAddr::new(b.local().addr, NodeId::UNKNOWN);
        const N: u64 = 300;
        for i in 0..N {
            ea.send(if i % 2 == 0 { by_addr } else { b.local() }, i);
        }
        let (mut next_even, mut next_odd) = (0, 1);
        for _ in 0..N {
            let d = eb.recv();
            assert_eq!(d.from, a.local());
            let next = if d.msg % 2 == 0 { &mut next_even } else { &mut next_odd };
            assert_eq!(d.msg, *next, "round {round}: each stream in order");
            *next += 2;
        }
        eventually("one connection left", || a.stats().connections == 1);
        let (sa, sb) = (a.stats(), b.stats());
        assert_eq!((sa.connections_opened, sb.connections_opened), (1, 1), "{sa:?} {sb:?}");
        assert_eq!(sa.dropped_unreachable + sa.dropped_queue_full, 0, "{sa:?}");
        if sa.dials == 2 {
            two_dials += 1;
        }
        // the reply goes back on that connection
        eb.send(a.local(), 7);
        assert_eq!(ea.recv().msg, 7);
        assert_eq!(b.stats().dials, 0);
        drop((a, b));
    }
    eprintln!("both keys dialed in {two_dials} of 5 rounds");
    rt.shutdown().unwrap();
}
