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
//! The node program, which routes each key through the ring to the replicas and commits
//! through the transaction layer, arrives when those layers exist (see `ARCHITECTURE.md`).
#![deny(missing_docs)]

pub mod command;
pub mod resp;
pub mod session;
