//! [`Runtime`]: a [`System`] on worker threads and a timer thread.

use std::ops::Deref;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use selfman_core::{RuntimeParts, SeededRng, System, SystemConfig};

use crate::pool::{Pool, SchedulerStats};
use crate::timer::TimerThread;

const DEFAULT_SPIN: Duration = Duration::from_micros(100);
const MAX_SPIN: Duration = Duration::from_millis(10);

/// Configures a [`Runtime`].
#[derive(Debug, Clone)]
pub struct RuntimeBuilder {
    workers: usize,
    config: SystemConfig,
    seed: Option<u64>,
    shutdown_timeout: Duration,
    spin: Duration,
}

impl Default for RuntimeBuilder {
    fn default() -> Self {
        RuntimeBuilder {
            workers: std::thread::available_parallelism().map_or(1, usize::from),
            config: SystemConfig::default(),
            seed: None,
            shutdown_timeout: Duration::from_secs(10),
            spin: DEFAULT_SPIN,
        }
    }
}

impl RuntimeBuilder {
    /// Number of worker threads (default: the number of available cores; at least 1).
    pub fn workers(mut self, n: usize) -> Self {
        self.workers = n.max(1);
        self
    }

    /// Events a component handles per scheduling turn before yielding (default 128; at least 1).
    pub fn events_per_run(mut self, n: usize) -> Self {
        self.config.events_per_run = n.max(1);
        self
    }

    /// Seed for the components' RNGs (default: drawn from the OS's hasher randomness).
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// How long [`Runtime::shutdown`] waits for components to finish (default 10 s).
    pub fn shutdown_timeout(mut self, t: Duration) -> Self {
        self.shutdown_timeout = t;
        self
    }

    /// How long an idle worker keeps looking for work before it sleeps (default 100 µs; at most
    /// 10 ms). While looking it yields its core to any other runnable thread, so the cost is
    /// at most this much CPU time per idle period; the gain is that work arriving within that
    /// time (a reply from the network, a message from another thread) finds a worker awake
    /// instead of paying for a thread wake-up, which on a virtual machine with an idle core
    /// costs tens of microseconds. `Duration::ZERO` parks as soon as a short spin finds
    /// nothing. See `docs/decisions/008-spin-before-sleeping.md`.
    pub fn spin(mut self, t: Duration) -> Self {
        self.spin = t.min(MAX_SPIN);
        self
    }

    /// Starts the worker and timer threads.
    ///
    /// # Panics
    ///
    /// If the OS refuses to spawn a thread.
    pub fn build(self) -> Runtime {
        let (pool, handles) = Pool::new(self.workers, self.spin);
        let timers = TimerThread::new();
        let mut threads = Vec::with_capacity(handles.len() + 1);
        for h in handles {
            let p = Arc::clone(&pool);
            threads.push(
                std::thread::Builder::new()
                    .name("selfman-worker".into())
                    .spawn(move || p.run_worker(h))
                    .expect("spawn a worker thread"),
            );
        }
        let t = Arc::clone(&timers);
        threads.push(
            std::thread::Builder::new()
                .name("selfman-timer".into())
                .spawn(move || t.run())
                .expect("spawn the timer thread"),
        );
        let seed = self.seed.unwrap_or_else(random_seed);
        let parts = RuntimeParts {
            scheduler: pool.clone(),
            timers: timers.clone(),
            rng: Arc::new(SeededRng(seed)),
        };
        let system = System::new(parts, self.config);
        Runtime { system, pool, timers, threads, shutdown_timeout: self.shutdown_timeout }
    }
}

fn random_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(u64::from(std::process::id()));
    h.finish()
}

/// A component [`System`] running on a work-stealing thread pool with a timer thread.
///
/// Dereferences to [`System`]. Dropping it shuts it down.
pub struct Runtime {
    system: System,
    pool: Arc<Pool>,
    timers: Arc<TimerThread>,
    threads: Vec<JoinHandle<()>>,
    shutdown_timeout: Duration,
}

impl Runtime {
    /// A runtime with default settings.
    pub fn new() -> Runtime {
        RuntimeBuilder::default().build()
    }

    /// A builder to configure one.
    pub fn builder() -> RuntimeBuilder {
        RuntimeBuilder::default()
    }

    /// The component system.
    pub fn system(&self) -> &System {
        &self.system
    }

    /// Number of worker threads.
    pub fn workers(&self) -> usize {
        self.pool.workers()
    }

    /// What the workers have done so far: turns run, how many came from a next slot, steals
    /// and sleeps (`docs/runtime.md`, "Scheduling").
    pub fn scheduler_stats(&self) -> SchedulerStats {
        self.pool.stats()
    }

    /// Destroys every component, then stops and joins all threads.
    ///
    /// # Errors
    ///
    /// [`selfman_core::Error::Timeout`] if components did not finish within the shutdown
    /// timeout; the threads are joined anyway once their current handlers return.
    pub fn shutdown(mut self) -> selfman_core::Result<()> {
        self.stop()
    }

    fn stop(&mut self) -> selfman_core::Result<()> {
        if self.threads.is_empty() {
            return Ok(());
        }
        let result = self.system.shutdown(self.shutdown_timeout);
        self.pool.shutdown();
        self.timers.shutdown();
        for t in self.threads.drain(..) {
            if t.join().is_err() {
                tracing::error!("a runtime thread panicked");
            }
        }
        result
    }
}

impl Default for Runtime {
    fn default() -> Self {
        Self::new()
    }
}

impl Deref for Runtime {
    type Target = System;
    fn deref(&self) -> &System {
        &self.system
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            tracing::warn!(error = %e, "runtime shutdown incomplete");
        }
    }
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime").field("workers", &self.workers()).finish()
    }
}
