//! The `consensus-cluster` program: a launcher that runs a local consensus group as OS
//! processes over TCP on 127.0.0.1, and the node those processes run.
//!
//! ```text
//! consensus-cluster [--nodes N] [--kill-leader-after K] [--decisions-after M]
//!                   [--interval-ms I] [--timeout-s T] [--plain] [--intruder]
//! consensus-cluster node [--listen IP:PORT] [--name NAME] [--interval-ms I]
//!                        [--secret-file PATH]
//! ```
//!
//! The launcher starts `N` node processes (default 5), tells each the group, and watches the
//! sequence they agree on, checking that every node decides the same value for every slot.
//! After `K` slots (default 20) it kills the current leader's process (SIGKILL, by PID), then
//! waits for `M` more slots (default 20) and prints how long the survivors took to elect a new
//! leader and to decide again. Its last line is
//!
//! ```text
//! consensus-cluster nodes=N slots=S killed=IP:PORT new_leader_ms=X first_decision_after_kill_ms=Y agreement=ok
//! ```
//!
//! A node prints `ready <node address>`, reads one line `group ADDR,ADDR,...` (in rank order),
//! prints `started`, then `decide <slot> <value>` and `epoch <ts> <leader>` lines, and exits
//! when its stdin closes. Both sides of that are `selfman-launch`: the launcher's nodes are a
//! `selfman_launch::Cluster`, the node uses `selfman_launch::node`.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use selfman_core::{ComponentDefinition, Handled, Host, NodeAddr, Required, Setup};
use selfman_launch::{self as launch, node, Cluster, Program};
use selfman_net::{ClusterSecret, NetConfig, TcpNetwork};
use selfman_runtime::Runtime;

use crate::{build_node, build_sequencer, NodeConfig, SeqEvent, SeqEvents};

/// Runs the program with the process's arguments.
pub fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("node") => parse_node(&args[1..]).and_then(run_node),
        Some("-h" | "--help") => {
            println!("{}", USAGE);
            Ok(())
        }
        _ => parse_launch(&args).and_then(launch),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("consensus-cluster: {e}");
            ExitCode::from(if e.starts_with("usage") { 2 } else { 1 })
        }
    }
}

const USAGE: &str = "usage: consensus-cluster [--nodes N] [--kill-leader-after K] \
[--decisions-after M] [--interval-ms I] [--timeout-s T] [--plain] [--intruder]\n       \
consensus-cluster node [--listen IP:PORT] [--name NAME] [--interval-ms I] [--secret-file PATH]";

fn usage(why: impl std::fmt::Display) -> String {
    format!("usage error: {why}\n{USAGE}")
}

fn flag_values(args: &[String]) -> Result<Vec<(&str, &str)>, String> {
    let mut out = Vec::new();
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let v = it.next().ok_or_else(|| usage(format!("{flag} needs a value")))?;
        out.push((flag.as_str(), v.as_str()));
    }
    Ok(out)
}

fn number(flag: &str, v: &str) -> Result<u64, String> {
    v.parse().map_err(|_| usage(format!("{flag}: `{v}` is not a number")))
}

// ----------------------------------------------------------------------------------------
// One node
// ----------------------------------------------------------------------------------------

#[derive(Debug)]
struct NodeOptions {
    listen: SocketAddr,
    name: String,
    interval: Duration,
    secret: Option<ClusterSecret>,
}

/// Reads a cluster secret (64 hex digits) from `path`.
fn read_secret(path: &str) -> Result<ClusterSecret, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| usage(format!("--secret-file {path}: cannot read it: {e}")))?;
    text.parse().map_err(|e| usage(format!("--secret-file {path}: {e}")))
}

fn parse_node(args: &[String]) -> Result<NodeOptions, String> {
    let mut o = NodeOptions {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        name: "node".into(),
        interval: Duration::from_millis(20),
        secret: None,
    };
    for (flag, v) in flag_values(args)? {
        match flag {
            "--secret-file" => o.secret = Some(read_secret(v)?),
            "--listen" => {
                o.listen =
                    v.parse().map_err(|_| usage(format!("--listen: `{v}` is not IP:PORT")))?
            }
            "--name" => o.name = v.to_owned(),
            "--interval-ms" => o.interval = Duration::from_millis(number(flag, v)?),
            other => return Err(usage(format!("unknown option `{other}`"))),
        }
    }
    Ok(o)
}

