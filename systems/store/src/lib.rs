//! # selfman-store
//!
//! The Selfman store node, the system the whole stack exists for: a transactional, replicated,
//! self-healing key/value store that ordinary Redis clients talk to.
//!
//! What is here so far is its front door, in three pure layers, none doing I/O:
//! * [`resp`], the wire protocol: a bounded, incremental decoder of client requests (RESP2
//!   multibulk and inline commands) and an encoder of replies in RESP2 and RESP3;
//! * [`command`], the command table and the parsing of each command into a typed operation,
//!   with Redis' error texts;
//! * [`session`], one client connection's state (protocol, authentication, name, `MULTI`
//!   queue, `WATCH` set, subscriptions) as a machine that turns commands into actions, and the
//!   [`ReplyQueue`](session::ReplyQueue) that puts replies back in command order.
//!
//!
//! And the node, which carries the commands out through the layers below:
//! * [`node`], the wiring of failure detector, relaxed ring, replication and transactions on
//!   one host ([`node::build_store_node`]);
//! * [`data`], the data model: Redis strings and sets as records of the transactional store,
//!   and what each data command does to them (pure);
//! * [`backend`], the component that runs each command, or `MULTI`/`EXEC` block, as one
//!   transaction of the `Transactions` port, retrying conflicts (bounded);
//! * [`walk`], the walks over the ring that `SCAN`, `KEYS`, `DBSIZE` and `FLUSHALL` make;
//! * [`server`], the TCP front door: a thread per connection, `WATCH` expectations;
//! * [`peers`], the ops hello by which nodes learn each other's operator endpoints;
//! * `ops` (inside the crate), the node's operator endpoint: its metric families and admin
//!   actions;
//! * [`cli`], the `selfman` program (`selfman node`, `selfman cluster`).
#![deny(missing_docs)]

pub mod backend;
pub mod cli;
pub mod command;
pub mod data;
pub mod node;
mod ops;
pub mod peers;
pub mod resp;
pub mod server;
pub mod session;
pub mod walk;
