//! How store nodes learn each other's HTTP (operator endpoint) addresses, so that the
//! dashboard of any node can poll the others: the **ops hello**.
//!
//! Every node that serves `--http` sends, once per [`HELLO_PERIOD`], a small [`OpsHello`]
//! carrying its endpoint's address to each distinct node of its ring view (successor and
//! predecessor lists, fingers) over the node links (protocol [`PROTOCOL`], so secured links
//! carry it authenticated and encrypted like every other message). Every node keeps what it
//! hears in an [`HttpPeers`] book by the sender's ring address and lists, on `/api/peers`,
//! the addresses heard within [`FORGET_AFTER`]. A crashed node is therefore still listed (and
//! drawn as not answering) for up to that long, then forgotten.
//!
//! Why a message and not a rule: the ring and HTTP ports are chosen freely (`--listen`,
//! `--http`, port 0), so no rule could derive one from the other; the ring view already
//! carries every neighbour's network address, and the hello rides on the links the node has
//! anyway. A node's book holds its neighbours only; the dashboard gathers the rest by asking
//! the peers for their peers.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use selfman_core::{
    ComponentDefinition, Delivery, Handled, NetIndication, Network, NodeAddr, Required, Setup,
};
use selfman_ports::RingView;
use serde::{Deserialize, Serialize};

/// The hello's protocol name on the node links.
pub const PROTOCOL: &str = "ops-hello";
/// How often a node with an endpoint says hello to its ring neighbours.
pub const HELLO_PERIOD: Duration = Duration::from_secs(1);
/// How long a node is listed after its last hello.
pub const FORGET_AFTER: Duration = Duration::from_secs(30);
/// The most peers a book keeps (hellos from further senders are refused and counted).
pub const MAX_PEERS: usize = 1024;
/// The longest address text accepted in a hello.
pub const MAX_HTTP_LEN: usize = 64;

/// A node's endpoint address, told to its ring neighbours.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpsHello {
    /// `IP:PORT` of the sender's operator endpoint.
    pub http: String,
}

/// The HTTP addresses heard from other nodes, by their ring address.
#[derive(Debug, Default)]
pub struct HttpPeers {
    book: Mutex<HashMap<SocketAddr, (SocketAddr, Instant)>>,
    refused: AtomicU64,
}

impl HttpPeers {
    /// An empty book.
    pub fn new() -> HttpPeers {
        HttpPeers::default()
    }

    /// Records that the node at ring address `ring` serves its endpoint at `http`; refuses
    /// (and counts) an address that does not parse as `IP:PORT`, is longer than
    /// [`MAX_HTTP_LEN`] or unspecified (`0.0.0.0`), and a new sender beyond [`MAX_PEERS`].
    pub fn record(&self, ring: SocketAddr, http: &str, now: Instant) -> bool {
        let parsed = (http.len() <= MAX_HTTP_LEN)
            .then(|| http.parse::<SocketAddr>().ok())
            .flatten()
            .filter(|a| !a.ip().is_unspecified() && a.port() != 0);
        let mut book = self.book.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let ok = match parsed {
            Some(a) if book.len() < MAX_PEERS || book.contains_key(&ring) => {
                book.insert(ring, (a, now));
                true
            }
            _ => false,
        };
        if !ok {
            self.refused.fetch_add(1, Ordering::Relaxed);
        }
        ok
    }

    /// The addresses heard within [`FORGET_AFTER`] before `now`, sorted, without repeats;
    /// older entries are dropped.
    pub fn list(&self, now: Instant) -> Vec<String> {
        let mut book = self.book.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        book.retain(|_, (_, at)| now.saturating_duration_since(*at) <= FORGET_AFTER);
        let mut v: Vec<String> = book.values().map(|(a, _)| a.to_string()).collect();
        v.sort();
        v.dedup();
        v
    }

    /// Hellos refused so far.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }
}

