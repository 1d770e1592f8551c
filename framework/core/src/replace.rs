//! Live replacement of a running component (hot swap): [`System::replace`] and its variants
//! that carry state across ([`System::replace_with_state`], [`System::replace_migrating`]),
//! and the pending [`Swap`].
//!
//! Guarantee: the new instance adopts every port of the old one, so no channel is disconnected
//! and no queued event is lost or handled twice; if building the new instance fails, the old one
//! keeps running and the error is reported through the `Swap`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::component::cell::{Build, Control, Replacement};
use crate::component::definition::ComponentDefinition;
use crate::component::handle::{Component, ComponentRef};
use crate::component::instance::instantiate;
use crate::component::{ComponentId, LifecycleState};
use crate::error::{Error, Result};
use crate::system::System;

/// A component whose state can be carried to another version of it through serde (see
/// [`System::replace_migrating`]).
pub trait Migrate: ComponentDefinition {
    /// The state to carry over, in a form both versions agree on through serde.
    type State: serde::Serialize + serde::de::DeserializeOwned;
    /// The state of the running (old) instance.
    fn save(&self) -> Self::State;
    /// Installs carried-over state into the new instance (before it handles anything).
    fn restore(&mut self, state: Self::State);
}

impl System {
    /// Replaces `c`'s definition by a fresh one from `factory` while the system runs (hot
    /// swap), keeping the component's identity, every channel and every queued event.
    ///
    /// The swap happens inside one of `c`'s turns, between two handler batches: senders never
    /// block (events keep queueing), the running handler finishes, the new instance adopts each
    /// port of the old one (same port type, direction and name), and handles the queued events
    /// in their original order — none is lost or handled twice. If `c` is active (or faulty), the
    /// new instance's `on_start` runs; the old instance is dropped without lifecycle hooks.
    /// `factory` also becomes `c`'s factory for later restarts.
    ///
    /// Returns at once; [`Swap::wait`] reports the outcome. If building the new instance fails
    /// (the factory panics, or it lacks one of `c`'s ports), the old instance keeps running and
    /// the error is reported.
    ///
    /// # Errors
    ///
    /// [`Error::Destroyed`], [`Error::Hierarchy`] for the root, at the time of the call.
    pub fn replace<D, F>(&self, c: &ComponentRef, factory: F) -> Result<Swap>
    where
        D: ComponentDefinition,
        F: Fn() -> D + Send + Sync + 'static,
    {
        self.replace_inner(c, factory, |_: &mut dyn std::any::Any, _: &mut D| Ok(()))
    }

    /// As [`replace`](Self::replace), moving state from the old definition (of type `Old`) into
    /// the new one with `transfer` before the new instance handles anything.
    ///
    /// # Errors
    ///
    /// As `replace`; the swap fails with [`Error::WrongDefinition`] (old instance kept) if the
    /// component is no longer an `Old` when the swap happens.
    pub fn replace_with_state<Old, D, F, T>(
        &self,
        c: &Component<Old>,
        factory: F,
        transfer: T,
    ) -> Result<Swap>
    where
        Old: ComponentDefinition,
        D: ComponentDefinition,
        F: Fn() -> D + Send + Sync + 'static,
        T: FnOnce(&mut Old, &mut D) + Send + 'static,
    {
        let id = c.id();
        self.replace_inner(c, factory, move |old: &mut dyn std::any::Any, new: &mut D| {
            transfer(downcast_old::<Old>(id, old)?, new);
            Ok(())
        })
    }

