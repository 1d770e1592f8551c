//! Checkers of the failure detector and leader election, over a [`DetectionRecord`] of a
//! whole run: they judge the whole trace, not one instant.
//!
//! * **strong completeness** ([`check_completeness`]): for every address that is down at the
//!   end (crashed at `t_c`) and every node running at the end (started at `t_o`), the node's
//!   last indication about it is a `Suspect` raised no later than `max(t_c, t_o) + B`, where
//!   `B` = cap + period + the longest link latency ([`completeness_bound`]; no restore
//!   follows: the suspicion is permanent);
//! * **eventual strong accuracy** ([`check_accuracy`]): after the network has been stable long
//!   enough for any silence begun before to end, no running node raises `Suspect` about a
//!   running one, and none is left suspected; on links that stall now and then (messages
//!   slower than the first timeout) but stay bounded ([`check_false_suspicions`]), each
//!   ordered pair sees at most as many false suspicions as timeout increments are needed to
//!   cover the longest possible silence ([`max_false_suspicions`]);
//! * **detection time** ([`check_detection_time`]): a crash on a stable network is detected
//!   within twice the observer's timeout for the crashed node;
//! * **Ω eventual accuracy and agreement** ([`check_leadership`]): after the settling bound,
//!   every running node trusts the same running node (the highest-ranked one), and no `Trust`
//!   is raised any more.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::Duration;

use selfman_core::{Component, NodeAddr, NodeId, Time};
use selfman_failure_detector::{FdConfig, HeartbeatFd};
use selfman_ports::{FdIndication, Trust};
use selfman_sim::Simulation;

/// One incarnation's life.
#[derive(Debug, Clone)]
pub struct Life {
    /// The incarnation.
    pub node: NodeAddr,
    /// When it started.
    pub start: Time,
    /// When it stopped running (`None` while it runs).
    pub end: Option<Time>,
}

/// What the nodes of a detector (and Ω) run recorded, read by the checks after the run.
#[derive(Default)]
pub struct DetectionRecord {
    /// (time, observer, indication), in the order raised.
    pub fd: Vec<(Time, NodeAddr, FdIndication)>,
    /// (time, observer, trusted).
    pub trust: Vec<(Time, NodeAddr, Trust)>,
    /// Every incarnation, in start order.
    pub lives: Vec<Life>,
    /// Each running incarnation's detector.
    pub detectors: BTreeMap<NodeAddr, Component<HeartbeatFd>>,
}

impl DetectionRecord {
    /// Closes the life of every incarnation that is no longer running (called after every step,
    /// so crash times are exact).
    ///
    /// # Errors
    ///
    /// Never: a `Result` to serve as a `check_always`.
    pub fn track(&mut self, sim: &Simulation) -> Result<(), String> {
        if self.lives.iter().all(|l| l.end.is_some()) {
            return Ok(());
        }
        let alive = sim.alive_nodes();
        let now = sim.now();
        for l in self.lives.iter_mut().filter(|l| l.end.is_none()) {
            if !alive.contains(&l.node) {
                l.end = Some(now);
            }
        }
        Ok(())
    }
}

/// The detection bound `B` of strong completeness: silence for the capped timeout, one period
/// for the next check, and the longest latency of a message sent just before the crash.
pub fn completeness_bound(c: &FdConfig, max_latency: Duration) -> Duration {
    c.max_timeout + c.period + max_latency + Duration::from_millis(1)
}

/// The indications about address `target` raised by `observer`.
pub fn about(
    log: &DetectionRecord,
    observer: NodeAddr,
    target: SocketAddr,
) -> Vec<(Time, FdIndication)> {
    log.fd
        .iter()
        .filter(|(_, o, i)| *o == observer && i.node().addr == target)
        .map(|&(t, _, i)| (t, i))
        .collect()
}

