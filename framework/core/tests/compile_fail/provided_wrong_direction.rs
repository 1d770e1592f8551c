// A provided port handles requests and triggers indications: triggering a request on it is a
// mistake.
use selfman_core::{ComponentDefinition, Handled, Port, Provided, Setup};

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
    fn on_ping(&mut self, ping: Ping) -> Handled {
        self.port.trigger(Ping(ping.0 + 1));
        Ok(())
    }
}

impl ComponentDefinition for Ponger {
    fn setup(&mut self, s: &mut Setup<Self>) {
        s.provide(|c| &mut c.port, Self::on_ping);
    }
}

fn main() {}
