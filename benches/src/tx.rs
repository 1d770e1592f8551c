//! `tx`: read+write transactions per second on N nodes in this process, each node the whole
//! stack of the store: the heartbeat failure detector, the relaxed ring at its placed
//! position, symmetric replication (`--replicas` f) and the transaction layer, sharing one
//! ring.
//!
//! ```text
//! selfman-bench tx --nodes 4 --replicas 4 [--clients C] [--transactions T] [--keys K]
//!                  [--tcp 1 | --processes N] [--threads N] [--timeout-s S]
//! ```
//!
//! Each transaction reads two random keys of `--keys` and writes one of them (a counter
//! increment on the first), then commits (Paxos commit with f − 1 rTMs). `--clients` such
//! transactions are in flight at once, spread over the nodes (each node's client runs its
//! share, one after another per slot); an aborted transaction counts in `aborts` and is not
//! retried. By default the nodes talk through the TCP transport's same-process path; with
//! `--tcp 1` over loopback sockets, still in one process. With `--processes N` (N = `--nodes`)
//! every node is a process of its own (this binary re-executed as `tx-node`) on 127.0.0.1,
//! talking TCP; the line then says `processes=N` and gives `frames_per_tx` (TCP frames sent
//! by all nodes during the measured transactions, per transaction) instead of the heap and
//! state figures, which are per process. Latency is from `Begin` to the commit's answer.
//! `heap_growth_bytes` is the net heap allocated during the measured transactions and not
//! freed a second after the last (state that grows with the number of transactions shows
//! here; the store itself holds at most `--keys` items). `msgs_per_tx` is the number of
//! messages between the nodes (every layer: failure detector, ring, replication,
//! transactions; counted by the transports) during the measured transactions, per
//! transaction begun. With `SELFMAN_TX_MSGS=1` the transaction layers' own messages are
//! printed per transaction by kind (`r:` routed, `d:` direct, `l:` to itself, warm-up
//! included). With `SELFMAN_TX_SIZES=1` the sizes (bytes, moved by value on every hop) of
//! the messages and envelopes a transaction's messages travel in are printed first.
//!
//! `allocs_per_tx` and `alloc_bytes_per_tx` are the heap allocations (and the bytes they
//! asked for) in the whole process from the first measured `Begin` to the last answer, per
//! transaction begun: every layer and the framework, plus this client's own (three key
//! strings per transaction). `heap_before_bytes`/`heap_after_bytes` are what the C
//! allocator holds for the whole process (glibc's `mallinfo2`) when the measurement starts
//! and a second after the last answer; `heap_mb_every_10s` is the counted net heap growth
//! (as `heap_growth_bytes`, in MB) every 10 s of the run. The run must end within `--timeout-s` seconds
//! (default 600; a 1,000,000-transaction run on a loaded machine needs more).

use std::sync::mpsc;
use std::time::{Duration, Instant};

use selfman::core::{Component, Handled, Host, NodeAddr, Required};
use selfman::prelude::*;
use selfman::Runtime;
use selfman_failure_detector::FdConfig;
use selfman_launch::{node as launched, Process, Program};
use selfman_net::{NetConfig, TcpNetwork};
use selfman_ports::{
    FailureDetector, HostId, Replication, Ring, RingRequest, Transactions, TxHandle, TxIndication,
    TxRequest, TxResult,
};
use selfman_relaxed_ring::RingConfig;
use selfman_replication::{Placement, ReplicationConfig};
use selfman_tests::scenarios::transactions::Payload;
use selfman_transactions::{TxConfig, TxLayer, TxMessage};

use crate::args::Args;

/// How often the heap's growth is sampled during the run (`heap_mb_every_10s`).
const SAMPLE_EVERY: Duration = Duration::from_secs(10);

/// How long the measured transactions may take, unless `--timeout-s` says otherwise.
const RUN_TIMEOUT_S: u64 = 600;
const WARM_TIMEOUT: Duration = Duration::from_secs(60);

/// One transaction slot of a client.
#[derive(Clone, Copy)]
struct Slot {
    keys: (u64, u64),
    stage: u8,
    began: Option<Instant>,
}

