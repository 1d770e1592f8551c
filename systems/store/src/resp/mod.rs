//! The Redis serialisation protocol (RESP), as a server speaks it.
//!
//! * [`RequestDecoder`] turns the bytes a client sends into commands (each a list of
//!   arguments). It reads both forms Redis accepts: *multibulk* requests, which every client
//!   library sends (`*2\r\n$3\r\nGET\r\n$1\r\nk\r\n`), and *inline* commands typed by a person
//!   at a terminal (`GET k\r\n`, with Redis' quoting rules).
//! * [`Reply`] is what a command answers, and [`Reply::encode`] writes it in RESP2 or, after a
//!   client's `HELLO 3`, in RESP3 ([`Protocol`]).
//!
//! Client bytes are never trusted. The decoder's guarantees, checked by the property tests in
//! `tests/resp.rs`:
//! * it never panics, whatever the input;
//! * it never allocates for what it has not received: an argument count or a bulk length is
//!   checked against [`Limits`] before anything is reserved, and reservations are capped by the
//!   bytes actually at hand;
//! * how the input is split into reads does not change the commands it yields;
//! * a malformed request is a [`ProtocolError`] whose text is the error Redis answers in the
//!   same case (`ERR Protocol error: ...`); after one, the connection is to be answered and
//!   closed, as Redis does, because the decoder no longer knows where the next request starts.

mod reply;
mod request;

pub use reply::{Protocol, Reply};
pub(crate) use request::parse_i64;
pub use request::{
    Command, Limits, ProtocolError, RequestDecoder, UNAUTHENTICATED_MAX_ARGS,
    UNAUTHENTICATED_MAX_BULK,
};
