//! Spans per transaction: every step a node takes for a transaction (as TM, rTM or
//! participant) runs in a `tx{id, step}` span, and what it logs is inside that span.
//!
//! A small subscriber records the spans made, the ones entered (with the node's step) and
//! the span each event was logged in; the world runs every machine on this thread. It is
//! installed once as the global default and records only on a thread inside [`capture`]
//! (its callsites are always asked again, so no interest cached while other tests of this
//! binary ran on other threads can hide a span from it).

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Once};
use std::time::Duration;

use selfman_ports::{TxHandle, TxIndication, TxRequest, TxResult};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::subscriber::Interest;
use tracing::{Event, Metadata, Subscriber};

use super::world::{addr, World};
use crate::config::TxConfig;
use crate::machine::TX_SPAN;

/// What one span said about itself when it was made.
#[derive(Clone, Debug, Default)]
struct SpanInfo {
    name: &'static str,
    id: Option<u64>,
    step: Option<String>,
}

#[derive(Default)]
struct Log {
    spans: HashMap<u64, SpanInfo>,
    /// Spans entered, in order.
    entered: Vec<u64>,
    /// The spans entered and not yet left.
    stack: Vec<u64>,
    /// Each event's message and the innermost span it was logged in.
    events: Vec<(String, Option<u64>)>,
}

thread_local! {
    /// The log of the test running on this thread, while it captures.
    static ACTIVE: RefCell<Option<Arc<Mutex<Log>>>> = const { RefCell::new(None) };
}

/// Span ids, unique over every thread.
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

fn with_log<R>(f: impl FnOnce(&mut Log) -> R) -> Option<R> {
    ACTIVE.with(|a| a.borrow().as_ref().map(|l| f(&mut l.lock().unwrap())))
}

/// Runs `f` with this thread's spans and events recorded; returns them with its result.
fn capture<R>(f: impl FnOnce() -> R) -> (R, Arc<Mutex<Log>>) {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        tracing::subscriber::set_global_default(Capture).expect("no other global subscriber")
    });
    let log = Arc::new(Mutex::new(Log::default()));
    ACTIVE.with(|a| *a.borrow_mut() = Some(Arc::clone(&log)));
    let r = f();
    ACTIVE.with(|a| *a.borrow_mut() = None);
    (r, log)
}

struct Capture;

struct Fields<'a> {
    info: &'a mut SpanInfo,
    message: Option<String>,
}

