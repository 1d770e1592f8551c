//! An eventually perfect failure detector (heartbeats with an increasing timeout) (work in progress).
