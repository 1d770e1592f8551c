//! The best-effort broadcast scenarios (see [`crate::SCENARIOS`]): chatty nodes
//! ([`build_chat_node`](super::nodes)) broadcast over reliable links under crash/restart churn
//! and a group change; [`BroadcastChecker`] checks no duplication, no creation, the group change
//! and validity. `beb-broken` loses 10% of the messages while validity is still demanded: the
//! check must fail.

use std::time::Duration;

use selfman_core::testkit::Log;
use selfman_core::Time;
use selfman_sim::{Churn, Latency, LinkModel, Scenario, SimConfig, SimNetConfig};

use crate::checkers::broadcast::BroadcastChecker;
use crate::scenarios::member;
use crate::scenarios::nodes::build_chat_node;

const BEB_NODES: usize = 8;
/// When every node drops the last node from its group.
const BEB_REGROUP_S: f64 = 5.0;
const BEB_END_S: f64 = 10.0;

fn beb_scenario(name: &str, loss: f64) -> Scenario {
    let log = Log::new(BroadcastChecker::new(member(BEB_NODES - 1).addr));
    let (l1, l2, l3) = (log.clone(), log.clone(), log);
    let config = SimConfig {
        network: SimNetConfig {
            default_link: LinkModel {
                latency: Latency::Exponential {
                    base: Duration::from_millis(1),
                    mean_extra: Duration::from_millis(5),
                },
                loss,
            },
            ..SimNetConfig::default()
        },
        ..SimConfig::default()
    };
    Scenario::new(name)
        .config(config)
        .start_nodes(Time::ZERO, BEB_NODES, move |h| {
            build_chat_node(h, BEB_NODES, Time::from_secs_f64(BEB_REGROUP_S), &l1)
        })
        .churn(Churn::crash_restart(
            Time::from_secs_f64(1.0),
            Time::from_secs_f64(8.0),
            1.5,
            BEB_NODES / 2,
        ))
        .check_always("no duplication, no creation", move |_| match l2.lock().found.first() {
            None => Ok(()),
            Some(f) => Err(f.clone()),
        })
        .check_at_end("validity", move |sim| {
            let mut l = l3.lock();
            // Messages still in flight at the end are not held against anyone.
            let r = l.check_validity(&sim.alive_nodes(), Time::from_secs_f64(BEB_END_S - 0.5));
            // The simulator does not free destroyed components that have ports (they hold
            // the log): empty it, or a sweep of many seeds grows by megabytes per seed.
            l.clear();
            r
        })
        .until(Time::from_secs_f64(BEB_END_S))
}

/// See [`crate::SCENARIOS`].
pub fn beb() -> Scenario {
    beb_scenario("beb", 0.0)
}

/// See [`crate::SCENARIOS`].
pub fn beb_broken() -> Scenario {
    beb_scenario("beb-broken", 0.1)
}
