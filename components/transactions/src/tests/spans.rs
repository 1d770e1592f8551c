//! Spans per transaction: every step a node takes for a transaction (as TM, rTM or
//! participant) runs in a `tx{id, step}` span, and what it logs is inside that span.
//!
//! A small subscriber records the spans made, the ones entered (with the node's step) and
//! the span each event was logged in; the world runs every machine on this thread, so one
//! subscriber set with `with_default` sees all of them.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use selfman_ports::{TxHandle, TxIndication, TxRequest, TxResult};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
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
    spans: Vec<SpanInfo>,
    /// Spans entered, by index into `spans`, in order.
    entered: Vec<usize>,
    /// The spans entered and not yet left.
    stack: Vec<usize>,
    /// Each event's message and the innermost span it was logged in.
    events: Vec<(String, Option<usize>)>,
}

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Log>>);

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
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }

    fn new_span(&self, attrs: &Attributes<'_>) -> Id {
        let mut info = SpanInfo { name: attrs.metadata().name(), ..SpanInfo::default() };
        attrs.record(&mut Fields { info: &mut info, message: None });
        let mut log = self.0.lock().unwrap();
        log.spans.push(info);
        Id::from_u64(log.spans.len() as u64)
    }

    fn record(&self, _: &Id, _: &Record<'_>) {}

    fn record_follows_from(&self, _: &Id, _: &Id) {}

    fn event(&self, event: &Event<'_>) {
        let mut scratch = SpanInfo::default();
        let mut f = Fields { info: &mut scratch, message: None };
        event.record(&mut f);
        let message = f.message.unwrap_or_default();
        let mut log = self.0.lock().unwrap();
        let inner = log.stack.last().copied();
        log.events.push((message, inner));
    }

    fn enter(&self, span: &Id) {
        let i = span.into_u64() as usize - 1;
        let mut log = self.0.lock().unwrap();
        log.entered.push(i);
        log.stack.push(i);
    }

    fn exit(&self, span: &Id) {
        let i = span.into_u64() as usize - 1;
        let mut log = self.0.lock().unwrap();
        if let Some(p) = log.stack.iter().rposition(|s| *s == i) {
            log.stack.remove(p);
        }
    }
}

impl Capture {
    /// The steps entered in a transaction span, per transaction id.
    fn steps(&self) -> BTreeMap<u64, BTreeSet<String>> {
        let log = self.0.lock().unwrap();
        let mut by_tx: BTreeMap<u64, BTreeSet<String>> = BTreeMap::new();
        for &i in &log.entered {
            let s = &log.spans[i];
            if s.name == TX_SPAN {
                let id = s.id.expect("every transaction span carries its id");
                by_tx.entry(id).or_default().insert(s.step.clone().expect("and its step"));
            }
        }
        by_tx
    }
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
    let capture = Capture::default();
    let w = tracing::subscriber::with_default(capture.clone(), || {
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
    let steps = capture.steps();
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
    let capture = Capture::default();
    let cfg = TxConfig::default();
    let w = tracing::subscriber::with_default(capture.clone(), || {
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
    let steps = capture.steps();
    assert_eq!(steps.len(), 2, "two transactions, two ids: {steps:?}");
    assert!(steps.contains_key(&first));
    let second = *steps.keys().find(|k| **k != first).unwrap();
    assert!(steps[&second].contains("tick"), "the takeover runs in its timer's span");
    let log = capture.0.lock().unwrap();
    let leading: Vec<_> =
        log.events.iter().filter(|(m, _)| m.contains("leading a round")).collect();
    assert!(!leading.is_empty(), "the rTM led a round: {:?}", log.events);
    for (_, span) in leading {
        let s = &log.spans[span.expect("logged inside a span")];
        assert_eq!((s.name, s.id), (TX_SPAN, Some(second)), "inside the taken-over one's span");
    }
}
