// A required port delivers indications: declaring a handler that takes the port's request
// instead is a mistake.
use selfman_core::{ComponentDefinition, Handled, Port, Required, Setup};

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
struct Pinger {
    port: Required<PingPong>,
}

impl Pinger {
    fn on_ping(&mut self, ping: Ping) -> Handled {
        self.port.trigger(Ping(ping.0));
        Ok(())
    }
}

impl ComponentDefinition for Pinger {
    fn setup(&mut self, s: &mut Setup<Self>) {
        s.require(|c| &mut c.port, Self::on_ping);
    }
}

fn main() {}