/// The nodes a hello goes to: every distinct node of `view`'s successor and predecessor lists
/// and fingers, except the node itself.
pub fn hello_targets(view: &RingView) -> Vec<NodeAddr> {
    let mut out: Vec<NodeAddr> = Vec::new();
    for p in view.succ_list.iter().chain(&view.pred_list).chain(&view.fingers) {
        if p.addr != view.me.addr && !out.contains(&p.addr) {
            out.push(p.addr);
        }
    }
    out
}

/// The address a node tells others for its endpoint bound at `http`: `http` itself, or, if it
/// listens on every interface (`0.0.0.0`, `::`), the ring address's IP with `http`'s port.
pub fn announced(http: SocketAddr, ring: SocketAddr) -> SocketAddr {
    if http.ip().is_unspecified() {
        SocketAddr::new(ring.ip(), http.port())
    } else {
        http
    }
}

/// Records the hellos a node receives into its [`HttpPeers`].
pub struct PeerBook {
    net: Required<Network<OpsHello>>,
    peers: Arc<HttpPeers>,
}

impl PeerBook {
    /// A book component writing into `peers`.
    pub fn new(peers: Arc<HttpPeers>) -> PeerBook {
        PeerBook { net: Required::new(), peers }
    }

    fn on_net(&mut self, i: NetIndication<OpsHello>) -> Handled {
        if let NetIndication::Deliver(d) = i {
            let Delivery { from, msg, .. } = d;
            self.peers.record(from.addr, &msg.http, Instant::now());
        }
        Ok(())
    }
}

impl ComponentDefinition for PeerBook {
    fn setup(&mut self, s: &mut Setup<Self>) {
        s.require(|c| &mut c.net, Self::on_net);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn the_book_refuses_bad_addresses_and_forgets_silent_nodes() {
        let book = HttpPeers::new();
        let t0 = Instant::now();
        assert!(book.record(a("10.0.0.1:7100"), "10.0.0.1:9100", t0));
        assert!(book.record(a("10.0.0.2:7100"), "10.0.0.2:9100", t0 + Duration::from_secs(20)));
        for bad in ["garbage", "0.0.0.0:9100", "10.0.0.3:0", &"1".repeat(65)] {
            assert!(!book.record(a("10.0.0.3:7100"), bad, t0), "{bad}");
        }
        assert_eq!(book.refused(), 4);
        // a node that says hello again replaces its entry
        assert!(book.record(a("10.0.0.1:7100"), "10.0.0.1:9200", t0));
        assert_eq!(book.list(t0), ["10.0.0.1:9200", "10.0.0.2:9100"]);
        assert_eq!(book.list(t0 + Duration::from_secs(31)), ["10.0.0.2:9100"], "node 1 forgotten");
    }

    #[test]
    fn a_full_book_refuses_new_senders_but_keeps_hearing_known_ones() {
        let book = HttpPeers::new();
        let t = Instant::now();
        for i in 0..MAX_PEERS {
            let ring = SocketAddr::from(([10, 0, (i >> 8) as u8, i as u8], 7100));
            assert!(book.record(ring, &format!("10.1.{}.{}:9100", i >> 8, i & 255), t));
        }
        assert!(!book.record(a("10.9.9.9:7100"), "10.9.9.9:9100", t), "a new sender");
        assert!(book.record(a("10.0.0.0:7100"), "10.2.0.0:9100", t), "a known sender");
        assert_eq!(book.refused(), 1);
        assert_eq!(book.list(t).len(), MAX_PEERS);
    }

    #[test]
    fn an_unspecified_endpoint_is_announced_at_the_ring_ip() {
        assert_eq!(announced(a("0.0.0.0:9100"), a("10.1.2.3:7100")), a("10.1.2.3:9100"));
        assert_eq!(announced(a("127.0.0.1:9100"), a("10.1.2.3:7100")), a("127.0.0.1:9100"));
    }
}
