//! Lifecycle misuse returns clear errors; nothing panics or disturbs other components.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{runtime, Sink, WAIT};
use parking_lot::Mutex;
use selfman_core::{ComponentDefinition, Error, Handled, LifecycleState, Setup};

#[derive(Default)]
struct Quiet;
impl ComponentDefinition for Quiet {
    fn setup(&mut self, _: &mut Setup<Self>) {}
}

struct SlowStart;
impl ComponentDefinition for SlowStart {
    fn setup(&mut self, _: &mut Setup<Self>) {}
    fn on_start(&mut self) -> Handled {
        std::thread::sleep(Duration::from_millis(200));
        Ok(())
    }
}

#[test]
fn lifecycle_misuse_is_reported() {
    let rt = runtime(2);
    let a = rt.create(Quiet::default).unwrap();
    assert!(matches!(rt.stop(&a), Err(Error::InvalidLifecycle { action: "stop", .. })));
    rt.start_and_wait(&a, WAIT).unwrap();
    let err = rt.start(&a).unwrap_err();
    assert!(
        matches!(
            err,
            Error::InvalidLifecycle { state: LifecycleState::Active, action: "start", .. }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("cannot start"), "{err}");

    // The root cannot be driven by users.
    let root = rt.root_ref().unwrap();
    assert!(matches!(rt.kill(&root), Err(Error::Hierarchy(_))));
    assert!(matches!(rt.start(&root), Err(Error::Hierarchy(_))));

    // A wait that cannot be satisfied in time says so.
    let slow = rt.create(|| SlowStart).unwrap();
    let err = rt.start_and_wait(&slow, Duration::from_millis(10)).unwrap_err();
    assert!(matches!(err, Error::Timeout { wanted: LifecycleState::Active, .. }), "{err:?}");
    slow.await_state(LifecycleState::Active, WAIT).unwrap();

    // Destroyed components: every operation is refused.
    rt.kill_and_wait(&a, WAIT).unwrap();
    assert_eq!(rt.start(&a), Err(Error::Destroyed(a.id())));
    assert_eq!(rt.stop(&a), Err(Error::Destroyed(a.id())));
    assert_eq!(rt.kill(&a), Err(Error::Destroyed(a.id())));
    assert!(matches!(rt.create_child(&a, Quiet::default), Err(Error::Destroyed(_))));

    // A factory that panics creates nothing and says why.
    let err = rt.create::<Quiet, _>(|| panic!("no config")).unwrap_err();
    assert_eq!(err, Error::FactoryPanicked("no config".into()));

    // Other components never noticed.
    assert_eq!(slow.state(), LifecycleState::Active);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s2 = seen.clone();
    let sink = rt.create(move || Sink::new(s2.clone())).unwrap();
    rt.start_and_wait(&sink, WAIT).unwrap();

    // After shutdown the system refuses new work.
    let sys = rt.system().clone();
    rt.shutdown().unwrap();
    assert!(sys.is_shut_down());
    assert!(matches!(sys.create(Quiet::default), Err(Error::ShutDown)));
    assert!(matches!(sys.timer(), Err(Error::ShutDown)));
    assert_eq!(sink.state(), LifecycleState::Destroyed);
}
