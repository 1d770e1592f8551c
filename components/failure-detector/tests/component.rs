//! The component in the simulator: several users on one detector, crashes, partitions,
//! restarts, the network's hints, and live replacement (hot swap) of the detector.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use selfman_core::testkit;
use selfman_core::{
    ComponentDefinition, Context, Handled, Host, NodeAddr, NodeId, Required, Setup, Time,
};
use selfman_failure_detector::{build, reconfigure, FdConfig, HeartbeatFd};
use selfman_ports::{FailureDetector, FdIndication, FdRequest};
use selfman_sim::{address_of, SimHost, Simulation};

type Log = testkit::Log<Vec<(Time, FdIndication)>>;

/// A user that monitors `watch` on start and logs what it is told.
struct User {
    ctx: Context,
    fd: Required<FailureDetector>,
    watch: Vec<NodeAddr>,
    log: Log,
}

impl User {
    fn on_fd(&mut self, ind: FdIndication) -> Handled {
        self.log.push((self.ctx.now(), ind));
        Ok(())
    }
}

impl ComponentDefinition for User {
    fn setup(&mut self, s: &mut Setup<Self>) {
        s.context(|c| &mut c.ctx);
        s.require(|c| &mut c.fd, Self::on_fd);
    }
    fn on_start(&mut self) -> Handled {
        for &n in &self.watch {
            self.fd.trigger(FdRequest::Monitor(n));
        }
        Ok(())
    }
}

fn any(i: usize) -> NodeAddr {
    NodeAddr::new(address_of(i), NodeId::UNKNOWN)
}

/// Node 0 runs a detector with two users: `a` watches nodes 1 and 2, `b` watches node 1.
/// The other nodes only run a detector (which answers pings).
fn setup(sim: &Simulation, n: usize, a: &Log, b: &Log) -> selfman_core::Component<HeartbeatFd> {
    let fd0: Arc<Mutex<Option<selfman_core::Component<HeartbeatFd>>>> = Arc::default();
    let (a, b, f) = (a.clone(), b.clone(), fd0.clone());
    sim.add_node(move |h: &SimHost| {
        let fd = build(h, FdConfig::default())?;
        for (log, watch) in [(a.clone(), vec![any(1), any(2)]), (b.clone(), vec![any(1)])] {
            let u = h.create(move || User {
                ctx: Context::new(),
                fd: Required::new(),
                watch: watch.clone(),
                log: log.clone(),
            })?;
            h.system().connect(&fd.provided::<FailureDetector>()?, &u.required()?)?;
        }
        *f.lock().unwrap() = Some(fd);
        Ok(())
    })
    .unwrap();
    for _ in 1..n {
        sim.add_node(|h: &SimHost| build(h, FdConfig::default()).map(|_| ())).unwrap();
    }
    let fd = fd0.lock().unwrap().take().unwrap();
    fd
}

fn alive(sim: &Simulation, i: usize) -> NodeAddr {
    sim.alive_nodes().into_iter().find(|n| n.addr == address_of(i)).unwrap()
}

#[test]
fn each_user_hears_about_what_it_monitors_only() {
    let sim = Simulation::new(1);
    let (a, b) = (Log::default(), Log::default());
    let fd = setup(&sim, 3, &a, &b);
    sim.run_until(Time::from_secs_f64(1.0));
    assert!(a.is_empty() && b.is_empty());
    sim.crash(alive(&sim, 2)).unwrap();
    sim.run_until(Time::from_secs_f64(3.0));
    let a = a.snapshot();
    assert_eq!(a.len(), 1, "{a:?}");
    assert_eq!(a[0].1, FdIndication::Suspect(any(2)));
    let took = a[0].0.duration_since(Time::from_secs_f64(1.0));
    assert!(took <= Duration::from_millis(500), "detected after {took:?}");
    assert!(b.is_empty(), "b does not monitor node 2");
    let monitored = fd.on_definition(|d| d.detector().monitored()).unwrap();
    assert_eq!(monitored, 2);
}

#[test]
fn a_partition_is_suspected_then_restored_with_a_longer_timeout() {
    let sim = Simulation::new(2);
    let (a, b) = (Log::default(), Log::default());
    let fd = setup(&sim, 3, &a, &b);
    sim.run_until(Time::from_secs_f64(1.0));
    let n1 = alive(&sim, 1);
    sim.partition(&[vec![n1]]);
    sim.run_until(Time::from_secs_f64(2.0));
    sim.heal();
    sim.run_until(Time::from_secs_f64(3.0));
    let kinds = |l: &Log| l.lock().iter().map(|x| x.1).collect::<Vec<_>>();
    let expect = vec![FdIndication::Suspect(any(1)), FdIndication::Restore(any(1))];
    assert_eq!(kinds(&a), expect);
    assert_eq!(kinds(&b), expect);
    let t = fd.on_definition(|d| d.detector().timeout(any(1))).unwrap();
    let c = FdConfig::default();
    assert_eq!(t, Some(c.initial_timeout + c.increment));
}

