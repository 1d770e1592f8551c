//! Port types: the typed interfaces components provide and require.
//!
//! A [`Port`] names two event types: [`Port::Request`] flows *into* the component that provides
//! the port, [`Port::Indication`] flows *out of* it. Use an enum when a port carries several
//! events. A component holds its ports as fields:
//!
//! * [`Provided<P>`](crate::Provided) handles `P::Request` and triggers `P::Indication`;
//! * [`Required<P>`](crate::Required) handles `P::Indication` and triggers `P::Request`.
//!
//! Both directions are checked by the compiler: triggering a request on a provided port, or an
//! event type the port does not carry, does not compile.

use std::fmt::Debug;

/// An event: anything that can travel on a channel.
///
/// Events are `Clone` because a trigger that fans out to several channels delivers a clone to all
/// receivers but the last (which gets the original); with one receiver nothing is cloned.
/// `Debug` is required so that fault reports and traces can show them.
pub trait Event: Clone + Send + Debug + 'static {}

impl<T: Clone + Send + Debug + 'static> Event for T {}

/// A port type: a pair of event types, one per direction.
///
/// # Examples
///
/// ```
/// use selfman_core::Port;
///
/// #[derive(Clone, Debug)]
/// pub struct Ping(pub u64);
/// #[derive(Clone, Debug)]
/// pub struct Pong(pub u64);
///
/// /// Pings go to the provider, pongs come back.
/// pub struct PingPong;
/// impl Port for PingPong {
///     type Request = Ping;
///     type Indication = Pong;
/// }
/// ```
pub trait Port: Send + Sync + 'static {
    /// Events that flow into the provider of the port.
    type Request: Event;
    /// Events that flow out of the provider of the port.
    type Indication: Event;
}

/// The bound behind the triggers of indications: `Self` is a port's indication type and `E` the
/// type of the event passed to the trigger.
///
/// It holds exactly when `E: Into<Self>` (blanket impl); the trait only exists so that a
/// mistake — triggering a request on a [`Provided`](crate::Provided) port, or an event the port
/// does not carry — is reported as "`E` is not an indication of port `P`" rather than as a
/// missing `From` impl. `P` names the port in that message only. Write `E: Into<P::Indication>`
/// in generic code; it implies this bound.
#[diagnostic::on_unimplemented(
    message = "`{E}` is not an indication of port `{P}`",
    label = "port `{P}` carries indications of type `{Self}`, and `{E}` does not convert into it",
    note = "a `Provided<{P}>` triggers indications, a `Required<{P}>` triggers requests"
)]
pub trait IndicationFrom<E, P> {
    /// Converts the triggered event into the port's indication type (`E::into`).
    fn indication_from(event: E) -> Self;
}

impl<T, E: Into<T>, P> IndicationFrom<E, P> for T {
    #[inline]
    fn indication_from(event: E) -> T {
        event.into()
    }
}

/// The bound behind the triggers of requests: `Self` is a port's request type and `E` the type
/// of the event passed to the trigger.
///
/// It holds exactly when `E: Into<Self>` (blanket impl); the trait only exists so that a
/// mistake — triggering an indication on a [`Required`](crate::Required) port, or an event the
/// port does not carry — is reported as "`E` is not a request of port `P`" rather than as a
/// missing `From` impl. `P` names the port in that message only. Write `E: Into<P::Request>` in
/// generic code; it implies this bound.
#[diagnostic::on_unimplemented(
    message = "`{E}` is not a request of port `{P}`",
    label = "port `{P}` carries requests of type `{Self}`, and `{E}` does not convert into it",
    note = "a `Required<{P}>` triggers requests, a `Provided<{P}>` triggers indications"
)]
pub trait RequestFrom<E, P> {
    /// Converts the triggered event into the port's request type (`E::into`).
    fn request_from(event: E) -> Self;
}

impl<T, E: Into<T>, P> RequestFrom<E, P> for T {
    #[inline]
    fn request_from(event: E) -> T {
        event.into()
    }
}

/// The direction of a port as seen from the component holding it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Direction {
    /// The component provides the port: it handles requests and triggers indications.
    Provided,
    /// The component requires the port: it triggers requests and handles indications.
    Required,
}

impl Direction {
    /// `"provided"` or `"required"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Provided => "provided",
            Direction::Required => "required",
        }
    }
}
