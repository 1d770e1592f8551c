//! Scenarios for the failure detector and leader election (see [`crate::SCENARIOS`]).