#[test]
fn a_restarted_node_is_restored_as_the_same_address() {
    let sim = Simulation::new(3);
    let (a, b) = (Log::default(), Log::default());
    let fd = setup(&sim, 3, &a, &b);
    sim.run_until(Time::from_secs_f64(1.0));
    sim.crash(alive(&sim, 2)).unwrap();
    sim.run_until(Time::from_secs_f64(2.0));
    sim.restart(any(2)).unwrap();
    sim.run_until(Time::from_secs_f64(3.0));
    let a: Vec<_> = a.lock().iter().map(|x| x.1).collect();
    assert_eq!(a, vec![FdIndication::Suspect(any(2)), FdIndication::Restore(any(2))]);
    // Not a false suspicion: the timeout did not grow.
    let t = fd.on_definition(|d| d.detector().timeout(any(2))).unwrap();
    assert_eq!(t, Some(FdConfig::default().initial_timeout));
}

#[test]
fn a_concrete_incarnation_replaced_by_a_quick_restart_is_suspected_for_good() {
    let sim = Simulation::new(4);
    let log = Log::default();
    let l = log.clone();
    sim.add_node(|h: &SimHost| build(h, FdConfig::default()).map(|_| ())).unwrap();
    let n1 = sim.add_node(|h: &SimHost| build(h, FdConfig::default()).map(|_| ())).unwrap();
    // A user on a third node watches incarnation n1 exactly.
    sim.add_node(move |h: &SimHost| {
        let fd = build(h, FdConfig::default())?;
        let watch = vec![n1];
        let log = l.clone();
        let u = h.create(move || User {
            ctx: Context::new(),
            fd: Required::new(),
            watch: watch.clone(),
            log: log.clone(),
        })?;
        h.system().connect(&fd.provided::<FailureDetector>()?, &u.required()?)?;
        Ok(())
    })
    .unwrap();
    sim.run_until(Time::from_secs_f64(1.0));
    // Restarted within a period: silence never exceeds the timeout, yet the old incarnation
    // is reported, and never restored.
    sim.restart(n1).unwrap();
    sim.run_until(Time::from_secs_f64(1.2));
    let l = log.snapshot();
    assert_eq!(l.len(), 1, "{l:?}");
    assert_eq!(l[0].1, FdIndication::Suspect(n1));
    assert!(l[0].0 < Time::from_secs_f64(1.15), "found by the next probe: {:?}", l[0].0);
    sim.run_until(Time::from_secs_f64(5.0));
    assert_eq!(log.len(), 1);
}

#[test]
fn a_stopped_detector_forgives_the_pause_when_started_again() {
    let sim = Simulation::new(5);
    let (a, b) = (Log::default(), Log::default());
    let fd = setup(&sim, 3, &a, &b);
    // Between two ticks, once every answer has arrived: nothing waits in the queue to refresh
    // the peers on restart.
    sim.run_until(Time::from_secs_f64(1.05));
    sim.system().stop(fd.untyped()).unwrap();
    sim.run_until(Time::from_secs_f64(4.0));
    sim.system().start(fd.untyped()).unwrap();
    sim.run_until(Time::from_secs_f64(6.0));
    assert!(a.is_empty(), "{:?}", a.lock());
    // It works as before: a crash is still detected.
    sim.crash(alive(&sim, 2)).unwrap();
    sim.run_until(Time::from_secs_f64(7.0));
    let a = a.snapshot();
    assert_eq!(a.iter().map(|x| x.1).collect::<Vec<_>>(), vec![FdIndication::Suspect(any(2))]);
}

/// The indications in `log`, without their times.
fn kinds(log: &Log) -> Vec<FdIndication> {
    log.lock().iter().map(|x| x.1).collect()
}

/// Runs the simulation until the swap has happened, and checks that it succeeded.
fn finish(sim: &Simulation, swap: selfman_core::Swap) {
    sim.run_until_idle();
    match swap.try_outcome() {
        Some(Ok(())) => {}
        other => panic!("swap not done: {other:?}"),
    }
}

