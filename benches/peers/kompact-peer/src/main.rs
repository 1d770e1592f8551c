//! Kompact peer benchmark (same CLI/output as Selfman's `selfman-bench`).
//!
//! * `pingpong`: P pinger/ponger pairs, each connected by a Kompact *port*
//!   (`biconnect_components`), pings are port requests and pongs are port
//!   indications. Each pinger keeps at most W pings in flight.
//! * `components`: C minimal components (one port each), connected pairwise,
//!   started; reports time and net heap bytes per component.
//! * `net-pingpong`: K pinger actors in this process, K ponger actors in a
//!   child process (hidden `net-ponger` subcommand), over loopback TCP with
//!   Kompact's `NetworkDispatcher` (crate `kompact-net`); see `net.rs`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use kompact::prelude::*;
use peer_common::{Command, ComponentsArgs, PingPongArgs};

mod net;

#[global_allocator]
static ALLOC: peer_common::CountingAlloc = peer_common::CountingAlloc;

// ---------------------------------------------------------------------------
// System setup
// ---------------------------------------------------------------------------

/// Kompact config shared by every benchmark: T pool threads, Kompact's
/// logger on stderr (records below `min_level` dropped), everything else at
/// Kompact's defaults.
fn kompact_config(threads: usize, min_level: slog::Level) -> KompactConfig {
    let mut cfg = KompactConfig::default();
    // Thread pool size; everything else (throughput = 50, message priority =
    // 0.5, scheduler = auto -> crossbeam work-stealing small pool) stays at
    // Kompact's defaults.
    cfg.set_config_value(&kompact::config_keys::system::THREADS, threads);
    // Kompact's default root logger writes to *stdout*; route it to stderr so
    // the result line is the only thing on stdout.
    let decorator = slog_term::TermDecorator::new().stderr().build();
    let drain = slog_term::FullFormat::new(decorator).build().fuse();
    let drain = slog::LevelFilter::new(drain, min_level).fuse();
    let drain = slog_async::Async::new(drain).chan_size(1024).build().fuse();
    let logger = slog::Logger::root_typed(Arc::new(drain), o!());
    cfg.logger(logger);
    cfg
}

fn build_system(threads: usize) -> KompactSystem {
    // All levels Kompact's release build keeps (info and up), as before.
    kompact_config(threads, slog::Level::Info)
        .build()
        .wait()
        .expect("Kompact system")
}

fn shutdown(system: KompactSystem) {
    system.shutdown().wait().expect("Kompact shutdown");
}

// ---------------------------------------------------------------------------
// pingpong
// ---------------------------------------------------------------------------

#[derive(Clone, Debug)]
struct Ping(u64);

#[derive(Clone, Debug)]
struct Pong(u64);

/// Pinger requires it, ponger provides it: pings are requests, pongs are
/// indications.
struct PingPongPort;

impl Port for PingPongPort {
    type Indication = Pong;
    type Request = Ping;
}

#[derive(ComponentDefinition, Actor)]
struct Ponger {
    ctx: ComponentContext<Self>,
    port: ProvidedPort<PingPongPort>,
}

impl Ponger {
    fn new() -> Self {
        Ponger {
            ctx: ComponentContext::uninitialised(),
            port: ProvidedPort::uninitialised(),
        }
    }
}

ignore_lifecycle!(Ponger);

impl Provide<PingPongPort> for Ponger {
    fn handle(&mut self, ping: Ping) -> HandlerResult {
        self.port.trigger(Pong(ping.0));
        Handled::OK
    }
}

#[derive(ComponentDefinition, Actor)]
struct Pinger {
    ctx: ComponentContext<Self>,
    port: RequiredPort<PingPongPort>,
    round_trips: u64,
    window: u64,
    sent: u64,
    received: u64,
    done: mpsc::Sender<()>,
}

impl Pinger {
    fn new(round_trips: u64, window: u64, done: mpsc::Sender<()>) -> Self {
        Pinger {
            ctx: ComponentContext::uninitialised(),
            port: RequiredPort::uninitialised(),
            round_trips,
            window,
            sent: 0,
            received: 0,
            done,
        }
    }

    fn send_ping(&mut self) {
        self.port.trigger(Ping(self.sent));
        self.sent += 1;
    }
}

impl ComponentLifecycle for Pinger {
    fn on_start(&mut self) -> HandlerResult {
        if self.round_trips == 0 {
            let _ = self.done.send(());
            return Handled::OK;
        }
        let initial = self.window.min(self.round_trips);
        for _ in 0..initial {
            self.send_ping();
        }
        Handled::OK
    }
}

impl Require<PingPongPort> for Pinger {
    fn handle(&mut self, pong: Pong) -> HandlerResult {
        debug_assert!(pong.0 < self.sent);
        self.received += 1;
        if self.sent < self.round_trips {
            self.send_ping();
        }
        if self.received == self.round_trips {
            // N-th pong: this pair is complete.
            let _ = self.done.send(());
        }
        Handled::OK
    }
}

