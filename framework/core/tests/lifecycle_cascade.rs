//! Start, stop and kill cascade through the tree, children before parents.

mod common;

use std::sync::Arc;

use common::{eventually, runtime, Log, Num, Numbers, Sink, WAIT};
use parking_lot::Mutex;
use selfman_core::{ComponentDefinition, Context, Handled, LifecycleState, Setup};

/// Records its lifecycle hooks, and creates `children` children (named `<name>.<i>`) which
/// create `grandchildren` each.
struct Node {
    name: String,
    log: Log,
    ctx: Context,
}

impl ComponentDefinition for Node {
    fn setup(&mut self, s: &mut Setup<Self>) {
        s.context(|c| &mut c.ctx);
    }
    fn on_start(&mut self) -> Handled {
        self.log.push(format!("start {}", self.name));
        Ok(())
    }
    fn on_stop(&mut self) -> Handled {
        self.log.push(format!("stop {}", self.name));
        Ok(())
    }
    fn on_kill(&mut self) -> Handled {
        self.log.push(format!("kill {}", self.name));
        Ok(())
    }
}

fn node(name: &str, log: &Log) -> impl Fn() -> Node + Send + Sync + 'static {
    let (name, log) = (name.to_owned(), log.clone());
    move || Node { name: name.clone(), log: log.clone(), ctx: Context::new() }
}

/// Position of `entry` in `log`.
fn pos(log: &[String], entry: &str) -> usize {
    log.iter().position(|e| e == entry).unwrap_or_else(|| panic!("{entry} missing from {log:?}"))
}

#[test]
fn lifecycle_cascade_order() {
    let rt = runtime(2);
    let log = Log::default();
    let root = rt.create(node("p", &log)).unwrap();
    let mut kids = Vec::new();
    for i in 0..2 {
        let k = rt.create_child(&root, node(&format!("p.{i}"), &log)).unwrap();
        for j in 0..2 {
            rt.create_child(&k, node(&format!("p.{i}.{j}"), &log)).unwrap();
        }
        kids.push(k);
    }
    assert_eq!(root.children().len(), 2);
    assert_eq!(kids[0].parent().unwrap().id(), root.id());

    rt.start_and_wait(&root, WAIT).unwrap();
    let l = log.take();
    assert_eq!(l.len(), 7, "{l:?}");
    for i in 0..2 {
        for j in 0..2 {
            assert!(pos(&l, &format!("start p.{i}.{j}")) < pos(&l, &format!("start p.{i}")));
        }
        assert!(pos(&l, &format!("start p.{i}")) < pos(&l, "start p"));
    }
    assert_eq!(l.last().unwrap(), "start p", "the parent starts last");
    for k in &kids {
        assert_eq!(k.state(), LifecycleState::Active);
    }

    rt.stop_and_wait(&root, WAIT).unwrap();
    let l = log.take();
    assert_eq!(l.len(), 7, "{l:?}");
    assert_eq!(l.last().unwrap(), "stop p", "the parent stops last");
    for (i, k) in kids.iter().enumerate() {
        assert!(pos(&l, &format!("stop p.{i}.0")) < pos(&l, &format!("stop p.{i}")));
        assert_eq!(k.state(), LifecycleState::Passive);
    }

    // A stopped tree starts again.
    rt.start_and_wait(&root, WAIT).unwrap();
    assert_eq!(log.take().len(), 7);

    // Kill an active tree: children are stopped and destroyed before their parent.
    rt.kill_and_wait(&root, WAIT).unwrap();
    let l = log.take();
    assert_eq!(l.len(), 14, "{l:?}");
    assert_eq!(l.last().unwrap(), "kill p");
    for i in 0..2 {
        for j in 0..2 {
            let child = format!("p.{i}.{j}");
            assert!(pos(&l, &format!("stop {child}")) < pos(&l, &format!("kill {child}")));
            assert!(pos(&l, &format!("kill {child}")) < pos(&l, &format!("kill p.{i}")));
        }
    }
    for k in &kids {
        assert_eq!(k.state(), LifecycleState::Destroyed);
        assert!(k.children().is_empty(), "destroyed children are removed from the tree");
    }
    assert!(root.children().is_empty());
    rt.shutdown().unwrap();
}

#[test]
fn lifecycle_child_started_separately_and_kill_of_passive_tree() {
    let rt = runtime(2);
    let log = Log::default();
    let root = rt.create(node("p", &log)).unwrap();
    let k = rt.create_child(&root, node("p.0", &log)).unwrap();
    // A child can be started on its own; the parent stays passive.
    rt.start_and_wait(&k, WAIT).unwrap();
    assert_eq!(root.state(), LifecycleState::Passive);
    // Starting the parent then completes at once (its child is already active).
    rt.start_and_wait(&root, WAIT).unwrap();
    assert_eq!(log.take(), ["start p.0", "start p"]);
    // Children created under an active parent start passive.
    let late = rt.create_child(&root, node("p.1", &log)).unwrap();
    assert_eq!(late.state(), LifecycleState::Passive);
    rt.kill_and_wait(&root, WAIT).unwrap();
    let l = log.take();
    assert!(!l.contains(&"stop p.1".to_owned()), "a passive child is not stopped: {l:?}");
    assert!(l.contains(&"kill p.1".to_owned()));
    rt.shutdown().unwrap();
}

#[test]
fn lifecycle_events_queue_while_passive() {
    let rt = runtime(2);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s2 = seen.clone();
    let sink = rt.create(move || Sink::new(s2.clone())).unwrap();
    let port = sink.provided::<Numbers>().unwrap();
    for n in 0..100 {
        port.request(Num(n)).unwrap();
    }
    std::thread::sleep(std::time::Duration::from_millis(20));
    assert!(seen.lock().is_empty(), "a passive component handles nothing");
    assert_eq!(sink.queued(), 100);
    rt.start_and_wait(&sink, WAIT).unwrap();
    eventually("queued events handled", || seen.lock().len() == 100);
    let order: Vec<u64> = seen.lock().iter().map(|(_, n)| *n).collect();
    assert_eq!(order, (0..100).collect::<Vec<_>>());

    rt.stop_and_wait(&sink, WAIT).unwrap();
    for n in 100..150 {
        port.request(Num(n)).unwrap();
    }
    std::thread::sleep(std::time::Duration::from_millis(20));
    assert_eq!(seen.lock().len(), 100, "a stopped component handles nothing");
    assert_eq!(sink.queued(), 50);
    rt.start_and_wait(&sink, WAIT).unwrap();
    eventually("resumed", || seen.lock().len() == 150);
    assert_eq!(sink.handled(), 150);

    // Killing drops what is still queued, and counts it.
    rt.stop_and_wait(&sink, WAIT).unwrap();
    for n in 0..10 {
        port.request(Num(n)).unwrap();
    }
    rt.kill_and_wait(&sink, WAIT).unwrap();
    eventually("dropped counted", || sink.dropped() == 10);
    assert_eq!(seen.lock().len(), 150);
    rt.shutdown().unwrap();
}
