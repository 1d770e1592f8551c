//! Epoch change, epoch (abortable) consensus and uniform consensus, many instances at once (work in progress).
