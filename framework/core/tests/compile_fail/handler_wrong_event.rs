// A provided port delivers requests: declaring a handler that takes the port's indication
// instead is a mistake.
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
    fn on_pong(&mut self, pong: Pong) -> Handled {
        self.port.trigger(Pong(pong.0));
        Ok(())
    }
}

impl ComponentDefinition for Ponger {
    fn setup(&mut self, s: &mut Setup<Self>) {
        s.provide(|c| &mut c.port, Self::on_pong);
    }
}

fn main() {}
