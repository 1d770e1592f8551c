//! Unit tests of the session rules.