impl Visit for Fields<'_> {
    fn record_u64(&mut self, field: &Field, value: u64) {
        if field.name() == "id" {
            self.info.id = Some(value);
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "step" {
            self.info.step = Some(value.to_owned());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        match field.name() {
            "message" => self.message = Some(format!("{value:?}")),
            "step" => self.info.step = Some(format!("{value:?}")),
            _ => {}
        }
    }
}

impl Subscriber for Capture {
    fn register_callsite(&self, _: &'static Metadata<'static>) -> Interest {
        Interest::sometimes()
    }

    fn enabled(&self, _: &Metadata<'_>) -> bool {
        ACTIVE.with(|a| a.borrow().is_some())
    }

    fn new_span(&self, attrs: &Attributes<'_>) -> Id {
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let mut info = SpanInfo { name: attrs.metadata().name(), ..SpanInfo::default() };
        attrs.record(&mut Fields { info: &mut info, message: None });
        with_log(|log| log.spans.insert(id, info));
        Id::from_u64(id)
    }

    fn record(&self, _: &Id, _: &Record<'_>) {}

    fn record_follows_from(&self, _: &Id, _: &Id) {}

    fn event(&self, event: &Event<'_>) {
        let mut scratch = SpanInfo::default();
        let mut f = Fields { info: &mut scratch, message: None };
        event.record(&mut f);
        let message = f.message.unwrap_or_default();
        with_log(|log| {
            let inner = log.stack.last().copied();
            log.events.push((message, inner));
        });
    }

    fn enter(&self, span: &Id) {
        let i = span.into_u64();
        with_log(|log| {
            log.entered.push(i);
            log.stack.push(i);
        });
    }

    fn exit(&self, span: &Id) {
        let i = span.into_u64();
        with_log(|log| {
            if let Some(p) = log.stack.iter().rposition(|s| *s == i) {
                log.stack.remove(p);
            }
        });
    }
}

/// The steps entered in a transaction span, per transaction id.
fn steps(log: &Log) -> BTreeMap<u64, BTreeSet<String>> {
    let mut by_tx: BTreeMap<u64, BTreeSet<String>> = BTreeMap::new();
    for i in &log.entered {
        let s = &log.spans[i];
        if s.name == TX_SPAN {
            let id = s.id.expect("every transaction span carries its id");
            by_tx.entry(id).or_default().insert(s.step.clone().expect("and its step"));
        }
    }
    by_tx
}

fn write(handle: TxHandle, key: &[u8]) -> TxRequest {
    TxRequest::Write { handle, key: key.to_vec(), value: Some(b"new".to_vec()) }
}

/// The transaction ids the clients of the world were told of, by handle.
fn committed_ids(w: &World) -> BTreeMap<u64, u64> {
    w.told
        .iter()
        .filter_map(|(_, i, _)| match i {
            TxIndication::Committed { handle, tx: Some(tx), result: TxResult::Ok } => {
                Some((handle.0, tx.0))
            }
            _ => None,
        })
        .collect()
}

#[test]
fn every_step_of_a_commit_runs_in_the_span_of_its_transaction() {
    let (w, log) = capture(|| {
        let mut w = World::new(TxConfig::default(), 4);
        let a = addr(0);
        w.seed(b"x", 1, b"old");
        w.script(
            a,
            vec![
                TxRequest::Begin { handle: TxHandle(1) },
                TxRequest::Read { handle: TxHandle(1), key: b"y".to_vec() },
                write(TxHandle(1), b"x"),
            ],
        );
        w.request(a, TxRequest::Commit { handle: TxHandle(1) });
        w.run();
        w
    });
    let ids = committed_ids(&w);
    let tx = ids[&1];
    let steps = steps(&log.lock().unwrap());
    assert_eq!(steps.keys().copied().collect::<Vec<_>>(), vec![tx], "only its own id: {steps:?}");
    // The TM's steps (commit, learning the votes and acceptances, the participants'
    // `Applied`), the rTMs' (`init-rtm`, votes, decision, `forget`) and the participants'
    // (prepare, the replica's vote, the decision, the replica's apply).
    for step in [
        "commit",
        "prepare",
        "init-rtm",
        "vote-done",
        "vote",
        "accepted",
        "decided",
        "apply-done",
        "applied",
        "forget",
    ] {
        assert!(steps[&tx].contains(step), "no `{step}` span: {:?}", steps[&tx]);
    }
}

#[test]
fn concurrent_transactions_keep_their_spans_apart_and_events_land_in_them() {
    let cfg = TxConfig::default();
    let (w, log) = capture(|| {
        let mut w = World::new(cfg, 4);
        w.seed(b"x", 1, b"old");
        w.seed(b"z", 1, b"old");
        for (n, key) in [(0u32, &b"x"[..]), (1, &b"z"[..])] {
            let handle = TxHandle(u64::from(n) + 1);
            w.script(addr(n), vec![TxRequest::Begin { handle }, write(handle, key)]);
            w.request(addr(n), TxRequest::Commit { handle });
        }
        // The second TM dies with its commit on the wire: an rTM takes over (and says so).
        w.crash(addr(1));
        w.run();
        w.tick_for(cfg.takeover_after + Duration::from_millis(500));
        w
    });
    let ids = committed_ids(&w);
    let first = ids[&1];
    let log = log.lock().unwrap();
    let steps = steps(&log);
    assert_eq!(steps.len(), 2, "two transactions, two ids: {steps:?}");
    assert!(steps.contains_key(&first));
    let second = *steps.keys().find(|k| **k != first).unwrap();
    assert!(steps[&second].contains("tick"), "the takeover runs in its timer's span");
    let leading: Vec<_> =
        log.events.iter().filter(|(m, _)| m.contains("leading a round")).collect();
    assert!(!leading.is_empty(), "the rTM led a round: {:?}", log.events);
    for (_, span) in leading {
        let s = &log.spans[&span.expect("logged inside a span")];
        assert_eq!((s.name, s.id), (TX_SPAN, Some(second)), "inside the taken-over one's span");
    }
}