/// Runs `total` transactions, `slots` at a time; reports (latencies ns, aborts). Before
/// that, one warm-up transaction is retried until it commits (the ring and replication
/// have settled then).
struct Client {
    tx: Required<Transactions>,
    slots: Vec<Slot>,
    keys: u64,
    total: u64,
    started: u64,
    latencies_ns: Vec<u64>,
    aborts: u64,
    other: u64,
    rng: u64,
    warm: bool,
    first: Option<Instant>,
    warmed: mpsc::Sender<()>,
    done: mpsc::Sender<Report>,
}

/// What one client measured: latencies (ns), aborts, other failures, its first measured
/// `Begin` and its last answer.
type Report = (Vec<u64>, u64, u64, Instant, Instant);

fn key(k: u64) -> Vec<u8> {
    format!("key-{k}").into_bytes()
}

impl Client {
    fn next_rand(&mut self) -> u64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng
    }

    fn begin(&mut self, slot: usize) {
        if self.started >= self.total {
            return;
        }
        self.started += 1;
        let a = self.next_rand() % self.keys;
        let b = (a + 1 + self.next_rand() % (self.keys - 1)) % self.keys;
        self.slots[slot] = Slot { keys: (a, b), stage: 0, began: Some(Instant::now()) };
        self.tx.trigger(TxRequest::Begin { handle: TxHandle(slot as u64) });
    }

    fn step(&mut self, slot: usize) {
        let h = TxHandle(slot as u64);
        let s = &mut self.slots[slot];
        s.stage += 1;
        let req = match s.stage {
            1 => TxRequest::Read { handle: h, key: key(s.keys.0) },
            2 => TxRequest::Read { handle: h, key: key(s.keys.1) },
            3 => TxRequest::AddToNumber { handle: h, key: key(s.keys.0), delta: 1 },
            _ => TxRequest::Commit { handle: h },
        };
        self.tx.trigger(req);
    }

    fn finished(&mut self, slot: usize, result: TxResult) {
        if self.warm {
            if result == TxResult::Ok {
                self.warm = false;
                let _ = self.warmed.send(());
                self.started = 0;
                self.first = Some(Instant::now());
                for s in 0..self.slots.len() {
                    self.begin(s);
                }
            } else {
                self.started = 0;
                self.begin(slot);
            }
            return;
        }
        match result {
            TxResult::Ok => {
                let t = self.slots[slot].began.map_or(0, |b| b.elapsed().as_nanos() as u64);
                self.latencies_ns.push(t);
            }
            TxResult::Abort(_) => self.aborts += 1,
            _ => self.other += 1,
        }
        let ended = self.latencies_ns.len() as u64 + self.aborts + self.other;
        if ended == self.total {
            let lat = std::mem::take(&mut self.latencies_ns);
            let first = self.first.unwrap_or_else(Instant::now);
            let _ = self.done.send((lat, self.aborts, self.other, first, Instant::now()));
            return;
        }
        self.begin(slot);
    }

    fn on_tx(&mut self, ind: TxIndication) -> Handled {
        match ind {
            TxIndication::Begun { handle, result }
            | TxIndication::ReadDone { handle, result, .. }
            | TxIndication::OpDone { handle, result, .. } => {
                let slot = handle.0 as usize;
                match result {
                    TxResult::Ok | TxResult::NotFound => self.step(slot),
                    r => {
                        self.tx.trigger(TxRequest::Abort { handle });
                        self.finished(slot, r);
                    }
                }
            }
            TxIndication::Committed { handle, result, .. } => {
                // The answer to an `Abort` after a failed step is ignored (already counted).
                let slot = handle.0 as usize;
                if self.slots[slot].stage >= 4 {
                    self.slots[slot].stage = 0;
                    self.finished(slot, result);
                }
            }
            _ => {}
        }
        Ok(())
    }
}

impl ComponentDefinition for Client {
    fn setup(&mut self, s: &mut Setup<Self>) {
        s.require(|c| &mut c.tx, Self::on_tx);
    }

    fn on_start(&mut self) -> Handled {
        self.begin(0);
        Ok(())
    }
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i] as f64 / 1e3
}

