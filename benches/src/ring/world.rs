//! The simulated world of the ring benchmark: N nodes, each a heartbeat failure detector, a
//! ring peer (the relaxed ring or Chord, [`Impl`]: the same `Ring` port, the same detector)
//! and a small driver that records what the ring tells it; the shared tables the benchmark
//! reads (the peers' views, message counters, lookup answers); and building a ring by joins
//! in waves.
//!
//! Every node is wired here rather than by `selfman_relaxed_ring::build` or
//! `selfman_chord::build` so that each network channel counts the messages its protocol
//! sends (a request selector that counts and lets everything through): the maintenance
//! traffic is measured per protocol, exactly.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use selfman::core::Time;
use selfman::sim::{address_of, SimHost, Simulation};
use selfman::{
    Component, ComponentDefinition, Handled, Host, Message, NetRequest, Network, NodeAddr, NodeId,
    ProvidedRef, Required, Rng, Selector, Setup,
};
use selfman_chord::{Chord, ChordConfig, ChordMessage};
use selfman_failure_detector::{FdConfig, FdMessage, HeartbeatFd};
use selfman_ports::ring_check::ring_convergence;
use selfman_ports::{
    FailureDetector, JoinRefusal, LookupOutcome, Ring, RingId, RingIndication, RingInspect,
    RingRequest, RingView, RingViews,
};
use selfman_relaxed_ring::{RelaxedRing, RingConfig, RingMessage};

/// Which ring every node of the world runs, with its settings.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Impl {
    Relaxed(RingConfig),
    Chord(ChordConfig),
}

impl Impl {
    /// The successor-list length the convergence checker expects.
    pub(crate) fn succ_list_size(&self) -> usize {
        match self {
            Impl::Relaxed(c) => c.succ_list_size,
            Impl::Chord(c) => c.succ_list_size,
        }
    }

    /// How long a lookup may go unanswered before the ring answers `Timeout`.
    pub(crate) fn lookup_timeout(&self) -> Duration {
        match self {
            Impl::Relaxed(c) => c.lookup_timeout,
            Impl::Chord(c) => c.lookup_timeout,
        }
    }

    /// The period of the ring's own repair: the relaxed ring's check-in with its successor,
    /// Chord's stabilisation.
    pub(crate) fn stabilize(&self) -> Duration {
        match self {
            Impl::Relaxed(c) => c.stabilize,
            Impl::Chord(c) => c.stabilize,
        }
    }
}

/// The ring component of one node.
enum RingComp {
    Relaxed(Component<RelaxedRing<Payload>>),
    Chord(Component<Chord<Payload>>),
}

/// The payload type of the benchmark's rings (nothing is routed but lookups).
pub(crate) type Payload = u64;

/// One lookup answer as the driver of the asking node saw it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Answer {
    pub(crate) tag: u64,
    pub(crate) key: RingId,
    pub(crate) outcome: LookupOutcome,
}

/// Messages handed to the network, by protocol, since the last [`Counters::take`].
#[derive(Default)]
pub(crate) struct Counters {
    ring: AtomicU64,
    fd: AtomicU64,
}

impl Counters {
    /// (ring, failure detector) messages sent since the last call; resets both.
    pub(crate) fn take(&self) -> (u64, u64) {
        (self.ring.swap(0, Ordering::Relaxed), self.fd.swap(0, Ordering::Relaxed))
    }
}

/// What the nodes share with the benchmark (one thread runs everything: the locks are never
/// contended).
#[derive(Default)]
pub(crate) struct Shared {
    pub(crate) views: RingViews,
    pub(crate) sent: Counters,
    /// The slots whose incarnation was told `Joined` (the bootstrapping peer too) since the
    /// benchmark last took them.
    joined: Mutex<Vec<usize>>,
    /// The slots whose incarnation gave up joining (`JoinRefused(NoAnswer)`: its access
    /// peer crashed) since the benchmark last took them; the benchmark asks them again.
    refused: Mutex<Vec<usize>>,
    pub(crate) answers: Mutex<Vec<Answer>>,
    /// The ring component of each node slot's current incarnation.
    rings: Mutex<Vec<Option<RingComp>>>,
}

/// Records the indications the benchmark needs; the channel to it carries no others.
struct Driver {
    ring: Required<Ring<Payload>>,
    slot: usize,
    shared: Arc<Shared>,
}

impl Driver {
    fn on_ring(&mut self, ind: RingIndication<Payload>) -> Handled {
        match ind {
            RingIndication::Joined { .. } => {
                let mut j = self.shared.joined.lock().unwrap_or_else(PoisonError::into_inner);
                j.push(self.slot);
            }
            RingIndication::JoinRefused(JoinRefusal::NoAnswer { .. }) => {
                let mut r = self.shared.refused.lock().unwrap_or_else(PoisonError::into_inner);
                r.push(self.slot);
            }
            RingIndication::LookupResult { key, tag, outcome } => {
                let a = Answer { tag, key, outcome };
                self.shared.answers.lock().unwrap_or_else(PoisonError::into_inner).push(a);
            }
            _ => {}
        }
        Ok(())
    }
}

