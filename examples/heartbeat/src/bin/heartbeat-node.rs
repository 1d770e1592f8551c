//! `heartbeat-node`: one node of the heartbeat example as an OS process, over TCP.
//!
//! ```text
//! heartbeat-node [--listen IP:PORT] [--peers PEER,PEER,...] [--period-ms P] [--timeout-ms T]
//! ```
//!
//! A peer is `ID@IP:PORT` (one incarnation, as printed by the peer's `ready` line) or `IP:PORT`
//! (whichever incarnation runs there). Prints `ready <node address>` once listening. Without
//! `--peers` it then reads one line `peers PEER,...` from stdin (so a launcher can start every
//! node first and tell each the others' addresses). It prints `started`, then
//! `suspect IP:PORT` / `restore IP:PORT` as its suspicions change, and exits when its stdin
//! closes: the node side of `selfman-launch` (`selfman_launch::node`).

use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use selfman_core::{ComponentDefinition, Handled, Host, NodeAddr, NodeId, Required, Setup};
use selfman_example_heartbeat::{build, Change, Config, Suspicions};
use selfman_launch::node;
use selfman_net::{NetConfig, TcpNetwork};
use selfman_runtime::Runtime;

/// Prints each change of suspicion on stdout.
struct Printer {
    changes: Required<Suspicions>,
}

impl Printer {
    fn on_change(&mut self, c: Change) -> Handled {
        let line = match c {
            Change::Suspect(n) => format!("suspect {}", n.addr),
            Change::Restore(n) => format!("restore {}", n.addr),
        };
        let mut out = std::io::stdout().lock();
        writeln!(out, "{line}")?;
        out.flush()?;
        Ok(())
    }
}

impl ComponentDefinition for Printer {
    fn setup(&mut self, s: &mut Setup<Self>) {
        s.require(|c| &mut c.changes, Self::on_change);
    }
}

struct Options {
    listen: SocketAddr,
    peers: Option<Vec<NodeAddr>>,
    config: Config,
}

/// Peers as `ID@IP:PORT` (a known incarnation) or `IP:PORT` (whichever incarnation runs there).
fn parse_peers(list: &str) -> Result<Vec<NodeAddr>, String> {
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| match s.parse::<NodeAddr>() {
            Ok(n) => Ok(n),
            Err(_) => s
                .parse::<SocketAddr>()
                .map(|a| NodeAddr::new(a, NodeId::UNKNOWN))
                .map_err(|_| format!("`{s}` is neither ID@IP:PORT nor IP:PORT")),
        })
        .collect()
}

fn parse(args: &[String]) -> Result<Options, String> {
    let mut o = Options {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        peers: None,
        config: Config::default(),
    };
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let v = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let ms =
            || v.parse::<u64>().map(Duration::from_millis).map_err(|_| format!("{flag}: `{v}`"));
        match flag.as_str() {
            "--listen" => {
                o.listen = v.parse().map_err(|_| format!("--listen: `{v}` is not IP:PORT"))?
            }
            "--peers" => o.peers = Some(parse_peers(v)?),
            "--period-ms" => o.config.period = ms()?,
            "--timeout-ms" => o.config.initial_timeout = ms()?,
            other => return Err(format!("unknown option `{other}`")),
        }
    }
    if o.config.period.is_zero() {
        return Err("--period-ms must be at least 1".into());
    }
    Ok(o)
}

fn run(o: Options) -> Result<(), String> {
    let rt = Runtime::new();
    let net =
        TcpNetwork::start(&rt, NetConfig::default().listen(o.listen)).map_err(|e| e.to_string())?;
    let mut launcher = node::announce_ready(net.local()).map_err(|e| e.to_string())?;
    let peers = match o.peers {
        Some(p) => p,
        None => {
            let line = launcher.read_line().map_err(|e| e.to_string())?;
            let line = line.ok_or("stdin closed before `peers ...`")?;
            let list = line.strip_prefix("peers ").ok_or("expected `peers IP:PORT,...`")?;
            parse_peers(list)?
        }
    };
    let hb = build(&net, peers, o.config, None).map_err(|e| e.to_string())?;
    let printer = net.create(|| Printer { changes: Required::new() }).map_err(|e| e.to_string())?;
    rt.link::<Suspicions>(&hb, &printer).map_err(|e| e.to_string())?;
    // The TCP node runs from the start; components added to it are started one by one.
    rt.start(&printer).map_err(|e| e.to_string())?;
    rt.start(&hb).map_err(|e| e.to_string())?;
    launcher.say("started").map_err(|e| e.to_string())?;
    launcher.wait_until_closed();
    net.shutdown();
    rt.shutdown().map_err(|e| e.to_string())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match parse(&args).and_then(run) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("heartbeat-node: {e}");
            ExitCode::from(2)
        }
    }
}
