//! actix peer benchmark (same CLI/output as Selfman's `selfman-bench`).
//!
//! Threads: T actix `Arbiter`s (one OS thread + single-threaded tokio runtime
//! each). Actors are placed pair-wise: pair i (pinger and ponger, or the two
//! halves of a components pair) lives on arbiter i % T, which is actix's
//! idiomatic placement (an actor and the actors it spawns share an arbiter).
//! With P < T some arbiters stay idle.
//!
//! * `pingpong`: pings/pongs are actor messages sent with `Addr::do_send`;
//!   each pinger keeps at most W pings in flight.
//! * `components`: C minimal actors, each holding the address of its partner.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::OnceLock;
use std::time::Instant;

use actix::prelude::*;
use peer_common::{Command, ComponentsArgs, PingPongArgs};

#[global_allocator]
static ALLOC: peer_common::CountingAlloc = peer_common::CountingAlloc;

/// Creates the runtime: a registered `System` on the main thread (needed by
/// `Arbiter::new`) plus T worker arbiters that run all actors.
fn build_runtime(threads: usize) -> (SystemRunner, Vec<Arbiter>) {
    let sys = System::new();
    let arbiters = (0..threads).map(|_| Arbiter::new()).collect();
    (sys, arbiters)
}

fn shutdown(sys: SystemRunner, arbiters: Vec<Arbiter>) {
    for a in &arbiters {
        a.stop();
    }
    for a in arbiters {
        let _ = a.join();
    }
    System::current().stop();
    drop(sys);
}

// ---------------------------------------------------------------------------
// pingpong
// ---------------------------------------------------------------------------

struct Ping(u64);
impl Message for Ping {
    type Result = ();
}

struct Pong(u64);
impl Message for Pong {
    type Result = ();
}

/// Tells a pinger to send its first window.
struct Go;
impl Message for Go {
    type Result = ();
}

struct Ponger {
    pinger: Addr<Pinger>,
}

impl Actor for Ponger {
    type Context = Context<Self>;
}

impl Handler<Ping> for Ponger {
    type Result = ();
    fn handle(&mut self, ping: Ping, _ctx: &mut Context<Self>) {
        self.pinger.do_send(Pong(ping.0));
    }
}

struct Pinger {
    ponger: Addr<Ponger>,
    round_trips: u64,
    window: u64,
    sent: u64,
    received: u64,
    ready: mpsc::Sender<()>,
    done: mpsc::Sender<()>,
}

impl Pinger {
    fn send_ping(&mut self) {
        self.ponger.do_send(Ping(self.sent));
        self.sent += 1;
    }
}

impl Actor for Pinger {
    type Context = Context<Self>;
    fn started(&mut self, _ctx: &mut Context<Self>) {
        let _ = self.ready.send(());
    }
}

impl Handler<Go> for Pinger {
    type Result = ();
    fn handle(&mut self, _go: Go, _ctx: &mut Context<Self>) {
        if self.round_trips == 0 {
            let _ = self.done.send(());
            return;
        }
        let initial = self.window.min(self.round_trips);
        for _ in 0..initial {
            self.send_ping();
        }
    }
}

impl Handler<Pong> for Pinger {
    type Result = ();
    fn handle(&mut self, pong: Pong, _ctx: &mut Context<Self>) {
        debug_assert!(pong.0 < self.sent);
        self.received += 1;
        if self.sent < self.round_trips {
            self.send_ping();
        }
        if self.received == self.round_trips {
            // N-th pong: this pair is complete.
            let _ = self.done.send(());
        }
    }
}

fn pingpong(a: PingPongArgs) {
    let (sys, arbiters) = build_runtime(a.threads);
    let (ready_tx, ready_rx) = mpsc::channel::<()>();
    let (done_tx, done_rx) = mpsc::channel::<()>();

    let mut pingers = Vec::with_capacity(a.pairs);
    for i in 0..a.pairs {
        let handle = arbiters[i % arbiters.len()].handle();
        let ready = ready_tx.clone();
        let done = done_tx.clone();
        let (n, w) = (a.round_trips, a.window);
        // The closure runs on the arbiter thread, so the ponger started inside
        // it lives on the same arbiter as its pinger.
        let pinger = Pinger::start_in_arbiter(&handle, move |ctx| {
            let ponger = Ponger {
                pinger: ctx.address(),
            }
            .start();
            Pinger {
                ponger,
                round_trips: n,
                window: w,
                sent: 0,
                received: 0,
                ready,
                done,
            }
        });
        pingers.push(pinger);
    }
    drop(ready_tx);
    drop(done_tx);

    // Wait until every pinger runs (its ponger was started just before it).
    for _ in 0..a.pairs {
        ready_rx.recv().expect("pinger did not start");
    }

    // Measured section.
    let t0 = Instant::now();
    for p in &pingers {
        p.do_send(Go);
    }
    for _ in 0..a.pairs {
        done_rx.recv().expect("pinger vanished before completing");
    }
    let elapsed = t0.elapsed();

    peer_common::print_pingpong(&a, elapsed);

    drop(pingers);
    shutdown(sys, arbiters);
}

// ---------------------------------------------------------------------------
// components
// ---------------------------------------------------------------------------

static STARTED_LEFT: AtomicUsize = AtomicUsize::new(0);
static ALL_STARTED: OnceLock<mpsc::Sender<()>> = OnceLock::new();

fn actor_started() {
    if STARTED_LEFT.fetch_sub(1, Ordering::AcqRel) == 1 {
        if let Some(tx) = ALL_STARTED.get() {
            let _ = tx.send(());
        }
    }
}

/// Minimal actor, "connected" to its partner by holding its address.
struct Min {
    _partner: Option<Addr<Min>>,
}

impl Actor for Min {
    type Context = Context<Self>;
    fn started(&mut self, _ctx: &mut Context<Self>) {
        actor_started();
    }
}

fn components(a: ComponentsArgs) {
    let c = a.count;
    let (sys, arbiters) = build_runtime(a.threads);
    let (tx, rx) = mpsc::channel::<()>();
    ALL_STARTED.set(tx).expect("set once");
    STARTED_LEFT.store(c, Ordering::SeqCst);

    let pairs = c / 2;
    let odd = c % 2;
    let handles: Vec<ArbiterHandle> = arbiters.iter().map(|a| a.handle()).collect();
    // Allocated before counting, so only per-actor memory is measured.
    let mut addrs: Vec<Addr<Min>> = Vec::with_capacity(pairs + odd);

    peer_common::start_counting();
    let t0 = Instant::now();
    for i in 0..pairs {
        let h = &handles[i % handles.len()];
        let first = Min::start_in_arbiter(h, |ctx| {
            let second = Min {
                _partner: Some(ctx.address()),
            }
            .start();
            Min {
                _partner: Some(second),
            }
        });
        addrs.push(first);
    }
    if odd == 1 {
        addrs.push(Min::start_in_arbiter(&handles[pairs % handles.len()], |_| Min {
            _partner: None,
        }));
    }
    if c > 0 {
        rx.recv().expect("start notification");
    }
    let elapsed = t0.elapsed();
    let net = peer_common::stop_counting();

    peer_common::print_components(c, elapsed, net);

    drop(addrs);
    drop(handles);
    shutdown(sys, arbiters);
}

fn main() {
    match peer_common::parse_args() {
        Command::PingPong(a) => pingpong(a),
        Command::Components(a) => components(a),
        Command::NetPingPong(_) | Command::NetPonger(_) => {
            eprintln!("actix-peer: net-pingpong is not implemented for this peer");
            std::process::exit(2)
        }
    }
}
