//! Several ports of the same type on one component are bound, routed and handled distinctly.

mod common;

use std::sync::Arc;

use common::{eventually, runtime, Num, Numbers, Sink, WAIT};
use parking_lot::Mutex;
use selfman_core::{ComponentDefinition, Error, Handled, Provided, Required, Setup};

/// Two required and two provided `Numbers` ports, each with its own handler.
struct Router {
    left: Required<Numbers>,
    right: Required<Numbers>,
    north: Provided<Numbers>,
    south: Provided<Numbers>,
    log: Arc<Mutex<Vec<String>>>,
}

impl Router {
    fn on_left(&mut self, n: Num) -> Handled {
        self.log.lock().push(format!("left {}", n.0));
        Ok(())
    }
    fn on_right(&mut self, n: Num) -> Handled {
        self.log.lock().push(format!("right {}", n.0));
        Ok(())
    }
    fn on_north(&mut self, n: Num) -> Handled {
        self.log.lock().push(format!("north {}", n.0));
        // Requests on north go out on left only, requests on south on right only.
        self.left.trigger(Num(n.0 * 10));
        Ok(())
    }
    fn on_south(&mut self, n: Num) -> Handled {
        self.log.lock().push(format!("south {}", n.0));
        self.right.trigger(Num(n.0 * 100));
        Ok(())
    }
}

impl ComponentDefinition for Router {
    fn setup(&mut self, s: &mut Setup<Self>) {
        s.require(|c| &mut c.left, Self::on_left).named("left");
        s.require(|c| &mut c.right, Self::on_right).named("right");
        s.provide(|c| &mut c.north, Self::on_north).named("north");
        s.provide(|c| &mut c.south, Self::on_south).named("south");
    }
}

#[test]
fn port_same_type_ports_are_distinct() {
    let rt = runtime(2);
    let log = Arc::new(Mutex::new(Vec::new()));
    let l2 = log.clone();
    let router = rt
        .create(move || Router {
            left: Required::new(),
            right: Required::new(),
            north: Provided::new(),
            south: Provided::new(),
            log: l2.clone(),
        })
        .unwrap();
    let left_seen = Arc::new(Mutex::new(Vec::new()));
    let right_seen = Arc::new(Mutex::new(Vec::new()));
    let (ls, rs) = (left_seen.clone(), right_seen.clone());
    let left = rt.create(move || Sink::new(ls.clone())).unwrap();
    let right = rt.create(move || Sink::new(rs.clone())).unwrap();
    rt.connect(
        &left.provided::<Numbers>().unwrap(),
        &router.required_named::<Numbers>("left").unwrap(),
    )
    .unwrap();
    rt.connect(
        &right.provided::<Numbers>().unwrap(),
        &router.required_named::<Numbers>("right").unwrap(),
    )
    .unwrap();
    for c in [&left, &right] {
        rt.start_and_wait(c, WAIT).unwrap();
    }
    rt.start_and_wait(&router, WAIT).unwrap();

    // Unnamed lookups are ambiguous; named ones find exactly one port.
    assert!(matches!(router.required::<Numbers>(), Err(Error::AmbiguousPort { count: 2, .. })));
    assert!(matches!(router.provided::<Numbers>(), Err(Error::AmbiguousPort { count: 2, .. })));
    assert!(matches!(router.provided_named::<Numbers>("west"), Err(Error::NoSuchPort { .. })));

    router.provided_named::<Numbers>("north").unwrap().request(Num(1)).unwrap();
    router.provided_named::<Numbers>("south").unwrap().request(Num(2)).unwrap();
    router.required_named::<Numbers>("left").unwrap().indicate(Num(3)).unwrap();
    router.required_named::<Numbers>("right").unwrap().indicate(Num(4)).unwrap();

    eventually("all four events handled", || log.lock().len() == 4);
    let mut got = log.lock().clone();
    got.sort();
    assert_eq!(got, ["left 3", "north 1", "right 4", "south 2"]);
    eventually("sinks got their requests", || {
        left_seen.lock().len() == 1 && right_seen.lock().len() == 1
    });
    assert_eq!(left_seen.lock()[0].1, 10, "north's request went out on left only");
    assert_eq!(right_seen.lock()[0].1, 200, "south's request went out on right only");

    let ports = router.ports();
    let names: Vec<_> = ports.iter().map(|p| p.name.unwrap()).collect();
    assert_eq!(names, ["left", "right", "north", "south"]);
    assert!(ports.iter().all(|p| p.port.ends_with("Numbers")));
    assert_eq!(ports[0].channels.len(), 1);
    assert_eq!(ports[2].channels.len(), 0);
    rt.shutdown().unwrap();
}
