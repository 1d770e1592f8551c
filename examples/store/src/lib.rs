//! # selfman-example-store
//!
//! A reusable Selfman component: [`MemoryStore`], an in-memory key-value map served over the
//! [`Store`] port. It shows how a component is packaged for others: the crate depends on
//! `selfman-core` only (never on a runtime), and exports its port type and its component.
//!
//! Guarantees (each is checked by the tests below):
//! * every request that arrives over a channel is answered exactly once, and only over that
//!   channel: with many requirers connected, each sees the answers to its own requests only;
//! * answers to one requirer come in the order of its requests (channels are FIFO);
//! * a `Get` returns the value of the latest `Put` of that key handled before it, or `None`.
//!
//! # Examples
//!
//! A client component that requires [`Store`], wired to a [`MemoryStore`]:
//!
//! ```
//! use std::sync::mpsc;
//! use std::time::Duration;
//!
//! use selfman_core::{ComponentDefinition, Handled, Required, Setup};
//! use selfman_example_store::{MemoryStore, Store, StoreRequest, StoreResponse};
//! use selfman_runtime::Runtime;
//!
//! struct Client {
//!     store: Required<Store>,
//!     answers: mpsc::Sender<StoreResponse>,
//! }
//!
//! impl Client {
//!     fn on_response(&mut self, response: StoreResponse) -> Handled {
//!         self.answers.send(response)?;
//!         Ok(())
//!     }
//! }
//!
//! impl ComponentDefinition for Client {
//!     fn setup(&mut self, setup: &mut Setup<Self>) {
//!         setup.require(|c| &mut c.store, Self::on_response);
//!     }
//!     fn on_start(&mut self) -> Handled {
//!         self.store.trigger(StoreRequest::put("colour", "green"));
//!         self.store.trigger(StoreRequest::get("colour"));
//!         Ok(())
//!     }
//! }
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let rt = Runtime::builder().workers(2).build();
//! let (tx, rx) = mpsc::channel();
//! let store = rt.create(MemoryStore::default)?;
//! let client = rt.create(move || Client { store: Required::new(), answers: tx.clone() })?;
//! rt.link::<Store>(&store, &client)?;
//! rt.start_and_wait(&store, Duration::from_secs(5))?;
//! rt.start_and_wait(&client, Duration::from_secs(5))?;
//!
//! let wait = Duration::from_secs(5);
//! assert_eq!(rx.recv_timeout(wait)?, StoreResponse::Stored { key: "colour".into() });
//! assert_eq!(
//!     rx.recv_timeout(wait)?,
//!     StoreResponse::Value { key: "colour".into(), value: Some("green".into()) },
//! );
//! rt.shutdown()?;
//! # Ok(())
//! # }
//! ```
#![deny(missing_docs)]

use std::collections::HashMap;

use selfman_core::{ComponentDefinition, Error, Handled, HandlerError, Port, Provided, Setup};

// ANCHOR: port
/// Requests to a key-value store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreRequest {
    /// Set `key` to `value`, replacing any previous value. Answered with `Stored`.
    Put {
        /// The key to set.
        key: String,
        /// Its new value.
        value: String,
    },
    /// Read `key`. Answered with `Value`.
    Get {
        /// The key to read.
        key: String,
    },
}

/// Answers of a key-value store, one per request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreResponse {
    /// The `Put` of `key` took effect.
    Stored {
        /// The key that was set.
        key: String,
    },
    /// The value of `key`, or `None` if it was never put.
    Value {
        /// The key that was read.
        key: String,
        /// Its value.
        value: Option<String>,
    },
}

/// The store port: `StoreRequest`s in, `StoreResponse`s out.
#[derive(Debug)]
pub struct Store;

impl Port for Store {
    type Request = StoreRequest;
    type Indication = StoreResponse;
}
// ANCHOR_END: port

impl StoreRequest {
    /// A `Put` of `value` under `key`.
    pub fn put(key: impl Into<String>, value: impl Into<String>) -> Self {
        StoreRequest::Put { key: key.into(), value: value.into() }
    }

    /// A `Get` of `key`.
    pub fn get(key: impl Into<String>) -> Self {
        StoreRequest::Get { key: key.into() }
    }
}

/// A key-value store kept in memory, providing [`Store`].
///
/// Each request is answered with [`Provided::reply`], over the channel it arrived on, so any
/// number of requirers can share one store without seeing each other's answers. A request
/// injected with [`ProvidedRef::request`](selfman_core::ProvidedRef::request) is carried out
/// but has nobody to answer: the handler reports it as a benign error (logged; the store keeps
/// running).
#[derive(Debug, Default)]
pub struct MemoryStore {
    port: Provided<Store>,
    entries: HashMap<String, String>,
}

// ANCHOR: handle
impl MemoryStore {
    fn on_request(&mut self, request: StoreRequest) -> Handled {
        let response = match request {
            StoreRequest::Put { key, value } => {
                self.entries.insert(key.clone(), value);
                StoreResponse::Stored { key }
            }
            StoreRequest::Get { key } => {
                let value = self.entries.get(&key).cloned();
                StoreResponse::Value { key, value }
            }
        };
        // Answer only the requirer that asked, over the channel the request came on.
        match self.port.reply(response) {
            Ok(()) => Ok(()),
            // It disconnected after asking: nobody is left to answer.
            Err(Error::Disconnected(_)) => Ok(()),
            // Injected without a channel (`ProvidedRef::request`): nobody to answer.
            Err(e) => Err(HandlerError::benign(format!("store cannot answer: {e}"))),
        }
    }
}