#[test]
fn a_live_swap_keeps_watches_and_suspicions_and_changes_the_pace() {
    let sim = Simulation::new(6);
    let (a, b) = (Log::default(), Log::default());
    let fd = setup(&sim, 3, &a, &b);
    sim.run_until(Time::from_secs_f64(1.0));
    sim.partition(&[vec![alive(&sim, 1)]]);
    sim.run_until(Time::from_secs_f64(1.75));
    let suspect = vec![FdIndication::Suspect(any(1))];
    assert_eq!((kinds(&a), kinds(&b)), (suspect.clone(), suspect.clone()));
    let before = fd.on_definition(|d| d.detector().save()).unwrap();

    finish(&sim, reconfigure(sim.system(), &fd, FdConfig::beernet()).unwrap());
    let swapped = sim.now();
    assert_eq!(fd.swaps(), 1);
    let (config, after, ticks) = fd
        .on_definition(|d| (*d.detector().config(), d.detector().save(), d.detector().ticks()))
        .unwrap();
    assert_eq!(config, FdConfig::beernet());
    assert_eq!(after.seq, before.seq);
    let watches = |s: &selfman_failure_detector::DetectorState| {
        s.peers.iter().flat_map(|p| p.watches.clone()).collect::<Vec<_>>()
    };
    assert_eq!(watches(&after), watches(&before), "every watch, subscriber and suspicion");
    // 400 ms (default, not grown: the suspicion is not known to be false yet) -> 500 ms.
    let t = |s: &selfman_failure_detector::DetectorState, i: usize| {
        s.peers.iter().find(|p| p.addr == address_of(i)).map(|p| p.timeout)
    };
    assert_eq!((t(&before, 1), t(&after, 1)), (Some(ms(400)), Some(ms(500))));

    // Exactly one tick timer, at the new period: 2 s / 250 ms = 8 ticks, not 8 + 20.
    sim.run_until(swapped + Duration::from_secs(2));
    let ticked = fd.on_definition(|d| d.detector().ticks()).unwrap() - ticks;
    assert_eq!(ticked, 8);

    // The old suspicion is corrected by the new instance, to both users, and counts as a
    // false suspicion under the new config (+500 ms).
    sim.heal();
    sim.run_for(Duration::from_secs(1));
    let fixed = vec![FdIndication::Suspect(any(1)), FdIndication::Restore(any(1))];
    assert_eq!((kinds(&a), kinds(&b)), (fixed.clone(), fixed.clone()));
    assert!(a.lock()[1].0 > swapped);
    let timeout = fd.on_definition(|d| d.detector().timeout(any(1))).unwrap();
    assert_eq!(timeout, Some(ms(1_000)));

    // And it still detects, within the new config's bound, for the user that watches.
    let crash = sim.now();
    sim.crash(alive(&sim, 2)).unwrap();
    sim.run_for(Duration::from_secs(2));
    let a = a.snapshot();
    assert_eq!(a.len(), 3, "{a:?}");
    assert_eq!(a[2].1, FdIndication::Suspect(any(2)));
    assert!(a[2].0.duration_since(crash) <= ms(800), "{:?}", a[2].0.duration_since(crash));
    assert_eq!(kinds(&b), fixed, "b does not watch node 2");
    assert_eq!((fd.swaps(), fd.dropped()), (1, 0));
}

#[test]
fn a_swap_without_the_transfer_forgets_every_watch() {
    // What the transfer is for: a fresh detector knows nothing, and its users, who asked once,
    // are never told about a crash.
    let sim = Simulation::new(7);
    let (a, b) = (Log::default(), Log::default());
    let fd = setup(&sim, 3, &a, &b);
    sim.run_until(Time::from_secs_f64(1.0));
    finish(
        &sim,
        sim.system().replace(fd.untyped(), || HeartbeatFd::new(FdConfig::beernet())).unwrap(),
    );
    assert_eq!(fd.swaps(), 1);
    assert_eq!(fd.on_definition(|d| d.detector().monitored()).unwrap(), 0);
    sim.crash(alive(&sim, 2)).unwrap();
    sim.run_until(Time::from_secs_f64(5.0));
    assert!(kinds(&a).is_empty() && kinds(&b).is_empty());
}

#[test]
fn a_detector_swapped_while_stopped_forgives_the_pause_when_started() {
    let sim = Simulation::new(8);
    let (a, b) = (Log::default(), Log::default());
    let fd = setup(&sim, 3, &a, &b);
    sim.run_until(Time::from_secs_f64(1.05));
    sim.system().stop(fd.untyped()).unwrap();
    sim.run_until(Time::from_secs_f64(2.0));
    finish(&sim, reconfigure(sim.system(), &fd, FdConfig::default()).unwrap());
    sim.run_until(Time::from_secs_f64(4.0));
    assert_eq!(fd.on_definition(|d| d.detector().ticks()).unwrap(), 10, "no tick while stopped");
    sim.system().start(fd.untyped()).unwrap();
    sim.run_until(Time::from_secs_f64(6.0));
    assert!(kinds(&a).is_empty(), "{:?}", kinds(&a));
    sim.crash(alive(&sim, 2)).unwrap();
    sim.run_until(Time::from_secs_f64(7.0));
    assert_eq!(kinds(&a), vec![FdIndication::Suspect(any(2))]);
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}
