//! Hot swap under load: P producers stream numbered events through a relay that is replaced S
//! times; before each swap 1,000 more events are queued at the relay. A checker counts lost,
//! duplicated and reordered events; the pause is the time from the swap request until the new
//! instance handles its first event.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use selfman::prelude::*;
use selfman::Error;

use crate::args::Args;

#[derive(Clone, Debug)]
struct Seq {
    producer: u32,
    n: u64,
}

struct Stream;
impl Port for Stream {
    type Request = Seq;
    type Indication = Seq;
}

/// Counts, per producer, lost / duplicated / reordered sequence numbers.
#[derive(Default)]
struct Checker {
    port: Provided<Stream>,
    seen: Vec<Vec<bool>>,
    next: Vec<u64>,
    stats: Arc<Stats>,
}

#[derive(Default)]
struct Stats {
    received: AtomicU64,
    duplicated: AtomicU64,
    reordered: AtomicU64,
}

impl Checker {
    fn on_seq(&mut self, s: Seq) -> Handled {
        let p = s.producer as usize;
        if self.seen.len() <= p {
            self.seen.resize_with(p + 1, Vec::new);
            self.next.resize(p + 1, 0);
        }
        let seen = &mut self.seen[p];
        let n = s.n as usize;
        if seen.len() <= n {
            seen.resize(n + 1, false);
        }
        if seen[n] {
            self.stats.duplicated.fetch_add(1, Ordering::Relaxed);
        } else if s.n < self.next[p] {
            self.stats.reordered.fetch_add(1, Ordering::Relaxed);
        }
        seen[n] = true;
        self.next[p] = self.next[p].max(s.n + 1);
        self.stats.received.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

impl ComponentDefinition for Checker {
    fn setup(&mut self, s: &mut Setup<Self>) {
        s.provide(|c| &mut c.port, Self::on_seq);
    }
}

/// Forwards; records when its instance handles its first event.
struct Relay {
    input: Provided<Stream>,
    output: Required<Stream>,
    first: Option<std::sync::mpsc::SyncSender<Instant>>,
}

impl Relay {
    fn on_in(&mut self, s: Seq) -> Handled {
        if let Some(first) = self.first.take() {
            let _ = first.send(Instant::now());
        }
        self.output.trigger(s);
        Ok(())
    }
}

impl ComponentDefinition for Relay {
    fn setup(&mut self, s: &mut Setup<Self>) {
        s.provide(|c| &mut c.input, Self::on_in);
        s.require(|c| &mut c.output, |_, _| Ok(()));
    }
}

/// Streams until told to stop, a burst per turn.
struct Producer {
    id: u32,
    out: Required<Stream>,
    kick: Provided<Stream>,
    sent: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl Producer {
    fn on_kick(&mut self, _: Seq) -> Handled {
        if self.stop.load(Ordering::Relaxed) {
            return Ok(());
        }
        for _ in 0..32 {
            let n = self.sent.fetch_add(1, Ordering::Relaxed);
            self.out.trigger(Seq { producer: self.id, n });
        }
        self.kick.share()?.request(Seq { producer: self.id, n: 0 })?;
        Ok(())
    }
}

impl ComponentDefinition for Producer {
    fn setup(&mut self, s: &mut Setup<Self>) {
        s.require(|c| &mut c.out, |_, _| Ok(()));
        s.provide(|c| &mut c.kick, Self::on_kick);
    }
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

pub(crate) fn run(a: &Args) -> Result<String, String> {
    let swaps = a.get("swaps", 1_000)? as usize;
    let producers = a.get("producers", 8)? as u32;
    let queued = a.get("queued", 1_000)?;
    let threads = a.threads()?;
    let rt = Runtime::builder().workers(threads).build();
    let err = |e: Error| e.to_string();
    let t = Duration::from_secs(30);
    let stats = Arc::new(Stats::default());
    let st = stats.clone();
    let checker =
        rt.create(move || Checker { stats: st.clone(), ..Checker::default() }).map_err(err)?;
    let relay = rt
        .create(|| Relay { input: Provided::new(), output: Required::new(), first: None })
        .map_err(err)?;
    rt.link::<Stream>(&checker, &relay).map_err(err)?;
    rt.start_and_wait(&checker, t).map_err(err)?;
    rt.start_and_wait(&relay, t).map_err(err)?;
    let stop = Arc::new(AtomicBool::new(false));
    let mut counters = Vec::new();
    for id in 0..producers {
        let sent = Arc::new(AtomicU64::new(0));
        let (s2, stop2) = (sent.clone(), stop.clone());
        let p = rt
            .create(move || Producer {
                id,
                out: Required::new(),
                kick: Provided::new(),
                sent: s2.clone(),
                stop: stop2.clone(),
            })
            .map_err(err)?;
        rt.link::<Stream>(&relay, &p).map_err(err)?;
        rt.start_and_wait(&p, t).map_err(err)?;
        p.provided::<Stream>().map_err(err)?.request(Seq { producer: id, n: 0 }).map_err(err)?;
        counters.push(sent);
    }
    // The main thread is producer number `producers`: it queues `queued` events before each swap.
    let input = relay.provided::<Stream>().map_err(err)?;
    let mine = producers;
    let mut my_sent = 0u64;
    let mut pauses = Vec::with_capacity(swaps);
    for _ in 0..swaps {
        for _ in 0..queued {
            input.request(Seq { producer: mine, n: my_sent }).map_err(err)?;
            my_sent += 1;
        }
        let (tx, first_handled) = std::sync::mpsc::sync_channel(1);
        let requested = Instant::now();
        rt.replace(&relay, move || Relay {
            input: Provided::new(),
            output: Required::new(),
            first: Some(tx.clone()),
        })
        .map_err(err)?
        .wait(t)
        .map_err(err)?;
        // Block (do not spin: the waiting thread must not take a core from the workers).
        let first = first_handled
            .recv_timeout(t)
            .map_err(|_| "the new instance handled nothing in 30 s")?;
        pauses.push(first.duration_since(requested).as_micros() as u64);
    }
    stop.store(true, Ordering::Relaxed);
    std::thread::sleep(Duration::from_millis(50)); // producers finish their last burst
    let sent: u64 = counters.iter().map(|c| c.load(Ordering::Relaxed)).sum::<u64>() + my_sent;
    let deadline = Instant::now() + t;
    while stats.received.load(Ordering::Relaxed) < sent && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
    std::thread::sleep(Duration::from_millis(20));
    let received = stats.received.load(Ordering::Relaxed);
    let duplicated = stats.duplicated.load(Ordering::Relaxed);
    let reordered = stats.reordered.load(Ordering::Relaxed);
    let lost = (sent + duplicated).saturating_sub(received);
    rt.shutdown().map_err(err)?;
    pauses.sort_unstable();
    Ok(format!(
        "swap swaps={swaps} producers={producers} lost={lost} duplicated={duplicated} reordered={reordered} pause_us_p50={} pause_us_p99={} events={sent}",
        percentile(&pauses, 0.5),
        percentile(&pauses, 0.99)
    ))
}
