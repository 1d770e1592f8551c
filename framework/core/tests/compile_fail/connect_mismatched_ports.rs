// A channel connects a provided and a required port of the same type: connecting ports of
// different types is a mistake.
use selfman_core::{Channel, Port, ProvidedRef, RequiredRef, Result, System};

#[derive(Clone, Debug)]
struct Ping(u64);
#[derive(Clone, Debug)]
struct Pong(u64);

struct PingPong;
impl Port for PingPong {
    type Request = Ping;
    type Indication = Pong;
}

#[derive(Clone, Debug)]
struct Get(String);
#[derive(Clone, Debug)]
struct Value(Option<String>);

struct Store;
impl Port for Store {
    type Request = Get;
    type Indication = Value;
}

fn wire(
    system: &System,
    pings: &ProvidedRef<PingPong>,
    store_client: &RequiredRef<Store>,
) -> Result<Channel<PingPong>> {
    system.connect(pings, store_client)
}

fn main() {}
