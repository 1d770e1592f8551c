//! `net-pingpong`: K pinger/ponger pairs in two OS processes over loopback TCP (`selfman-net`).
//!
//! The process started by the user runs the pingers; it spawns a second process of the same
//! binary (`net-ponger`) that runs the pongers and prints its node address. Every pair first
//! plays a warm-up exchange (connection set-up is not measured), then N round trips with at most
//! W pings in flight. The child is a `selfman_launch::Process`: reaped by PID on every path; it
//! exits by itself when its stdin (a pipe from the parent) closes.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use selfman::core::{NetIndication, Network, NodeAddr, Selector};
use selfman::prelude::*;
use selfman::Runtime;
use selfman_launch::{node, Process, Program};
use selfman_net::{ClusterSecret, NetConfig, TcpNetwork};
use serde::{Deserialize, Serialize};

use crate::args::Args;

const PROTOCOL: &str = "net-pingpong";
const WARMUP_ROUND_TRIPS: u64 = 1000;
const SETUP_TIMEOUT: Duration = Duration::from_secs(30);
const RUN_TIMEOUT: Duration = Duration::from_secs(600);

#[derive(Clone, Debug, Serialize, Deserialize)]
enum Pp {
    Ping { pair: u32, seq: u64 },
    Pong { pair: u32, seq: u64 },
}

/// Answers the pings of one pair.
struct Ponger {
    net: Required<Network<Pp>>,
}

impl Ponger {
    fn on_net(&mut self, ev: NetIndication<Pp>) -> Handled {
        if let NetIndication::Deliver(d) = ev {
            if let Pp::Ping { pair, seq } = d.msg {
                self.net.send(d.from, Pp::Pong { pair, seq });
            }
        }
        Ok(())
    }
}

impl ComponentDefinition for Ponger {
    fn setup(&mut self, s: &mut Setup<Self>) {
        s.require(|c| &mut c.net, Self::on_net);
    }
}

/// Commands from the benchmark's main thread to a pinger.
#[derive(Clone, Debug)]
struct Go {
    round_trips: u64,
    record: bool,
}

struct Control;
impl Port for Control {
    type Request = Go;
    type Indication = ();
}

struct Pinger {
    net: Required<Network<Pp>>,
    control: Provided<Control>,
    pair: u32,
    peer: NodeAddr,
    window: u64,
    total: u64,
    sent: u64,
    received: u64,
    record: bool,
    last_send: Instant,
    rtts: Vec<u64>,
    done: mpsc::Sender<(u32, Vec<u64>)>,
}

impl Pinger {
    fn ping(&mut self) {
        self.sent += 1;
        if self.record {
            self.last_send = Instant::now();
        }
        self.net.send(self.peer, Pp::Ping { pair: self.pair, seq: self.sent });
    }

    fn on_go(&mut self, go: Go) -> Handled {
        (self.total, self.sent, self.received) = (go.round_trips, 0, 0);
        self.record = go.record;
        self.rtts = Vec::with_capacity(if go.record { go.round_trips as usize } else { 0 });
        for _ in 0..self.window.min(self.total) {
            self.ping();
        }
        Ok(())
    }

    fn on_net(&mut self, ev: NetIndication<Pp>) -> Handled {
        let NetIndication::Deliver(d) = ev else { return Ok(()) };
        let Pp::Pong { seq, .. } = d.msg else { return Ok(()) };
        if self.window == 1 && seq != self.sent {
            return Err(HandlerError::unrecoverable(format!("pong {seq} for ping {}", self.sent)));
        }
        self.received += 1;
        if self.record {
            self.rtts.push(self.last_send.elapsed().as_nanos() as u64);
        }
        if self.sent < self.total {
            self.ping();
        } else if self.received == self.total {
            let _ = self.done.send((self.pair, std::mem::take(&mut self.rtts)));
        }
        Ok(())
    }
}

impl ComponentDefinition for Pinger {
    fn setup(&mut self, s: &mut Setup<Self>) {
        s.require(|c| &mut c.net, Self::on_net);
        s.provide(|c| &mut c.control, Self::on_go);
    }
}

fn pair_of(ev: &NetIndication<Pp>) -> Option<u32> {
    match ev {
        NetIndication::Deliver(d) => match d.msg {
            Pp::Ping { pair, .. } | Pp::Pong { pair, .. } => Some(pair),
        },
        NetIndication::Status(_) => None,
    }
}

/// The transport's configuration: with `--secret HEX` (the child gets it from the parent, which
/// makes one for `--secure 1`), links are authenticated and encrypted.
fn net_config(args: &Args) -> Result<NetConfig, String> {
    let secret = match args.text("secret", "") {
        "" => None,
        hex => Some(hex.parse::<ClusterSecret>().map_err(|e| format!("--secret: {e}"))?),
    };
    Ok(NetConfig::default().secret(secret))
}

fn runtime(args: &Args) -> Result<Runtime, String> {
    Ok(Runtime::builder().workers(args.threads()?).build())
}

