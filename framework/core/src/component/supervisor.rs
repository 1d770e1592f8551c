//! The supervising side of a component cell: acting on children's fault reports, and restarts.
//! Policies and their semantics are described in [`crate::supervision`].

use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};

use crate::component::cell::{ComponentCell, Control, Phase, RunState};
use crate::component::failure::{panic_message, Failure, FailureCause};
use crate::component::FaultReport;
use crate::handler::{HandlerError, Severity};
use crate::runtime::{Time, TimerEntry, TimerKey};
use crate::supervision::{Directive, Strategy, SupervisorPolicy};
use crate::timer::TimerTarget;

/// A supervising component's policy and its recent restarts (for the intensity limit).
pub(crate) struct Supervisor {
    pub(crate) policy: SupervisorPolicy,
    restarts: VecDeque<Time>,
}

impl Supervisor {
    pub(crate) fn new(policy: SupervisorPolicy) -> Self {
        Supervisor { policy, restarts: VecDeque::new() }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Escalated(String);

impl ComponentCell {
    /// A child (or, passed on, a descendant) failed.
    pub(crate) fn on_child_fault(
        self: &Arc<Self>,
        rs: &mut RunState,
        report: FaultReport,
        failed: &Weak<ComponentCell>,
    ) {
        let Some(failed) = failed.upgrade() else { return };
        if report.severity == Severity::Unrecoverable {
            tracing::error!(
                supervisor = self.id().0,
                failed = report.component.0,
                "unrecoverable failure: the failed subtree is destroyed"
            );
            return;
        }
        let mut guard = self.supervisor.lock();
        let Some(sup) = guard.as_mut() else {
            drop(guard);
            // No policy here: the nearest ancestor with one decides.
            let weak = Arc::downgrade(&failed);
            self.report_to_parent(Control::ChildFault(Box::new((report, weak))));
            return;
        };
        let directive = (sup.policy.decide)(&report);
        tracing::warn!(
            supervisor = self.id().0,
            failed = report.component.0,
            error = %report.error,
            ?directive,
            "supervising a failure"
        );
        match directive {
            Directive::Resume => failed.send_control(Control::Resume),
            Directive::Hold => {}
            Directive::Stop => failed.send_control(Control::Stop),
            Directive::Destroy => failed.send_control(Control::Kill),
            Directive::Escalate => {
                drop(guard);
                let why = format!("escalated failure of {}: {}", report.component, report.error);
                self.escalate(rs, &failed, why);
            }
            Directive::Restart => {
                let timers = &self.system.parts.timers;
                let now = timers.now();
                let within = sup.policy.within;
                sup.restarts.retain(|t| now.duration_since(*t) < within);
                if sup.restarts.len() >= sup.policy.max_restarts {
                    let why = format!(
                        "restart intensity exceeded ({} restarts within {:?}); last failure of {}: {}",
                        sup.restarts.len(),
                        within,
                        report.component,
                        report.error
                    );
                    drop(guard);
                    self.escalate(rs, &failed, why);
                    return;
                }
                let delay = sup.policy.delay(sup.restarts.len());
                sup.restarts.push_back(now);
                let strategy = sup.policy.strategy;
                drop(guard);
                for target in restart_set(&failed, strategy) {
                    if delay.is_zero() {
                        target.send_control(Control::Restart);
                    } else {
                        let key = TimerKey { channel: 0, id: self.system.fresh_id() };
                        let target = TimerTarget::restart(&target);
                        timers.schedule(TimerEntry {
                            key,
                            deadline: now + delay,
                            period: None,
                            target,
                        });
                    }
                }
            }
        }
    }

    /// The supervisor fails itself so that its own parent decides; the root cannot, so it
    /// stops the failed subtree.
    fn escalate(self: &Arc<Self>, rs: &mut RunState, failed: &Arc<ComponentCell>, why: String) {
        if self.parent().is_none() {
            tracing::error!(failed = failed.id().0, reason = %why, "the root cannot escalate; stopping the failed subtree");
            failed.send_control(Control::Stop);
            return;
        }
        let failure = Failure {
            cause: FailureCause::Error(HandlerError::recoverable(Escalated(why))),
            place: "supervision".to_owned(),
            event: "FaultReport",
        };
        self.fault(rs, failure);
    }

    /// Rebuilds this component's definition from its factory, keeping channels and queued
    /// events.
    pub(crate) fn restart(self: &Arc<Self>, rs: &mut RunState) {
        if matches!(rs.phase, Phase::Destroying { .. } | Phase::Destroyed) || rs.instance.is_none()
        {
            return;
        }
        let built = {
            let factory = self.factory.lock();
            let Some(f) = factory.as_ref() else {
                tracing::warn!(component = self.id().0, "no factory to restart from");
                return;
            };
            catch_unwind(AssertUnwindSafe(|| f(self)))
        };
        let cause = match built {
            Ok(Ok(new)) => {
                self.set_instance(rs, Some(new));
                self.stats.restarts.fetch_add(1, Ordering::Relaxed);
                tracing::info!(component = self.id().0, "restarted");
                if matches!(rs.phase, Phase::Active | Phase::Faulty) {
                    self.become_active(rs);
                }
                return;
            }
            Ok(Err(e)) => FailureCause::Error(HandlerError::recoverable(e)),
            Err(p) => FailureCause::Panic(panic_message(&*p)),
        };
        self.fault(rs, Failure { cause, place: "restart".to_owned(), event: "factory" });
    }
}

/// The components a restart of `failed` applies to under `strategy`.
fn restart_set(failed: &Arc<ComponentCell>, strategy: Strategy) -> Vec<Arc<ComponentCell>> {
    let siblings = || failed.parent().map(|p| p.live_children()).unwrap_or_default();
    match strategy {
        Strategy::OneForOne => vec![Arc::clone(failed)],
        Strategy::OneForAll => siblings(),
        Strategy::RestForOne => siblings().into_iter().filter(|c| c.id() >= failed.id()).collect(),
    }
}