fn pingpong(a: PingPongArgs) {
    let system = build_system(a.threads);
    let (done_tx, done_rx) = mpsc::channel::<()>();

    let mut pingers = Vec::with_capacity(a.pairs);
    let mut pongers = Vec::with_capacity(a.pairs);
    for _ in 0..a.pairs {
        let ponger = system.create(Ponger::new);
        let tx = done_tx.clone();
        let pinger = system.create(move || Pinger::new(a.round_trips, a.window, tx));
        biconnect_components::<PingPongPort, _, _>(&ponger, &pinger).expect("connect pair");
        pongers.push(ponger);
        pingers.push(pinger);
    }
    drop(done_tx);

    // Pongers must be running before the first ping arrives.
    let started: Vec<_> = pongers.iter().map(|p| system.start_notify(p)).collect();
    for f in started {
        f.wait_timeout(Duration::from_secs(60))
            .expect("ponger did not start");
    }

    // Measured section: start the pingers (which send their first window in
    // on_start) and wait until every pinger has received its N-th pong.
    let t0 = Instant::now();
    for p in &pingers {
        system.start(p);
    }
    for _ in 0..a.pairs {
        done_rx.recv().expect("pinger vanished before completing");
    }
    let elapsed = t0.elapsed();

    peer_common::print_pingpong(&a, elapsed);

    shutdown(system);
    drop(pingers);
    drop(pongers);
}

// ---------------------------------------------------------------------------
// components
// ---------------------------------------------------------------------------

/// A port that carries nothing; it exists so that components can be connected.
struct MinPort;

impl Port for MinPort {
    type Indication = Never;
    type Request = Never;
}

static STARTED_LEFT: AtomicUsize = AtomicUsize::new(0);
static ALL_STARTED: OnceLock<mpsc::Sender<()>> = OnceLock::new();

fn component_started() {
    if STARTED_LEFT.fetch_sub(1, Ordering::AcqRel) == 1 {
        if let Some(tx) = ALL_STARTED.get() {
            let _ = tx.send(());
        }
    }
}

/// Minimal component providing one port (the "ponger" side of a pair).
#[derive(ComponentDefinition, Actor)]
struct MinProvider {
    ctx: ComponentContext<Self>,
    port: ProvidedPort<MinPort>,
}

impl ComponentLifecycle for MinProvider {
    fn on_start(&mut self) -> HandlerResult {
        component_started();
        Handled::OK
    }
}

impl Provide<MinPort> for MinProvider {
    fn handle(&mut self, _e: Never) -> HandlerResult {
        unreachable!()
    }
}

/// Minimal component requiring one port (the "pinger" side of a pair).
#[derive(ComponentDefinition, Actor)]
struct MinRequirer {
    ctx: ComponentContext<Self>,
    port: RequiredPort<MinPort>,
}

impl ComponentLifecycle for MinRequirer {
    fn on_start(&mut self) -> HandlerResult {
        component_started();
        Handled::OK
    }
}

impl Require<MinPort> for MinRequirer {
    fn handle(&mut self, _e: Never) -> HandlerResult {
        unreachable!()
    }
}

fn components(a: ComponentsArgs) {
    let c = a.count;
    let system = build_system(a.threads);
    let (tx, rx) = mpsc::channel::<()>();
    ALL_STARTED.set(tx).expect("set once");
    STARTED_LEFT.store(c, Ordering::SeqCst);

    let pairs = c / 2;
    let odd = c % 2;
    // Handle vectors are allocated before counting starts, so only the
    // framework's own per-component memory is measured.
    let mut providers: Vec<Arc<Component<MinProvider>>> = Vec::with_capacity(pairs + odd);
    let mut requirers: Vec<Arc<Component<MinRequirer>>> = Vec::with_capacity(pairs);

    peer_common::start_counting();
    let t0 = Instant::now();
    for _ in 0..pairs {
        let p = system.create(|| MinProvider {
            ctx: ComponentContext::uninitialised(),
            port: ProvidedPort::uninitialised(),
        });
        let r = system.create(|| MinRequirer {
            ctx: ComponentContext::uninitialised(),
            port: RequiredPort::uninitialised(),
        });
        biconnect_components::<MinPort, _, _>(&p, &r).expect("connect pair");
        providers.push(p);
        requirers.push(r);
    }
    if odd == 1 {
        providers.push(system.create(|| MinProvider {
            ctx: ComponentContext::uninitialised(),
            port: ProvidedPort::uninitialised(),
        }));
    }
    for p in &providers {
        system.start(p);
    }
    for r in &requirers {
        system.start(r);
    }
    if c > 0 {
        rx.recv().expect("start notification");
    }
    let elapsed = t0.elapsed();
    let net = peer_common::stop_counting();

    peer_common::print_components(c, elapsed, net);

    shutdown(system);
    drop(providers);
    drop(requirers);
}

fn main() {
    match peer_common::parse_args() {
        Command::PingPong(a) => pingpong(a),
        Command::Components(a) => components(a),
        Command::NetPingPong(a) => net::net_pingpong(a),
        Command::NetPonger(a) => net::net_ponger(a),
    }
}