/// The in-memory sizes of what a transaction's messages travel in (`SELFMAN_TX_SIZES=1`).
fn print_sizes() {
    use selfman::core::NetIndication;
    use selfman_ports::{ReplicationIndication, ReplicationRequest, RingIndication};
    use selfman_relaxed_ring::RingMessage;
    use selfman_replication::ReplMessage;
    use std::mem::size_of;
    let sizes = [
        ("TxMessage", size_of::<TxMessage>()),
        ("TxOutput", size_of::<selfman_transactions::TxOutput>()),
        ("NetIndication<TxMessage>", size_of::<NetIndication<TxMessage>>()),
        ("Payload", size_of::<Payload>()),
        ("ReplMessage", size_of::<ReplMessage>()),
        ("RingRequest<Payload>", size_of::<RingRequest<Payload>>()),
        ("RingIndication<Payload>", size_of::<RingIndication<Payload>>()),
        ("RingMessage<Payload>", size_of::<RingMessage<Payload>>()),
        ("NetIndication<RingMessage<Payload>>", size_of::<NetIndication<RingMessage<Payload>>>()),
        ("ReplicationRequest", size_of::<ReplicationRequest>()),
        ("ReplicationIndication", size_of::<ReplicationIndication>()),
    ];
    let line: Vec<String> = sizes.iter().map(|(n, b)| format!("{n}={b}")).collect();
    eprintln!("tx-sizes bytes: {}", line.join(" "));
}

/// One node of the bench: its index (placement), f, and its client's share.
struct NodeSpec {
    index: usize,
    f: u32,
    slots: usize,
    share: u64,
    keys: u64,
}

/// Builds and starts one node's stack (detector, ring, replication, transactions) on `net`
/// and its client; the ring bootstraps (`access` `None`) or joins through `access`.
fn start_node(
    rt: &Runtime,
    net: &TcpNetwork,
    node: &NodeSpec,
    access: Option<NodeAddr>,
    warmed: &mpsc::Sender<()>,
    done: &mpsc::Sender<Report>,
) -> Result<Component<TxLayer<Payload>>, String> {
    let err = |e: selfman::core::Error| e.to_string();
    let (i, f) = (node.index, node.f);
    let host = HostId(i as u32);
    let attempt = if (i as u32) < f { 0 } else { 1 + i as u32 };
    let id = Placement::new(f).join_position(host, attempt, i as u64 * 7919);
    let fd = selfman_failure_detector::build(net, FdConfig::default()).map_err(err)?;
    let fd_port = fd.provided::<FailureDetector>().map_err(err)?;
    let ring_config = RingConfig { id: Some(id), ..RingConfig::default() };
    let ring =
        selfman_relaxed_ring::build::<Payload, _>(net, ring_config, &fd_port).map_err(err)?;
    let ring_port = ring.provided::<Ring<Payload>>().map_err(err)?;
    let repl_config = ReplicationConfig { f, host, ..ReplicationConfig::default() };
    let repl = selfman_replication::build(net, repl_config, &ring_port, &fd_port).map_err(err)?;
    let repl_port = repl.provided::<Replication>().map_err(err)?;
    let tx_config = TxConfig { f, ..TxConfig::default() };
    let tx = selfman_transactions::build(net, tx_config, &ring_port, &repl_port, &fd_port)
        .map_err(err)?;
    rt.start(&fd).map_err(err)?;
    rt.start(&ring).map_err(err)?;
    rt.start(&repl).map_err(err)?;
    rt.start(&tx).map_err(err)?;
    let req = match access {
        None => RingRequest::Bootstrap,
        Some(access) => RingRequest::Join { access },
    };
    ring_port.request(req).map_err(err)?;
    let (slots, share, keys) = (node.slots, node.share, node.keys);
    let (warmed, done) = (warmed.clone(), done.clone());
    let client = net
        .create(move || Client {
            tx: Required::new(),
            slots: vec![Slot { keys: (0, 1), stage: 0, began: None }; slots],
            keys,
            total: share,
            started: 0,
            latencies_ns: Vec::with_capacity(share as usize),
            aborts: 0,
            other: 0,
            rng: 0x9e37_79b9_7f4a_7c15 ^ (i as u64 + 1),
            warm: true,
            first: None,
            warmed: warmed.clone(),
            done: done.clone(),
        })
        .map_err(err)?;
    rt.connect(&tx.provided::<Transactions>().map_err(err)?, &client.required().map_err(err)?)
        .map_err(err)?;
    rt.start(&client).map_err(err)?;
    Ok(tx)
}