impl ComponentDefinition for Driver {
    fn setup(&mut self, s: &mut Setup<Self>) {
        s.require(|c| &mut c.ring, Self::on_ring);
    }
}

/// Connects a ring peer of either implementation: its network (sends counted as ring
/// messages), the timer, the detector, and the driver (only the indications it wants); and
/// registers its view.
fn connect_ring<D, M>(
    h: &SimHost,
    ring: &Component<D>,
    protocol: &str,
    fd_port: &ProvidedRef<FailureDetector>,
    driver: &Component<Driver>,
    wanted: Selector<Ring<Payload>>,
    shared: &Arc<Shared>,
) -> selfman::Result<()>
where
    D: ComponentDefinition + RingInspect,
    M: Message,
{
    let sys = h.system();
    let s = Arc::clone(shared);
    let count_ring = Selector::<Network<M>>::requests(move |r: &NetRequest<M>| {
        if matches!(r, NetRequest::Send { .. }) {
            s.sent.ring.fetch_add(1, Ordering::Relaxed);
        }
        true
    });
    sys.connect_with(&h.network::<M>(protocol)?, &ring.required()?, count_ring)?;
    sys.connect(&h.timer()?, &ring.required()?)?;
    sys.connect(fd_port, &ring.required()?)?;
    sys.connect_with(&ring.provided()?, &driver.required()?, wanted)?;
    shared.views.register(h.local(), ring);
    Ok(())
}

/// Wires one node: detector, ring peer, driver. It does not join: the benchmark asks it to.
fn wire(h: &SimHost, shared: &Arc<Shared>, imp: Impl, fd_config: FdConfig) -> selfman::Result<()> {
    let sys = h.system();
    let me = h.local();
    let fd = h.create(move || HeartbeatFd::new(fd_config))?;
    let s = Arc::clone(shared);
    let count_fd = Selector::<Network<FdMessage>>::requests(move |r: &NetRequest<FdMessage>| {
        if matches!(r, NetRequest::Send { .. }) {
            s.sent.fd.fetch_add(1, Ordering::Relaxed);
        }
        true
    });
    sys.connect_with(
        &h.network::<FdMessage>(selfman_failure_detector::PROTOCOL)?,
        &fd.required()?,
        count_fd,
    )?;
    sys.connect(&h.timer()?, &fd.required()?)?;
    let fd_port = fd.provided::<FailureDetector>()?;

    let s = Arc::clone(shared);
    let slot = h.index();
    let driver =
        h.create(move || Driver { ring: Required::new(), slot, shared: Arc::clone(&s) })?;
    let wanted = Selector::<Ring<Payload>>::indications(|i: &RingIndication<Payload>| {
        matches!(
            i,
            RingIndication::Joined { .. }
                | RingIndication::JoinRefused(_)
                | RingIndication::LookupResult { .. }
        )
    });
    let comp = match imp {
        Impl::Relaxed(config) => {
            let ring = h.create(move || RelaxedRing::<Payload>::new(me, config))?;
            connect_ring::<_, RingMessage<Payload>>(
                h,
                &ring,
                selfman_relaxed_ring::PROTOCOL,
                &fd_port,
                &driver,
                wanted,
                shared,
            )?;
            RingComp::Relaxed(ring)
        }
        Impl::Chord(config) => {
            let ring = h.create(move || Chord::<Payload>::new(me, config))?;
            connect_ring::<_, ChordMessage<Payload>>(
                h,
                &ring,
                selfman_chord::PROTOCOL,
                &fd_port,
                &driver,
                wanted,
                shared,
            )?;
            RingComp::Chord(ring)
        }
    };

    let mut rings = shared.rings.lock().unwrap_or_else(PoisonError::into_inner);
    if rings.len() <= slot {
        rings.resize_with(slot + 1, || None);
    }
    rings[slot] = Some(comp);
    Ok(())
}

/// The simulation and what the benchmark knows about it.
pub(crate) struct World {
    pub(crate) sim: Simulation,
    pub(crate) shared: Arc<Shared>,
    /// The ring every node runs.
    pub(crate) imp: Impl,
    /// The slots whose current incarnation is (or was told to be) in the ring, for choosing
    /// access peers and victims.
    pub(crate) members: Vec<usize>,
    /// The benchmark's own decisions (access peers, victims, keys).
    pub(crate) rng: Rng,
    builder: selfman::sim::NodeBuilder,
}

/// How a ring was built: virtual time for everyone to join, waves used.
pub(crate) struct Built {
    pub(crate) waves: usize,
    pub(crate) joined_at: Time,
}

impl World {
    pub(crate) fn new(seed: u64, imp: Impl, fd_config: FdConfig) -> World {
        let sim = Simulation::new(seed);
        let shared = Arc::new(Shared::default());
        let s = Arc::clone(&shared);
        let builder: selfman::sim::NodeBuilder =
            Arc::new(move |h: &SimHost| wire(h, &s, imp, fd_config));
        World {
            sim,
            shared,
            imp,
            members: Vec::new(),
            rng: Rng::seeded(seed ^ 0x7269_6e67), // "ring"
            builder,
        }
    }