impl ComponentDefinition for MemoryStore {
    fn setup(&mut self, setup: &mut Setup<Self>) {
        setup.provide(|s| &mut s.port, Self::on_request);
    }
}
// ANCHOR_END: handle

impl MemoryStore {
    /// The value stored under `key`, if any (for inspection, e.g. with
    /// [`Component::on_definition`](selfman_core::Component::on_definition)).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.entries.get(key).map(String::as_str)
    }

    /// How many keys are stored.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is stored.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;
    use std::time::Duration;

    use selfman_core::{Component, ComponentDefinition, Handled, LifecycleState, Required, Setup};
    use selfman_runtime::Runtime;

    use super::{MemoryStore, Store, StoreRequest, StoreResponse};

    const WAIT: Duration = Duration::from_secs(5);

    /// A requirer whose requests the test triggers from outside, and which forwards every
    /// answer it gets, tagged with its name.
    struct Probe {
        name: &'static str,
        store: Required<Store>,
        answers: mpsc::Sender<(&'static str, StoreResponse)>,
    }

    impl Probe {
        fn on_response(&mut self, response: StoreResponse) -> Handled {
            self.answers.send((self.name, response))?;
            Ok(())
        }
    }

    impl ComponentDefinition for Probe {
        fn setup(&mut self, setup: &mut Setup<Self>) {
            setup.require(|p| &mut p.store, Self::on_response);
        }
    }

    type Answers = mpsc::Receiver<(&'static str, StoreResponse)>;

    /// A started store and `names.len()` started probes, each linked to it.
    fn store_with_probes(
        rt: &Runtime,
        names: &[&'static str],
    ) -> (Component<MemoryStore>, Vec<Component<Probe>>, Answers) {
        let (tx, rx) = mpsc::channel();
        let store = rt.create(MemoryStore::default).unwrap();
        let probes: Vec<_> = names
            .iter()
            .map(|&name| {
                let tx = tx.clone();
                let probe = rt
                    .create(move || Probe { name, store: Required::new(), answers: tx.clone() })
                    .unwrap();
                rt.link::<Store>(&store, &probe).unwrap();
                rt.start_and_wait(&probe, WAIT).unwrap();
                probe
            })
            .collect();
        rt.start_and_wait(&store, WAIT).unwrap();
        (store, probes, rx)
    }

    fn send(probe: &Component<Probe>, request: StoreRequest) {
        let sent = probe.on_definition(|p| p.store.trigger(request)).unwrap();
        assert_eq!(sent, 1, "the probe is linked to exactly one store");
    }

    fn stored(key: &str) -> StoreResponse {
        StoreResponse::Stored { key: key.into() }
    }

    fn value(key: &str, value: Option<&str>) -> StoreResponse {
        StoreResponse::Value { key: key.into(), value: value.map(Into::into) }
    }

    #[test]
    fn get_returns_the_latest_put_and_none_for_unknown_keys() {
        let rt = Runtime::builder().workers(2).build();
        let (store, probes, rx) = store_with_probes(&rt, &["p"]);
        let p = &probes[0];
        send(p, StoreRequest::get("k"));
        send(p, StoreRequest::put("k", "one"));
        send(p, StoreRequest::get("k"));
        send(p, StoreRequest::put("k", "two"));
        send(p, StoreRequest::get("k"));
        let got: Vec<_> = (0..5).map(|_| rx.recv_timeout(WAIT).unwrap().1).collect();
        assert_eq!(
            got,
            [
                value("k", None),
                stored("k"),
                value("k", Some("one")),
                stored("k"),
                value("k", Some("two")),
            ]
        );
        assert_eq!(store.on_definition(|s| s.len()).unwrap(), 1);
        rt.shutdown().unwrap();
    }

    #[test]
    fn each_requirer_gets_exactly_the_answers_to_its_own_requests_in_order() {
        let rt = Runtime::builder().workers(2).build();
        let names = ["a", "b", "c"];
        let (_store, probes, rx) = store_with_probes(&rt, &names);
        const N: usize = 200;
        for i in 0..N {
            for (name, p) in names.iter().zip(&probes) {
                send(p, StoreRequest::put(format!("{name}{i}"), i.to_string()));
            }
        }
        let mut per_probe: std::collections::HashMap<&str, Vec<StoreResponse>> = Default::default();
        for _ in 0..N * probes.len() {
            let (name, response) = rx.recv_timeout(WAIT).unwrap();
            per_probe.entry(name).or_default().push(response);
        }
        for name in names {
            let expected: Vec<_> = (0..N).map(|i| stored(&format!("{name}{i}"))).collect();
            assert_eq!(per_probe[name], expected, "answers seen by {name}");
        }
        // Nothing was answered twice or to the wrong requirer.
        assert!(rx.recv_timeout(Duration::from_millis(50)).is_err());
        rt.shutdown().unwrap();
    }

    #[test]
    fn an_injected_request_is_applied_and_reported_as_benign() {
        let rt = Runtime::builder().workers(2).build();
        let (store, probes, rx) = store_with_probes(&rt, &["p"]);
        store.provided::<Store>().unwrap().request(StoreRequest::put("k", "v")).unwrap();
        // A later request over the channel is still served: the store did not fail.
        send(&probes[0], StoreRequest::get("k"));
        assert_eq!(rx.recv_timeout(WAIT).unwrap().1, value("k", Some("v")));
        assert_eq!(store.state(), LifecycleState::Active);
        assert_eq!(store.last_fault(), None);
        // The injected put was not answered to anyone.
        assert!(rx.recv_timeout(Duration::from_millis(50)).is_err());
        rt.shutdown().unwrap();
    }
}
