//! # selfman-store
//!
//! The Selfman store node, the system the whole stack exists for: a transactional, replicated,
//! self-healing key/value store that ordinary Redis clients talk to.
//!
//! What is here so far is its front door's wire protocol, [`resp`]: a pure, bounded,
//! incremental decoder of client requests (RESP2 multibulk and inline commands) and an encoder
//! of replies in RESP2 and RESP3. The node program, which routes each key through the ring to
//! the replicas and commits through the transaction layer, arrives when those layers exist (see
//! `ARCHITECTURE.md`).
#![deny(missing_docs)]

pub mod resp;