pub(crate) fn run(args: &Args) -> Result<String, String> {
    if std::env::var_os("SELFMAN_TX_SIZES").is_some() {
        print_sizes();
    }
    let nodes = args.get("nodes", 4)? as usize;
    let f = args.get("replicas", 4)? as u32;
    let clients = args.get("clients", 64)? as usize;
    let total = args.get("transactions", 20_000)?;
    let keys = args.get("keys", 10_000)?;
    let tcp = args.get("tcp", 0)? != 0;
    let processes = args.get("processes", 0)?;
    let run_timeout = args.get("timeout-s", RUN_TIMEOUT_S)?;
    if !(1..=64).contains(&nodes) || !(1..=16).contains(&f) || clients < nodes || keys < 2 {
        return Err("--nodes 1..=64, --replicas 1..=16, --clients ≥ nodes, --keys ≥ 2".into());
    }
    if !(1..=86_400).contains(&run_timeout) {
        return Err("--timeout-s 1..=86400".into());
    }
    if total == 0 {
        return Err("--transactions must be at least 1".into());
    }
    match processes {
        0 => {}
        p if p == nodes as u64 => {
            let spec = Processes { nodes, f, clients, total, keys, run_timeout };
            return run_processes(args, &spec);
        }
        _ => return Err("--processes is 0 (one process) or the number of --nodes".into()),
    }
    let run_timeout = Duration::from_secs(run_timeout);
    let err = |e: selfman::core::Error| e.to_string();
    let rt = Runtime::builder().workers(args.threads()?).build();
    let mut nets = Vec::new();
    for _ in 0..nodes {
        let cfg = NetConfig::default().local_delivery(!tcp);
        nets.push(TcpNetwork::start(&rt, cfg).map_err(|e| e.to_string())?);
    }
    let access = nets[0].local();
    let (warm_tx, warm_rx) = mpsc::channel();
    let mut layers = Vec::new();
    let (done_tx, done_rx) = mpsc::channel();
    for (i, net) in nets.iter().enumerate() {
        let share = total / nodes as u64 + u64::from((i as u64) < total % nodes as u64);
        let slots = clients / nodes + usize::from(i < clients % nodes);
        let node = NodeSpec { index: i, f, slots, share, keys };
        let access = if i == 0 { None } else { Some(access) };
        layers.push(start_node(&rt, net, &node, access, &warm_tx, &done_tx)?);
    }
    for _ in 0..nodes {
        warm_rx.recv_timeout(WARM_TIMEOUT).map_err(|_| "the stack did not settle in time")?;
    }
    // Heap growth over the measured transactions: counted from here to a second after the
    // last answer (when every participant has applied and every role forgotten).
    // The reports are kept as they come (moving them allocates nothing) and merged after.
    let mut reports: Vec<Report> = Vec::with_capacity(nodes);
    let heap_before = crate::alloc::heap_in_use();
    let growth_base = crate::alloc::start();
    let (allocs_before, bytes_before) = crate::alloc::totals();
    // Messages between nodes (every layer), from here to the end of the run.
    let net_msgs = |nets: &[TcpNetwork]| -> u64 {
        nets.iter().map(|n| n.stats()).map(|s| s.local_deliveries + s.frames_out).sum()
    };
    let msgs_before = net_msgs(&nets);
    // The counted live bytes every `SAMPLE_EVERY` while the transactions run (flat or not).
    let mut samples: Vec<isize> = Vec::with_capacity(1024);
    let deadline = Instant::now() + run_timeout;
    let mut next_sample = Instant::now() + SAMPLE_EVERY;
    while reports.len() < nodes {
        let now = Instant::now();
        if now >= deadline {
            return Err(format!(
                "the run did not finish within {} s (--timeout-s)",
                run_timeout.as_secs()
            ));
        }
        match done_rx.recv_timeout(next_sample.min(deadline).saturating_duration_since(now)) {
            Ok(report) => reports.push(report),
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => return Err("a client vanished".into()),
        }
        if Instant::now() >= next_sample {
            if samples.len() < samples.capacity() {
                samples.push(crate::alloc::live() - growth_base);
            }
            next_sample += SAMPLE_EVERY;
        }
    }
    let (allocs_after, bytes_after) = crate::alloc::totals();
    let msgs_run = net_msgs(&nets) - msgs_before;
    std::thread::sleep(Duration::from_secs(1));
    let growth = crate::alloc::stop() - growth_base;
    let heap_after = crate::alloc::heap_in_use();
    let mut lat = Vec::new();
    let (mut aborts, mut other) = (0, 0);
    let (mut first, mut last): (Option<Instant>, Option<Instant>) = (None, None);
    for (l, a, o, f0, f1) in reports {
        lat.extend(l);
        aborts += a;
        other += o;
        first = Some(first.map_or(f0, |x: Instant| x.min(f0)));
        last = Some(last.map_or(f1, |x: Instant| x.max(f1)));
    }
    let elapsed = match (first, last) {
        (Some(a), Some(b)) => b.duration_since(a),
        _ => Duration::ZERO,
    };
    // What the transaction layers still hold (every role, every node).
    let (mut txs_left, mut parts_left, mut waits_left) = (0, 0, 0);
    // Messages by kind, every node, warm-up included: `r:` routed, `d:` direct, `l:` to
    // itself (printed per transaction with `SELFMAN_TX_MSGS`).
    let mut msgs: std::collections::BTreeMap<String, u64> = std::collections::BTreeMap::new();
    for l in &layers {
        let (t, p) = l.on_definition(|d| d.machine().in_flight()).map_err(err)?;
        let (w, c) = l.on_definition(|d| d.machine().waiting()).map_err(err)?;
        waits_left += w + c;
        let sent = l.on_definition(|d| (d.sent(), d.machine().local_sent())).map_err(err)?;
        for (k, n) in sent.0.pairs() {
            *msgs.entry(k).or_insert(0) += n;
        }
        for (i, n) in sent.1.iter().enumerate().filter(|(_, n)| **n > 0) {
            *msgs.entry(format!("l:{}", TxMessage::KINDS[i])).or_insert(0) += n;
        }
        if std::env::var_os("SELFMAN_TX_KINDS").is_some() {
            eprintln!("{:?}", l.on_definition(|d| d.machine().state_kinds()).map_err(err)?);
        }
        txs_left += t;
        parts_left += p;
    }
    if std::env::var_os("SELFMAN_TX_MSGS").is_some() {
        let started = total as f64;
        let per: Vec<String> =
            msgs.iter().map(|(k, n)| format!("{k}={:.2}", *n as f64 / started)).collect();
        eprintln!("tx-msgs per transaction begun: {}", per.join(" "));
    }
    lat.sort_unstable();
    for net in &nets {
        net.shutdown();
    }
    rt.shutdown().map_err(|e| e.to_string())?;
    let per_s = lat.len() as f64 / elapsed.as_secs_f64();
    let heap = |h: Option<u64>| h.map_or_else(|| "unknown".to_owned(), |b| b.to_string());
    let samples: Vec<String> = samples.iter().map(|b| format!("{:.1}", *b as f64 / 1e6)).collect();
    Ok(format!(
        "tx nodes={nodes} replicas={f} transport={} clients={clients} reads=2 writes=1 \
         transactions={total} keys={keys} elapsed_ms={} tx_per_s={per_s:.0} p50_us={:.0} \
         p99_us={:.0} aborts={aborts} failed={other} msgs_per_tx={:.1} heap_growth_bytes={growth} \
         tx_state_left={txs_left} participants_left={parts_left} waits_left={waits_left} \
         allocs_per_tx={:.1} alloc_bytes_per_tx={:.0} heap_before_bytes={} heap_after_bytes={} \
         heap_mb_every_10s={}",
        if tcp { "tcp" } else { "inproc" },
        elapsed.as_millis(),
        percentile(&lat, 0.50),
        percentile(&lat, 0.99),
        msgs_run as f64 / total as f64,
        (allocs_after - allocs_before) as f64 / total as f64,
        (bytes_after - bytes_before) as f64 / total as f64,
        heap(heap_before),
        heap(heap_after),
        if samples.is_empty() { "-".to_owned() } else { samples.join(",") },
    ))
}

