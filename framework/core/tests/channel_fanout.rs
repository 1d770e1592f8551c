//! Fan-out: a trigger reaches every channel, cloning only for receivers beyond the first.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use common::{eventually, runtime, WAIT};
use parking_lot::Mutex;
use selfman_core::{ComponentDefinition, Handled, Port, Provided, Required, Setup};

static CLONES: AtomicUsize = AtomicUsize::new(0);

/// An event that counts its clones.
#[derive(Debug)]
struct Counted(u64);
impl Clone for Counted {
    fn clone(&self) -> Self {
        CLONES.fetch_add(1, Ordering::SeqCst);
        Counted(self.0)
    }
}

struct Feed;
impl Port for Feed {
    type Request = ();
    type Indication = Counted;
}

#[derive(Default)]
struct Publisher {
    out: Provided<Feed>,
}
impl Publisher {
    fn on_req(&mut self, _: ()) -> Handled {
        Ok(())
    }
}
impl ComponentDefinition for Publisher {
    fn setup(&mut self, s: &mut Setup<Self>) {
        s.provide(|c| &mut c.out, Self::on_req);
    }
}

struct Subscriber {
    feed: Required<Feed>,
    got: Arc<Mutex<Vec<u64>>>,
}
impl Subscriber {
    fn on_counted(&mut self, c: Counted) -> Handled {
        self.got.lock().push(c.0);
        Ok(())
    }
}
impl ComponentDefinition for Subscriber {
    fn setup(&mut self, s: &mut Setup<Self>) {
        s.require(|c| &mut c.feed, Self::on_counted);
    }
}

#[test]
fn channel_fanout_clones_only_beyond_first_receiver() {
    let rt = runtime(2);
    let publisher = rt.create(Publisher::default).unwrap();
    rt.start_and_wait(&publisher, WAIT).unwrap();
    let mut logs = Vec::new();
    let mut subs = Vec::new();
    for _ in 0..3 {
        let got = Arc::new(Mutex::new(Vec::new()));
        let g = got.clone();
        let s = rt.create(move || Subscriber { feed: Required::new(), got: g.clone() }).unwrap();
        rt.start_and_wait(&s, WAIT).unwrap();
        logs.push(got);
        subs.push(s);
    }

    // No channel: nothing delivered, nothing cloned.
    let n = publisher.on_definition(|p| p.out.trigger(Counted(0))).unwrap();
    assert_eq!(n, 0);
    assert_eq!(CLONES.load(Ordering::SeqCst), 0);

    // One receiver: the event is moved, never cloned.
    rt.link::<Feed>(&publisher, &subs[0]).unwrap();
    let n = publisher.on_definition(|p| p.out.trigger(Counted(1))).unwrap();
    assert_eq!(n, 1);
    assert_eq!(CLONES.load(Ordering::SeqCst), 0);

    // Three receivers: two clones.
    rt.link::<Feed>(&publisher, &subs[1]).unwrap();
    rt.link::<Feed>(&publisher, &subs[2]).unwrap();
    let n = publisher.on_definition(|p| p.out.trigger(Counted(2))).unwrap();
    assert_eq!(n, 3);
    assert_eq!(CLONES.load(Ordering::SeqCst), 2);

    eventually("all delivered", || logs.iter().map(|l| l.lock().len()).sum::<usize>() == 4);
    assert_eq!(*logs[0].lock(), [1, 2]);
    assert_eq!(*logs[1].lock(), [2]);
    assert_eq!(*logs[2].lock(), [2]);
    rt.shutdown().unwrap();
}
