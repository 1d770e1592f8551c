//! `MULTI`/`EXEC`: the queue of one transaction, what the backend receives for `EXEC`, and how
//! its answer becomes `EXEC`'s reply.
//!
//! Invariants:
//! * a queued command is either an [`Op`] for the backend or a reply already known (a
//!   connection command such as `PING`, or a command's own argument error, which Redis also
//!   answers inside `EXEC`'s array rather than at queue time);
//! * `EXEC`'s array has one entry per queued command, in queue order: the known replies where
//!   they were queued, the backend's replies, in order, everywhere else ([`ExecPlan`]);
//! * a transaction in which a command was rejected (unknown, wrong arity, not allowed) is
//!   *dirty*: its `EXEC` answers `EXECABORT` and nothing reaches the backend.

use crate::command::{Key, Op};
use crate::resp::Reply;

/// What the backend receives for one `EXEC`: the queued operations, to be carried out as one
/// distributed transaction (all or nothing, serializable), unless a watched key changed since
/// the client's `WATCH`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transaction {
    /// The keys the client watched, each once, in no particular order. If any of them changed
    /// between its `WATCH` and this `EXEC`, nothing is done and the outcome is
    /// [`ExecOutcome::WatchedKeyChanged`].
    pub watched: Vec<Key>,
    /// The operations, in the order queued. May be empty (a transaction of `PING`s, or of
    /// nothing, whose watched keys still decide between an empty array and a null one).
    pub ops: Vec<Op>,
}

/// The backend's answer to a [`Transaction`].
#[derive(Debug, Clone, PartialEq)]
pub enum ExecOutcome {
    /// Committed: one reply per operation, in order (an operation may answer an error, such
    /// as `WRONGTYPE`, without undoing the others, as in Redis).
    Committed(Vec<Reply>),
    /// A watched key changed: nothing was done. `EXEC` answers a null array.
    WatchedKeyChanged,
    /// The transaction could not be carried out (no majority reachable, retries exhausted):
    /// `EXEC` answers this error and nothing was done.
    Failed(Reply),
}

/// `EXEC`'s reply, less what the backend will answer: which entries of the array are already
/// known and which wait for the backend.
#[derive(Debug, Clone, PartialEq)]
pub struct ExecPlan {
    /// One per queued command: `Some` if known, `None` for the next backend reply.
    entries: Vec<Option<Reply>>,
}

impl ExecPlan {
    /// How many replies the backend must give.
    pub fn backend_replies(&self) -> usize {
        self.entries.iter().filter(|e| e.is_none()).count()
    }

    /// `EXEC`'s reply for the backend's `outcome`.
    ///
    /// # Errors
    ///
    /// Hands the outcome back if it has a number of replies other than
    /// [`backend_replies`](ExecPlan::backend_replies): a backend bug, never to be papered over.
    pub fn reply(&self, outcome: ExecOutcome) -> Result<Reply, ExecOutcome> {
        match outcome {
            ExecOutcome::Committed(replies) if replies.len() == self.backend_replies() => {
                let mut replies = replies.into_iter();
                let array = self
                    .entries
                    .iter()
                    .map(|e| match e {
                        Some(known) => known.clone(),
                        // Counted above: there is one backend reply per empty entry.
                        None => replies.next().unwrap_or(Reply::Null),
                    })
                    .collect();
                Ok(Reply::Array(array))
            }
            ExecOutcome::WatchedKeyChanged => Ok(Reply::NullArray),
            ExecOutcome::Failed(error) => Ok(error),
            mismatched @ ExecOutcome::Committed(_) => Err(mismatched),
        }
    }

    /// The reply when no backend reply is needed, if none is.
    pub(crate) fn known(&self) -> Option<Reply> {
        self.entries.iter().cloned().collect::<Option<Vec<Reply>>>().map(Reply::Array)
    }
}

/// One open `MULTI` block.
#[derive(Debug, Default)]
pub(crate) struct Multi {
    entries: Vec<Option<Reply>>,
    ops: Vec<Op>,
    dirty: bool,
}

impl Multi {
    /// Commands queued so far.
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether a rejected command has doomed the transaction.
    pub(crate) fn is_dirty(&self) -> bool {
        self.dirty
    }

    pub(crate) fn mark_dirty(&mut self) {
        self.dirty = true;
    }

    pub(crate) fn queue_op(&mut self, op: Op) {
        self.entries.push(None);
        self.ops.push(op);
    }

    pub(crate) fn queue_reply(&mut self, reply: Reply) {
        self.entries.push(Some(reply));
    }

    /// The queued operations and the plan of `EXEC`'s reply.
    pub(crate) fn into_parts(self) -> (Vec<Op>, ExecPlan) {
        (self.ops, ExecPlan { entries: self.entries })
    }
}

#[cfg(test)]
mod tests {
    use super::{ExecOutcome, Multi};
    use crate::command::Op;
    use crate::resp::Reply;

    #[test]
    fn the_plan_interleaves_known_and_backend_replies_in_queue_order() {
        let mut m = Multi::default();
        m.queue_reply(Reply::Simple("PONG".into()));
        m.queue_op(Op::Get { key: b"a".to_vec() });
        m.queue_reply(Reply::error("ERR syntax error"));
        m.queue_op(Op::DbSize);
        assert_eq!(m.len(), 4);
        let (ops, plan) = m.into_parts();
        assert_eq!(ops, vec![Op::Get { key: b"a".to_vec() }, Op::DbSize]);
        assert_eq!(plan.backend_replies(), 2);
        assert_eq!(plan.known(), None);
        let done = plan.reply(ExecOutcome::Committed(vec![Reply::bulk("1"), Reply::Integer(7)]));
        assert_eq!(
            done,
            Ok(Reply::Array(vec![
                Reply::Simple("PONG".into()),
                Reply::bulk("1"),
                Reply::error("ERR syntax error"),
                Reply::Integer(7),
            ]))
        );
        assert_eq!(plan.reply(ExecOutcome::WatchedKeyChanged), Ok(Reply::NullArray));
        let failed = Reply::error("ERR no majority");
        assert_eq!(plan.reply(ExecOutcome::Failed(failed.clone())), Ok(failed));
        let short = ExecOutcome::Committed(vec![Reply::Integer(1)]);
        assert_eq!(plan.reply(short.clone()), Err(short), "a miscounted answer is handed back");
    }

    #[test]
    fn a_plan_without_operations_is_known() {
        let mut m = Multi::default();
        m.queue_reply(Reply::bulk("e"));
        let (ops, plan) = m.into_parts();
        assert!(ops.is_empty());
        assert_eq!(plan.known(), Some(Reply::Array(vec![Reply::bulk("e")])));
        assert_eq!(Multi::default().into_parts().1.known(), Some(Reply::Array(vec![])));
    }
}
