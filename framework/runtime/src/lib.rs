//! # selfman-runtime
//!
//! The multi-core runtime for Selfman components:
//!
//! * a **work-stealing scheduler** ([`pool`]): per worker a local deque and a next slot for the
//!   component it just woke, a global injector, stealing when idle (only where it pays: see the
//!   module), and parking when there is nothing to do (an idle system costs no CPU);
//! * a **timer thread** ([`timer`]) serving the [`Timer`](selfman_core::Timer) port;
//! * [`Runtime`], which wires both into a [`System`](selfman_core::System) and joins every
//!   thread on shutdown.
//!
//! ```
//! use selfman_runtime::Runtime;
//!
//! let rt = Runtime::builder().workers(2).build();
//! assert_eq!(rt.workers(), 2);
//! rt.shutdown().unwrap();
//! ```
#![deny(missing_docs)]

pub mod pool;
pub mod timer;

mod runtime;

pub use pool::SchedulerStats;
pub use runtime::{Runtime, RuntimeBuilder};
