//! Live swap: a greeting service answering requests under traffic is replaced by a different
//! implementation of the same port and back, carrying its state over each time, while a client
//! keeps sending. The client checks that every request was answered exactly once and in
//! order, and the program prints that nothing was lost.
//!
//! Run it with `cargo run --release --example live_swap`.

use std::sync::mpsc;
use std::time::Duration;

use selfman::prelude::*;

// ANCHOR: port
/// Requests carry a sequence number; replies say who answered.
#[derive(Clone, Debug)]
struct Hello(u64);

/// The answer to `Hello(n)`.
#[derive(Clone, Debug)]
struct Reply {
    n: u64,
    from: &'static str,
}

/// The greeting service.
struct Greeting;

impl Port for Greeting {
    type Request = Hello;
    type Indication = Reply;
}
// ANCHOR_END: port

// ANCHOR: implementations
/// The first implementation.
#[derive(Default)]
struct English {
    port: Provided<Greeting>,
    answered: u64,
}

impl English {
    fn on_hello(&mut self, h: Hello) -> Handled {
        self.answered += 1;
        self.port.reply(Reply { n: h.0, from: "hello" })?;
        Ok(())
    }
}

impl ComponentDefinition for English {
    fn setup(&mut self, setup: &mut Setup<Self>) {
        setup.provide(|c| &mut c.port, Self::on_hello);
    }
}

/// Another implementation of the same port.
#[derive(Default)]
struct French {
    port: Provided<Greeting>,
    answered: u64,
}

impl French {
    fn on_hello(&mut self, h: Hello) -> Handled {
        self.answered += 1;
        self.port.reply(Reply { n: h.0, from: "bonjour" })?;
        Ok(())
    }
}

impl ComponentDefinition for French {
    fn setup(&mut self, setup: &mut Setup<Self>) {
        setup.provide(|c| &mut c.port, Self::on_hello);
    }
}
// ANCHOR_END: implementations

/// Sends `total` hellos in bursts and checks the replies: each number once, in order.
struct Client {
    port: Required<Greeting>,
    kick: Provided<Greeting>,
    sent: u64,
    next: u64,
    total: u64,
    greetings: Vec<&'static str>,
    done: mpsc::Sender<Result<Vec<&'static str>, String>>,
}

impl Client {
    fn on_kick(&mut self, _: Hello) -> Handled {
        for _ in 0..(self.total - self.sent).min(100) {
            self.port.trigger(Hello(self.sent));
            self.sent += 1;
        }
        if self.sent < self.total {
            self.kick.share()?.request(Hello(0))?;
        }
        Ok(())
    }

    fn on_reply(&mut self, r: Reply) -> Handled {
        if r.n != self.next {
            let _ = self.done.send(Err(format!("expected reply {}, got {}", self.next, r.n)));
        }
        self.next = r.n + 1;
        if self.greetings.last() != Some(&r.from) {
            self.greetings.push(r.from);
        }
        if self.next == self.total {
            let _ = self.done.send(Ok(self.greetings.clone()));
        }
        Ok(())
    }
}

impl ComponentDefinition for Client {
    fn setup(&mut self, setup: &mut Setup<Self>) {
        setup.require(|c| &mut c.port, Self::on_reply);
        setup.provide(|c| &mut c.kick, Self::on_kick);
    }
}

/// Sends `total` requests while swapping English → French → English; returns the sequence of
/// greetings the client saw and how many requests the last instance had answered.
fn run(total: u64) -> Result<(Vec<&'static str>, u64), Box<dyn std::error::Error>> {
    let rt = Runtime::builder().workers(2).build();
    let wait = Duration::from_secs(10);
    let (done, finished) = mpsc::channel();
    let greeter = rt.create(English::default)?;
    let client = rt.create(move || Client {
        port: Required::new(),
        kick: Provided::new(),
        sent: 0,
        next: 0,
        total,
        greetings: Vec::new(),
        done: done.clone(),
    })?;
    rt.link::<Greeting>(&greeter, &client)?;
    rt.start_and_wait(&greeter, wait)?;
    rt.start_and_wait(&client, wait)?;
    client.provided::<Greeting>()?.request(Hello(0))?;

    // ANCHOR: swap
    // Swap in another implementation while requests keep flowing, carrying the count of
    // answered requests over.
    std::thread::sleep(Duration::from_millis(2));
    rt.replace_with_state(&greeter, French::default, |old: &mut English, new: &mut French| {
        new.answered = old.answered;
    })?
    .wait(wait)?;

    // And back again.
    std::thread::sleep(Duration::from_millis(2));
    let french = greeter.typed::<French>();
    rt.replace_with_state(&french, English::default, |old: &mut French, new: &mut English| {
        new.answered = old.answered;
    })?
    .wait(wait)?;
    // ANCHOR_END: swap

    let greetings = finished.recv_timeout(Duration::from_secs(30))??;
    let answered = greeter.typed::<English>().on_definition(|e| e.answered)?;
    rt.shutdown()?;
    Ok((greetings, answered))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let total = 200_000;
    let (greetings, answered) = run(total)?;
    println!("greetings seen, in order: {}", greetings.join(" -> "));
    println!("{total} requests, {answered} answered across two swaps: none lost, none twice");
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn runs() {
        let total = 200_000;
        let (greetings, answered) = super::run(total).expect("live swap runs");
        // Every request answered exactly once (the count survived the state transfer).
        assert_eq!(answered, total);
        // The replies came from the first implementation, then (if the swaps happened while
        // traffic flowed) the others, never going back.
        assert_eq!(greetings[0], "hello");
        assert!(greetings.len() <= 3, "{greetings:?}");
    }
}
