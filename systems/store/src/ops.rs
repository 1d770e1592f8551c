//! The store node's operator endpoint (`selfman node --http`): the sources of
//! [`selfman_ops`] for a running node, its own metric families, the admin actions that swap
//! components live, and the thread that says the ops hello ([`crate::peers`]).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use selfman_core::Host;
use selfman_net::TcpNetwork;

use crate::cli::NodeSettings;
use crate::node::StoreNodeConfig;
use crate::peers::{HttpPeers, OpsHello};
use crate::server::{MovementStats, Shared};

/// What the operator endpoint reads from a running node.
pub(crate) struct OpsParts<'a> {
    pub(crate) net: &'a TcpNetwork,
    pub(crate) node: &'a crate::node::StoreNode,
    pub(crate) shared: &'a Arc<Shared>,
    /// The ops hello's network port.
    pub(crate) hello: selfman_core::ProvidedRef<selfman_core::Network<OpsHello>>,
    pub(crate) movement: Arc<MovementStats>,
    /// The Redis address as bound.
    pub(crate) redis: SocketAddr,
    /// The node's layer settings (for the reconfiguring admin actions).
    pub(crate) config: StoreNodeConfig,
}

/// A running operator endpoint and the thread that says hello to the ring neighbours.
pub(crate) struct Ops {
    server: selfman_ops::OpsServer,
    stop: Arc<AtomicBool>,
    hello: Option<std::thread::JoinHandle<()>>,
}

impl Ops {
    pub(crate) fn shutdown(mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(h) = self.hello.take() {
            let _ = h.join();
        }
        self.server.shutdown();
    }
}

