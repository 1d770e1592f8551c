//! Connecting and disconnecting at any time: during a stream, from inside handlers, repeatedly.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{eventually, runtime, Num, Numbers, Sink, WAIT};
use parking_lot::Mutex;
use selfman_core::{
    Channel, ComponentDefinition, Context, Error, Handled, Provided, Required, Setup,
};

/// Streams numbers to whoever is connected, one per turn, until told to stop.
struct Streamer {
    out: Required<Numbers>,
    kick: Provided<Numbers>,
    n: u64,
    running: Arc<AtomicBool>,
}

impl Streamer {
    fn on_kick(&mut self, _: Num) -> Handled {
        for _ in 0..10 {
            self.out.trigger(Num(self.n));
            self.n += 1;
        }
        if self.running.load(Ordering::Relaxed) {
            self.kick.share()?.request(Num(0))?;
        }
        Ok(())
    }
    fn on_ind(&mut self, _: Num) -> Handled {
        Ok(())
    }
}

impl ComponentDefinition for Streamer {
    fn setup(&mut self, s: &mut Setup<Self>) {
        s.require(|c| &mut c.out, Self::on_ind);
        s.provide(|c| &mut c.kick, Self::on_kick);
    }
}

#[test]
fn channel_disconnect_during_a_stream() {
    let rt = runtime(2);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s2 = seen.clone();
    let sink = rt.create(move || Sink::new(s2.clone())).unwrap();
    let running = Arc::new(AtomicBool::new(true));
    let r2 = running.clone();
    let streamer = rt
        .create(move || Streamer {
            out: Required::new(),
            kick: Provided::new(),
            n: 0,
            running: r2.clone(),
        })
        .unwrap();
    let mut ch = rt.link::<Numbers>(&sink, &streamer).unwrap();
    rt.start_and_wait(&sink, WAIT).unwrap();
    rt.start_and_wait(&streamer, WAIT).unwrap();
    streamer.provided::<Numbers>().unwrap().request(Num(0)).unwrap();

    for round in 0..20 {
        eventually("stream flows", || seen.lock().len() > 100 * (round + 1));
        ch.disconnect().unwrap();
        // Whatever was queued before the disconnect returned is still delivered, then nothing.
        eventually("backlog drained", || sink.queued() == 0);
        let settled = seen.lock().len();
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(seen.lock().len(), settled, "nothing arrives after a disconnect settles");
        assert!(!ch.is_connected());
        assert_eq!(ch.disconnect(), Err(Error::Disconnected(ch.id())));
        // Reconnect (a new channel) and the stream resumes.
        let ch2 = rt.link::<Numbers>(&sink, &streamer).unwrap();
        eventually("stream resumes", || seen.lock().len() > settled + 50);
        ch = ch2;
    }
    running.store(false, Ordering::Relaxed);
    // Within one channel's lifetime the numbers increase strictly.
    let v = seen.lock().clone();
    let mut by_channel = std::collections::HashMap::<u64, u64>::new();
    for (ch, n) in v {
        if let Some(prev) = by_channel.insert(ch, n) {
            assert!(n > prev, "channel {ch}: {n} after {prev}");
        }
    }
    rt.shutdown().unwrap();
}

/// On every event, disconnects its channel and connects a fresh one to the same provider —
/// from inside its handler.
struct Rewirer {
    port: Required<Numbers>,
    ctx: Context,
    target: Arc<Mutex<Option<selfman_core::ProvidedRef<Numbers>>>>,
    channel: Option<Channel<Numbers>>,
    rewired: Arc<AtomicU64>,
}

impl Rewirer {
    fn on_num(&mut self, n: Num) -> Handled {
        if let Some(ch) = self.channel.take() {
            ch.disconnect()?;
        }
        let target = self.target.lock().clone().expect("target set");
        let me = self.ctx.me().required::<Numbers>()?;
        self.channel = Some(self.ctx.system().connect(&target, &me)?);
        self.rewired.fetch_add(1, Ordering::Relaxed);
        self.port.trigger(Num(n.0 + 1));
        Ok(())
    }
}

impl ComponentDefinition for Rewirer {
    fn setup(&mut self, s: &mut Setup<Self>) {
        s.require(|c| &mut c.port, Self::on_num);
        s.context(|c| &mut c.ctx);
    }
}

/// Echoes each request back as an indication.
#[derive(Default)]
struct Echo {
    port: Provided<Numbers>,
}
impl Echo {
    fn on_num(&mut self, n: Num) -> Handled {
        self.port.reply(n)?;
        Ok(())
    }
}
impl ComponentDefinition for Echo {
    fn setup(&mut self, s: &mut Setup<Self>) {
        s.provide(|c| &mut c.port, Self::on_num);
    }
}

#[test]
fn channel_rewire_from_inside_handlers() {
    let rt = runtime(2);
    let echo = rt.create(Echo::default).unwrap();
    let target = Arc::new(Mutex::new(None));
    let rewired = Arc::new(AtomicU64::new(0));
    let (t2, r2) = (target.clone(), rewired.clone());
    let rewirer = rt
        .create(move || Rewirer {
            port: Required::new(),
            ctx: Context::new(),
            target: t2.clone(),
            channel: None,
            rewired: r2.clone(),
        })
        .unwrap();
    *target.lock() = Some(echo.provided::<Numbers>().unwrap());
    rt.start_and_wait(&echo, WAIT).unwrap();
    rt.start_and_wait(&rewirer, WAIT).unwrap();
    rewirer.required::<Numbers>().unwrap().indicate(Num(0)).unwrap();
    // Each round trip rewires once; the loop continues over fresh channels.
    eventually("1000 rewires", || rewired.load(Ordering::Relaxed) >= 1_000);
    assert!(rewirer.ports()[0].channels.len() <= 1);
    rt.shutdown().unwrap();
}

#[test]
fn channel_connect_disconnect_races_do_not_deadlock() {
    let rt = runtime(2);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s2 = seen.clone();
    let sink = rt.create(move || Sink::new(s2.clone())).unwrap();
    rt.start_and_wait(&sink, WAIT).unwrap();
    let provided = sink.provided::<Numbers>().unwrap();
    let listeners: Vec<_> = (0..4)
        .map(|_| {
            let l = Arc::new(Mutex::new(Vec::new()));
            let c = rt.create(move || common::Listener::new(l.clone())).unwrap();
            rt.start(&c).unwrap();
            c
        })
        .collect();
    let sys = rt.system().clone();
    std::thread::scope(|s| {
        for l in &listeners {
            let (sys, provided) = (sys.clone(), provided.clone());
            let req = l.required::<Numbers>().unwrap();
            s.spawn(move || {
                for _ in 0..2_000 {
                    let ch = sys.connect(&provided, &req).unwrap();
                    ch.disconnect().unwrap();
                }
            });
        }
        // Meanwhile the sink keeps triggering to whatever is connected.
        for _ in 0..200 {
            sink.on_definition(|s| {
                for n in 0..10 {
                    s.port.trigger(Num(n));
                }
            })
            .unwrap();
        }
    });
    assert!(sink.ports()[0].channels.is_empty());
    rt.shutdown().unwrap();
}
