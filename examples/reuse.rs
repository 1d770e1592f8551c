//! Reuse: a client component uses `MemoryStore`, a component from another crate
//! (`selfman-example-store`), through its `Store` port. The client writes a few entries, reads
//! each one back, reads a key nobody wrote, and prints what it got.
//!
//! Run it with `cargo run --example reuse`.

use std::sync::mpsc;
use std::time::Duration;

use selfman::prelude::*;
// ANCHOR: import
use selfman_example_store::{MemoryStore, Store, StoreRequest, StoreResponse};
// ANCHOR_END: import

/// The entries the client writes.
const ENTRIES: [(&str, &str); 3] = [("alice", "tea"), ("bob", "coffee"), ("carol", "water")];

/// A key the client reads without writing it.
const MISSING: &str = "dave";

/// A key, and the value read for it.
type Read = (String, Option<String>);

// ANCHOR: client
/// Writes `entries`; reads each key back once its write is confirmed; reports every value read.
struct Client {
    store: Required<Store>,
    entries: Vec<(String, String)>,
    values: mpsc::Sender<(String, Option<String>)>,
}

impl Client {
    fn on_response(&mut self, response: StoreResponse) -> Handled {
        match response {
            StoreResponse::Stored { key } => {
                self.store.trigger(StoreRequest::Get { key });
            }
            StoreResponse::Value { key, value } => {
                println!("{key} -> {value:?}");
                self.values.send((key, value))?;
            }
        }
        Ok(())
    }
}

impl ComponentDefinition for Client {
    fn setup(&mut self, setup: &mut Setup<Self>) {
        setup.require(|c| &mut c.store, Self::on_response);
    }

    fn on_start(&mut self) -> Handled {
        for (key, value) in self.entries.clone() {
            self.store.trigger(StoreRequest::Put { key, value });
        }
        self.store.trigger(StoreRequest::get(MISSING));
        Ok(())
    }
}
// ANCHOR_END: client

fn run() -> Result<Vec<Read>, Box<dyn std::error::Error>> {
    let rt = Runtime::builder().workers(2).build();
    let (values, read) = mpsc::channel();
    let entries: Vec<(String, String)> =
        ENTRIES.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let client = rt.create(move || Client {
        store: Required::new(),
        entries: entries.clone(),
        values: values.clone(),
    })?;

    // ANCHOR: use_store
    let store = rt.create(MemoryStore::default)?;
    rt.link::<Store>(&store, &client)?;
    rt.start_and_wait(&store, Duration::from_secs(5))?;
    // ANCHOR_END: use_store
    rt.start_and_wait(&client, Duration::from_secs(5))?;

    let mut got = Vec::new();
    for _ in 0..ENTRIES.len() + 1 {
        got.push(read.recv_timeout(Duration::from_secs(5))?);
    }
    rt.shutdown()?;
    Ok(got)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let values = run()?;
    println!("read {} values back", values.len());
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    #[test]
    fn runs() {
        let got = super::run().expect("reuse runs");
        let read: HashMap<String, Option<String>> = got.into_iter().collect();
        assert_eq!(read.len(), super::ENTRIES.len() + 1, "{read:?}");
        for (key, value) in super::ENTRIES {
            assert_eq!(read[key].as_deref(), Some(value), "value read back for {key}");
        }
        assert_eq!(read[super::MISSING], None);
    }
}
