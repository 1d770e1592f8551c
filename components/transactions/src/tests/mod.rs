//! Unit tests of the whole machine in a small deterministic world (`world.rs`).

mod bad_input;
mod batching;
mod bounds;
mod commit;
mod eager;
mod flaws;
mod memory;
mod replica;
mod safety;
mod sets;
mod spans;
mod takeover;
mod vote;
mod world;
