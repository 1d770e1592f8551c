//! Hello, world: one component greets when it starts, sets a 50 ms timer, and says goodbye when
//! the timer fires; then the program ends.
//!
//! Run it with `cargo run --example hello_world`.

use std::sync::mpsc;
use std::time::{Duration, Instant};

// ANCHOR: prelude
use selfman::prelude::*;
// ANCHOR_END: prelude

/// What [`run`] observed.
#[derive(Debug)]
struct Outcome {
    /// The lines the component printed, in order.
    lines: Vec<String>,
    /// From starting the component to the goodbye.
    waited: Duration,
}

// ANCHOR: component
/// Greets when started, then once more when its timer fires.
struct Hello {
    ctx: Context,
    timer: Required<Timer>,
    said: mpsc::Sender<String>,
}

const GOODBYE: TimerId = TimerId(1);

impl Hello {
    fn say(&mut self, line: String) -> Handled {
        println!("{line}");
        self.said.send(line)?;
        Ok(())
    }

    fn on_timeout(&mut self, timeout: Timeout) -> Handled {
        if timeout.id != GOODBYE {
            return Ok(()); // not a timer of ours: ignore it
        }
        let line = format!("component {} says goodbye, 50 ms later", self.ctx.id());
        self.say(line)
    }
}

impl ComponentDefinition for Hello {
    fn setup(&mut self, setup: &mut Setup<Self>) {
        setup.context(|c| &mut c.ctx);
        setup.require(|c| &mut c.timer, Self::on_timeout);
    }

    fn on_start(&mut self) -> Handled {
        let line = format!("hello, world from component {}", self.ctx.id());
        self.say(line)?;
        self.timer.schedule_once(GOODBYE, Duration::from_millis(50));
        Ok(())
    }
}
// ANCHOR_END: component

fn run() -> Result<Outcome, Box<dyn std::error::Error>> {
    // ANCHOR: main
    let rt = Runtime::builder().workers(2).build();
    let (said, lines) = mpsc::channel();
    let hello = rt.create(move || Hello {
        ctx: Context::new(),
        timer: Required::new(),
        said: said.clone(),
    })?;
    rt.connect_timer(&hello)?;
    let started = Instant::now();
    rt.start_and_wait(&hello, Duration::from_secs(5))?;

    let greeting = lines.recv_timeout(Duration::from_secs(5))?;
    let goodbye = lines.recv_timeout(Duration::from_secs(5))?;
    let waited = started.elapsed();
    rt.shutdown()?;
    // ANCHOR_END: main
    Ok(Outcome { lines: vec![greeting, goodbye], waited })
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let outcome = run()?;
    println!("said {} lines in {:?}", outcome.lines.len(), outcome.waited);
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    #[test]
    fn runs() {
        let outcome = super::run().expect("hello_world runs");
        assert_eq!(outcome.lines.len(), 2, "{:?}", outcome.lines);
        assert!(
            outcome.lines[0].starts_with("hello, world from component #"),
            "{:?}",
            outcome.lines
        );
        assert!(outcome.lines[1].contains("goodbye"), "{:?}", outcome.lines);
        assert!(
            outcome.waited >= Duration::from_millis(50),
            "the timeout fired after only {:?}",
            outcome.waited
        );
    }
}