/// The node's operator endpoint: metrics (the store's, replication's and the client side's
/// among them), JSON, the dashboard with the other nodes' endpoints as heard by the ops hello
/// ([`crate::peers`]), and, when an admin token is configured, the admin actions `swap-fd`,
/// `swap-ring` and `swap-repl` (replace the failure detector, the ring or replication live with
/// a new period).
pub(crate) fn start(
    http: SocketAddr,
    s: &NodeSettings,
    parts: OpsParts<'_>,
    peers: Arc<HttpPeers>,
) -> Result<Ops, String> {
    let OpsParts { net, node, shared, hello, movement, redis, config } = parts;
    let system = net.system().clone();
    let ring = node.ring.clone();
    let repl = node.repl.clone();
    let (metrics_shared, book) = (Arc::clone(shared), Arc::clone(&peers));
    // TcpNetwork's counters are read through its stats handle
    let net_stats = net.stats_handle();
    let mut sources = selfman_ops::Sources::new(format!("selfman {redis}"))
        .system(move || system.snapshot().ok())
        .ring(move || ring.on_definition(|d| selfman_ports::RingInspect::ring_view(d)).ok())
        .net(net_stats)
        .peers(move || peers.list(Instant::now()))
        .replicas(move || {
            repl.on_definition(|d| selfman_ports::ReplicaInspect::replica_view(d)).ok()
        })
        .metrics(move |m| store_metrics(m, &metrics_shared, &movement, &book));
    if let Some(token) = &s.admin_token {
        let (system, fd) = (net.system().clone(), node.fd.clone());
        sources = sources.admin_token(token.clone()).action(
            "swap-fd",
            "replace the failure detector live; argument: the heartbeat period in ms (10..=10000)",
            move |body| {
                let ms: u64 =
                    body.trim().parse().map_err(|_| format!("not a period in ms: {body:?}"))?;
                if !(10..=10_000).contains(&ms) {
                    return Err(format!("{ms} ms is outside 10..=10000"));
                }
                let config = selfman_failure_detector::FdConfig {
                    period: Duration::from_millis(ms),
                    ..selfman_failure_detector::FdConfig::default()
                };
                let started = Instant::now();
                selfman_failure_detector::reconfigure(&system, &fd, config)
                    .and_then(|swap| swap.wait(Duration::from_secs(5)))
                    .map_err(|e| e.to_string())?;
                Ok(format!(
                    "failure detector swapped (period {ms} ms) in {} us",
                    started.elapsed().as_micros()
                ))
            },
        );
    }
    if s.admin_token.is_some() {
        sources = reconfiguring_actions(sources, net, node, config);
    }
    let server = selfman_ops::OpsServer::start(http, sources).map_err(|e| e.to_string())?;
    let me = crate::peers::announced(server.addr(), net.local().addr).to_string();
    let stop = Arc::new(AtomicBool::new(false));
    let ring = node.ring.clone();
    let halt = Arc::clone(&stop);
    let hello = std::thread::Builder::new()
        .name("ops-hello".into())
        .spawn(move || {
            while !halt.load(Ordering::Acquire) {
                if let Ok(view) = ring.on_definition(|d| selfman_ports::RingInspect::ring_view(d)) {
                    for to in crate::peers::hello_targets(&view) {
                        let msg = OpsHello { http: me.clone() };
                        let _ = hello.request(selfman_core::NetRequest::Send { to, msg });
                    }
                }
                // in short steps, so that shutting down does not wait a whole period
                let until = Instant::now() + crate::peers::HELLO_PERIOD;
                while Instant::now() < until && !halt.load(Ordering::Acquire) {
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        })
        .map_err(|e| format!("cannot start the ops hello thread: {e}"))?;
    Ok(Ops { server, stop, hello: Some(hello) })
}

/// A period in milliseconds from an admin action's body, within `range`.
fn period_ms(body: &str, range: std::ops::RangeInclusive<u64>) -> Result<Duration, String> {
    let ms: u64 = body.trim().parse().map_err(|_| format!("not a period in ms: {body:?}"))?;
    if !range.contains(&ms) {
        return Err(format!("{ms} ms is outside {}..={}", range.start(), range.end()));
    }
    Ok(Duration::from_millis(ms))
}

/// The admin actions that swap the ring and the replication component live with a new
/// configuration (the node's own, with one period changed), carrying over their state.
fn reconfiguring_actions(
    sources: selfman_ops::Sources,
    net: &TcpNetwork,
    node: &crate::node::StoreNode,
    config: StoreNodeConfig,
) -> selfman_ops::Sources {
    let me = net.local();
    let (system, ring) = (net.system().clone(), node.ring.clone());
    let sources = sources.action(
        "swap-ring",
        "replace the relaxed ring live, keeping its state; argument: the stabilization period in ms (50..=60000)",
        move |body| {
            let stabilize = period_ms(body, 50..=60_000)?;
            let c = selfman_relaxed_ring::RingConfig {
                id: Some(config.position()),
                stabilize,
                ..selfman_relaxed_ring::RingConfig::default()
            };
            c.validate().map_err(|e| e.to_string())?;
            let started = Instant::now();
            selfman_relaxed_ring::reconfigure(&system, &ring, me, c)
                .and_then(|swap| swap.wait(Duration::from_secs(5)))
                .map_err(|e| e.to_string())?;
            Ok(format!(
                "ring swapped (stabilization every {} ms) in {} us",
                stabilize.as_millis(),
                started.elapsed().as_micros()
            ))
        },
    );
    let (system, repl) = (net.system().clone(), node.repl.clone());
    sources.action(
        "swap-repl",
        "replace the replication component live, keeping its replicas; argument: the repair period in ms (1000..=3600000)",
        move |body| {
            let repair_period = period_ms(body, 1_000..=3_600_000)?;
            let c = selfman_replication::ReplicationConfig { repair_period, ..config.replication() };
            c.validate().map_err(|e| e.to_string())?;
            let started = Instant::now();
            selfman_replication::reconfigure(&system, &repl, me, c)
                .and_then(|swap| swap.wait(Duration::from_secs(5)))
                .map_err(|e| e.to_string())?;
            Ok(format!(
                "replication swapped (repair every {} ms) in {} us",
                repair_period.as_millis(),
                started.elapsed().as_micros()
            ))
        },
    )
}

/// The store node's own metric families: transactions (outcomes and commit latency), data
/// movement (hand-overs, rebuilds, repair rounds and their bytes), the client side
/// (connections, commands by name) and the ops hello's refusals.
fn store_metrics(
    m: &mut selfman_ops::metrics::Metrics,
    shared: &Shared,
    movement: &MovementStats,
    book: &HttpPeers,
) {
    use selfman_ops::metrics::Kind;
    let c = |a: &AtomicU64| a.load(Ordering::Relaxed) as f64;
    let stats = &shared.stats;
    let counters: [(&str, &str, &AtomicU64); 8] = [
        ("selfman_store_commits_total", "Client jobs whose transaction committed.", &stats.committed),
        ("selfman_store_aborts_total", "Transaction attempts that aborted (retried or failed).", &stats.aborted),
        ("selfman_store_timeouts_total", "Client jobs failed because the transaction layer did not answer in time (commit outcome unknown, or no read majority).", &stats.timed_out),
        ("selfman_store_watch_failed_total", "EXECs answered null because a watched key changed.", &stats.watch_failed),
        ("selfman_store_failed_total", "Client jobs answered with an error (timeouts included).", &stats.failed),
        ("selfman_store_fast_reads_total", "Reads answered from a majority of replicas without a transaction.", &stats.fast_reads),
        ("selfman_store_connections_total", "Client connections accepted.", &shared.connections_total),
        ("selfman_store_protocol_errors_total", "Client connections closed for a protocol error.", &shared.protocol_errors),
    ];
    for (name, help, v) in counters {
        m.single(name, Kind::Counter, help, c(v));
    }
    m.histogram(
        "selfman_store_commit_latency_seconds",
        "Seconds from a client job's arrival to its commit (retries included).",
        &stats.commit_latency.snapshot(),
    );
    m.single("selfman_store_clients", Kind::Gauge, "Client connections open.", c(&shared.clients));
    m.family(
        "selfman_store_commands_total",
        Kind::Counter,
        "Client commands received, by name (unknown: not in the command table).",
    );
    for (name, n) in shared.commands.nonzero() {
        m.sample("selfman_store_commands_total", &[("command", name)], n as f64);
    }
    let mv = movement;
    let moved: [(&str, &str, &AtomicU64); 14] = [
        ("selfman_repl_handovers_total", "Ranges handed over to a new holder.", &mv.handed_over),
        (
            "selfman_repl_handover_items_total",
            "Items sent in finished hand-overs.",
            &mv.handed_over_items,
        ),
        (
            "selfman_repl_received_total",
            "Ranges received whole from their old holder.",
            &mv.received,
        ),
        (
            "selfman_repl_handover_bytes_total",
            "Key and value bytes of the items sent in finished hand-overs.",
            &mv.handed_over_bytes,
        ),
        ("selfman_repl_received_items_total", "Items received in them.", &mv.received_items),
        (
            "selfman_repl_received_bytes_total",
            "Key and value bytes of the items received in them.",
            &mv.received_bytes,
        ),
        (
            "selfman_repl_transfers_aborted_total",
            "Range transfers given up.",
            &mv.transfers_aborted,
        ),
        ("selfman_repl_rebuilds_total", "Ranges rebuilt from the other replicas.", &mv.rebuilt),
        ("selfman_repl_rebuilt_items_total", "Items copied in by rebuilds.", &mv.rebuilt_items),
        (
            "selfman_repl_rebuilt_bytes_total",
            "Key and value bytes of the items copied in by rebuilds.",
            &mv.rebuilt_bytes,
        ),
        ("selfman_repl_repair_rounds_total", "Anti-entropy rounds finished.", &mv.repair_rounds),
        (
            "selfman_repl_repair_bytes_total",
            "Bytes both sides sent for the finished anti-entropy rounds.",
            &mv.repair_bytes,
        ),
        (
            "selfman_repl_repair_fetched_total",
            "Items repair took from another replica.",
            &mv.repair_fetched,
        ),
        (
            "selfman_repl_repair_pushed_total",
            "Items repair gave another replica.",
            &mv.repair_pushed,
        ),
    ];
    for (name, help, v) in moved {
        m.single(name, Kind::Counter, help, c(v));
    }
    let ring = shared.ring.lock().map(|r| r.clone()).unwrap_or_default();
    let changes: [(&str, &str, u64); 3] = [
        (
            "selfman_ring_successor_changes_total",
            "Times this node's successor changed after it joined.",
            ring.succ_changes,
        ),
        (
            "selfman_ring_predecessor_changes_total",
            "Times this node's predecessor changed after it joined.",
            ring.pred_changes,
        ),
        (
            "selfman_ring_range_changes_total",
            "Times the range this node owns changed (a part gained or lost).",
            ring.range_changes,
        ),
    ];
    for (name, help, v) in changes {
        m.single(name, Kind::Counter, help, v as f64);
    }
    m.single(
        "selfman_ops_hellos_refused_total",
        Kind::Counter,
        "Ops hellos refused (a bad address, or the book full).",
        book.refused() as f64,
    );
}
