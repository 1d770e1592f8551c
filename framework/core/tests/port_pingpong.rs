use std::sync::mpsc;
use std::time::Duration;

use selfman_core::{ComponentDefinition, Handled, Port, Provided, Required, Setup};
use selfman_runtime::Runtime;

#[derive(Clone, Debug)]
struct Ping(u64);
#[derive(Clone, Debug)]
struct Pong(u64);
struct PingPong;
impl Port for PingPong {
    type Request = Ping;
    type Indication = Pong;
}

#[derive(Default)]
struct Ponger {
    port: Provided<PingPong>,
}
impl Ponger {
    fn on_ping(&mut self, p: Ping) -> Handled {
        self.port.trigger(Pong(p.0));
        Ok(())
    }
}
impl ComponentDefinition for Ponger {
    fn setup(&mut self, s: &mut Setup<Self>) {
        s.provide(|c| &mut c.port, Self::on_ping);
    }
}

struct Pinger {
    port: Required<PingPong>,
    n: u64,
    got: u64,
    done: mpsc::Sender<u64>,
}
impl Pinger {
    fn on_pong(&mut self, p: Pong) -> Handled {
        assert_eq!(p.0, self.got);
        self.got += 1;
        if self.got == self.n {
            self.done.send(self.got).unwrap();
        } else {
            self.port.trigger(Ping(self.got));
        }
        Ok(())
    }
}
impl ComponentDefinition for Pinger {
    fn setup(&mut self, s: &mut Setup<Self>) {
        s.require(|c| &mut c.port, Self::on_pong);
    }
    fn on_start(&mut self) -> Handled {
        self.port.trigger(Ping(0));
        Ok(())
    }
}

#[test]
fn pingpong_roundtrips() {
    let rt = Runtime::builder().workers(2).build();
    let (tx, rx) = mpsc::channel();
    let ponger = rt.create(Ponger::default).unwrap();
    let pinger = rt
        .create(move || Pinger { port: Required::new(), n: 100_000, got: 0, done: tx.clone() })
        .unwrap();
    rt.link::<PingPong>(&ponger, &pinger).unwrap();
    rt.start_and_wait(&ponger, Duration::from_secs(5)).unwrap();
    rt.start_and_wait(&pinger, Duration::from_secs(5)).unwrap();
    assert_eq!(rx.recv_timeout(Duration::from_secs(30)).unwrap(), 100_000);
    rt.shutdown().unwrap();
}
