//! Putting a connection's replies back in command order.
//!
//! Clients pipeline: they send many commands before reading any reply, and match replies to
//! commands by position. The backend answers in any order. A [`ReplyQueue`] holds one slot per
//! command whose reply is not written yet, in command order:
//!
//! ```text
//!   seq:     4        5          6         7
//!          [ready] [waiting]  [ready]  [waiting]      ← pending slots, oldest first
//!   output: ...replies up to 3...                     ← bytes ready to write
//! ```
//!
//! A reply known at once fills its slot when issued; an [`Action::Execute`] or
//! [`Action::Exec`] leaves its slot waiting and becomes a [`Request`] for the backend, which
//! later answers with the same [`Seq`] through [`ReplyQueue::complete`]. Whenever the oldest
//! slots are filled they move, in order, to the output.
//!
//! Invariants (unit tests below; the property test in `tests/session.rs`):
//! * the output is the replies in command order, whatever order the backend answers in;
//! * each reply is encoded in the protocol in force when its command was issued (so a
//!   pipelined `HELLO 3` does not change the replies of the commands before it);
//! * a pushed message (pub/sub) goes after every reply already issued, never between a
//!   command and its reply;
//! * after [`Action::Close`] reaches the front of the queue, nothing more is written and the
//!   queue reports [`ReplyQueue::is_closed`]; a backend answer for an unknown or already
//!   answered `Seq` is refused and handed back.

use std::collections::VecDeque;

use thiserror::Error;

use crate::command::Op;
use crate::resp::{Protocol, Reply};
use crate::session::transaction::{ExecOutcome, ExecPlan, Transaction};
use crate::session::{Action, Seq, Topic};

/// What the layers below receive from one connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Carry out one operation; answer [`Completion::Reply`] with the same `seq`.
    Execute {
        /// The command's number, to be given back.
        seq: Seq,
        /// The operation.
        op: Op,
    },
    /// Carry out one transaction; answer [`Completion::Exec`] with the same `seq`.
    Exec {
        /// The `EXEC`'s number, to be given back.
        seq: Seq,
        /// The watched keys and the operations.
        transaction: Transaction,
    },
    /// Deliver messages of these topics to this connection from now on
    /// ([`ReplyQueue::push`]).
    Subscribe(Vec<Topic>),
    /// Stop delivering messages of these topics.
    Unsubscribe(Vec<Topic>),
}

/// The backend's answer to one [`Request`].
#[derive(Debug, Clone, PartialEq)]
pub enum Completion {
    /// The reply to an [`Request::Execute`].
    Reply(Reply),
    /// The outcome of a [`Request::Exec`].
    Exec(ExecOutcome),
}

/// A backend answer the queue cannot take; the answer is handed back.
#[derive(Debug, Clone, PartialEq, Error)]
#[error("no command {} waits for this answer: {reason}", seq.0)]
pub struct CompletionError {
    /// The number the answer gave.
    pub seq: Seq,
    /// Why it was refused.
    pub reason: &'static str,
    /// The answer itself.
    pub completion: Completion,
}

#[derive(Debug)]
enum Slot {
    Ready(Vec<u8>),
    Waiting { protocol: Protocol, plan: Option<ExecPlan> },
    Close,
}

/// One connection's replies, in command order. See the module documentation.
#[derive(Debug, Default)]
pub struct ReplyQueue {
    protocol: Protocol,
    /// Slots not yet moved to the output, oldest first, each with its command's number (a
    /// pushed message takes the number of the last command issued; numbers never decrease).
    pending: VecDeque<(Seq, Slot)>,
    last_seq: Option<Seq>,
    output: Vec<u8>,
    closed: bool,
}

impl ReplyQueue {
    /// An empty queue, encoding in RESP2 until told otherwise.
    pub fn new() -> ReplyQueue {
        ReplyQueue::default()
    }

