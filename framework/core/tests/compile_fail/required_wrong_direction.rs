// A required port triggers requests and handles indications: triggering an indication on it is
// a mistake.
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
    fn on_pong(&mut self, pong: Pong) -> Handled {
        self.port.trigger(Pong(pong.0 + 1));
        Ok(())
    }
}

impl ComponentDefinition for Pinger {
    fn setup(&mut self, s: &mut Setup<Self>) {
        s.require(|c| &mut c.port, Self::on_pong);
    }
}

fn main() {}
