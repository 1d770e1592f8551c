//! Ping-pong between two nodes of one process over loopback TCP (local delivery off): a quick
//! local measurement of the transport. The two-process benchmark lives in `benches/`.
//!
//! `cargo run --release -p selfman-net --example net_pingpong -- [pairs] [window] [round_trips]`

use std::sync::mpsc;
use std::time::{Duration, Instant};

use selfman_core::{
    ComponentDefinition, Handled, Host, NetIndication, Network, NodeAddr, Required, Setup,
};
use selfman_net::{NetConfig, TcpNetwork};
use selfman_runtime::Runtime;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
enum Msg {
    Ping(u64),
    Pong(u64),
}

struct Pinger {
    net: Required<Network<Msg>>,
    peer: NodeAddr,
    window: u64,
    total: u64,
    sent: u64,
    received: u64,
    started: Option<Instant>,
    rtts: Vec<u32>,
    sent_at: Instant,
    done: mpsc::Sender<Vec<u32>>,
}

impl Pinger {
    fn on_net(&mut self, ev: NetIndication<Msg>) -> Handled {
        match ev {
            NetIndication::Deliver(d) => {
                if let Msg::Pong(_) = d.msg {
                    self.received += 1;
                    if self.window == 1 {
                        self.rtts.push(self.sent_at.elapsed().as_micros() as u32);
                    }
                    if self.received == self.total {
                        let _ = self.done.send(std::mem::take(&mut self.rtts));
                    } else if self.sent < self.total {
                        self.send();
                    }
                }
            }
            NetIndication::Status(_) => {}
        }
        Ok(())
    }

    fn send(&mut self) {
        if self.window == 1 {
            self.sent_at = Instant::now();
        }
        self.net.send(self.peer, Msg::Ping(self.sent));
        self.sent += 1;
    }
}

impl ComponentDefinition for Pinger {
    fn setup(&mut self, setup: &mut Setup<Self>) {
        setup.require(|c| &mut c.net, Self::on_net);
    }

    fn on_start(&mut self) -> Handled {
        self.started = Some(Instant::now());
        for _ in 0..self.window.min(self.total) {
            self.send();
        }
        Ok(())
    }
}

#[derive(Default)]
struct Ponger {
    net: Required<Network<Msg>>,
}

impl Ponger {
    fn on_net(&mut self, ev: NetIndication<Msg>) -> Handled {
        if let NetIndication::Deliver(d) = ev {
            if let Msg::Ping(n) = d.msg {
                self.net.send(d.from, Msg::Pong(n));
            }
        }
        Ok(())
    }
}

impl ComponentDefinition for Ponger {
    fn setup(&mut self, setup: &mut Setup<Self>) {
        setup.require(|c| &mut c.net, Self::on_net);
    }
}

fn main() {
    let args: Vec<u64> = std::env::args().skip(1).map(|a| a.parse().expect("numbers")).collect();
    let pairs = args.first().copied().unwrap_or(1);
    let window = args.get(1).copied().unwrap_or(1).max(1);
    let total = args.get(2).copied().unwrap_or(100_000);
    let rt = Runtime::new();
    let cfg = NetConfig::default().local_delivery(false);
    let a = TcpNetwork::start(&rt, cfg.clone()).unwrap();
    let b = TcpNetwork::start(&rt, cfg).unwrap();
    let (tx, rx) = mpsc::channel();
    let mut pingers = Vec::new();
    for p in 0..pairs {
        let name = format!("pingpong-{p}");
        let bport = b.network::<Msg>(&name).unwrap();
        let ponger = b.create(Ponger::default).unwrap();
        rt.connect(&bport, &ponger.required().unwrap()).unwrap();
        rt.start_and_wait(&ponger, Duration::from_secs(5)).unwrap();
        let aport = a.network::<Msg>(&name).unwrap();
        let peer = b.local();
        let tx = tx.clone();
        let pinger = a
            .create(move || Pinger {
                net: Required::new(),
                peer,
                window,
                total,
                sent: 0,
                received: 0,
                started: None,
                rtts: Vec::with_capacity(total as usize),
                sent_at: Instant::now(),
                done: tx.clone(),
            })
            .unwrap();
        rt.connect(&aport, &pinger.required().unwrap()).unwrap();
        pingers.push(pinger);
    }
    let start = Instant::now();
    for p in &pingers {
        rt.start(p).unwrap();
    }
    let mut rtts = Vec::new();
    for _ in 0..pairs {
        rtts.extend(rx.recv_timeout(Duration::from_secs(600)).expect("pinger finished"));
    }
    let elapsed = start.elapsed();
    let msgs = 2 * pairs * total;
    rtts.sort_unstable();
    let pct = |q: f64| {
        if rtts.is_empty() {
            "NA".to_string()
        } else {
            rtts[((rtts.len() - 1) as f64 * q) as usize].to_string()
        }
    };
    println!(
        "net-pingpong(in-process) pairs={pairs} window={window} round_trips={total} elapsed_ms={} msgs_per_s={:.0} rtt_us_p50={} rtt_us_p99={}",
        elapsed.as_millis(),
        msgs as f64 / elapsed.as_secs_f64(),
        pct(0.5),
        pct(0.99)
    );
    let s = a.stats();
    eprintln!(
        "a: frames_out={} writes={} ({:.1} frames/write) frames_in={} reads={}",
        s.frames_out,
        s.writes,
        s.frames_out as f64 / s.writes.max(1) as f64,
        s.frames_in,
        s.reads
    );
    drop((a, b));
    rt.shutdown().unwrap();
}
