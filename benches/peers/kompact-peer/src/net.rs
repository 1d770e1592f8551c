//! `net-pingpong`: ping-pong between two OS processes over loopback TCP,
//! using Kompact 0.12's own networking (`kompact-net`'s `NetworkDispatcher`),
//! actor paths and Kompact serialisation (`Serialisable` / `Deserialiser`).
//!
//! * The process started by the user is the **pinger** side. It spawns a
//!   second process of the same binary (`net-ponger --pairs K --threads T`),
//!   which binds `127.0.0.1:0`, creates and registers K ponger actors and
//!   prints their unique actor paths on stdout (`ponger <path>` lines, then
//!   `ready`).
//! * The pinger side binds `127.0.0.1:0` as well, creates K registered pinger
//!   actors (one per ponger path), runs a short warm-up exchange on every pair
//!   (so TCP connection setup is not measured), then starts the clock, tells
//!   every pinger to go, and stops the clock when every pinger has received
//!   its N-th pong.
//! * The child is killed and reaped by PID on every path (`ChildGuard`), and
//!   it also exits on its own when its stdin (a pipe from the parent) closes,
//!   i.e. when the parent goes away, even if the parent is SIGKILLed.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use kompact::prelude::*;
use kompact_net::NetworkConfig;
use peer_common::{NetPongerArgs, PingPongArgs};

/// Child start-up: spawn, bind, create and register the pongers.
const SETUP_TIMEOUT: Duration = Duration::from_secs(30);
/// Registration of one batch of actors with the dispatcher.
const REGISTRATION_TIMEOUT: Duration = Duration::from_secs(10);
/// Warm-up exchange on all pairs (includes TCP connection setup).
const WARMUP_TIMEOUT: Duration = Duration::from_secs(60);
/// The measured run. compare.sh's RUN_TIMEOUT normally ends a run earlier.
const RUN_TIMEOUT: Duration = Duration::from_secs(600);
/// Waiting for the child to exit after its stdin was closed.
const CHILD_EXIT_TIMEOUT: Duration = Duration::from_secs(5);
/// Kompact system shutdown (either side).
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);

/// Round trips per pair in the warm-up exchange (same window as the run).
const WARMUP_ROUND_TRIPS: u64 = 1000;

/// Serialisation ids; anything above Kompact's own reserved ids (0..=20).
const PING_SER_ID: SerId = 0x5E1F_0001;
const PONG_SER_ID: SerId = 0x5E1F_0002;

const LOOPBACK_ANY_PORT: &str = "127.0.0.1:0";

// ---------------------------------------------------------------------------
// Messages (Kompact serialisation: 8 payload bytes each)
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy)]
struct NetPing(u64);

#[derive(Debug, Clone, Copy)]
struct NetPong(u64);

impl Serialisable for NetPing {
    fn ser_id(&self) -> SerId {
        PING_SER_ID
    }

    fn size_hint(&self) -> Option<usize> {
        Some(8)
    }

    fn serialise(&self, buf: &mut dyn BufMut) -> Result<(), SerError> {
        buf.put_u64(self.0);
        Ok(())
    }

    fn local(self: Box<Self>) -> Result<Box<dyn Any + Send>, Box<dyn Serialisable>> {
        Ok(self)
    }
}

impl Deserialiser<NetPing> for NetPing {
    const SER_ID: SerId = PING_SER_ID;

    fn deserialise(buf: &mut dyn Buf) -> Result<NetPing, SerError> {
        if buf.remaining() < 8 {
            return Err(SerError::invalid_data("NetPing needs 8 bytes"));
        }
        Ok(NetPing(buf.get_u64()))
    }
}

impl Serialisable for NetPong {
    fn ser_id(&self) -> SerId {
        PONG_SER_ID
    }

    fn size_hint(&self) -> Option<usize> {
        Some(8)
    }

    fn serialise(&self, buf: &mut dyn BufMut) -> Result<(), SerError> {
        buf.put_u64(self.0);
        Ok(())
    }

    fn local(self: Box<Self>) -> Result<Box<dyn Any + Send>, Box<dyn Serialisable>> {
        Ok(self)
    }
}

impl Deserialiser<NetPong> for NetPong {
    const SER_ID: SerId = PONG_SER_ID;

    fn deserialise(buf: &mut dyn Buf) -> Result<NetPong, SerError> {
        if buf.remaining() < 8 {
            return Err(SerError::invalid_data("NetPong needs 8 bytes"));
        }
        Ok(NetPong(buf.get_u64()))
    }
}