    /// Takes the session's next action; returns what to send to the layers below, if any.
    pub fn issue(&mut self, action: Action) -> Option<Request> {
        if self.closed {
            return None;
        }
        match action {
            Action::Reply { seq, reply } => {
                self.last_seq = Some(seq);
                self.ready(seq, &reply);
                None
            }
            Action::Execute { seq, op } => {
                self.wait(seq, None);
                Some(Request::Execute { seq, op })
            }
            Action::Exec { seq, transaction, plan } => {
                self.wait(seq, Some(plan));
                Some(Request::Exec { seq, transaction })
            }
            Action::Subscribe(topics) => Some(Request::Subscribe(topics)),
            Action::Unsubscribe(topics) => Some(Request::Unsubscribe(topics)),
            Action::Protocol(protocol) => {
                self.protocol = protocol;
                None
            }
            Action::Close => {
                let seq = self.last_seq.unwrap_or(Seq(0));
                self.pending.push_back((seq, Slot::Close));
                self.advance();
                None
            }
        }
    }

    /// A message pushed by the notification layer (see [`message`](crate::session::message)):
    /// written after every reply issued so far.
    pub fn push(&mut self, message: &Reply) {
        if !self.closed {
            self.ready(self.last_seq.unwrap_or(Seq(0)), message);
        }
    }

    /// The backend's answer to the command `seq`.
    ///
    /// # Errors
    ///
    /// A [`CompletionError`], with the answer handed back, if no command `seq` waits for an
    /// answer of this kind (never issued, already answered, a reply for an `EXEC` or the other
    /// way round, or an `EXEC` outcome with the wrong number of replies). Nothing changes.
    pub fn complete(&mut self, seq: Seq, completion: Completion) -> Result<(), CompletionError> {
        let refuse = |reason, completion| Err(CompletionError { seq, reason, completion });
        let start = self.pending.partition_point(|(s, _)| *s < seq);
        let Some(index) = (start..self.pending.len())
            .take_while(|&i| self.pending[i].0 == seq)
            .find(|&i| matches!(self.pending[i].1, Slot::Waiting { .. }))
        else {
            return refuse("not waiting", completion);
        };
        let Slot::Waiting { protocol, plan } = &self.pending[index].1 else {
            unreachable!("found as a waiting slot just above");
        };
        let reply = match (plan, completion) {
            (None, Completion::Reply(reply)) => reply,
            (Some(plan), Completion::Exec(outcome)) => match plan.reply(outcome) {
                Ok(reply) => reply,
                Err(outcome) => {
                    return refuse("the number of replies differs", Completion::Exec(outcome))
                }
            },
            (None, other) => return refuse("an operation waits, not an EXEC", other),
            (Some(_), other) => return refuse("an EXEC waits, not an operation", other),
        };
        let mut bytes = Vec::new();
        reply.encode(*protocol, &mut bytes);
        self.pending[index].1 = Slot::Ready(bytes);
        self.advance();
        Ok(())
    }