/// Prints what the sequencer reports, one line each.
struct Printer {
    events: Required<SeqEvents>,
}

impl Printer {
    fn on_event(&mut self, e: SeqEvent) -> Handled {
        let mut out = std::io::stdout().lock();
        match e {
            SeqEvent::Decided { slot, value } => writeln!(out, "decide {slot} {value}")?,
            SeqEvent::Epoch { ts, leader } => writeln!(out, "epoch {ts} {}", leader.addr)?,
        }
        out.flush()?;
        Ok(())
    }
}

impl ComponentDefinition for Printer {
    fn setup(&mut self, s: &mut Setup<Self>) {
        s.require(|c| &mut c.events, Self::on_event);
    }
}

fn parse_group(line: &str) -> Result<Vec<NodeAddr>, String> {
    let list = line.strip_prefix("group ").ok_or("expected `group ADDR,ADDR,...`")?;
    list.split(',')
        .map(|s| s.trim().parse::<NodeAddr>().map_err(|e| format!("group member `{s}`: {e}")))
        .collect()
}

fn run_node(o: NodeOptions) -> Result<(), String> {
    // Warnings and errors to stderr (SELFMAN_LOG or RUST_LOG choose otherwise): refused
    // connections, for one, are told there.
    selfman_ops::logging::init_or(selfman_ops::logging::LogFormat::Text, "warn")
        .map_err(|e| e.to_string())?;
    let rt = Runtime::new();
    let config = NetConfig::default().listen(o.listen).secret(o.secret);
    let net = TcpNetwork::start(&rt, config).map_err(|e| e.to_string())?;
    let mut launcher = node::announce_ready(net.local()).map_err(|e| e.to_string())?;
    let line = launcher.read_line().map_err(|e| e.to_string())?;
    let group = parse_group(&line.ok_or("stdin closed before `group ...`")?)?;
    if !group.iter().any(|m| m.addr == net.local().addr) {
        return Err(format!("this node ({}) is not in the group", net.local()));
    }
    let err = |e: selfman_core::Error| e.to_string();
    let node = build_node::<String, _>(&net, group, &NodeConfig::default()).map_err(err)?;
    let seq = build_sequencer(&net, &node, o.name, o.interval, None).map_err(err)?;
    let printer = net.create(|| Printer { events: Required::new() }).map_err(err)?;
    rt.link::<SeqEvents>(&seq, &printer).map_err(err)?;
    // A TCP node runs from the start; components added to it are started one by one,
    // providers before their users.
    rt.start(&printer).map_err(err)?;
    for c in node.components() {
        rt.start(&c).map_err(err)?;
    }
    rt.start(&seq).map_err(err)?;
    launcher.say("started").map_err(|e| e.to_string())?;
    launcher.wait_until_closed();
    net.shutdown();
    rt.shutdown().map_err(|e| e.to_string())
}

// ----------------------------------------------------------------------------------------
// The launcher
// ----------------------------------------------------------------------------------------

#[derive(Debug)]
struct LaunchOptions {
    nodes: usize,
    kill_after: u64,
    decisions_after: u64,
    interval_ms: u64,
    timeout: Duration,
    /// Plain TCP links instead of secured ones.
    plain: bool,
    /// Also start a node with another secret that tries to take part.
    intruder: bool,
}

fn parse_launch(args: &[String]) -> Result<LaunchOptions, String> {
    let mut o = LaunchOptions {
        nodes: 5,
        kill_after: 20,
        decisions_after: 20,
        interval_ms: 20,
        timeout: Duration::from_secs(60),
        plain: false,
        intruder: false,
    };
    let (flags, rest): (Vec<&String>, Vec<&String>) =
        args.iter().partition(|a| matches!(a.as_str(), "--plain" | "--intruder"));
    o.plain = flags.iter().any(|f| *f == "--plain");
    o.intruder = flags.iter().any(|f| *f == "--intruder");
    let rest: Vec<String> = rest.into_iter().cloned().collect();
    for (flag, v) in flag_values(&rest)? {
        match flag {
            "--nodes" => o.nodes = number(flag, v)? as usize,
            "--kill-leader-after" => o.kill_after = number(flag, v)?,
            "--decisions-after" => o.decisions_after = number(flag, v)?,
            "--interval-ms" => o.interval_ms = number(flag, v)?,
            "--timeout-s" => o.timeout = Duration::from_secs(number(flag, v)?),
            other => return Err(usage(format!("unknown option `{other}`"))),
        }
    }
    if !(3..=64).contains(&o.nodes) {
        return Err(usage("--nodes must be between 3 and 64 (a majority must survive a kill)"));
    }
    if o.decisions_after == 0 {
        return Err(usage("--decisions-after must be at least 1"));
    }
    if o.plain && o.intruder {
        return Err(usage("--intruder needs secured links (drop --plain)"));
    }
    Ok(o)
}