// ---------------------------------------------------------------------------
// System
// ---------------------------------------------------------------------------

fn build_net_system(threads: usize) -> Result<KompactSystem, String> {
    // Warnings and errors only: the dispatcher logs every connection and
    // start/stop at info level, from both processes onto the same stderr.
    let mut cfg = super::kompact_config(threads, slog::Level::Warning);
    let addr: SocketAddr = LOOPBACK_ANY_PORT.parse().expect("loopback address");
    // TCP, Nagle off (kompact-net's default), default buffer config.
    let net = NetworkConfig::new(addr);
    cfg.system_components(DeadletterBox::new, net.build());
    cfg.build()
        .wait_timeout(SETUP_TIMEOUT)
        .map_err(|_| "Kompact system did not start in time".to_string())?
        .map_err(|e| format!("Kompact system failed to start: {e:?}"))
}

/// Shuts the system down, giving up (and leaving it to process exit) after
/// `SHUTDOWN_TIMEOUT`.
fn shutdown_bounded(system: KompactSystem) {
    let (tx, rx) = mpsc::channel();
    let _ = thread::Builder::new()
        .name("shutdown".into())
        .spawn(move || {
            let r = system.shutdown().wait();
            let _ = tx.send(r.is_ok());
        });
    match rx.recv_timeout(SHUTDOWN_TIMEOUT) {
        Ok(true) => {}
        Ok(false) => eprintln!("kompact-peer: Kompact shutdown reported an error"),
        Err(_) => eprintln!("kompact-peer: Kompact shutdown timed out; exiting anyway"),
    }
}

// ---------------------------------------------------------------------------
// Ponger (child process)
// ---------------------------------------------------------------------------

#[derive(ComponentDefinition)]
struct NetPonger {
    ctx: ComponentContext<Self>,
}

ignore_lifecycle!(NetPonger);

impl Actor for NetPonger {
    type Message = Never;

    fn receive_local(&mut self, msg: Never) -> HandlerResult {
        match msg {}
    }

    fn receive_network(&mut self, msg: NetMessage) -> HandlerResult {
        let NetMessage { sender, data, .. } = msg;
        match data.try_deserialise::<NetPing, NetPing>() {
            Ok(ping) => {
                if let Err(e) = sender.tell_serialised(NetPong(ping.0), self) {
                    // Unrecoverable for the benchmark; the parent notices
                    // the child's exit (stdout EOF) and fails fast.
                    eprintln!("kompact-peer net-ponger: cannot serialise pong: {e:?}");
                    std::process::exit(1);
                }
            }
            Err(e) => {
                eprintln!("kompact-peer net-ponger: unexpected message: {e:?}");
                std::process::exit(1);
            }
        }
        Handled::OK
    }
}

/// Entry point of the hidden `net-ponger` subcommand.
pub fn net_ponger(a: NetPongerArgs) {
    // A watchdog that ends this process once stdin (a pipe from the parent)
    // reaches EOF, whatever state the rest of the process is in. The main
    // thread below also waits for that EOF and then shuts down cleanly; this
    // is the hard bound if the clean shutdown hangs.
    let (eof_tx, eof_rx) = mpsc::channel::<()>();
    thread::Builder::new()
        .name("stdin-watch".into())
        .spawn(move || {
            let mut sink = [0u8; 64];
            let mut stdin = std::io::stdin();
            loop {
                match stdin.read(&mut sink) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
            }
            let _ = eof_tx.send(());
            thread::sleep(SHUTDOWN_TIMEOUT + Duration::from_secs(2));
            std::process::exit(0);
        })
        .expect("spawn stdin watcher");

    let system = match build_net_system(a.threads) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("kompact-peer net-ponger: {e}");
            std::process::exit(1);
        }
    };

    let mut pongers = Vec::with_capacity(a.pairs);
    let mut paths = Vec::with_capacity(a.pairs);
    for _ in 0..a.pairs {
        let (ponger, reg) = system.create_and_register(|| NetPonger {
            ctx: ComponentContext::uninitialised(),
        });
        let path = match reg.wait_timeout(REGISTRATION_TIMEOUT) {
            Ok(Ok(path)) => path,
            Ok(Err(e)) => {
                eprintln!("kompact-peer net-ponger: registration failed: {e:?}");
                std::process::exit(1);
            }
            Err(_) => {
                eprintln!("kompact-peer net-ponger: registration timed out");
                std::process::exit(1);
            }
        };
        pongers.push(ponger);
        paths.push(path);
    }
    for p in &pongers {
        if system
            .start_notify(p)
            .wait_timeout(REGISTRATION_TIMEOUT)
            .is_err()
        {
            eprintln!("kompact-peer net-ponger: ponger did not start");
            std::process::exit(1);
        }
    }

    {
        let stdout = std::io::stdout();
        let mut out = stdout.lock();
        for path in &paths {
            let _ = writeln!(out, "ponger {path}");
        }
        let _ = writeln!(out, "ready");
        let _ = out.flush();
    }

    // Serve until the parent closes our stdin (or dies).
    let _ = eof_rx.recv();
    shutdown_bounded(system);
    drop(pongers);
    std::process::exit(0);
}