/// The child process: K pongers; prints `ready <node>` and serves until stdin closes.
pub(crate) fn ponger(args: &Args) -> Result<String, String> {
    let pairs = args.get("pairs", 1)? as u32;
    let rt = runtime(args)?;
    let net = TcpNetwork::start(&rt, net_config(args)?).map_err(|e| e.to_string())?;
    let port = net.network::<Pp>(PROTOCOL).map_err(|e| e.to_string())?;
    for pair in 0..pairs {
        let p = net.create(|| Ponger { net: Required::new() }).map_err(|e| e.to_string())?;
        let sel = Selector::indications(move |ev| pair_of(ev) == Some(pair));
        rt.connect_with(&port, &p.required().map_err(|e| e.to_string())?, sel)
            .map_err(|e| e.to_string())?;
        rt.start(&p).map_err(|e| e.to_string())?;
    }
    // Serve until the parent closes our stdin (or goes away).
    node::announce_ready(net.local()).map_err(|e| e.to_string())?.wait_until_closed();
    net.shutdown();
    rt.shutdown().map_err(|e| e.to_string())?;
    Ok(String::new())
}

fn spawn_ponger(
    args: &Args,
    pairs: u64,
    secret: Option<&ClusterSecret>,
) -> Result<(Process, NodeAddr), String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    // A throw-away secret made for this run; passing it on the command line is fine here.
    let secret = secret.map(ClusterSecret::to_hex).unwrap_or_default();
    let mut child = Program::new(exe)
        .name("net-ponger")
        .args(["net-ponger", "--pairs", &pairs.to_string()])
        .args(["--threads", &args.threads()?.to_string()])
        .args(["--secret", &secret])
        .grace(Duration::from_secs(5))
        .spawn()
        .map_err(|e| format!("cannot spawn the ponger process: {e}"))?;
    let addr = child
        .wait_ready(SETUP_TIMEOUT)
        .map_err(|e| e.to_string())?
        .parse::<NodeAddr>()
        .map_err(|e| e.to_string())?;
    Ok((child, addr))
}

pub(crate) fn run(args: &Args) -> Result<String, String> {
    let pairs = args.get("pairs", 1)?;
    let window = args.get("window", 1)?;
    let n = args.get("round-trips", 100_000)?;
    if pairs == 0 || window == 0 || n == 0 {
        return Err("--pairs, --window and --round-trips must be at least 1".into());
    }
    let secure = match args.get("secure", 0)? {
        0 => None,
        1 => Some(ClusterSecret::random()),
        _ => return Err("--secure is 0 (plain TCP) or 1 (authenticated, encrypted links)".into()),
    };
    let (_child, peer) = spawn_ponger(args, pairs, secure.as_ref())?;
    let rt = runtime(args)?;
    let net = TcpNetwork::start(&rt, NetConfig::default().secret(secure.clone()))
        .map_err(|e| e.to_string())?;
    let port = net.network::<Pp>(PROTOCOL).map_err(|e| e.to_string())?;
    let (done_tx, done_rx) = mpsc::channel();
    let mut controls = Vec::new();
    for pair in 0..pairs as u32 {
        let done = done_tx.clone();
        let p = net
            .create(move || Pinger {
                net: Required::new(),
                control: Provided::new(),
                pair,
                peer,
                window,
                total: 0,
                sent: 0,
                received: 0,
                record: false,
                last_send: Instant::now(),
                rtts: Vec::new(),
                done: done.clone(),
            })
            .map_err(|e| e.to_string())?;
        let sel = Selector::indications(move |ev| pair_of(ev) == Some(pair));
        rt.connect_with(&port, &p.required().map_err(|e| e.to_string())?, sel)
            .map_err(|e| e.to_string())?;
        rt.start(&p).map_err(|e| e.to_string())?;
        controls.push(p.provided::<Control>().map_err(|e| e.to_string())?);
    }
    let play = |round_trips: u64, record: bool, timeout: Duration| -> Result<Vec<u64>, String> {
        for c in &controls {
            c.request(Go { round_trips, record }).map_err(|e| e.to_string())?;
        }
        let mut rtts = Vec::new();
        for _ in 0..pairs {
            let (_, r) = done_rx.recv_timeout(timeout).map_err(|_| "the pairs did not finish")?;
            rtts.extend(r);
        }
        Ok(rtts)
    };
    play(WARMUP_ROUND_TRIPS.min(n), false, SETUP_TIMEOUT)?;
    let start = Instant::now();
    let mut rtts = play(n, window == 1, RUN_TIMEOUT)?;
    let elapsed = start.elapsed();
    net.shutdown();
    rt.shutdown().map_err(|e| e.to_string())?;
    let msgs = 2 * n * pairs;
    let rate = msgs as f64 / elapsed.as_secs_f64();
    let (p50, p99) = if window == 1 {
        rtts.sort_unstable();
        (percentile_us(&rtts, 50.0), percentile_us(&rtts, 99.0))
    } else {
        ("NA".into(), "NA".into())
    };
    let secure = if secure.is_some() { " secure=1" } else { "" };
    Ok(format!(
        "net-pingpong pairs={pairs} window={window} round_trips={n} elapsed_ms={} msgs_per_s={rate:.0} rtt_us_p50={p50} rtt_us_p99={p99}{secure}",
        elapsed.as_millis()
    ))
}

/// Nearest-rank percentile of sorted nanosecond samples, in microseconds.
fn percentile_us(sorted: &[u64], p: f64) -> String {
    if sorted.is_empty() {
        return "NA".into();
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
    format!("{:.1}", sorted[rank.min(sorted.len()) - 1] as f64 / 1000.0)
}
