//! `ring-cluster node`: one ring node as an OS process over TCP.
//!
//! It binds its transport, wires [`build_node`](crate::build_node) on it, prints
//! `ready <node address>` (`selfman_launch::node`), then carries out the launcher's
//! [`Command`]s line by line until its stdin closes, and prints [`NodeLine`]s: `started`, a
//! `view` each time its ring's state changes (polled every `--view-poll-ms`, default 50 ms),
//! the answer to every lookup, and the outcome of every swap.

use std::io::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use selfman_core::{Component, ComponentDefinition, Handled, Host, NodeAddr, Required, Setup};
use selfman_failure_detector::FdConfig;
use selfman_launch::node;
use selfman_net::{NetConfig, TcpNetwork};
use selfman_ports::{JoinRefusal, Ring, RingIndication, RingInspect, RingRequest};
use selfman_relaxed_ring::{RelaxedRing, RingConfig};
use selfman_runtime::Runtime;

use super::{default_fd, fd_flag, flag_values, number, usage, validate_fd};
use crate::lines::{Command, NodeLine, Swapped};
use crate::{build_node, reconfigure_node, NodeConfig, RingNode};

/// How long a swap may take before the node reports it failed.
const SWAP_WAIT: Duration = Duration::from_secs(10);

#[derive(Debug)]
pub(super) struct NodeOptions {
    listen: SocketAddr,
    fd: FdConfig,
    view_poll: Duration,
    #[cfg(feature = "flaws")]
    flaw: Option<selfman_relaxed_ring::Flaw>,
}

pub(super) fn parse(args: &[String]) -> Result<NodeOptions, String> {
    let mut o = NodeOptions {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        fd: default_fd(),
        view_poll: Duration::from_millis(50),
        #[cfg(feature = "flaws")]
        flaw: None,
    };
    for (flag, v) in flag_values(args)? {
        if fd_flag(&mut o.fd, flag, v)? {
            continue;
        }
        match flag {
            "--listen" => {
                o.listen =
                    v.parse().map_err(|_| usage(format!("--listen: `{v}` is not IP:PORT")))?;
            }
            "--view-poll-ms" => {
                o.view_poll = Duration::from_millis(number(flag, v)?.max(1));
            }
            #[cfg(feature = "flaws")]
            "--flaw" => o.flaw = Some(super::launcher::parse_flaw(v)?),
            other => return Err(usage(format!("unknown option `{other}`"))),
        }
    }
    validate_fd(&o.fd)?;
    Ok(o)
}

/// Prints one line on stdout, whole (lines from several threads never interleave).
fn say(line: &NodeLine) {
    let mut out = std::io::stdout().lock();
    // A launcher that is gone closes stdin too, which ends the node.
    let _ = writeln!(out, "{}", line.format());
    let _ = out.flush();
}

/// Prints the answer to every lookup, and joins again through the launcher's access peer
/// when a join is given up for want of an answer (`JoinRefused(NoAnswer)`: the access peer
/// was down or unreachable for a while; the node is outside again and would stay so).
struct Printer {
    ring: Required<Ring<u64>>,
    /// The access peer of the launcher's last `join`, shared with the command loop.
    access: Arc<Mutex<Option<NodeAddr>>>,
}

impl Printer {
    fn on_ring(&mut self, i: RingIndication<u64>) -> Handled {
        match i {
            RingIndication::LookupResult { key, tag, outcome } => {
                say(&NodeLine::Lookup { tag, key, outcome });
            }
            RingIndication::JoinRefused(JoinRefusal::NoAnswer { .. }) => {
                // Not an `error` line: the launcher takes those as fatal, and this is routine
                // under churn. The views it prints show the node joining again.
                let access = *self.access.lock().unwrap_or_else(PoisonError::into_inner);
                if let Some(access) = access {
                    self.ring.trigger(RingRequest::Join { access });
                }
            }
            _ => {}
        }
        Ok(())
    }
}

impl ComponentDefinition for Printer {
    fn setup(&mut self, s: &mut Setup<Self>) {
        s.require(|c| &mut c.ring, Self::on_ring);
    }
}

fn build(net: &TcpNetwork, o: &NodeOptions) -> selfman_core::Result<RingNode<u64>> {
    let config = NodeConfig { fd: o.fd, ring: RingConfig::default() };
    #[cfg(feature = "flaws")]
    if let Some(flaw) = o.flaw {
        return crate::build_flawed_node(net, &config, flaw);
    }
    build_node(net, &config)
}

