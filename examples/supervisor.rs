//! Supervision: a `Worker` that crashes on bad input is restarted by its supervisor with a fresh
//! instance; the requests queued behind the bad one are still served, and after too many
//! crashes in a short time the supervisor gives up and escalates.
//!
//! Run it with `cargo run --release --example supervisor`.

use std::sync::mpsc;
use std::time::Duration;

use selfman::prelude::*;
use selfman::{LifecycleState, Strategy, SupervisorPolicy};

// ANCHOR: worker
/// Parses numbers; panics on anything else. Its running total is the state a restart loses.
struct Parse;

impl Port for Parse {
    type Request = String;
    type Indication = u64;
}

#[derive(Default)]
struct Worker {
    port: Provided<Parse>,
    total: u64,
}

impl Worker {
    fn on_text(&mut self, text: String) -> Handled {
        let n: u64 = text.parse().expect("workers only get numbers"); // crashes on bad input
        self.total += n;
        self.port.trigger(self.total);
        Ok(())
    }
}

impl ComponentDefinition for Worker {
    fn setup(&mut self, setup: &mut Setup<Self>) {
        setup.provide(|c| &mut c.port, Self::on_text);
    }
}
// ANCHOR_END: worker

/// The supervisor: a component with no ports of its own, the worker's parent.
#[derive(Default)]
struct Foreman;

impl ComponentDefinition for Foreman {
    fn setup(&mut self, _: &mut Setup<Self>) {}
}

/// Collects the worker's running totals.
struct Collector {
    port: Required<Parse>,
    totals: mpsc::Sender<u64>,
}

impl Collector {
    fn on_total(&mut self, total: u64) -> Handled {
        let _ = self.totals.send(total);
        Ok(())
    }
}

impl ComponentDefinition for Collector {
    fn setup(&mut self, setup: &mut Setup<Self>) {
        setup.require(|c| &mut c.port, Self::on_total);
    }
}

/// What happened: the totals reported, the worker's restarts, and whether the foreman failed.
struct Outcome {
    totals: Vec<u64>,
    restarts: u64,
    foreman_fault: Option<String>,
}

fn run() -> Result<Outcome, Box<dyn std::error::Error>> {
    let rt = Runtime::builder().workers(2).build();
    let wait = Duration::from_secs(5);
    let (tx, totals) = mpsc::channel();

    // ANCHOR: supervise
    let foreman = rt.create(Foreman::default)?;
    rt.supervise(
        &foreman,
        SupervisorPolicy::restart(Strategy::OneForOne)
            .intensity(2, Duration::from_secs(10)) // a third crash within 10 s escalates
            .backoff(Duration::from_millis(10), Duration::from_millis(100)),
    )?;
    let worker = rt.create_child(&foreman, Worker::default)?;
    // ANCHOR_END: supervise
    let collector = rt.create(move || Collector { port: Required::new(), totals: tx.clone() })?;
    rt.link::<Parse>(&worker, &collector)?;
    rt.start_and_wait(&collector, wait)?;
    rt.start_and_wait(&foreman, wait)?;

    let input = worker.provided::<Parse>()?;
    let mut seen = Vec::new();
    // Two crashes: each time a fresh worker (total back to 0) serves what was queued behind.
    for batch in [["5", "oops", "7"], ["1", "???", "2"]] {
        for text in batch {
            input.request(text.to_owned())?;
        }
        seen.push(totals.recv_timeout(wait)?);
        seen.push(totals.recv_timeout(wait)?);
    }
    // The third crash exceeds the intensity: the foreman escalates to the root, whose default
    // policy logs it and stops the foreman's subtree.
    input.request("!".to_owned())?;
    foreman.await_state(LifecycleState::Passive, wait)?;
    let outcome = Outcome {
        totals: seen,
        restarts: worker.restarts(),
        foreman_fault: foreman.last_fault().map(|f| f.error),
    };
    rt.shutdown()?;
    Ok(outcome)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = run()?;
    println!("running totals: {:?} (each restart starts from 0)", out.totals);
    println!("worker restarts: {}", out.restarts);
    if let Some(why) = out.foreman_fault {
        println!("the foreman gave up: {why}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn runs() {
        let out = super::run().expect("the supervisor example runs");
        // 5; crash; a fresh worker: 7, then 7 + 1 = 8; crash; a fresh worker: 2.
        assert_eq!(out.totals, [5, 7, 8, 2]);
        assert_eq!(out.restarts, 2);
        let why = out.foreman_fault.expect("the foreman escalated");
        assert!(why.contains("restart intensity exceeded"), "{why}");
    }
}