/// Strong completeness (see the module docs), with detection bound `bound`. Returns how many
/// (observer, crashed) pairs it checked.
pub fn check_completeness(
    sim: &Simulation,
    log: &DetectionRecord,
    bound: Duration,
) -> Result<usize, String> {
    let end = sim.now();
    let alive = sim.alive_nodes();
    let mut checked = 0;
    for (addr, cur) in sim.node_slots() {
        if cur.is_some() {
            continue;
        }
        let Some(crashed_at) =
            log.lives.iter().rev().find(|l| l.node.addr == addr).and_then(|l| l.end)
        else {
            return Err(format!("{addr} is down but no crash was recorded"));
        };
        for o in &alive {
            let started = log.lives.iter().find(|l| l.node == *o).map_or(Time::ZERO, |l| l.start);
            let deadline = crashed_at.max(started) + bound;
            if deadline > end {
                continue; // not enough time left to judge
            }
            checked += 1;
            match about(log, *o, addr).last() {
                Some(&(t, FdIndication::Suspect(_))) if t <= deadline => {}
                Some(&(t, i)) => {
                    return Err(format!(
                        "{o} about {addr}, down since {:?}: last indication {i:?} at {:?} \
                         (due by {:?})",
                        crashed_at.since_start(),
                        t.since_start(),
                        deadline.since_start()
                    ))
                }
                None => {
                    return Err(format!(
                        "{o} never suspected {addr}, down since {:?}",
                        crashed_at.since_start()
                    ))
                }
            }
        }
    }
    Ok(checked)
}

/// Eventual strong accuracy on a network stable since before `settled`: no `Suspect` about a
/// running node by a running node at or after `settled`, and none left suspected at the end.
pub fn check_accuracy(
    sim: &Simulation,
    log: &DetectionRecord,
    settled: Time,
) -> Result<(), String> {
    let alive = sim.alive_nodes();
    for o in &alive {
        for p in alive.iter().filter(|p| p.addr != o.addr) {
            let ind = about(log, *o, p.addr);
            if let Some((t, _)) =
                ind.iter().find(|(t, i)| *t >= settled && matches!(i, FdIndication::Suspect(_)))
            {
                return Err(format!(
                    "{o} suspected running {} at {:?}, after the network settled at {:?}",
                    p.addr,
                    t.since_start(),
                    settled.since_start()
                ));
            }
            if let Some((t, FdIndication::Suspect(_))) = ind.last() {
                return Err(format!(
                    "{o} still suspects running {} at the end (since {:?})",
                    p.addr,
                    t.since_start()
                ));
            }
        }
    }
    Ok(())
}

/// Detection time of the crashes in `crashes` (time, victim) by every node that ran
/// throughout: within twice the observer's timeout for the victim. Returns the detection
/// times with those timeouts.
pub fn check_detection_time(
    sim: &Simulation,
    log: &DetectionRecord,
    crashes: &[(Time, NodeAddr)],
) -> Result<Vec<(Duration, Duration)>, String> {
    let mut found = Vec::new();
    for &(tc, victim) in crashes {
        for o in sim.alive_nodes() {
            let started = log.lives.iter().find(|l| l.node == o).map_or(Time::ZERO, |l| l.start);
            if started >= tc {
                continue;
            }
            let ind = about(log, o, victim.addr);
            if matches!(
                ind.iter().rev().find(|(t, _)| *t <= tc),
                Some((_, FdIndication::Suspect(_)))
            ) {
                continue; // already suspected when it crashed
            }
            let Some(&(ts, _)) =
                ind.iter().find(|(t, i)| *t > tc && matches!(i, FdIndication::Suspect(_)))
            else {
                return Err(format!("{o} never detected the crash of {victim} at {tc:?}"));
            };
            let timeout = log
                .detectors
                .get(&o)
                .and_then(|d| d.on_definition(|d| d.detector().timeout(any_of(victim))).ok())
                .flatten()
                .ok_or_else(|| format!("no detector state for {o}"))?;
            let took = ts.duration_since(tc);
            if took > 2 * timeout {
                return Err(format!(
                    "{o} took {took:?} to detect the crash of {victim} at {:?}: more than twice \
                     its timeout {timeout:?}",
                    tc.since_start()
                ));
            }
            found.push((took, timeout));
        }
    }
    Ok(found)
}

