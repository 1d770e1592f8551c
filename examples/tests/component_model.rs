//! The component model, feature by feature: each test is a small program that the chapter
//! `docs/component-model.md` quotes (through the `ANCHOR` regions), and asserts what the chapter
//! claims about it.

use std::convert::Infallible;
use std::sync::mpsc;
use std::time::Duration;

use selfman::prelude::*;
use selfman::{Error, LifecycleState, Origin, Selector, Severity, Time};
use selfman_example_store::{MemoryStore, Store, StoreRequest, StoreResponse};

type TestResult = Result<(), Box<dyn std::error::Error>>;

const WAIT: Duration = Duration::from_secs(5);

/// How long to wait before concluding that nothing more arrives.
const QUIET: Duration = Duration::from_millis(100);

// ---------------------------------------------------------------------------------------------
// Fan-out and selectors
// ---------------------------------------------------------------------------------------------

// ANCHOR: news_port
/// A news item, published on one topic.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Headline {
    topic: &'static str,
    text: &'static str,
}

/// Requests go to the newsroom; headlines go out to every reader.
struct News;

impl Port for News {
    type Request = Headline; // publish this
    type Indication = Headline; // this was published
}
// ANCHOR_END: news_port

// ANCHOR: fan_out
/// Provides `News`: every headline published is triggered to all connected readers.
#[derive(Default)]
struct Newsroom {
    news: Provided<News>,
}

impl Newsroom {
    fn on_publish(&mut self, headline: Headline) -> Handled {
        let readers = self.news.trigger(headline);
        println!("published to {readers} reader(s)");
        Ok(())
    }
}
// ANCHOR_END: fan_out

impl ComponentDefinition for Newsroom {
    fn setup(&mut self, setup: &mut Setup<Self>) {
        setup.provide(|c| &mut c.news, Self::on_publish);
    }
}