    /// As [`replace`](Self::replace), carrying state across *versions* through serde: the old
    /// definition's [`Migrate::State`] is serialised and read back as the new one's (so a new
    /// version can add fields with `#[serde(default)]`, drop fields, or rename them with serde
    /// attributes), then handed to the new definition's [`Migrate::restore`].
    ///
    /// # Errors
    ///
    /// As `replace`; the swap fails with [`Error::Migration`] (old instance kept) if the state
    /// does not convert.
    pub fn replace_migrating<Old, D, F>(&self, c: &Component<Old>, factory: F) -> Result<Swap>
    where
        Old: Migrate,
        D: Migrate,
        F: Fn() -> D + Send + Sync + 'static,
    {
        let id = c.id();
        self.replace_inner(c, factory, move |old: &mut dyn std::any::Any, new: &mut D| {
            let old = downcast_old::<Old>(id, old)?;
            let migrate =
                |e: serde_json::Error| Error::Migration { component: id, reason: e.to_string() };
            let value = serde_json::to_value(old.save()).map_err(migrate)?;
            let state: D::State = serde_json::from_value(value).map_err(migrate)?;
            new.restore(state);
            Ok(())
        })
    }

    fn replace_inner<D, F, T>(&self, c: &ComponentRef, factory: F, transfer: T) -> Result<Swap>
    where
        D: ComponentDefinition,
        F: Fn() -> D + Send + Sync + 'static,
        T: FnOnce(&mut dyn std::any::Any, &mut D) -> Result<()> + Send + 'static,
    {
        self.check_not_root(c)?;
        if matches!(c.state(), LifecycleState::Destroyed | LifecycleState::Destroying) {
            return Err(Error::Destroyed(c.id()));
        }
        let factory = Arc::new(factory);
        let for_build = Arc::clone(&factory);
        let build: Build = Box::new(move |cell, old| {
            let mut new = for_build();
            transfer(old.definition(), &mut new)?;
            instantiate(cell, new, true)
        });
        let (done, outcome) = std::sync::mpsc::sync_channel(1);
        c.cell.send_control(Control::Replace(Box::new(Replacement {
            build,
            factory: Box::new(move |cell| instantiate(cell, factory(), false)),
            type_name: std::any::type_name::<D>(),
            requested: Instant::now(),
            done,
        })));
        Ok(Swap { component: c.id(), outcome })
    }

    /// [`replace`](Self::replace), then waits for the outcome. Blocks: not for handlers.
    ///
    /// # Errors
    ///
    /// As `replace` and [`Swap::wait`].
    pub fn replace_and_wait<D, F>(
        &self,
        c: &ComponentRef,
        factory: F,
        timeout: Duration,
    ) -> Result<()>
    where
        D: ComponentDefinition,
        F: Fn() -> D + Send + Sync + 'static,
    {
        self.replace(c, factory)?.wait(timeout)
    }
}

/// The definition being replaced, as the type a state transfer expects.
fn downcast_old<Old: 'static>(id: ComponentId, old: &mut dyn std::any::Any) -> Result<&mut Old> {
    old.downcast_mut::<Old>()
        .ok_or(Error::WrongDefinition { component: id, wanted: std::any::type_name::<Old>() })
}

/// A pending hot swap (see [`System::replace`]).
#[derive(Debug)]
pub struct Swap {
    component: ComponentId,
    outcome: std::sync::mpsc::Receiver<Result<()>>,
}

impl Swap {
    /// Waits for the swap to happen. Blocks: not for handlers.
    ///
    /// # Errors
    ///
    /// The reason the swap failed (the old instance kept running): [`Error::FactoryPanicked`],
    /// [`Error::IncompatiblePorts`], [`Error::WrongDefinition`], [`Error::Destroyed`]; or
    /// [`Error::SwapPending`] if it did not happen within `timeout` (e.g. the component's
    /// current handler is still running).
    pub fn wait(self, timeout: Duration) -> Result<()> {
        use std::sync::mpsc::RecvTimeoutError;
        match self.outcome.recv_timeout(timeout) {
            Ok(r) => r,
            Err(RecvTimeoutError::Timeout) => {
                Err(Error::SwapPending { component: self.component, timeout })
            }
            Err(RecvTimeoutError::Disconnected) => Err(Error::Destroyed(self.component)),
        }
    }

    /// The outcome if the swap already happened, without waiting.
    pub fn try_outcome(&self) -> Option<Result<()>> {
        self.outcome.try_recv().ok()
    }
}
