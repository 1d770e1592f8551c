//! Creating, connecting and starting many components: time and memory per component.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use selfman::prelude::*;

use crate::alloc;
use crate::args::Args;
use crate::pingpong::{Ping, PingPongPort, Pong};

static STARTED: AtomicUsize = AtomicUsize::new(0);

#[derive(Default)]
struct Server {
    port: Provided<PingPongPort>,
}

impl Server {
    fn on_ping(&mut self, _: Ping) -> Handled {
        self.port.trigger(Pong);
        Ok(())
    }
}

impl ComponentDefinition for Server {
    fn setup(&mut self, s: &mut Setup<Self>) {
        s.provide(|c| &mut c.port, Self::on_ping);
    }
    fn on_start(&mut self) -> Handled {
        STARTED.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

#[derive(Default)]
struct Client {
    port: Required<PingPongPort>,
}

impl Client {
    fn on_pong(&mut self, _: Pong) -> Handled {
        Ok(())
    }
}

impl ComponentDefinition for Client {
    fn setup(&mut self, s: &mut Setup<Self>) {
        s.require(|c| &mut c.port, Self::on_pong);
    }
    fn on_start(&mut self) -> Handled {
        STARTED.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

pub(crate) fn run(a: &Args) -> Result<String, String> {
    let count = a.get("count", 1_000_000)? as usize;
    let threads = a.threads()?;
    let rt = Runtime::builder().workers(threads).build();
    let err = |e: selfman::Error| e.to_string();
    let base = alloc::start();
    let start = Instant::now();
    let mut handles = Vec::with_capacity(count);
    for _ in 0..count / 2 {
        let s = rt.create(Server::default).map_err(err)?;
        let c = rt.create(Client::default).map_err(err)?;
        rt.link::<PingPongPort>(&s, &c).map_err(err)?;
        rt.start(&s).map_err(err)?;
        rt.start(&c).map_err(err)?;
        handles.push(s.untyped().clone());
        handles.push(c.untyped().clone());
    }
    if count % 2 == 1 {
        let s = rt.create(Server::default).map_err(err)?;
        rt.start(&s).map_err(err)?;
        handles.push(s.untyped().clone());
    }
    let deadline = Instant::now() + Duration::from_secs(300);
    while STARTED.load(Ordering::Relaxed) < count {
        if Instant::now() > deadline {
            return Err("components did not start within 300 s".into());
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    let elapsed = start.elapsed();
    let live = alloc::stop() - base;
    // The handles vector is measurement scaffolding, not part of a component's cost.
    let scaffolding = (handles.capacity() * std::mem::size_of::<ComponentRef>()) as isize;
    let bytes = (live - scaffolding).max(0) as usize / count.max(1);
    drop(handles);
    rt.shutdown().map_err(err)?;
    Ok(format!(
        "components count={count} elapsed_ms={} bytes_per_component={bytes}",
        elapsed.as_millis()
    ))
}
