//! Deliberate bugs, for tests only: the [`has_flaw!`](crate::has_flaw) check that every
//! protocol machine uses (convention: `docs/decisions/011-deliberate-bugs-are-test-only.md`).
//!
//! A protocol crate defines its mistakes as a `Flaw` enum beside the machine that makes them,
//! compiled only under the crate's own `flaws` cargo feature (off by default; the test crates
//! turn it on). The machine keeps `flaw: Option<Flaw>` under the same feature and asks
//! `has_flaw!(self, Variant)` where it goes wrong: `false`, with no field read and no code
//! behind it, when the feature is off, so the check sites need no `cfg` of their own.

/// Whether the machine `$machine` was built with the deliberate mistake `Flaw::$flaw`.
///
/// Expands to `$machine.flaw == Some(Flaw::$flaw)` when the **calling** crate is compiled with
/// its `flaws` feature, and to `false` otherwise (the field and the enum need not exist then).
/// `Flaw` is resolved where the macro is called: the enum of the machine's own module.
///
/// ```text
/// #[cfg(feature = "flaws")]
/// #[derive(Clone, Copy, Debug, PartialEq, Eq)]
/// pub enum Flaw {
///     /// Never re-sends (breaks termination over lossy links).
///     NoRetransmission,
/// }
///
/// pub struct Machine {
///     // ...
///     #[cfg(feature = "flaws")]
///     flaw: Option<Flaw>,
/// }
///
/// impl Machine {
///     pub fn on_tick(&mut self, out: &mut Vec<Output>) {
///         if has_flaw!(self, NoRetransmission) {
///             return;
///         }
///         // ...
///     }
/// }
/// ```
#[macro_export]
macro_rules! has_flaw {
    ($machine:expr, $flaw:ident) => {{
        #[cfg(feature = "flaws")]
        let has = $machine.flaw == ::core::option::Option::Some(Flaw::$flaw);
        #[cfg(not(feature = "flaws"))]
        let has = false;
        has
    }};
}