/// How long a node gets to print its readiness line.
const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// A fresh cluster secret in a file only this user can read, removed on drop.
struct SecretFile(std::path::PathBuf);

impl SecretFile {
    fn new(tag: &str) -> Result<SecretFile, String> {
        use std::io::Write as _;
        use std::os::unix::fs::OpenOptionsExt;
        let path = std::env::temp_dir()
            .join(format!("consensus-cluster-{}-{tag}.secret", std::process::id()));
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
        writeln!(f, "{}", ClusterSecret::random().to_hex())
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        Ok(SecretFile(path))
    }
}

impl Drop for SecretFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Node `i` of the cluster: this same program's `node` subcommand.
fn node_program(
    i: usize,
    interval_ms: u64,
    secret: Option<&SecretFile>,
) -> Result<Program, String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this program: {e}"))?;
    let program = Program::new(exe).name(format!("node {i}")).args([
        "node",
        "--name",
        &format!("n{i}"),
        "--interval-ms",
        &interval_ms.to_string(),
    ]);
    Ok(match secret {
        Some(s) => program.args([std::ffi::OsStr::new("--secret-file"), s.0.as_os_str()]),
        None => program,
    })
}

/// Starts the `n` nodes (all at once), waits until each serves, and returns them with their
/// addresses.
fn start_nodes(
    n: usize,
    interval_ms: u64,
    secret: Option<&SecretFile>,
) -> Result<(Cluster, Vec<NodeAddr>), String> {
    let mut cluster = Cluster::new();
    for i in 0..n {
        cluster.spawn(&node_program(i, interval_ms, secret)?).map_err(|e| e.to_string())?;
    }
    let mut addrs = Vec::with_capacity(n);
    for i in 0..n {
        let addr = cluster[i].wait_ready(READY_TIMEOUT).map_err(|e| e.to_string())?;
        addrs.push(addr.parse().map_err(|e| format!("node {i} address `{addr}`: {e}"))?);
    }
    Ok((cluster, addrs))
}

/// The next line printed by a node, with the node's index.
fn next_line(nodes: &mut Cluster, deadline: Instant) -> Result<(usize, String), String> {
    let left = deadline.saturating_duration_since(Instant::now());
    nodes.next_line(left).map_err(|e| match e {
        launch::Error::Timeout { .. } => "timed out".to_owned(),
        launch::Error::Exited { .. } => "every node exited".to_owned(),
        e => e.to_string(),
    })
}

/// What the launcher learnt from the nodes' lines.
#[derive(Default)]
struct Watch {
    /// Slot → (value, how many nodes decided it).
    slots: BTreeMap<u64, (String, usize)>,
    /// Node → its latest (epoch ts, leader address).
    epochs: BTreeMap<usize, (u64, SocketAddr)>,
}

impl Watch {
    /// Takes in one line; `Err` on a disagreement.
    fn take(&mut self, node: usize, line: &str) -> Result<Option<u64>, String> {
        let mut parts = line.splitn(3, ' ');
        match (parts.next(), parts.next(), parts.next()) {
            (Some("decide"), Some(slot), Some(value)) => {
                let slot: u64 = slot.parse().map_err(|_| format!("node {node}: `{line}`"))?;
                let entry = self.slots.entry(slot).or_insert_with(|| (value.to_owned(), 0));
                if entry.0 != value {
                    return Err(format!(
                        "DISAGREEMENT: node {node} decided `{value}` for slot {slot}, \
                         another node decided `{}`",
                        entry.0
                    ));
                }
                entry.1 += 1;
                Ok(Some(slot))
            }
            (Some("epoch"), Some(ts), Some(leader)) => {
                let ts = ts.parse().map_err(|_| format!("node {node}: `{line}`"))?;
                let leader = leader.parse().map_err(|_| format!("node {node}: `{line}`"))?;
                self.epochs.insert(node, (ts, leader));
                Ok(None)
            }
            _ => Ok(None),
        }
    }

