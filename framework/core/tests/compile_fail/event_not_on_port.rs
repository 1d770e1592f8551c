// Triggering an event type the port does not carry at all (in either direction) is a mistake.
use selfman_core::{ComponentDefinition, Handled, Port, Provided, Setup};

#[derive(Clone, Debug)]
struct Ping(u64);
#[derive(Clone, Debug)]
struct Pong(u64);
#[derive(Clone, Debug)]
struct Unrelated;

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
        self.port.trigger(Pong(ping.0));
        self.port.trigger(Unrelated);
        Ok(())
    }
}

impl ComponentDefinition for Ponger {
    fn setup(&mut self, s: &mut Setup<Self>) {
        s.provide(|c| &mut c.port, Self::on_ping);
    }
}

fn main() {}
