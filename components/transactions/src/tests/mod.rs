//! Unit tests of the whole machine in a small deterministic world (`world.rs`).
#![allow(dead_code)]

mod bad_input;
mod commit;
mod takeover;
mod vote;
mod world;
