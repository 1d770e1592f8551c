//! Eventual leader election (Omega) over a failure detector (work in progress).
