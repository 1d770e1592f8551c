//! The component against a scripted failure detector (a test double providing
//! `FailureDetector`): what it monitors, what it trusts, what a late user is told.

use std::sync::{Arc, Mutex};

use selfman_core::{ComponentDefinition, Handled, NodeAddr, NodeId, Provided, Required, Setup};
use selfman_leader_election::Omega;
use selfman_ports::{FailureDetector, FdIndication, FdRequest, LeaderElection, Trust};
use selfman_sim::Simulation;

/// Records the requests it gets; indications are injected by the test.
struct ScriptedFd {
    port: Provided<FailureDetector>,
    requests: Arc<Mutex<Vec<FdRequest>>>,
}

impl ComponentDefinition for ScriptedFd {
    fn setup(&mut self, s: &mut Setup<Self>) {
        s.provide(
            |c| &mut c.port,
            |c: &mut Self, r: FdRequest| {
                c.requests.lock().unwrap().push(r);
                Ok(())
            },
        );
    }
}

/// Records every `Trust`.
struct Follower {
    le: Required<LeaderElection>,
    log: Arc<Mutex<Vec<Trust>>>,
}

impl ComponentDefinition for Follower {
    fn setup(&mut self, s: &mut Setup<Self>) {
        s.require(
            |c| &mut c.le,
            |c: &mut Self, t: Trust| -> Handled {
                c.log.lock().unwrap().push(t);
                Ok(())
            },
        );
    }
}

fn member(n: u32) -> NodeAddr {
    NodeAddr::simulated(n, NodeId::UNKNOWN)
}

#[test]
fn monitors_the_others_and_follows_the_detector() {
    let sim = Simulation::new(1);
    let sys = sim.system();
    let requests = Arc::new(Mutex::new(Vec::new()));
    let r = requests.clone();
    let fd = sys.create(move || ScriptedFd { port: Provided::new(), requests: r.clone() }).unwrap();
    let group: Vec<NodeAddr> = (1..=4).map(member).collect();
    let me = NodeAddr::simulated(3, NodeId(33));
    let g = group.clone();
    let omega = sys.create(move || Omega::new(me, g.clone())).unwrap();
    let log = Arc::new(Mutex::new(Vec::new()));
    let l = log.clone();
    let user = sys.create(move || Follower { le: Required::new(), log: l.clone() }).unwrap();
    let fd_port = fd.provided::<FailureDetector>().unwrap();
    sys.connect(&fd_port, &omega.required().unwrap()).unwrap();
    sys.connect(&omega.provided::<LeaderElection>().unwrap(), &user.required().unwrap()).unwrap();
    for c in [fd.untyped(), omega.untyped(), user.untyped()] {
        sys.start(c).unwrap();
    }
    sim.run_until_idle();
    let expect: Vec<_> = [1, 2, 4].map(|n| FdRequest::Monitor(member(n))).to_vec();
    assert_eq!(*requests.lock().unwrap(), expect);
    assert_eq!(*log.lock().unwrap(), vec![Trust(member(1))]);

    let mut ind = fd_port.indicator();
    ind.trigger(FdIndication::Suspect(member(2)));
    ind.trigger(FdIndication::Suspect(member(1)));
    sim.run_until_idle();
    assert_eq!(*log.lock().unwrap(), vec![Trust(member(1)), Trust(member(3))]);
    ind.trigger(FdIndication::Restore(member(2)));
    sim.run_until_idle();
    assert_eq!(log.lock().unwrap().last(), Some(&Trust(member(2))));
    let trusted = omega.on_definition(|o| o.elector().trusted()).unwrap();
    assert_eq!(trusted, Some(Trust(member(2))));

    // A user connected later asks with `()` and is told the current leader, alone.
    let late = Arc::new(Mutex::new(Vec::new()));
    let l2 = late.clone();
    let user2 = sys.create(move || Follower { le: Required::new(), log: l2.clone() }).unwrap();
    sys.connect(&omega.provided::<LeaderElection>().unwrap(), &user2.required().unwrap()).unwrap();
    sys.start(user2.untyped()).unwrap();
    user2.on_definition(|f| f.le.trigger(())).unwrap();
    sim.run_until_idle();
    assert_eq!(*late.lock().unwrap(), vec![Trust(member(2))]);
    assert_eq!(log.lock().unwrap().len(), 3, "the first user is not told again");
}
