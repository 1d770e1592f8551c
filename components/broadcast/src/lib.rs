//! Best-effort broadcast over the Network port (work in progress).