/// Requires `News` and forwards every headline it reads, tagged with its name.
struct Reader {
    name: &'static str,
    news: Required<News>,
    read: mpsc::Sender<(&'static str, Headline)>,
}

impl Reader {
    fn on_headline(&mut self, headline: Headline) -> Handled {
        self.read.send((self.name, headline))?;
        Ok(())
    }
}

impl ComponentDefinition for Reader {
    fn setup(&mut self, setup: &mut Setup<Self>) {
        setup.require(|c| &mut c.news, Self::on_headline);
    }
}

#[test]
fn a_trigger_fans_out_to_every_channel_its_selector_admits() -> TestResult {
    let rt = Runtime::builder().workers(2).build();
    let (read, headlines) = mpsc::channel();
    let reader = |name| {
        let read = read.clone();
        rt.create(move || Reader { name, news: Required::new(), read: read.clone() })
    };
    let (everything, sports) = (reader("everything")?, reader("sports")?);
    let newsroom = rt.create(Newsroom::default)?;

    // ANCHOR: selector
    rt.link::<News>(&newsroom, &everything)?;
    let sports_only = Selector::indications(|h: &Headline| h.topic == "sports");
    let news = newsroom.provided::<News>()?;
    rt.connect_with(&news, &sports.required::<News>()?, sports_only)?;
    // ANCHOR_END: selector

    for c in [everything.untyped(), sports.untyped(), newsroom.untyped()] {
        rt.start_and_wait(c, WAIT)?;
    }
    let weather = Headline { topic: "weather", text: "rain" };
    let football = Headline { topic: "sports", text: "3-1" };
    news.request(weather.clone())?;
    news.request(football.clone())?;

    let mut got: Vec<_> = (0..3).map(|_| headlines.recv_timeout(WAIT)).collect::<Result<_, _>>()?;
    got.sort_by_key(|(name, h)| (*name, h.topic));
    assert_eq!(
        got,
        [("everything", football.clone()), ("everything", weather), ("sports", football),]
    );
    assert!(headlines.recv_timeout(QUIET).is_err(), "nothing else fans out");
    rt.shutdown()?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Request/response with Origin: answering later, to the right requirer
// ---------------------------------------------------------------------------------------------

/// "I am here" (to the barrier), and "go" (from it).
#[derive(Clone, Debug)]
struct Arrive;
#[derive(Clone, Debug)]
struct Go;

struct Rendezvous;

impl Port for Rendezvous {
    type Request = Arrive;
    type Indication = Go;
}

// ANCHOR: barrier
/// Holds every arrival until `size` have arrived, then releases each of them.
struct Barrier {
    port: Provided<Rendezvous>,
    size: usize,
    waiting: Vec<Origin>,
}

impl Barrier {
    fn on_arrive(&mut self, _: Arrive) -> Handled {
        let Some(origin) = self.port.origin() else {
            return Err(HandlerError::benign("an injected arrival cannot be released"));
        };
        self.waiting.push(origin);
        if self.waiting.len() < self.size {
            return Ok(()); // answer later
        }
        for origin in std::mem::take(&mut self.waiting) {
            match self.port.trigger_to(origin, Go) {
                // A requirer that disconnected meanwhile is skipped.
                Ok(()) | Err(Error::Disconnected(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }
}
// ANCHOR_END: barrier

impl ComponentDefinition for Barrier {
    fn setup(&mut self, setup: &mut Setup<Self>) {
        setup.provide(|c| &mut c.port, Self::on_arrive);
    }
}

/// Arrives at the barrier when started; reports when released.
struct Walker {
    n: usize,
    barrier: Required<Rendezvous>,
    released: mpsc::Sender<usize>,
}

impl Walker {
    fn on_go(&mut self, _: Go) -> Handled {
        self.released.send(self.n)?;
        Ok(())
    }
}

impl ComponentDefinition for Walker {
    fn setup(&mut self, setup: &mut Setup<Self>) {
        setup.require(|c| &mut c.barrier, Self::on_go);
    }
    fn on_start(&mut self) -> Handled {
        self.barrier.trigger(Arrive);
        Ok(())
    }
}

#[test]
fn a_provider_answers_each_requirer_later_over_its_own_channel() -> TestResult {
    let rt = Runtime::builder().workers(2).build();
    let barrier = rt.create(|| Barrier { port: Provided::new(), size: 3, waiting: Vec::new() })?;
    rt.start_and_wait(&barrier, WAIT)?;
    let (tx, released) = mpsc::channel();
    let mut walkers = Vec::new();
    for n in 0..4 {
        let tx = tx.clone();
        let walker =
            rt.create(move || Walker { n, barrier: Required::new(), released: tx.clone() })?;
        rt.link::<Rendezvous>(&barrier, &walker)?;
        walkers.push(walker);
    }
    rt.start_and_wait(&walkers[0], WAIT)?;
    rt.start_and_wait(&walkers[1], WAIT)?;
    assert!(released.recv_timeout(QUIET).is_err(), "released too early");
    rt.start_and_wait(&walkers[2], WAIT)?;
    let mut got: Vec<_> = (0..3).map(|_| released.recv_timeout(WAIT)).collect::<Result<_, _>>()?;
    got.sort();
    assert_eq!(got, [0, 1, 2], "each of the first three is released once");
    // The fourth walker is connected too, but nothing was addressed to it.
    assert!(released.recv_timeout(QUIET).is_err());
    rt.shutdown()?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Several ports of one type
// ---------------------------------------------------------------------------------------------

// ANCHOR: named_ports
/// Writes every entry to two stores, and reports which ones confirmed.
struct Mirror {
    primary: Required<Store>,
    backup: Required<Store>,
    confirmed: mpsc::Sender<&'static str>,
}

impl Mirror {
    fn on_primary(&mut self, _: StoreResponse) -> Handled {
        self.confirmed.send("primary")?;
        Ok(())
    }

    fn on_backup(&mut self, _: StoreResponse) -> Handled {
        self.confirmed.send("backup")?;
        Ok(())
    }
}

impl ComponentDefinition for Mirror {
    fn setup(&mut self, setup: &mut Setup<Self>) {
        setup.require(|c| &mut c.primary, Self::on_primary).named("primary");
        setup.require(|c| &mut c.backup, Self::on_backup).named("backup");
    }

    fn on_start(&mut self) -> Handled {
        self.primary.trigger(StoreRequest::put("k", "v"));
        self.backup.trigger(StoreRequest::put("k", "v"));
        Ok(())
    }
}
// ANCHOR_END: named_ports

#[test]
fn several_ports_of_one_type_are_told_apart_by_name() -> TestResult {
    let rt = Runtime::builder().workers(2).build();
    let (tx, confirmed) = mpsc::channel();
    let mirror = rt.create(move || Mirror {
        primary: Required::new(),
        backup: Required::new(),
        confirmed: tx.clone(),
    })?;
    let main_store = rt.create(MemoryStore::default)?;
    let spare_store = rt.create(MemoryStore::default)?;

    // ANCHOR: connect_named
    let primary = mirror.required_named::<Store>("primary")?;
    let backup = mirror.required_named::<Store>("backup")?;
    rt.connect(&main_store.provided::<Store>()?, &primary)?;
    rt.connect(&spare_store.provided::<Store>()?, &backup)?;
    // Asking for "the" required `Store` port is ambiguous:
    let err = rt.link::<Store>(&spare_store, &mirror).unwrap_err();
    assert!(matches!(err, Error::AmbiguousPort { count: 2, .. }));
    // ANCHOR_END: connect_named

    for c in [main_store.untyped(), spare_store.untyped(), mirror.untyped()] {
        rt.start_and_wait(c, WAIT)?;
    }
    let mut got = vec![confirmed.recv_timeout(WAIT)?, confirmed.recv_timeout(WAIT)?];
    got.sort();
    assert_eq!(got, ["backup", "primary"]);
    for store in [&main_store, &spare_store] {
        let value = store.on_definition(|s| s.get("k").map(str::to_owned))?;
        assert_eq!(value.as_deref(), Some("v"));
    }
    rt.shutdown()?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Lifecycle and cascade
// ---------------------------------------------------------------------------------------------

/// A component with no ports that logs its lifecycle hooks.
struct Noisy {
    name: &'static str,
    log: mpsc::Sender<String>,
}

impl Noisy {
    fn log(&self, hook: &str) -> Handled {
        self.log.send(format!("{hook} {}", self.name))?;
        Ok(())
    }
}

impl ComponentDefinition for Noisy {
    fn setup(&mut self, _: &mut Setup<Self>) {}
    fn on_start(&mut self) -> Handled {
        self.log("start")
    }
    fn on_stop(&mut self) -> Handled {
        self.log("stop")
    }
    fn on_kill(&mut self) -> Handled {
        self.log("kill")
    }
}

#[test]
fn start_stop_and_kill_cascade_children_first() -> TestResult {
    let rt = Runtime::builder().workers(2).build();
    let (log, hooks) = mpsc::channel::<String>();
    let noisy = move |name| {
        let log = log.clone();
        move || Noisy { name, log: log.clone() }
    };
    // ANCHOR: cascade
    let parent = rt.create(noisy("parent"))?;
    let child = rt.create_child(&parent, noisy("child"))?;
    assert_eq!(child.state(), LifecycleState::Passive);

    rt.start_and_wait(&parent, WAIT)?; // starts the child first
    assert_eq!(child.state(), LifecycleState::Active);
    rt.stop_and_wait(&parent, WAIT)?; // stops it first
    assert_eq!(child.state(), LifecycleState::Passive);
    rt.kill_and_wait(&parent, WAIT)?; // destroys it first
    assert_eq!(child.state(), LifecycleState::Destroyed);
    // ANCHOR_END: cascade

    let order: Vec<_> = hooks.try_iter().collect();
    assert_eq!(
        order,
        ["start child", "start parent", "stop child", "stop parent", "kill child", "kill parent",]
    );
    rt.shutdown()?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Handlers and failure severities
// ---------------------------------------------------------------------------------------------

/// Numbers, as text, to add up.
struct Adder;

impl Port for Adder {
    type Request = String;
    type Indication = Infallible; // it answers nothing
}

// ANCHOR: severities
/// Adds up the numbers it is sent.
#[derive(Default)]
struct Summer {
    input: Provided<Adder>,
    total: i64,
}

impl Summer {
    fn on_number(&mut self, text: String) -> Handled {
        if text.trim().is_empty() {
            // Logged; the component keeps running.
            return Err(HandlerError::benign("blank input skipped"));
        }
        // A parse error converts into a *recoverable* failure.
        let n: i64 = text.trim().parse()?;
        if n < 0 {
            // The component's subtree is destroyed.
            let msg = format!("negative input {n}: the total is meaningless now");
            return Err(HandlerError::unrecoverable(msg));
        }
        self.total += n;
        Ok(())
    }
}
// ANCHOR_END: severities

impl ComponentDefinition for Summer {
    fn setup(&mut self, setup: &mut Setup<Self>) {
        setup.provide(|c| &mut c.input, Self::on_number);
    }
}

#[test]
fn benign_failures_are_skipped_recoverable_ones_make_the_component_fail() -> TestResult {
    let rt = Runtime::builder().workers(2).build();
    let summer = rt.create(Summer::default)?;
    rt.start_and_wait(&summer, WAIT)?;
    let input = summer.provided::<Adder>()?;
    for text in ["4", " ", "3", "three", "100"] {
        input.request(text.to_owned())?;
    }
    // "three" fails: the component becomes faulty and, by the root's default policy, is stopped.
    summer.await_state(LifecycleState::Passive, WAIT)?;
    // "4" and "3" were added; the blank was skipped; "three" failed; "100" waits, unhandled.
    assert_eq!(summer.on_definition(|s| s.total)?, 7);
    assert_eq!(summer.queued(), 1);
    let fault = summer.last_fault().expect("a recoverable failure is reported");
    assert_eq!(fault.severity, Severity::Recoverable);
    assert!(fault.error.contains("invalid digit"), "{}", fault.error);
    rt.shutdown()?;
    Ok(())
}

#[test]
fn an_unrecoverable_failure_destroys_the_component() -> TestResult {
    let rt = Runtime::builder().workers(2).build();
    let summer = rt.create(Summer::default)?;
    rt.start_and_wait(&summer, WAIT)?;
    summer.provided::<Adder>()?.request("-1".to_owned())?;
    summer.await_state(LifecycleState::Destroyed, WAIT)?;
    let fault = summer.last_fault().expect("the failure is reported");
    assert_eq!(fault.severity, Severity::Unrecoverable);
    rt.shutdown()?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Timers and the Context
// ---------------------------------------------------------------------------------------------

// ANCHOR: countdown
/// Ticks every 10 ms; after `left` ticks it cancels its timer and stops itself.
struct Countdown {
    ctx: Context,
    timer: Required<Timer>,
    left: u32,
    ticks: mpsc::Sender<Time>,
}

const TICK: TimerId = TimerId(7);

impl Countdown {
    fn on_timeout(&mut self, timeout: Timeout) -> Handled {
        if timeout.id != TICK || self.left == 0 {
            return Ok(()); // stale: it fired before the cancel was handled
        }
        self.left -= 1;
        self.ticks.send(self.ctx.now())?;
        if self.left == 0 {
            self.timer.cancel(TICK);
            self.ctx.stop_self();
        }
        Ok(())
    }
}

impl ComponentDefinition for Countdown {
    fn setup(&mut self, setup: &mut Setup<Self>) {
        setup.context(|c| &mut c.ctx);
        setup.require(|c| &mut c.timer, Self::on_timeout);
    }

    fn on_start(&mut self) -> Handled {
        let period = Duration::from_millis(10);
        self.timer.schedule_periodic(TICK, period, period);
        Ok(())
    }
}
// ANCHOR_END: countdown

#[test]
fn a_periodic_timer_ticks_until_cancelled_and_a_component_can_stop_itself() -> TestResult {
    let rt = Runtime::builder().workers(2).build();
    let (tx, ticks) = mpsc::channel();
    let countdown = rt.create(move || Countdown {
        ctx: Context::new(),
        timer: Required::new(),
        left: 3,
        ticks: tx.clone(),
    })?;
    rt.connect_timer(&countdown)?;
    let before = rt.now();
    rt.start_and_wait(&countdown, WAIT)?;
    countdown.await_state(LifecycleState::Passive, WAIT)?;
    let at: Vec<Duration> = ticks.try_iter().map(|t| t.duration_since(before)).collect();
    assert_eq!(at.len(), 3, "ticks at {at:?}");
    assert!(at[2] >= Duration::from_millis(30), "third tick too early: {at:?}");
    rt.shutdown()?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Misuse is answered with errors
// ---------------------------------------------------------------------------------------------

/// Requires `Store`, and ignores the answers.
#[derive(Default)]
struct Deaf {
    store: Required<Store>,
}

impl ComponentDefinition for Deaf {
    fn setup(&mut self, setup: &mut Setup<Self>) {
        setup.require(|c| &mut c.store, |_, _| Ok(()));
    }
}

#[test]
fn misuse_returns_errors() -> TestResult {
    let rt = Runtime::builder().workers(2).build();
    let store = rt.create(MemoryStore::default)?;
    let client = rt.create(Deaf::default)?;
    // ANCHOR: misuse
    rt.start_and_wait(&store, WAIT)?;
    let again = rt.start(&store);
    assert!(matches!(again, Err(Error::InvalidLifecycle { .. })));

    let wrong_way = store.required::<Store>(); // it provides Store
    assert!(matches!(wrong_way, Err(Error::NoSuchPort { .. })));

    let channel = rt.link::<Store>(&store, &client)?;
    channel.disconnect()?;
    assert!(matches!(channel.disconnect(), Err(Error::Disconnected(_))));

    let port = store.provided::<Store>()?;
    rt.kill_and_wait(&store, WAIT)?;
    let late = port.request(StoreRequest::get("k"));
    assert!(matches!(late, Err(Error::Destroyed(_))));
    // ANCHOR_END: misuse
    assert!(matches!(rt.link::<Store>(&store, &client), Err(Error::Destroyed(_))));
    let system = rt.system().clone();
    rt.shutdown()?;
    assert!(matches!(system.create(MemoryStore::default), Err(Error::ShutDown)));
    Ok(())
}
