//! Shared test support for the component-model integration tests.
#![allow(dead_code, unreachable_pub, unused_imports)] // each test binary uses part of it

use std::sync::Arc;

use parking_lot::Mutex;
pub use selfman_core::testkit::{eventually, WAIT};
use selfman_core::{ComponentDefinition, Handled, Port, Provided, Required, Setup};
use selfman_runtime::Runtime;

/// A runtime with `n` workers.
pub fn runtime(n: usize) -> Runtime {
    Runtime::builder().workers(n).build()
}

/// A shared log of strings (what happened, in order).
pub type Log = selfman_core::testkit::Log<Vec<String>>;

/// Numbers flowing both ways: `Num` requests, `Num` indications.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Num(pub u64);

/// Requests and indications are both `Num`.
pub struct Numbers;
impl Port for Numbers {
    type Request = Num;
    type Indication = Num;
}

/// Provides `Numbers`: records requests (with their origin channel) into a shared log.
pub struct Sink {
    pub port: Provided<Numbers>,
    pub seen: Arc<Mutex<Vec<(u64, u64)>>>,
}

impl Sink {
    pub fn new(seen: Arc<Mutex<Vec<(u64, u64)>>>) -> Self {
        Sink { port: Provided::new(), seen }
    }
    fn on_num(&mut self, n: Num) -> Handled {
        let origin = self.port.origin().map_or(0, |o| o.channel_id());
        self.seen.lock().push((origin, n.0));
        Ok(())
    }
}

impl ComponentDefinition for Sink {
    fn setup(&mut self, s: &mut Setup<Self>) {
        s.provide(|c| &mut c.port, Self::on_num);
    }
}

/// Requires `Numbers`: records indications into a shared log.
pub struct Listener {
    pub port: Required<Numbers>,
    pub seen: Arc<Mutex<Vec<u64>>>,
}

impl Listener {
    pub fn new(seen: Arc<Mutex<Vec<u64>>>) -> Self {
        Listener { port: Required::new(), seen }
    }
    fn on_num(&mut self, n: Num) -> Handled {
        self.seen.lock().push(n.0);
        Ok(())
    }
}

impl ComponentDefinition for Listener {
    fn setup(&mut self, s: &mut Setup<Self>) {
        s.require(|c| &mut c.port, Self::on_num);
    }
}