/// Words of a `tx --processes N` run.
struct Processes {
    nodes: usize,
    f: u32,
    clients: usize,
    total: u64,
    keys: u64,
    run_timeout: u64,
}

/// How long a node process may take to start and print its address.
const SPAWN_TIMEOUT: Duration = Duration::from_secs(30);
/// Latencies per `lat` line of a node process (a line stays far below the launcher's cut).
const LAT_PER_LINE: usize = 4096;

/// Nanoseconds since the Unix epoch of `t` (comparable between the processes of one machine).
fn unix_ns(t: Instant, base: (Instant, std::time::SystemTime)) -> u128 {
    let since = base.1.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    (since + t.saturating_duration_since(base.0)).as_nanos()
}

/// `tx --processes N`: N node processes of this binary (`tx-node`) on 127.0.0.1, talking TCP.
/// Node 0 bootstraps and prints its address; the others join through it. Each runs its
/// client's share, prints its latencies and counts, and serves until its stdin closes (every
/// node keeps serving the others' replicas until all are done). Every child is owned by a
/// [`Process`]: stopped by its PID on every path (stdin closed, 5 s grace, then SIGKILL).
fn run_processes(args: &Args, spec: &Processes) -> Result<String, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let threads = args.threads()?.to_string();
    let mut children: Vec<Process> = Vec::with_capacity(spec.nodes);
    let mut access: Option<String> = None;
    for i in 0..spec.nodes {
        let share =
            spec.total / spec.nodes as u64 + u64::from((i as u64) < spec.total % spec.nodes as u64);
        let slots = spec.clients / spec.nodes + usize::from(i < spec.clients % spec.nodes);
        let mut program = Program::new(&exe)
            .name(format!("tx-node {i}"))
            .args(["tx-node", "--index", &i.to_string(), "--replicas", &spec.f.to_string()])
            .args(["--clients", &slots.to_string(), "--transactions", &share.to_string()])
            .args(["--keys", &spec.keys.to_string(), "--threads", &threads])
            .args(["--timeout-s", &spec.run_timeout.to_string()])
            .grace(Duration::from_secs(5));
        if let Some(a) = &access {
            program = program.args(["--access", a]);
        }
        let mut child = program.spawn().map_err(|e| format!("cannot start node {i}: {e}"))?;
        let addr = child.wait_ready(SPAWN_TIMEOUT).map_err(|e| e.to_string())?;
        if i == 0 {
            access = Some(addr);
        }
        children.push(child);
    }
    let deadline = Instant::now() + Duration::from_secs(spec.run_timeout) + WARM_TIMEOUT;
    let mut lat: Vec<u64> = Vec::with_capacity(spec.total as usize);
    let (mut aborts, mut other, mut frames) = (0u64, 0u64, 0u64);
    let (mut first, mut last) = (u128::MAX, 0u128);
    for child in &mut children {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(format!(
                    "the run did not finish within {} s (--timeout-s)",
                    spec.run_timeout
                ));
            }
            let line = child.next_line(left).map_err(|e| e.to_string())?;
            if let Some(vals) = line.strip_prefix("lat ") {
                for v in vals.split(',').filter(|v| !v.is_empty()) {
                    lat.push(v.parse().map_err(|_| format!("bad latency `{v}` from a node"))?);
                }
                continue;
            }
            let Some(report) = line.strip_prefix("report ") else { continue };
            let field = |name: &str| -> Result<u128, String> {
                report
                    .split(' ')
                    .find_map(|kv| kv.strip_prefix(name).and_then(|v| v.strip_prefix('=')))
                    .ok_or_else(|| format!("no {name} in a node's report `{report}`"))?
                    .parse()
                    .map_err(|_| format!("bad {name} in a node's report `{report}`"))
            };
            aborts += field("aborts")? as u64;
            other += field("failed")? as u64;
            frames += field("frames")? as u64;
            first = first.min(field("first_ns")?);
            last = last.max(field("last_ns")?);
            break;
        }
    }
    for child in &mut children {
        child.stop(Duration::from_secs(5)).map_err(|e| e.to_string())?;
    }
    lat.sort_unstable();
    let elapsed_ns = last.saturating_sub(first).max(1);
    let per_s = lat.len() as f64 / (elapsed_ns as f64 / 1e9);
    let pct = |p: f64| -> f64 {
        if lat.is_empty() {
            return f64::NAN;
        }
        lat[((lat.len() - 1) as f64 * p).round() as usize] as f64
    };
    Ok(format!(
        "tx nodes={} replicas={} transport=tcp processes={} clients={} reads=2 writes=1 \
         transactions={} keys={} elapsed_ms={} tx_per_s={per_s:.0} p50_us={:.0} p99_us={:.0} \
         aborts={aborts} failed={other} frames_per_tx={:.1}",
        spec.nodes,
        spec.f,
        spec.nodes,
        spec.clients,
        spec.total,
        spec.keys,
        elapsed_ns / 1_000_000,
        pct(0.50),
        pct(0.99),
        frames as f64 / spec.total as f64,
    ))
}