    /// Asks the ring of `slot`'s current incarnation.
    pub(crate) fn request(&self, slot: usize, req: RingRequest<Payload>) -> Result<(), String> {
        let rings = self.shared.rings.lock().unwrap_or_else(PoisonError::into_inner);
        let ring = rings.get(slot).and_then(Option::as_ref).ok_or("no such node")?;
        let port = match ring {
            RingComp::Relaxed(r) => r.provided::<Ring<Payload>>(),
            RingComp::Chord(r) => r.provided::<Ring<Payload>>(),
        };
        port.and_then(|p| p.request(req)).map_err(|e| e.to_string())
    }

    /// A random member slot.
    pub(crate) fn random_member(&mut self) -> usize {
        self.members[self.rng.below(self.members.len() as u64) as usize]
    }

    /// Tells `slot` to join through a random member; returns the member's slot.
    pub(crate) fn join_random(&mut self, slot: usize) -> Result<usize, String> {
        let member = self.random_member();
        let access = NodeAddr::new(address_of(member), NodeId::UNKNOWN);
        self.request(slot, RingRequest::Join { access })?;
        Ok(member)
    }

    /// Adds a node (it does not join yet); returns its slot.
    pub(crate) fn add_node(&self) -> Result<usize, String> {
        let addr = self.sim.add_node_with(Arc::clone(&self.builder)).map_err(|e| e.to_string())?;
        self.sim
            .node_slots()
            .iter()
            .position(|(a, _)| *a == addr.addr)
            .ok_or_else(|| format!("node {addr} has no slot"))
    }

    /// Whether the ring's pointers, ranges and successor lists are as the sorted order of the
    /// live peers says (fingers not looked at).
    fn sorted(&self) -> bool {
        ring_convergence(&self.snapshot(), self.imp.succ_list_size()).is_empty()
    }

    /// The views of every live peer now.
    pub(crate) fn snapshot(&self) -> BTreeMap<NodeAddr, RingView> {
        self.shared.views.snapshot()
    }

    /// The slots that joined since the last call (they become members).
    pub(crate) fn take_joined(&mut self) -> usize {
        let j =
            std::mem::take(&mut *self.shared.joined.lock().unwrap_or_else(PoisonError::into_inner));
        let n = j.len();
        self.members.extend(j);
        n
    }

    /// Asks every slot that gave up joining since the last call (its access peer crashed
    /// and nobody else answered it) to join again through a random member; returns the
    /// slots, each with its new access peer's slot.
    pub(crate) fn rejoin_refused(&mut self) -> Result<Vec<(usize, usize)>, String> {
        let r = std::mem::take(
            &mut *self.shared.refused.lock().unwrap_or_else(PoisonError::into_inner),
        );
        let mut again = Vec::with_capacity(r.len());
        for slot in r {
            again.push((slot, self.join_random(slot)?));
        }
        Ok(again)
    }

    /// Builds a ring of `nodes` peers: one bootstraps, then waves of joiners, each wave as
    /// large as the ring already is times `growth` (so the ring doubles by default), each
    /// joiner through a random member; a wave starts once every joiner of the previous one is
    /// in (with `sorted`, once moreover the ring's pointers, ranges and successor lists are
    /// as the sorted order says). Fails if a wave takes longer than `wave_limit`.
    pub(crate) fn build(
        &mut self,
        nodes: usize,
        growth: usize,
        wave_limit: Duration,
        sorted: bool,
    ) -> Result<Built, String> {
        let first = self.add_node()?;
        self.request(first, RingRequest::Bootstrap)?;
        self.sim.run_for(Duration::from_millis(10));
        self.take_joined();
        if self.members.len() != 1 {
            return Err("the first peer did not bootstrap a ring".into());
        }
        let mut waves = 0;
        let step = Duration::from_millis(100);
        while self.members.len() < nodes {
            let size = (self.members.len() * growth).clamp(1, nodes - self.members.len());
            for _ in 0..size {
                let slot = self.add_node()?;
                self.join_random(slot)?;
            }
            waves += 1;
            let target = self.members.len() + size;
            let deadline = self.sim.now() + wave_limit;
            while self.members.len() < target {
                if self.sim.now() >= deadline {
                    return Err(format!(
                        "wave {waves} of {size} joiners: only {} of {target} peers in the ring \
                         after {wave_limit:?}",
                        self.members.len(),
                    ));
                }
                self.sim.run_for(step);
                self.take_joined();
            }
            while sorted && !self.sorted() {
                if self.sim.now() >= deadline {
                    return Err(format!(
                        "wave {waves} of {size} joiners: the ring of {} peers not sorted \
                         after {wave_limit:?}",
                        self.members.len(),
                    ));
                }
                self.sim.run_for(step);
            }
        }
        Ok(Built { waves, joined_at: self.sim.now() })
    }
}
