//! A live instance of a definition, bound to its component cell's port cores.
//!
//! The cell (identity, queues, channels) outlives instances: restarting or replacing a
//! component builds a new instance that *adopts* the cell's port cores, so channels and queued
//! events carry over.

use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use crate::component::cell::ComponentCell;
use crate::component::context::Context;
use crate::component::definition::{
    panic_message, Batch, ComponentDefinition, Failure, FailureCause, PortDecl, Setup,
};
use crate::error::Error;
use crate::handler::Handled;
use crate::port::Direction;
use crate::port_core::AnyPortCore;

/// One entry of a cell's port table.
pub(crate) struct PortSlot {
    pub(crate) name: Option<&'static str>,
    pub(crate) direction: Direction,
    /// Its concrete type (`ProvidedCore<P>` / `RequiredCore<P>`) identifies the port type.
    pub(crate) core: Arc<dyn AnyPortCore>,
}

/// Lifecycle hooks of a definition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Hook {
    Start,
    Stop,
    Kill,
}

/// A definition of any type, as the cell sees it.
pub(crate) trait ErasedInstance: Send {
    /// Moves arrived events into local queues (see `Inbox::take` for `hold`); returns how many
    /// ports had some (signals).
    fn take(&mut self, hold: bool) -> isize;
    /// Whether any local queue holds events.
    fn has_local(&self) -> bool;
    /// Handles at most `budget` events, round-robin over ports.
    fn handle(&mut self, budget: usize) -> Batch;
    /// Runs a lifecycle hook, catching panics.
    fn hook(&mut self, hook: Hook) -> Result<(), Failure>;
    /// The definition, for typed access from outside.
    fn definition(&mut self) -> &mut dyn Any;
}

struct Instance<D> {
    def: D,
    entries: Box<[Box<dyn PortDecl<D>>]>,
    next: usize,
}

impl<D: ComponentDefinition> ErasedInstance for Instance<D> {
    fn take(&mut self, hold: bool) -> isize {
        self.entries.iter().map(|e| isize::from(e.take(hold))).sum()
    }

    fn has_local(&self) -> bool {
        self.entries.iter().any(|e| e.has_local())
    }

    fn handle(&mut self, budget: usize) -> Batch {
        let n = self.entries.len();
        let mut handled = 0;
        for k in 0..n {
            if handled >= budget {
                break;
            }
            let i = (self.next + k) % n;
            let b = self.entries[i].handle(&mut self.def, budget - handled);
            handled += b.handled;
            if b.failure.is_some() {
                self.next = (i + 1) % n;
                return Batch { handled, failure: b.failure };
            }
        }
        if n > 0 {
            self.next = (self.next + 1) % n;
        }
        Batch { handled, failure: None }
    }

    fn hook(&mut self, hook: Hook) -> Result<(), Failure> {
        let f: fn(&mut D) -> Handled = match hook {
            Hook::Start => D::on_start,
            Hook::Stop => D::on_stop,
            Hook::Kill => D::on_kill,
        };
        let cause = match catch_unwind(AssertUnwindSafe(|| f(&mut self.def))) {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(e)) => FailureCause::Error(e),
            Err(p) => FailureCause::Panic(panic_message(&*p)),
        };
        Err(Failure { cause, place: format!("{hook:?} hook"), event: "lifecycle" })
    }

    fn definition(&mut self) -> &mut dyn Any {
        &mut self.def
    }
}

/// Runs `setup` on `def`, binds its ports to `cell`'s port table (adopting existing cores of the
/// same type, direction and name, in order; adding new ones) and returns the instance.
///
/// With `strict` (replacing a running component's definition), every port the cell already has
/// must be adopted by `def`, so no channel is left without a handler; otherwise nothing is bound
/// and the unmatched ports are reported.
pub(crate) fn instantiate<D: ComponentDefinition>(
    cell: &Arc<ComponentCell>,
    mut def: D,
    strict: bool,
) -> Result<Box<dyn ErasedInstance>, Error> {
    let mut setup = Setup::new();
    def.setup(&mut setup);
    let Setup { mut decls, names, context } = setup;
    let name_of = |i: usize| names.iter().find(|(j, _)| *j == i).map(|(_, n)| *n);
    {
        let mut slots = cell.ports.lock();
        // The existing slot each declaration adopts: the first unused one of the same port
        // type, direction and name. (A fresh component has no slots: nothing to match.)
        let adopt = |slots: &[PortSlot]| -> Vec<Option<usize>> {
            let mut used = vec![false; slots.len()];
            decls
                .iter()
                .enumerate()
                .map(|(k, decl)| {
                    let found = slots.iter().enumerate().position(|(i, s)| {
                        !used[i]
                            && s.core.as_ref().type_id() == decl.core_type()
                            && s.direction == decl.direction()
                            && s.name == name_of(k)
                    });
                    if let Some(i) = found {
                        used[i] = true;
                    }
                    found
                })
                .collect()
        };
        let plan = if slots.is_empty() { Vec::new() } else { adopt(&slots) };
        if strict && slots.iter().enumerate().any(|(i, _)| !plan.contains(&Some(i))) {
            let missing = slots
                .iter()
                .enumerate()
                .filter(|(i, _)| !plan.contains(&Some(*i)))
                .map(|(_, s)| {
                    let name = s.name.map(|n| format!(" \"{n}\"")).unwrap_or_default();
                    format!("{} {}{name}", s.direction.as_str(), s.core.port_name())
                })
                .collect::<Vec<_>>()
                .join(", ");
            return Err(Error::IncompatiblePorts { component: cell.id(), missing });
        }
        if slots.is_empty() {
            slots.reserve_exact(decls.len());
        }
        for (k, decl) in decls.iter_mut().enumerate() {
            match plan.get(k).copied().flatten() {
                Some(i) => {
                    decl.bind(&mut def, cell, Some(Arc::clone(&slots[i].core)));
                }
                None => {
                    let core = decl.bind(&mut def, cell, None);
                    slots.push(PortSlot { name: name_of(k), direction: decl.direction(), core });
                }
            }
        }
    }
    if let Some(field) = context {
        *field(&mut def) = Context::bound(cell);
    }
    Ok(Box::new(Instance { def, entries: decls.into_boxed_slice(), next: 0 }))
}