fn any_of(n: NodeAddr) -> NodeAddr {
    NodeAddr::new(n.addr, NodeId::UNKNOWN)
}

/// The most false suspicions a correct detector can make per ordered pair of correct nodes
/// on links whose latency is at most `max_latency`, when the two monitor each other: each
/// hears the other's pings at least every period plus `max_latency` (its own probes' answers
/// only add to that), and each false suspicion grows the timeout by one increment.
pub fn max_false_suspicions(c: &FdConfig, max_latency: Duration) -> usize {
    let silence = c.period + max_latency;
    let missing = silence.saturating_sub(c.initial_timeout).as_nanos();
    missing.div_ceil(c.increment.as_nanos().max(1)) as usize
}

/// Bounded mistakes on links whose latency is at most `max_latency`: no ordered pair of
/// running nodes saw more than `allowed` false suspicions ([`max_false_suspicions`]), and none
/// is left suspected.
///
/// # Errors
///
/// Names the pair and the count.
pub fn check_false_suspicions(
    sim: &Simulation,
    log: &DetectionRecord,
    allowed: usize,
    max_latency: Duration,
) -> Result<(), String> {
    let alive = sim.alive_nodes();
    for o in &alive {
        for p in alive.iter().filter(|p| p.addr != o.addr) {
            let ind = about(log, *o, p.addr);
            let wrong = ind.iter().filter(|(_, i)| matches!(i, FdIndication::Suspect(_))).count();
            if wrong > allowed {
                return Err(format!(
                    "{o} suspected running {} {wrong} times; with latency <= {max_latency:?} \
                     at most {allowed} false suspicions fit before its timeout covers \
                     every silence",
                    p.addr
                ));
            }
            if let Some((t, FdIndication::Suspect(_))) = ind.last() {
                return Err(format!(
                    "{o} still suspects running {} (since {:?})",
                    p.addr,
                    t.since_start()
                ));
            }
        }
    }
    Ok(())
}

/// Ω's eventual accuracy and agreement, once things settled at `settled`: every running node
/// last trusted a running node, all the same one, the highest-ranked running node, and none
/// changed its mind at or after `settled`.
///
/// # Errors
///
/// Describes the first node or disagreement found.
pub fn check_leadership(
    sim: &Simulation,
    log: &DetectionRecord,
    settled: Time,
) -> Result<(), String> {
    let alive = sim.alive_nodes();
    let Some(highest) = alive.first() else { return Err("no node runs".into()) };
    let mut leaders = BTreeMap::new();
    for o in &alive {
        let mine: Vec<_> = log.trust.iter().filter(|(_, n, _)| n == o).collect();
        let Some(&&(t, _, Trust(leader))) = mine.last() else {
            return Err(format!("{o} never trusted anyone"));
        };
        if !alive.iter().any(|a| a.addr == leader.addr) {
            return Err(format!("{o} trusts {leader}, which has crashed"));
        }
        if t >= settled {
            return Err(format!(
                "{o} changed its leader at {:?}, after things settled at {:?}",
                t.since_start(),
                settled.since_start()
            ));
        }
        leaders.insert(*o, leader);
    }
    let distinct: BTreeSet<_> = leaders.values().collect();
    if distinct.len() > 1 {
        return Err(format!("correct nodes trust different leaders: {leaders:?}"));
    }
    if leaders.values().any(|l| l.addr != highest.addr) {
        return Err(format!(
            "they trust {:?}, not the highest-ranked correct node {highest}",
            distinct
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn false_suspicion_budget_follows_the_config() {
        let c = FdConfig::default(); // period 100, first 400, +200
        assert_eq!(max_false_suspicions(&c, ms(300)), 0); // silence <= 400
        assert_eq!(max_false_suspicions(&c, ms(450)), 1); // <= 550
        assert_eq!(max_false_suspicions(&c, ms(550)), 2); // <= 650
    }
}
