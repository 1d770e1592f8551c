//! Tests of the roles together: several machines in a hand-driven world ([`world`]).

mod bad_input;
mod flaws;
mod handover;
mod ops;
mod recovery;
mod repair;
mod world;
