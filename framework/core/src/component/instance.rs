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
use crate::component::definition::{ComponentDefinition, Setup};
use crate::component::failure::{panic_message, Failure, FailureCause};
use crate::component::port_decl::{Batch, PortDecl};
use crate::error::Error;
use crate::handler::Handled;
use crate::port::Direction;
use crate::port_core::{mask_bit, ready_bit, AnyPortCore};

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
    /// Moves arrived events into local queues (see `Inbox::take` for `hold`), looking only at
    /// the ports whose bits are set in `ready` (the owner's ready mask, see
    /// `ComponentCell::mark_ready`) and at those it put off last time; returns how many ports
    /// had some (signals).
    fn take(&mut self, hold: bool, ready: u64) -> isize;
    /// Whether any local queue holds events.
    fn has_local(&self) -> bool;
    /// Handles at most `budget` events, round-robin over the ports holding some.
    fn handle(&mut self, budget: usize) -> Batch;
    /// Runs a lifecycle hook, catching panics.
    fn hook(&mut self, hook: Hook) -> Result<(), Failure>;
    /// The definition, for typed access from outside.
    fn definition(&mut self) -> &mut dyn Any;
}

struct Entry<D> {
    /// Its port's bit in the owner's ready mask; 0 for the port at position 0, which has none
    /// and is looked at every turn (`port_core::ready_bit`).
    ready_bit: u64,
    decl: Box<dyn PortDecl<D>>,
}

/// `repr(C)`, bookkeeping first: every turn reads it, while a handler reads only some fields of
/// `def` (which may be hundreds of bytes); put after `def`, it sat on a line of its own.
#[repr(C)]
struct Instance<D> {
    /// The port declarations, each with its bit in the owner's ready mask (side by side: a
    /// turn reads both, so they share cache lines and one allocation).
    entries: Box<[Entry<D>]>,
    /// Entries whose local queue holds events, by [`mask_bit`]. Only this instance takes and
    /// handles events, so this is exact (for entries from 63 on: "maybe").
    local: u64,
    /// Ready bits seen but not taken (a port's arrivals wait while its local queue is
    /// non-empty), looked at again next turn. All ones for a fresh instance, which has not
    /// seen the ready bits consumed before it existed.
    deferred: u64,
    next: usize,
    /// The entry of the port without a ready bit (position 0 of the port table), if bound.
    unmasked: Option<usize>,
    def: D,
}

impl<D: ComponentDefinition> Instance<D> {
    fn new(def: D, entries: Vec<Entry<D>>) -> Self {
        let local = entries
            .iter()
            .enumerate()
            .filter(|(_, e)| e.decl.has_local())
            .fold(0, |m, (k, _)| m | mask_bit(k));
        let unmasked = entries.iter().position(|e| e.ready_bit == 0);
        Instance {
            entries: entries.into_boxed_slice(),
            local,
            deferred: u64::MAX,
            next: 0,
            unmasked,
            def,
        }
    }

    /// Takes entry `k`'s arrivals (its ready bit, `bit`, was seen; 0 for the unmasked port);
    /// returns 1 if it took some (a signal).
    #[inline]
    fn take_entry(&mut self, k: usize, hold: bool, bit: u64) -> isize {
        let holding = self.local & mask_bit(k) != 0;
        if holding && !hold && k < 63 {
            // Arrivals wait until the local queue is handled (see `Inbox::take`): look again
            // next turn (the unmasked port is looked at anyway).
            self.deferred |= bit;
            0
        } else if self.entries[k].decl.take(hold) {
            self.local |= mask_bit(k);
            1
        } else {
            if holding {
                self.deferred |= bit;
            }
            0
        }
    }

    /// Entries from 63 on share one bit: clear it once none of them holds events.
    #[inline]
    fn settle_overflow(&mut self) {
        let last = mask_bit(63);
        if self.local & last != 0 && !self.entries.iter().skip(63).any(|e| e.decl.has_local()) {
            self.local &= !last;
        }
    }
}

impl<D: ComponentDefinition> ErasedInstance for Instance<D> {
    fn take(&mut self, hold: bool, ready: u64) -> isize {
        let ready = ready | std::mem::take(&mut self.deferred);
        let mut took = 0;
        if let Some(k) = self.unmasked {
            // The port without a bit: its arrival hint is the only way to know.
            took += self.take_entry(k, hold, 0);
        }
        if ready == 0 {
            return took;
        }
        for k in 0..self.entries.len() {
            let bit = self.entries[k].ready_bit;
            if bit != 0 && ready & bit != 0 {
                took += self.take_entry(k, hold, bit);
            }
        }
        took
    }

    fn has_local(&self) -> bool {
        self.local != 0
    }

    fn handle(&mut self, budget: usize) -> Batch {
        let n = self.entries.len();
        let mut handled = 0;
        let mut k = self.next;
        for _ in 0..n {
            if handled >= budget || self.local == 0 {
                break;
            }
            let bit = mask_bit(k);
            if self.local & bit != 0 {
                let b = self.entries[k].decl.handle(&mut self.def, budget - handled);
                handled += b.handled;
                if !b.more && k < 63 {
                    self.local &= !bit;
                }
                if b.failure.is_some() {
                    self.next = if k + 1 == n { 0 } else { k + 1 };
                    self.settle_overflow();
                    return Batch { handled, failure: b.failure, more: self.local != 0 };
                }
            }
            k += 1;
            if k == n {
                k = 0;
            }
        }
        self.next += 1;
        if self.next >= n {
            self.next = 0;
        }
        self.settle_overflow();
        Batch { handled, failure: None, more: self.local != 0 }
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
    let mut bits = Vec::with_capacity(decls.len());
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
            let i = match plan.get(k).copied().flatten() {
                Some(i) => {
                    decl.bind(&mut def, cell, i, Some(Arc::clone(&slots[i].core)));
                    i
                }
                None => {
                    let i = slots.len();
                    let core = decl.bind(&mut def, cell, i, None);
                    slots.push(PortSlot { name: name_of(k), direction: decl.direction(), core });
                    i
                }
            };
            bits.push(ready_bit(i));
        }
    }
    if let Some(field) = context {
        *field(&mut def) = Context::bound(cell);
    }
    let entries = bits.into_iter().zip(decls).map(|(ready_bit, decl)| Entry { ready_bit, decl });
    Ok(Box::new(Instance::new(def, entries.collect())))
}