/// `tx-node` (started by `tx --processes N`, not by hand): one node of the bench on
/// 127.0.0.1, bootstrapping (`--index 0`) or joining through `--access`. Prints
/// `ready <address>`, runs its client's share, prints its latencies (`lat` lines, µs) and
/// `report aborts= failed= frames= first_ns= last_ns=`, then serves until stdin closes.
pub(crate) fn node(args: &Args) -> Result<String, String> {
    let index = args.get("index", 0)? as usize;
    let f = args.get("replicas", 4)? as u32;
    let slots = args.get("clients", 4)? as usize;
    let share = args.get("transactions", 5_000)?;
    let keys = args.get("keys", 10_000)?;
    let run_timeout = Duration::from_secs(args.get("timeout-s", RUN_TIMEOUT_S)?);
    let access = match args.text("access", "") {
        "" if index == 0 => None,
        "" => return Err("--access is needed by every node but the first".into()),
        a => Some(a.parse::<NodeAddr>().map_err(|e| format!("--access: {e}"))?),
    };
    if !(1..=16).contains(&f) || slots == 0 || share == 0 || keys < 2 {
        return Err("--replicas 1..=16, --clients ≥ 1, --transactions ≥ 1, --keys ≥ 2".into());
    }
    let rt = Runtime::builder().workers(args.threads()?).build();
    let net = TcpNetwork::start(&rt, NetConfig::default().local_delivery(false))
        .map_err(|e| e.to_string())?;
    let (warm_tx, warm_rx) = mpsc::channel();
    let (done_tx, done_rx) = mpsc::channel();
    let base = (Instant::now(), std::time::SystemTime::now());
    let spec = NodeSpec { index, f, slots, share, keys };
    let _layer = start_node(&rt, &net, &spec, access, &warm_tx, &done_tx)?;
    let mut launcher = launched::announce_ready(net.local()).map_err(|e| e.to_string())?;
    let said = |e: std::io::Error| e.to_string();
    warm_rx.recv_timeout(WARM_TIMEOUT).map_err(|_| "the stack did not settle in time")?;
    let frames_before = net.stats().frames_out;
    let (lat, aborts, other, first, last) =
        done_rx.recv_timeout(run_timeout).map_err(|_| "the run did not finish in time")?;
    let frames = net.stats().frames_out - frames_before;
    for chunk in lat.chunks(LAT_PER_LINE) {
        let us: Vec<String> = chunk.iter().map(|ns| (ns / 1_000).to_string()).collect();
        launcher.say(format!("lat {}", us.join(","))).map_err(said)?;
    }
    launcher
        .say(format!(
            "report aborts={aborts} failed={other} frames={frames} first_ns={} last_ns={}",
            unix_ns(first, base),
            unix_ns(last, base)
        ))
        .map_err(said)?;
    launcher.wait_until_closed();
    net.shutdown();
    rt.shutdown().map_err(|e| e.to_string())?;
    Ok(String::new())
}
