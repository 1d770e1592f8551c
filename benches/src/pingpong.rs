//! P pinger/ponger pairs over a port, at most W pings in flight per pair, N round trips each.

use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Sender};
use selfman::prelude::*;
use selfman::{Strategy, SupervisorPolicy};

use crate::args::Args;

#[derive(Clone, Debug)]
pub(crate) struct Ping;
#[derive(Clone, Debug)]
pub(crate) struct Pong;

pub(crate) struct PingPongPort;
impl Port for PingPongPort {
    type Request = Ping;
    type Indication = Pong;
}

#[derive(Default)]
pub(crate) struct Ponger {
    port: Provided<PingPongPort>,
}

impl Ponger {
    fn on_ping(&mut self, _: Ping) -> Handled {
        self.port.trigger(Pong);
        Ok(())
    }
}

impl ComponentDefinition for Ponger {
    fn setup(&mut self, s: &mut Setup<Self>) {
        s.provide(|c| &mut c.port, Self::on_ping);
    }
}

pub(crate) struct Pinger {
    port: Required<PingPongPort>,
    window: u64,
    total: u64,
    sent: u64,
    received: u64,
    done: Sender<()>,
}

impl Pinger {
    pub(crate) fn new(window: u64, total: u64, done: Sender<()>) -> Self {
        Pinger { port: Required::new(), window, total, sent: 0, received: 0, done }
    }

    fn on_pong(&mut self, _: Pong) -> Handled {
        self.received += 1;
        if self.sent < self.total {
            self.sent += 1;
            self.port.trigger(Ping);
        } else if self.received == self.total {
            let _ = self.done.send(());
        }
        Ok(())
    }
}

impl ComponentDefinition for Pinger {
    fn setup(&mut self, s: &mut Setup<Self>) {
        s.require(|c| &mut c.port, Self::on_pong);
    }
    fn on_start(&mut self) -> Handled {
        let first = self.window.min(self.total);
        for _ in 0..first {
            self.port.trigger(Ping);
        }
        self.sent = first;
        if self.total == 0 {
            let _ = self.done.send(());
        }
        Ok(())
    }
}

/// Parent of supervised pairs.
#[derive(Default)]
struct Supervisor;

/// Panics on every poke; on (re)start it pokes itself, so under a restart policy it crashes and
/// is restarted in a loop — load for "other components keep their throughput".
#[derive(Default)]
struct Panicker {
    port: Provided<PingPongPort>,
}

impl Panicker {
    fn on_poke(&mut self, _: Ping) -> Handled {
        panic!("poked");
    }
}

impl ComponentDefinition for Panicker {
    fn setup(&mut self, s: &mut Setup<Self>) {
        s.provide(|c| &mut c.port, Self::on_poke);
    }
    fn on_start(&mut self) -> Handled {
        self.port.share()?.request(Ping)?;
        Ok(())
    }
}

impl ComponentDefinition for Supervisor {
    fn setup(&mut self, _: &mut Setup<Self>) {}
}

pub(crate) fn run(a: &Args) -> Result<String, String> {
    let pairs = a.get("pairs", 1)?;
    let window = a.get("window", 1)?.max(1);
    let n = a.get("round-trips", 1_000_000)?;
    let threads = a.threads()?;
    let epr = a.get("events-per-run", 128)? as usize;
    let supervised = a.get("supervised", 0)? != 0;
    let rt = Runtime::builder().workers(threads).events_per_run(epr).build();
    let (tx, rx) = bounded(pairs as usize);
    let t = Duration::from_secs(30);
    // With --supervised 1, every pair lives under a supervisor with a restart policy.
    let boss = if supervised {
        let boss = rt.create(Supervisor::default).map_err(|e| e.to_string())?;
        let policy = SupervisorPolicy::restart(Strategy::OneForOne);
        rt.supervise(&boss, policy).map_err(|e| e.to_string())?;
        rt.start_and_wait(&boss, t).map_err(|e| e.to_string())?;
        Some(boss)
    } else {
        None
    };
    // With --panickers K, K components crash and are restarted in a loop during the run.
    let panickers = a.get("panickers", 0)?;
    let crash_boss = if panickers > 0 {
        std::panic::set_hook(Box::new(|_| {})); // a million panic messages would drown stderr
        let boss = rt.create(Supervisor::default).map_err(|e| e.to_string())?;
        let policy = SupervisorPolicy::restart(Strategy::OneForOne)
            .intensity(usize::MAX, Duration::from_secs(1));
        rt.supervise(&boss, policy).map_err(|e| e.to_string())?;
        for _ in 0..panickers {
            rt.create_child(&boss, Panicker::default).map_err(|e| e.to_string())?;
        }
        Some(boss)
    } else {
        None
    };
    let mut pingers = Vec::new();
    for _ in 0..pairs {
        let done = tx.clone();
        let pinger_factory = move || Pinger::new(window, n, done.clone());
        let (ponger, pinger) = match &boss {
            Some(b) => (rt.create_child(b, Ponger::default), rt.create_child(b, pinger_factory)),
            None => (rt.create(Ponger::default), rt.create(pinger_factory)),
        };
        let ponger = ponger.map_err(|e| e.to_string())?;
        let pinger = pinger.map_err(|e| e.to_string())?;
        rt.link::<PingPongPort>(&ponger, &pinger).map_err(|e| e.to_string())?;
        rt.start_and_wait(&ponger, t).map_err(|e| e.to_string())?;
        pingers.push(pinger);
    }
    if let Some(b) = &crash_boss {
        rt.start_and_wait(b, t).map_err(|e| e.to_string())?;
    }
    let before = rt.scheduler_stats();
    let start = Instant::now();
    for p in &pingers {
        rt.start(p).map_err(|e| e.to_string())?;
    }
    for _ in 0..pairs {
        rx.recv_timeout(Duration::from_secs(600)).map_err(|_| "pairs did not finish in 600 s")?;
    }
    let elapsed = start.elapsed();
    let sched = rt.scheduler_stats();
    let restarts: u64 =
        crash_boss.as_ref().map(|b| b.children().iter().map(|c| c.restarts()).sum()).unwrap_or(0);
    rt.shutdown().map_err(|e| e.to_string())?;
    let msgs = 2 * n * pairs;
    let ms = elapsed.as_millis();
    let rate = msgs as f64 / elapsed.as_secs_f64();
    let mut sup = if supervised { " supervised=1".to_owned() } else { String::new() };
    if panickers > 0 {
        sup += &format!(" panickers={panickers} restarts={restarts}");
    }
    // What the scheduler did during the run: turns, the share from a next slot, steals, parks.
    let turns = sched.turns - before.turns;
    let slot_pct = 100.0 * (sched.slot_turns - before.slot_turns) as f64 / turns.max(1) as f64;
    let (steals, parks) = (sched.steals - before.steals, sched.parks - before.parks);
    Ok(format!(
        "pingpong pairs={pairs} window={window} round_trips={n} threads={threads} elapsed_ms={ms} msgs_per_s={rate:.0}{sup} turns={turns} slot_pct={slot_pct:.1} steals={steals} parks={parks}"
    ))
}
