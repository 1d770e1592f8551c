//! Ping-pong: a `Pinger` and a `Ponger` connected over a `PingPong` port play 100 000 round
//! trips, one ping in flight at a time; the program prints the count and the throughput.
//!
//! Run it with `cargo run --release --example pingpong`.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use selfman::prelude::*;

/// Round trips played by `cargo run --example pingpong` (and by its test).
const ROUND_TRIPS: u64 = 100_000;

// ANCHOR: define_port
/// Sent by the pinger; carries the round-trip number.
#[derive(Clone, Debug)]
struct Ping(u64);

/// The answer to a `Ping`, with the same number.
#[derive(Clone, Debug)]
struct Pong(u64);

/// Pings flow to the provider of the port, pongs flow back.
struct PingPong;

impl Port for PingPong {
    type Request = Ping;
    type Indication = Pong;
}
// ANCHOR_END: define_port

// ANCHOR: ponger
/// Provides `PingPong`: answers every ping with a pong.
#[derive(Default)]
struct Ponger {
    pings: Provided<PingPong>,
}

impl Ponger {
    fn on_ping(&mut self, ping: Ping) -> Handled {
        self.pings.trigger(Pong(ping.0));
        Ok(())
    }
}

impl ComponentDefinition for Ponger {
    fn setup(&mut self, setup: &mut Setup<Self>) {
        setup.provide(|c| &mut c.pings, Self::on_ping);
    }
}
// ANCHOR_END: ponger

// ANCHOR: pinger
/// Requires `PingPong`: sends a ping, and the next one when the pong comes back.
struct Pinger {
    pongs: Required<PingPong>,
    round_trips: u64,
    received: u64,
    done: mpsc::Sender<u64>,
}

impl Pinger {
    fn new(round_trips: u64, done: mpsc::Sender<u64>) -> Self {
        Pinger { pongs: Required::new(), round_trips, received: 0, done }
    }

    fn on_pong(&mut self, pong: Pong) -> Handled {
        if pong.0 != self.received {
            let msg = format!("pong {} arrived, expected {}", pong.0, self.received);
            return Err(HandlerError::unrecoverable(msg));
        }
        self.received += 1;
        if self.received < self.round_trips {
            self.pongs.trigger(Ping(self.received));
        } else {
            self.done.send(self.received)?;
        }
        Ok(())
    }
}

impl ComponentDefinition for Pinger {
    fn setup(&mut self, setup: &mut Setup<Self>) {
        setup.require(|c| &mut c.pongs, Self::on_pong);
    }

    fn on_start(&mut self) -> Handled {
        self.pongs.trigger(Ping(0));
        Ok(())
    }
}
// ANCHOR_END: pinger

/// What [`run`] measured.
#[derive(Debug)]
struct Report {
    round_trips: u64,
    elapsed: Duration,
}

fn run(round_trips: u64) -> Result<Report, Box<dyn std::error::Error>> {
    // ANCHOR: wire
    let rt = Runtime::builder().workers(2).build();
    let (done, finished) = mpsc::channel();
    let ponger = rt.create(Ponger::default)?;
    let pinger = rt.create(move || Pinger::new(round_trips, done.clone()))?;
    rt.link::<PingPong>(&ponger, &pinger)?;

    rt.start_and_wait(&ponger, Duration::from_secs(5))?;
    let started = Instant::now();
    rt.start_and_wait(&pinger, Duration::from_secs(5))?;
    let completed = finished.recv_timeout(Duration::from_secs(60))?;
    let elapsed = started.elapsed();
    rt.shutdown()?;
    // ANCHOR_END: wire
    Ok(Report { round_trips: completed, elapsed })
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let report = run(ROUND_TRIPS)?;
    let secs = report.elapsed.as_secs_f64();
    println!(
        "{} round trips in {:.3} s: {:.0} round trips/s ({:.2} µs each)",
        report.round_trips,
        secs,
        report.round_trips as f64 / secs,
        secs * 1e6 / report.round_trips as f64,
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn runs() {
        let report = super::run(super::ROUND_TRIPS).expect("pingpong runs");
        assert_eq!(report.round_trips, super::ROUND_TRIPS);
    }
}
