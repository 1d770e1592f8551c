//! [`Omega`]: the component around the [`Elector`]: it monitors the other members through the
//! [`FailureDetector`] port it requires and raises [`Trust`] on the
//! [`LeaderElection`] port it provides.

use selfman_core::{ComponentDefinition, Handled, NodeAddr, Provided, Required, Setup};
use selfman_ports::{FailureDetector, FdIndication, FdRequest, LeaderElection, Trust};

use crate::elector::Elector;
#[cfg(feature = "flaws")]
use crate::elector::Flaw;

/// The eventual leader detector component: provides [`LeaderElection`], requires
/// [`FailureDetector`].
///
/// On start it sends [`FdRequest::Monitor`] for every other member and raises the first
/// [`Trust`]; afterwards it raises `Trust` whenever the leader changes. A `()` request on the
/// provided port is answered with the current `Trust` on the requester's channel (for a user
/// connected after the start).
pub struct Omega {
    fd: Required<FailureDetector>,
    port: Provided<LeaderElection>,
    elector: Elector,
}

impl Omega {
    /// The election among `group` (rank = position, index 0 highest) as seen by `me`; `me` is
    /// matched to its member entry by address.
    pub fn new(me: NodeAddr, group: Vec<NodeAddr>) -> Omega {
        Omega { fd: Required::new(), port: Provided::new(), elector: Elector::new(me, group) }
    }

    /// This election with the deliberate mistake `flaw` (feature `flaws`, for tests only).
    #[cfg(feature = "flaws")]
    pub fn with_flaw(mut self, flaw: Flaw) -> Omega {
        self.elector = self.elector.with_flaw(flaw);
        self
    }

    /// The election's state (for inspection and tests, through
    /// [`Component::on_definition`](selfman_core::Component::on_definition)).
    pub fn elector(&self) -> &Elector {
        &self.elector
    }

    fn on_fd(&mut self, ind: FdIndication) -> Handled {
        if let Some(t) = self.elector.on_indication(ind) {
            self.port.trigger(t);
        }
        Ok(())
    }

    fn on_request(&mut self, (): ()) -> Handled {
        if let (Some(t), Some(_)) = (self.elector.trusted(), self.port.origin()) {
            let _ = self.port.reply(t); // the requester may be gone already
        }
        Ok(())
    }
}

impl ComponentDefinition for Omega {
    fn setup(&mut self, s: &mut Setup<Self>) {
        s.require(|c| &mut c.fd, Self::on_fd);
        s.provide(|c| &mut c.port, Self::on_request);
    }

    fn on_start(&mut self) -> Handled {
        let others: Vec<NodeAddr> = self.elector.others().collect();
        for m in others {
            self.fd.trigger(FdRequest::Monitor(m));
        }
        if let Some(Trust(t)) = self.elector.start() {
            self.port.trigger(Trust(t));
        }
        Ok(())
    }
}
