//! # selfman-net
//!
//! The TCP transport for Selfman's [`Network`](selfman_core::Network) port, on mio.
//!
//! A [`TcpNetwork`] is one node: it listens on a socket, runs one I/O thread, and provides a
//! `Network<M>` port per protocol ([`Host::network`](selfman_core::Host::network)). Every
//! protocol's messages to a peer share one TCP connection (each frame carries its
//! [`ProtocolId`](selfman_core::ProtocolId)); the handshake checks the protocol version, the
//! cluster name and the peer's incarnation. Messages are serialised by the sending protocol's
//! adapter on the component runtime's workers, queued per peer (bounded; when full the new
//! message is dropped and counted), and written by the I/O thread many frames per system call.
//! Messages to a node in the same process are handed over as values, never serialised.
//! Bytes from the wire are never trusted: frames and decoded messages are size-limited, and a
//! peer sending bad bytes, saying nothing, or flooding is disconnected with a status event.
//!
//! The design, the wire format and the defaults are described in `docs/networking.md`.
//!
//! # Examples
//!
//! Two nodes in one process, talking over real loopback TCP:
//!
//! ```
//! use std::sync::mpsc;
//! use std::time::Duration;
//! use selfman_core::{ComponentDefinition, Handled, Host, NetIndication, Network, Required, Setup};
//! use selfman_net::{NetConfig, TcpNetwork};
//! use selfman_runtime::Runtime;
//!
//! #[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
//! struct Greeting(String);
//!
//! struct Listener {
//!     net: Required<Network<Greeting>>,
//!     out: mpsc::Sender<String>,
//! }
//!
//! impl Listener {
//!     fn on_net(&mut self, ev: NetIndication<Greeting>) -> Handled {
//!         if let NetIndication::Deliver(d) = ev {
//!             let _ = self.out.send(d.msg.0);
//!         }
//!         Ok(())
//!     }
//! }
//!
//! impl ComponentDefinition for Listener {
//!     fn setup(&mut self, setup: &mut Setup<Self>) {
//!         setup.require(|c| &mut c.net, Self::on_net);
//!     }
//! }
//!
//! let rt = Runtime::builder().workers(2).build();
//! let tcp = NetConfig::default().local_delivery(false); // force TCP between the two nodes
//! let a = TcpNetwork::start(&rt, tcp.clone()).unwrap();
//! let b = TcpNetwork::start(&rt, tcp).unwrap();
//!
//! // On b: a component receiving greetings.
//! let (tx, rx) = mpsc::channel();
//! let listener = b.create(move || Listener { net: Required::new(), out: tx.clone() }).unwrap();
//! rt.connect(&b.network::<Greeting>("greet").unwrap(), &listener.required().unwrap()).unwrap();
//! rt.start(&listener).unwrap();
//!
//! // On a: send through the port (from outside a component, with `request`).
//! let port = a.network::<Greeting>("greet").unwrap();
//! port.request(selfman_core::NetRequest::Send { to: b.local(), msg: Greeting("hello".into()) })
//!     .unwrap();
//! assert_eq!(rx.recv_timeout(Duration::from_secs(10)).unwrap(), "hello");
//! assert_eq!(a.stats().connections, 1);
//! a.shutdown();
//! b.shutdown();
//! rt.shutdown().unwrap();
//! ```
#![deny(missing_docs)]

mod adapter;
pub mod codec;
mod config;
mod error;
pub mod frame;
mod io;
mod registry;
pub mod secure;
mod shared;
mod stats;
mod transport;

pub use codec::{BincodeCodec, Codec, CodecError};
pub use config::NetConfig;
pub use error::NetError;
pub use secure::{ClusterSecret, SecretError};
pub use stats::NetStats;
pub use transport::TcpNetwork;