// ---------------------------------------------------------------------------
// Pinger (parent process)
// ---------------------------------------------------------------------------

/// Everything the main thread of the pinger side waits for arrives on one
/// channel, so every wait can be bounded and can notice a dead child.
#[derive(Debug)]
enum Event {
    /// A line of the child's stdout.
    ChildLine(String),
    /// The child's stdout was closed (it exited or crashed).
    ChildEof,
    /// A pinger finished its warm-up exchange.
    Warmed,
    /// A pinger received its N-th pong; RTT samples in ns (window 1 only).
    Done(Vec<u64>),
    /// Pinger `i` failed.
    Failed(usize, String),
}

#[derive(Debug)]
enum PingerCmd {
    /// Run `n` round trips as warm-up (same window), then report `Warmed`.
    Warmup(u64),
    /// Run the measured N round trips, then report `Done`.
    Go,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Idle,
    Warmup,
    Run,
}

#[derive(ComponentDefinition)]
struct NetPinger {
    ctx: ComponentContext<Self>,
    index: usize,
    target: ActorPath,
    round_trips: u64,
    window: u64,
    /// Record one RTT per round trip (window 1 only).
    record_rtt: bool,
    phase: Phase,
    goal: u64,
    sent: u64,
    received: u64,
    last_send: Instant,
    rtts: Vec<u64>,
    events: mpsc::Sender<Event>,
}

impl NetPinger {
    fn new(
        index: usize,
        target: ActorPath,
        round_trips: u64,
        window: u64,
        events: mpsc::Sender<Event>,
    ) -> Self {
        let record_rtt = window == 1;
        NetPinger {
            ctx: ComponentContext::uninitialised(),
            index,
            target,
            round_trips,
            window,
            record_rtt,
            phase: Phase::Idle,
            goal: 0,
            sent: 0,
            received: 0,
            last_send: Instant::now(),
            rtts: if record_rtt {
                Vec::with_capacity(round_trips as usize)
            } else {
                Vec::new()
            },
            events,
        }
    }

    fn fail(&mut self, why: String) {
        self.phase = Phase::Idle;
        let _ = self.events.send(Event::Failed(self.index, why));
    }

    fn send_ping(&mut self) {
        let seq = self.sent;
        self.sent += 1;
        if self.record_rtt {
            self.last_send = Instant::now();
        }
        if let Err(e) = self.target.tell_serialised(NetPing(seq), self) {
            self.fail(format!("cannot serialise ping: {e:?}"));
        }
    }

    fn begin(&mut self, phase: Phase, goal: u64) {
        self.phase = phase;
        self.goal = goal;
        self.sent = 0;
        self.received = 0;
        if goal == 0 {
            self.finish();
            return;
        }
        let initial = self.window.min(goal);
        for _ in 0..initial {
            self.send_ping();
        }
    }

    fn finish(&mut self) {
        let phase = std::mem::replace(&mut self.phase, Phase::Idle);
        let ev = match phase {
            Phase::Warmup => Event::Warmed,
            Phase::Run => Event::Done(std::mem::take(&mut self.rtts)),
            Phase::Idle => return,
        };
        let _ = self.events.send(ev);
    }

    fn on_pong(&mut self, seq: u64) {
        if self.phase == Phase::Idle || seq >= self.sent {
            self.fail(format!(
                "unexpected pong {seq} (phase {:?}, sent {})",
                self.phase, self.sent
            ));
            return;
        }
        if self.record_rtt && self.phase == Phase::Run {
            self.rtts.push(self.last_send.elapsed().as_nanos() as u64);
        }
        self.received += 1;
        if self.sent < self.goal {
            self.send_ping();
        }
        if self.received == self.goal {
            self.finish();
        }
    }
}