    /// Takes the bytes ready to write, in order.
    pub fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.output)
    }

    /// The bytes ready to write, without taking them.
    pub fn output(&self) -> &[u8] {
        &self.output
    }

    /// Commands whose replies are not in the output yet. A front door stops reading from a
    /// client while this is high, so that a client that never reads cannot grow it.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Whether the connection is to be closed once the output is written: a `Close` has come
    /// to the front.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    fn ready(&mut self, seq: Seq, reply: &Reply) {
        match self.pending.back_mut() {
            None => reply.encode(self.protocol, &mut self.output),
            Some((_, Slot::Ready(bytes))) => reply.encode(self.protocol, bytes),
            Some(_) => {
                let mut bytes = Vec::new();
                reply.encode(self.protocol, &mut bytes);
                self.pending.push_back((seq, Slot::Ready(bytes)));
            }
        }
    }

    fn wait(&mut self, seq: Seq, plan: Option<ExecPlan>) {
        self.last_seq = Some(seq);
        self.pending.push_back((seq, Slot::Waiting { protocol: self.protocol, plan }));
    }

    fn advance(&mut self) {
        while let Some((_, slot)) = self.pending.front() {
            match slot {
                Slot::Waiting { .. } => return,
                Slot::Close => {
                    self.closed = true;
                    self.pending.clear();
                    return;
                }
                Slot::Ready(_) => {
                    if let Some((_, Slot::Ready(bytes))) = self.pending.pop_front() {
                        self.output.extend_from_slice(&bytes);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Completion, ReplyQueue, Request};
    use crate::command::Op;
    use crate::resp::{Protocol, Reply};
    use crate::session::{message, Action, ExecOutcome, Seq};

    fn get(seq: u64) -> Action {
        Action::Execute { seq: Seq(seq), op: Op::Get { key: b"k".to_vec() } }
    }

    fn reply(seq: u64, r: Reply) -> Action {
        Action::Reply { seq: Seq(seq), reply: r }
    }

    #[test]
    fn replies_leave_in_command_order_whatever_order_the_backend_answers() {
        let mut q = ReplyQueue::new();
        assert!(matches!(q.issue(get(0)), Some(Request::Execute { seq: Seq(0), .. })));
        assert_eq!(q.issue(reply(1, Reply::Simple("PONG".into()))), None);
        q.issue(get(2));
        assert_eq!(q.output(), b"");
        q.complete(Seq(2), Completion::Reply(Reply::bulk("two"))).unwrap();
        assert_eq!(q.output(), b"", "command 0 still waits");
        q.complete(Seq(0), Completion::Reply(Reply::Null)).unwrap();
        assert_eq!(q.take_output(), b"$-1\r\n+PONG\r\n$3\r\ntwo\r\n");
        assert_eq!(q.pending(), 0);
    }

    #[test]
    fn each_reply_keeps_the_protocol_of_its_command() {
        let mut q = ReplyQueue::new();
        q.issue(get(0));
        q.issue(Action::Protocol(Protocol::Resp3));
        q.issue(get(1));
        q.complete(Seq(1), Completion::Reply(Reply::Null)).unwrap();
        q.complete(Seq(0), Completion::Reply(Reply::Null)).unwrap();
        assert_eq!(q.take_output(), b"$-1\r\n_\r\n");
    }

    #[test]
    fn pushes_go_after_replies_already_issued() {
        let mut q = ReplyQueue::new();
        q.issue(get(0));
        q.push(&message(b"ch", b"m"));
        assert_eq!(q.output(), b"");
        q.complete(Seq(0), Completion::Reply(Reply::Integer(1))).unwrap();
        assert_eq!(q.take_output(), b":1\r\n*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$1\r\nm\r\n");
    }

    #[test]
    fn close_waits_for_earlier_replies_and_ends_everything() {
        let mut q = ReplyQueue::new();
        q.issue(get(0));
        q.issue(reply(1, Reply::ok()));
        q.issue(Action::Close);
        assert!(!q.is_closed());
        q.complete(Seq(0), Completion::Reply(Reply::Integer(0))).unwrap();
        assert!(q.is_closed());
        assert_eq!(q.take_output(), b":0\r\n+OK\r\n");
        assert_eq!(q.issue(get(2)), None);
        q.push(&message(b"c", b"m"));
        assert_eq!(q.output(), b"");
    }

    #[test]
    fn wrong_answers_are_handed_back() {
        let mut q = ReplyQueue::new();
        q.issue(get(0));
        let answer = Completion::Reply(Reply::Integer(1));
        let err = q.complete(Seq(9), answer.clone()).unwrap_err();
        assert_eq!((err.seq, err.completion), (Seq(9), answer.clone()));
        let exec = Completion::Exec(ExecOutcome::WatchedKeyChanged);
        assert!(q.complete(Seq(0), exec).is_err(), "an operation waits, not an EXEC");
        q.complete(Seq(0), answer.clone()).unwrap();
        assert!(q.complete(Seq(0), answer).is_err(), "answered twice");
        assert_eq!(q.take_output(), b":1\r\n");
    }
}
