//! A component with more ports than the ready mask has bits (64): the ports from position 63
//! on share one bit, and every event on every port is still handled, in order per port.

mod common;

use std::sync::Arc;

use common::{eventually, Num, Numbers};
use parking_lot::Mutex;
use selfman_core::{ComponentDefinition, Provided, Setup};
use selfman_runtime::Runtime;

const PORTS: usize = 70;
const ROUNDS: u64 = 20;

struct Wide {
    ports: Vec<Provided<Numbers>>,
    seen: Arc<Mutex<Vec<Vec<u64>>>>,
}

const NAMES: [&str; PORTS] = [
    "p0", "p1", "p2", "p3", "p4", "p5", "p6", "p7", "p8", "p9", "p10", "p11", "p12", "p13", "p14",
    "p15", "p16", "p17", "p18", "p19", "p20", "p21", "p22", "p23", "p24", "p25", "p26", "p27",
    "p28", "p29", "p30", "p31", "p32", "p33", "p34", "p35", "p36", "p37", "p38", "p39", "p40",
    "p41", "p42", "p43", "p44", "p45", "p46", "p47", "p48", "p49", "p50", "p51", "p52", "p53",
    "p54", "p55", "p56", "p57", "p58", "p59", "p60", "p61", "p62", "p63", "p64", "p65", "p66",
    "p67", "p68", "p69",
];

macro_rules! wide_setup {
    ($s:expr, $($i:literal),*) => {$(
        $s.provide(|c| &mut c.ports[$i], |c, n: Num| {
            c.seen.lock()[$i].push(n.0);
            if n.0 + 2 < ROUNDS {
                // Arrives while this port still holds the next event (see the test).
                c.ports[$i].share()?.request(Num(n.0 + 2))?;
            }
            Ok(())
        })
        .named(NAMES[$i]);
    )*};
}

impl ComponentDefinition for Wide {
    fn setup(&mut self, s: &mut Setup<Self>) {
        wide_setup!(
            s, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22,
            23, 24, 25, 26, 27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44,
            45, 46, 47, 48, 49, 50, 51, 52, 53, 54, 55, 56, 57, 58, 59, 60, 61, 62, 63, 64, 65, 66,
            67, 68, 69
        );
    }
}

#[test]
fn sched_seventy_ports_all_handled_in_order() {
    // One event per turn, two events queued per port, and each handled event sends the port
    // another: arrivals keep landing on ports whose local queues are not empty, which a turn
    // must put off and look at again later.
    let rt = Runtime::builder().workers(2).events_per_run(1).build();
    let seen = Arc::new(Mutex::new(vec![Vec::new(); PORTS]));
    let s2 = seen.clone();
    let wide = rt
        .create(move || Wide {
            ports: (0..PORTS).map(|_| Provided::new()).collect(),
            seen: s2.clone(),
        })
        .unwrap();
    let refs: Vec<_> = NAMES.iter().map(|n| wide.provided_named::<Numbers>(n).unwrap()).collect();
    for r in 0..2 {
        // In the second round, the high ports (sharing the last bit) go first.
        let order: Vec<usize> =
            if r % 2 == 0 { (0..PORTS).collect() } else { (0..PORTS).rev().collect() };
        for i in order {
            refs[i].request(Num(r)).unwrap();
        }
    }
    // Started only now: had it started first, a port could handle `0` and queue `2` before
    // this thread queued `1` (two producers, each FIFO on its own, may interleave).
    rt.start(&wide).unwrap();
    eventually("every event handled", || {
        seen.lock().iter().map(Vec::len).sum::<usize>() == PORTS * ROUNDS as usize
    });
    let want: Vec<u64> = (0..ROUNDS).collect();
    for (i, got) in seen.lock().iter().enumerate() {
        assert_eq!(got, &want, "port p{i}");
    }
    assert_eq!(wide.handled(), PORTS as u64 * ROUNDS);
}