ignore_lifecycle!(NetPinger);

impl Actor for NetPinger {
    type Message = PingerCmd;

    fn receive_local(&mut self, cmd: PingerCmd) -> HandlerResult {
        match cmd {
            PingerCmd::Warmup(n) => self.begin(Phase::Warmup, n),
            PingerCmd::Go => {
                let n = self.round_trips;
                self.begin(Phase::Run, n)
            }
        }
        Handled::OK
    }

    fn receive_network(&mut self, msg: NetMessage) -> HandlerResult {
        match msg.data.try_deserialise::<NetPong, NetPong>() {
            Ok(pong) => self.on_pong(pong.0),
            Err(e) => self.fail(format!("unexpected message: {e:?}")),
        }
        Handled::OK
    }
}

/// Owns the child process: kills and reaps it by PID when dropped (success,
/// error and panic paths alike), unless it has already been reaped.
struct ChildGuard {
    child: Option<Child>,
    stdin: Option<ChildStdin>,
}

impl ChildGuard {
    /// Closes the child's stdin (its signal to shut down), waits up to
    /// `CHILD_EXIT_TIMEOUT` for it to exit, then kills it. Always reaps.
    fn finish(&mut self) {
        drop(self.stdin.take());
        let Some(mut child) = self.child.take() else {
            return;
        };
        let deadline = Instant::now() + CHILD_EXIT_TIMEOUT;
        loop {
            match child.try_wait() {
                Ok(Some(status)) => {
                    if !status.success() {
                        eprintln!("kompact-peer: net-ponger child exited with {status}");
                    }
                    return;
                }
                Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(10)),
                _ => break,
            }
        }
        eprintln!("kompact-peer: net-ponger child did not exit; killing it");
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        drop(self.stdin.take());
        if let Some(mut child) = self.child.take() {
            // Not reaped on the normal path: kill (SIGKILL) by PID and reap.
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn recv_until(rx: &mpsc::Receiver<Event>, deadline: Instant, what: &str) -> Result<Event, String> {
    let left = deadline.saturating_duration_since(Instant::now());
    match rx.recv_timeout(left) {
        Ok(Event::ChildEof) => Err(format!("net-ponger child exited while {what}")),
        Ok(Event::Failed(i, why)) => Err(format!("pinger {i} failed while {what}: {why}")),
        Ok(ev) => Ok(ev),
        Err(mpsc::RecvTimeoutError::Timeout) => Err(format!("timed out while {what}")),
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            Err(format!("event channel closed while {what}"))
        }
    }
}

/// Entry point of `net-pingpong`.
pub fn net_pingpong(a: PingPongArgs) {
    match run_pinger_side(&a) {
        Ok(()) => {}
        Err(e) => {
            // The child guard has been dropped (child killed and reaped) by
            // the time run_pinger_side returns.
            eprintln!("kompact-peer net-pingpong: {e}");
            std::process::exit(1);
        }
    }
}

fn run_pinger_side(a: &PingPongArgs) -> Result<(), String> {
    let (ev_tx, ev_rx) = mpsc::channel::<Event>();

    // 1. Spawn the ponger process; it is killed/reaped by the guard on every
    //    path out of this function.
    let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    let mut child = Command::new(exe)
        .arg("net-ponger")
        .arg("--pairs")
        .arg(a.pairs.to_string())
        .arg("--threads")
        .arg(a.threads.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("cannot spawn net-ponger: {e}"))?;
    let child_stdout = child.stdout.take().expect("piped stdout");
    let mut guard = ChildGuard {
        stdin: child.stdin.take(),
        child: Some(child),
    };
    {
        let tx = ev_tx.clone();
        thread::Builder::new()
            .name("child-stdout".into())
            .spawn(move || {
                for line in BufReader::new(child_stdout).lines() {
                    match line {
                        Ok(l) => {
                            if tx.send(Event::ChildLine(l)).is_err() {
                                return;
                            }
                        }
                        Err(_) => break,
                    }
                }
                let _ = tx.send(Event::ChildEof);
            })
            .map_err(|e| format!("spawn reader: {e}"))?;
    }

    // 2. Our own networked system (built while the child starts up).
    let system = build_net_system(a.threads)?;
    let result = run_with_system(a, &system, &ev_tx, &ev_rx);

    // 3. Tear down: child first (closing its stdin lets it shut down), then
    //    our system. Both are bounded.
    guard.finish();
    shutdown_bounded(system);
    drop(guard);
    result
}

fn run_with_system(
    a: &PingPongArgs,
    system: &KompactSystem,
    ev_tx: &mpsc::Sender<Event>,
    ev_rx: &mpsc::Receiver<Event>,
) -> Result<(), String> {
    // Wait for the child's ponger paths.
    let deadline = Instant::now() + SETUP_TIMEOUT;
    let mut targets: Vec<ActorPath> = Vec::with_capacity(a.pairs);
    loop {
        match recv_until(ev_rx, deadline, "waiting for the net-ponger child")? {
            Event::ChildLine(l) if l == "ready" => break,
            Event::ChildLine(l) => {
                if let Some(p) = l.strip_prefix("ponger ") {
                    let path: ActorPath = p
                        .parse()
                        .map_err(|e| format!("bad ponger path {p:?}: {e:?}"))?;
                    targets.push(path);
                } else {
                    eprintln!("kompact-peer: net-ponger said: {l}");
                }
            }
            other => return Err(format!("unexpected event during setup: {other:?}")),
        }
    }
    if targets.len() != a.pairs {
        return Err(format!(
            "net-ponger reported {} pongers, expected {}",
            targets.len(),
            a.pairs
        ));
    }

    // Pingers: created, registered (so pongs can be routed back to them) and
    // started; they send nothing until told to.
    let mut pingers = Vec::with_capacity(a.pairs);
    for (i, target) in targets.into_iter().enumerate() {
        let tx = ev_tx.clone();
        let (rt, w) = (a.round_trips, a.window);
        let (pinger, reg) =
            system.create_and_register(move || NetPinger::new(i, target, rt, w, tx));
        match reg.wait_timeout(REGISTRATION_TIMEOUT) {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(format!("pinger registration failed: {e:?}")),
            Err(_) => return Err("pinger registration timed out".into()),
        }
        pingers.push(pinger);
    }
    for p in &pingers {
        system
            .start_notify(p)
            .wait_timeout(REGISTRATION_TIMEOUT)
            .map_err(|_| "pinger did not start".to_string())?;
    }
    let refs: Vec<ActorRef<PingerCmd>> = pingers.iter().map(|p| p.actor_ref()).collect();

    // Warm-up: connect and exchange a few messages on every pair.
    let warmup = WARMUP_ROUND_TRIPS.min(a.round_trips.max(1));
    for r in &refs {
        r.tell(PingerCmd::Warmup(warmup));
    }
    let deadline = Instant::now() + WARMUP_TIMEOUT;
    let mut warmed = 0;
    while warmed < a.pairs {
        match recv_until(ev_rx, deadline, "warming up")? {
            Event::Warmed => warmed += 1,
            Event::ChildLine(l) => eprintln!("kompact-peer: net-ponger said: {l}"),
            other => return Err(format!("unexpected event during warm-up: {other:?}")),
        }
    }

    // Measured section.
    let t0 = Instant::now();
    for r in &refs {
        r.tell(PingerCmd::Go);
    }
    let deadline = t0 + RUN_TIMEOUT;
    let mut done = 0;
    let mut samples: Vec<u64> = Vec::new();
    while done < a.pairs {
        match recv_until(ev_rx, deadline, "running")? {
            Event::Done(rtts) => {
                done += 1;
                if samples.is_empty() {
                    samples = rtts;
                } else {
                    samples.extend_from_slice(&rtts);
                }
            }
            Event::ChildLine(l) => eprintln!("kompact-peer: net-ponger said: {l}"),
            other => return Err(format!("unexpected event during the run: {other:?}")),
        }
    }
    let elapsed = t0.elapsed();

    let rtt_us = if a.window == 1 && !samples.is_empty() {
        samples.sort_unstable();
        let p50 = peer_common::percentile_sorted(&samples, 50.0).unwrap_or(0);
        let p99 = peer_common::percentile_sorted(&samples, 99.0).unwrap_or(0);
        Some((p50 as f64 / 1000.0, p99 as f64 / 1000.0))
    } else {
        None
    };
    peer_common::print_net_pingpong(a, elapsed, rtt_us);
    let _ = std::io::stdout().flush();
    drop(refs);
    drop(pingers);
    Ok(())
}
