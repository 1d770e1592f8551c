//! Scenarios for best-effort broadcast and consensus (see [`crate::SCENARIOS`]).
