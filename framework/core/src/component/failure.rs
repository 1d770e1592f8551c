//! What went wrong in a handler or a lifecycle hook, and running a handler so that a panic
//! becomes a value (the cell and the supervisor classify it).

use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::handler::{Handled, HandlerError};

/// What went wrong in a handler.
#[derive(Debug)]
pub(crate) enum FailureCause {
    Error(HandlerError),
    Panic(String),
}

/// A failed handler invocation, with where it happened.
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) cause: FailureCause,
    /// `"port <type> (<direction>)"` or a lifecycle hook name.
    pub(crate) place: String,
    /// Type name of the event (or the hook).
    pub(crate) event: &'static str,
}

pub(crate) fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_owned()
    }
}

/// Runs a handler, catching panics.
#[inline]
pub(crate) fn invoke<D, E>(
    def: &mut D,
    handler: fn(&mut D, E) -> Handled,
    ev: E,
) -> Result<(), FailureCause> {
    match catch_unwind(AssertUnwindSafe(|| handler(def, ev))) {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(FailureCause::Error(e)),
        Err(payload) => Err(FailureCause::Panic(panic_message(&*payload))),
    }
}
