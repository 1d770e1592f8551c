//! The component in the simulator: several users on one detector, crashes, partitions,
//! restarts, and the network's hints.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use selfman_core::{
    ComponentDefinition, Context, Handled, Host, NodeAddr, NodeId, Required, Setup, Time,
};
use selfman_failure_detector::{build, FdConfig, HeartbeatFd};
use selfman_ports::{FailureDetector, FdIndication, FdRequest};
use selfman_sim::{address_of, SimHost, Simulation};

type Log = Arc<Mutex<Vec<(Time, FdIndication)>>>;

/// A user that monitors `watch` on start and logs what it is told.
struct User {
    ctx: Context,
    fd: Required<FailureDetector>,
    watch: Vec<NodeAddr>,
    log: Log,
}

impl User {
    fn on_fd(&mut self, ind: FdIndication) -> Handled {
        self.log.lock().unwrap().push((self.ctx.now(), ind));
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

fn secs(s: f64) -> Time {
    Time::ZERO + Duration::from_secs_f64(s)
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
    sim.run_until(secs(1.0));
    assert!(a.lock().unwrap().is_empty() && b.lock().unwrap().is_empty());
    sim.crash(alive(&sim, 2)).unwrap();
    sim.run_until(secs(3.0));
    let a = a.lock().unwrap().clone();
    assert_eq!(a.len(), 1, "{a:?}");
    assert_eq!(a[0].1, FdIndication::Suspect(any(2)));
    let took = a[0].0.duration_since(secs(1.0));
    assert!(took <= Duration::from_millis(500), "detected after {took:?}");
    assert!(b.lock().unwrap().is_empty(), "b does not monitor node 2");
    let monitored = fd.on_definition(|d| d.detector().monitored()).unwrap();
    assert_eq!(monitored, 2);
}

#[test]
fn a_partition_is_suspected_then_restored_with_a_longer_timeout() {
    let sim = Simulation::new(2);
    let (a, b) = (Log::default(), Log::default());
    let fd = setup(&sim, 3, &a, &b);
    sim.run_until(secs(1.0));
    let n1 = alive(&sim, 1);
    sim.partition(&[vec![n1]]);
    sim.run_until(secs(2.0));
    sim.heal();
    sim.run_until(secs(3.0));
    let kinds = |l: &Log| l.lock().unwrap().iter().map(|x| x.1).collect::<Vec<_>>();
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
    sim.run_until(secs(1.0));
    sim.crash(alive(&sim, 2)).unwrap();
    sim.run_until(secs(2.0));
    sim.restart(any(2)).unwrap();
    sim.run_until(secs(3.0));
    let a: Vec<_> = a.lock().unwrap().iter().map(|x| x.1).collect();
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
    sim.run_until(secs(1.0));
    // Restarted within a period: silence never exceeds the timeout, yet the old incarnation
    // is reported, and never restored.
    sim.restart(n1).unwrap();
    sim.run_until(secs(1.2));
    let l = log.lock().unwrap().clone();
    assert_eq!(l.len(), 1, "{l:?}");
    assert_eq!(l[0].1, FdIndication::Suspect(n1));
    assert!(l[0].0 < secs(1.15), "found by the next probe: {:?}", l[0].0);
    sim.run_until(secs(5.0));
    assert_eq!(log.lock().unwrap().len(), 1);
}

#[test]
fn a_stopped_detector_forgives_the_pause_when_started_again() {
    let sim = Simulation::new(5);
    let (a, b) = (Log::default(), Log::default());
    let fd = setup(&sim, 3, &a, &b);
    // Between two ticks, once every answer has arrived: nothing waits in the queue to refresh
    // the peers on restart.
    sim.run_until(secs(1.05));
    sim.system().stop(fd.untyped()).unwrap();
    sim.run_until(secs(4.0));
    sim.system().start(fd.untyped()).unwrap();
    sim.run_until(secs(6.0));
    assert!(a.lock().unwrap().is_empty(), "{:?}", a.lock().unwrap());
    // It works as before: a crash is still detected.
    sim.crash(alive(&sim, 2)).unwrap();
    sim.run_until(secs(7.0));
    let a = a.lock().unwrap().clone();
    assert_eq!(a.iter().map(|x| x.1).collect::<Vec<_>>(), vec![FdIndication::Suspect(any(2))]);
}