    /// The leader a majority of the live nodes are in an epoch of, if any.
    fn leader(&self, alive: &[usize], majority: usize) -> Option<SocketAddr> {
        let mut votes: BTreeMap<SocketAddr, usize> = BTreeMap::new();
        for n in alive {
            if let Some((_, l)) = self.epochs.get(n) {
                *votes.entry(*l).or_default() += 1;
            }
        }
        votes.into_iter().find(|&(_, v)| v >= majority).map(|(l, _)| l)
    }

    /// Slots decided by at least one node.
    fn decided(&self) -> u64 {
        self.slots.len() as u64
    }
}

fn launch(o: LaunchOptions) -> Result<(), String> {
    let secret = if o.plain { None } else { Some(SecretFile::new("cluster")?) };
    let (mut nodes, addrs) = start_nodes(o.nodes, o.interval_ms, secret.as_ref())?;
    let group: Vec<String> = addrs.iter().map(NodeAddr::to_string).collect();
    for (i, addr) in addrs.iter().enumerate() {
        println!("node {i}: {addr} (pid {})", nodes[i].pid());
        nodes[i].send_line(&format!("group {}", group.join(","))).map_err(|e| e.to_string())?;
    }
    // The intruder (index `o.nodes`) has a secret of its own and counts the cluster in its
    // group: it dials every member, and no member may let it in.
    let other = if o.intruder { Some(SecretFile::new("intruder")?) } else { None };
    let intruder = o.nodes;
    if let Some(other) = &other {
        nodes
            .spawn(&node_program(intruder, o.interval_ms, Some(other))?)
            .map_err(|e| e.to_string())?;
        let addr = nodes[intruder].wait_ready(READY_TIMEOUT).map_err(|e| e.to_string())?;
        println!("intruder: {addr} (pid {}), with another secret", nodes[intruder].pid());
        let all = format!("group {},{addr}", group.join(","));
        nodes[intruder].send_line(&all).map_err(|e| e.to_string())?;
    }
    let mut intruder_decisions = 0u64;
    let start = Instant::now();
    let deadline = start + o.timeout;
    let majority = o.nodes / 2 + 1;
    let mut watch = Watch::default();
    let mut started = 0;

    // Phase 1: run until K slots are decided and a majority agrees on the leader.
    let (victim, slots_before) = loop {
        let (node, line) =
            next_line(&mut nodes, deadline).map_err(|e| format!("before the kill: {e}"))?;
        if node == intruder {
            intruder_decisions += u64::from(line.starts_with("decide "));
            continue;
        }
        if line == "started" {
            started += 1;
            continue;
        }
        watch.take(node, &line)?;
        let alive: Vec<usize> = (0..o.nodes).collect();
        if started == o.nodes && watch.decided() >= o.kill_after {
            if let Some(leader) = watch.leader(&alive, majority) {
                let victim = addrs
                    .iter()
                    .position(|a| a.addr == leader)
                    .ok_or_else(|| format!("the leader {leader} is not a node of this cluster"))?;
                let before = watch.slots.keys().next_back().copied();
                println!(
                    "{} slots decided in {} ms; leader is node {victim} ({leader}): killing pid {}",
                    watch.decided(),
                    start.elapsed().as_millis(),
                    nodes[victim].pid()
                );
                break (victim, before);
            }
        }
    };
    let killed_at = Instant::now();
    nodes[victim].kill_9().map_err(|e| e.to_string())?;

    // Phase 2: the survivors elect a new leader and decide again.
    let killed = addrs[victim].addr;
    let mut new_leader = None;
    let mut first_decision = None;
    let target = watch.decided() + o.decisions_after;
    while first_decision.is_none() || new_leader.is_none() || watch.decided() < target {
        let (node, line) = next_line(&mut nodes, deadline).map_err(|e| {
            format!("after killing the leader: {e} ({} slots decided)", watch.decided())
        })?;
        if node == intruder {
            intruder_decisions += u64::from(line.starts_with("decide "));
            continue;
        }
        if node == victim {
            continue; // lines it printed before dying
        }
        let slot = watch.take(node, &line)?;
        if new_leader.is_none() {
            if let Some((_, l)) = watch.epochs.get(&node).filter(|(_, l)| *l != killed) {
                let ms = killed_at.elapsed().as_secs_f64() * 1e3;
                println!("node {node} follows a new leader {l} after {ms:.0} ms");
                new_leader = Some(ms);
            }
        }
        if first_decision.is_none() && slot.is_some_and(|s| slots_before.is_none_or(|b| s > b)) {
            let ms = killed_at.elapsed().as_secs_f64() * 1e3;
            println!("first decision after the kill: slot {} after {ms:.0} ms", slot.unwrap_or(0));
            first_decision = Some(ms);
        }
    }
    let survivors_all_decided = watch.slots.values().filter(|(_, n)| *n >= o.nodes - 1).count();
    if intruder_decisions > 0 {
        return Err(format!(
            "the node with another secret decided {intruder_decisions} slots: it got in"
        ));
    }
    let intruder_field = if o.intruder {
        format!(" intruder_decisions={intruder_decisions}")
    } else {
        String::new()
    };
    println!(
        "consensus-cluster nodes={} slots={} killed={killed} new_leader_ms={:.0} \
         first_decision_after_kill_ms={:.0} agreement=ok links={}{intruder_field}",
        o.nodes,
        watch.decided(),
        new_leader.unwrap_or(f64::NAN),
        first_decision.unwrap_or(f64::NAN),
        if o.plain { "plain" } else { "secured" },
    );
    eprintln!("({survivors_all_decided} slots seen by every survivor)");
    drop(nodes); // closes stdins, reaps every process (killing stragglers by PID)
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watch_catches_disagreement_and_finds_the_majority_leader() {
        let mut w = Watch::default();
        assert_eq!(w.take(0, "decide 3 n1:3").unwrap(), Some(3));
        assert_eq!(w.take(1, "decide 3 n1:3").unwrap(), Some(3));
        assert!(w.take(2, "decide 3 n2:3").unwrap_err().contains("DISAGREEMENT"));
        w.take(0, "epoch 5 127.0.0.1:9").unwrap();
        w.take(1, "epoch 5 127.0.0.1:9").unwrap();
        w.take(2, "epoch 4 127.0.0.1:8").unwrap();
        assert_eq!(w.leader(&[0, 1, 2], 2), Some("127.0.0.1:9".parse().unwrap()));
        assert_eq!(w.leader(&[0, 2], 2), None);
    }

    #[test]
    fn bad_options_are_usage_errors() {
        let args = |s: &str| s.split(' ').map(String::from).collect::<Vec<_>>();
        assert!(parse_launch(&args("--nodes 2")).unwrap_err().starts_with("usage"));
        assert!(parse_launch(&args("--nodes x")).unwrap_err().starts_with("usage"));
        assert!(parse_launch(&args("--bogus 1")).unwrap_err().starts_with("usage"));
        assert!(parse_launch(&args("--plain --intruder"))
            .unwrap_err()
            .contains("--intruder needs"));
        let o = parse_launch(&args("--nodes 3 --intruder")).unwrap();
        assert!(o.intruder && !o.plain && o.nodes == 3);
        let e = parse_node(&args("--secret-file /nonexistent/secret")).unwrap_err();
        assert!(e.contains("--secret-file /nonexistent/secret: cannot read it"), "{e}");
        let bad = std::env::temp_dir().join(format!("cc-bad-secret-{}", std::process::id()));
        std::fs::write(&bad, "not hex").unwrap();
        let e = parse_node(&args(&format!("--secret-file {}", bad.display()))).unwrap_err();
        assert!(e.contains("64 hex digits"), "{e}");
        std::fs::remove_file(&bad).unwrap();
        assert!(parse_node(&args("--listen nope")).unwrap_err().starts_with("usage"));
        assert_eq!(parse_launch(&[]).unwrap().nodes, 5);
        assert!(parse_group("group 1@127.0.0.1:1,nope").is_err());
    }
}