pub(super) fn run(o: NodeOptions) -> Result<(), String> {
    let err = |e: selfman_core::Error| e.to_string();
    // Ten or more of these share a few cores: one worker, and no spinning when idle.
    let rt = Runtime::builder().workers(1).spin(Duration::ZERO).build();
    let config = NetConfig::default().listen(o.listen).io_spin(Duration::ZERO);
    let net = TcpNetwork::start(&rt, config).map_err(|e| e.to_string())?;
    let ring_node = build(&net, &o).map_err(err)?;
    let access = Arc::new(Mutex::new(None));
    let shared = Arc::clone(&access);
    let printer = net
        .create(move || Printer { ring: Required::new(), access: Arc::clone(&shared) })
        .map_err(err)?;
    rt.connect(&ring_node.ring_port().map_err(err)?, &printer.required().map_err(err)?)
        .map_err(err)?;
    rt.start(&printer).map_err(err)?;
    for c in ring_node.components() {
        rt.start(&c).map_err(err)?;
    }
    let mut launcher = node::announce_ready(net.local()).map_err(|e| e.to_string())?;
    say(&NodeLine::Started);

    let stop = Arc::new(AtomicBool::new(false));
    let viewer = {
        let (ring, stop, poll) = (ring_node.ring.clone(), Arc::clone(&stop), o.view_poll);
        std::thread::Builder::new()
            .name("ring-view".into())
            .spawn(move || print_views(&ring, &stop, poll))
            .map_err(|e| format!("cannot start the view thread: {e}"))?
    };
    let mut ring_config = RingConfig::default();
    while let Some(line) = launcher.read_line().map_err(|e| e.to_string())? {
        match Command::parse(&line) {
            Ok(c) => {
                if let Command::Join(a) = c {
                    *access.lock().unwrap_or_else(PoisonError::into_inner) = Some(a);
                }
                obey(&rt, &ring_node, &mut ring_config, c)
            }
            Err(e) => say(&NodeLine::Error(e.to_string())),
        }
    }
    stop.store(true, Ordering::Release);
    let _ = viewer.join();
    net.shutdown();
    rt.shutdown().map_err(|e| e.to_string())
}

/// Carries out one command; failures are reported on stdout, the node runs on.
fn obey(rt: &Runtime, node: &RingNode<u64>, ring_config: &mut RingConfig, c: Command) {
    let request = |r: RingRequest<u64>| {
        if let Err(e) = node.ring_port().and_then(|p| p.request(r)) {
            say(&NodeLine::Error(e.to_string()));
        }
    };
    match c {
        Command::Bootstrap => request(RingRequest::Bootstrap),
        Command::Join(access) => request(RingRequest::Join { access }),
        Command::Lookup { tag, key } => request(RingRequest::Lookup { key, tag }),
        Command::SwapFd(fd) => {
            let started = Instant::now();
            let done = reconfigure_node(rt, node, Some(fd), None)
                .and_then(|s| s.fd.map_or(Ok(()), |s| s.wait(SWAP_WAIT)));
            report_swap(Swapped::Fd, started, done);
        }
        Command::SwapRing(s) => {
            let new = RingConfig {
                k: s.k,
                stabilize: s.stabilize,
                succ_list_size: s.succ_list_size,
                ..*ring_config
            };
            if let Err(e) = new.validate() {
                say(&NodeLine::SwapFailed(Swapped::Ring, e.to_string()));
                return;
            }
            let started = Instant::now();
            let done = reconfigure_node(rt, node, None, Some(new))
                .and_then(|s| s.ring.map_or(Ok(()), |s| s.wait(SWAP_WAIT)));
            if done.is_ok() {
                *ring_config = new;
            }
            report_swap(Swapped::Ring, started, done);
        }
    }
}

fn report_swap(what: Swapped, started: Instant, done: selfman_core::Result<()>) {
    match done {
        Ok(()) => say(&NodeLine::Swapped(what, started.elapsed().as_micros() as u64)),
        Err(e) => say(&NodeLine::SwapFailed(what, e.to_string())),
    }
}

/// Prints the ring's view whenever it differs from the last one printed, until `stop`.
fn print_views(ring: &Component<RelaxedRing<u64>>, stop: &AtomicBool, poll: Duration) {
    let mut last = None;
    while !stop.load(Ordering::Acquire) {
        match ring.on_definition(|d| d.ring_view()) {
            Ok(v) if last.as_ref() != Some(&v) => {
                say(&NodeLine::View(Box::new(v.clone())));
                last = Some(v);
            }
            Ok(_) => {}
            Err(_) => return, // the ring is gone: the node is shutting down
        }
        std::thread::sleep(poll);
    }
}
