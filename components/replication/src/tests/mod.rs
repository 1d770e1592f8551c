//! Tests of the roles together: several machines in a hand-driven world.
