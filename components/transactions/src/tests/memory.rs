//! Memory follows the load, not the number of transactions: after thousands of transactions
//! and one tombstone window of quiet, every node's maps are empty and its buffers are back to
//! their small resting size; a second burst leaves the same (the bench's 1,000,000-transaction
//! run is the figure, this is the bound).

use std::time::Duration;

use selfman_ports::{TxHandle, TxRequest, TxResult};

use super::world::{addr, World};
use crate::config::TxConfig;
use crate::machine::{BUFFER_KEEP, DROP_AFTER_LEASES};

const NODES: u32 = 4;
/// Transactions per node per burst: each node's tombstones then hold far more than
/// `BUFFER_KEEP` entries at the burst's end.
const PER_NODE: u64 = 1_500;

/// `PER_NODE` rounds of one transaction begun at every node at once (each writes its own key
/// of 64 and reads another's), each round run to its answers.
fn burst(w: &mut World, round0: u64) {
    for r in 0..PER_NODE {
        let n = round0 + r;
        for i in 0..NODES {
            let handle = TxHandle(n * u64::from(NODES) + u64::from(i));
            let own = format!("k{}", (n * 7 + u64::from(i) * 16) % 64).into_bytes();
            let other = format!("k{}", (n * 11 + u64::from(i) * 16 + 5) % 64).into_bytes();
            for req in [
                TxRequest::Begin { handle },
                TxRequest::Read { handle, key: other },
                TxRequest::Write { handle, key: own, value: Some(n.to_le_bytes().to_vec()) },
                TxRequest::Commit { handle },
            ] {
                w.request(addr(i), req);
            }
        }
        w.run();
        if r % 100 == 0 {
            w.tick_for(Duration::from_millis(20));
        }
    }
}

/// What every node still holds: (tombstone entries, state entries, buffer room).
fn held(w: &World) -> (usize, usize, usize) {
    let mut h = (0, 0, 0);
    for i in 0..NODES {
        let m = w.m(addr(i));
        let (gone, finished, _) = m.tombstones();
        let (txs, parts) = m.in_flight();
        let (waits, sessions) = m.waiting();
        h.0 += gone + finished;
        h.1 += txs + parts + waits + sessions + m.sets.len() + m.held_applied.len() + m.local.len();
        h.2 += m.buffer_room();
    }
    h
}

#[test]
fn thousands_of_transactions_leave_every_map_empty_and_every_buffer_small() {
    let config = TxConfig { lease: Duration::from_secs(1), ..TxConfig::default() };
    let window = config.lease * DROP_AFTER_LEASES + Duration::from_millis(200);
    let mut w = World::new(config, NODES);
    let rest = 4 * BUFFER_KEEP * NODES as usize;
    for b in 0..2u64 {
        burst(&mut w, b * PER_NODE);
        let (tombs, state, room) = held(&w);
        assert!(tombs > 2 * rest, "burst {b}: the tombstones fill ({tombs} entries)");
        assert!(room > rest, "burst {b}: the buffers grew ({room} entries of room)");
        w.tick_for(window);
        let (tombs, state_after, room) = held(&w);
        assert_eq!(tombs, 0, "burst {b}: every tombstone expired");
        assert_eq!(state_after, 0, "burst {b}: no state left ({state} right after the burst)");
        assert!(room <= rest, "burst {b}: {room} entries of buffer room kept (at most {rest})");
    }
    let commits: usize = (0..NODES)
        .map(|i| w.commits(addr(i)).values().filter(|(_, r)| *r == TxResult::Ok).count())
        .sum();
    assert!(commits as u64 > PER_NODE, "most transactions committed ({commits})");
    for k in 0..64 {
        for r in 0..config.f {
            let (_, _, votes) = w.record(format!("k{k}").as_bytes(), r);
            assert!(votes.is_empty(), "no vote left at replica {r} of k{k}: {votes:?}");
        }
    }
}
