//! Linearizability of recorded client histories (Herlihy and Wing), checked the way Knossos and
//! Porcupine do: Wing and Gong's search with Lowe's memoisation, one key at a time.
//!
//! A history is a list of [`Operation`]s, each with the time its client invoked it, the time it
//! completed (or [`PENDING`] if it never did: a timeout, a crash, a lost reply), its input and
//! what it returned. It is **linearizable** for a [`Model`] when each operation can be given one
//! instant between its invocation and its completion such that, taken in the order of those
//! instants, every operation returns what the model says from the state before it. A pending
//! operation may take effect at any instant after its invocation, or never.
//!
//! How: operations on different keys are independent (linearizability is compositional, so a
//! history is linearizable exactly when every key's sub-history is), so each key is checked on
//! its own. For one key, the search walks the invocations and completions in time order; at an
//! invocation it tries to linearize that operation next (the model must accept its output from
//! the current state), and at a completion of an operation not yet linearized it backtracks,
//! because that operation had to take effect before now. Configurations already explored — the
//! same set of linearized operations reaching the same state — are remembered and not explored
//! again, which is what keeps real histories fast. A search budget bounds the worst case
//! (which is exponential): a history it cannot finish within budget is reported as
//! [`Verdict::Unknown`], never as linearizable.

use std::collections::{HashMap, HashSet};
use std::fmt::Debug;
use std::hash::Hash;

/// The completion time of an operation that never completed.
pub const PENDING: u64 = u64::MAX;

/// A sequential specification: the state of one key and what each operation does to it.
pub trait Model {
    /// The state of one key.
    type State: Clone + Eq + Hash + Debug;
    /// What a client asked.
    type Input: Debug;
    /// What it was told.
    type Output: Debug;

    /// The state of a key nobody has written.
    fn init(&self) -> Self::State;

    /// The state after `input` is applied to `state`, if the model allows the operation to have
    /// returned `output` from `state`; `None` if it does not.
    fn step(
        &self,
        state: &Self::State,
        input: &Self::Input,
        output: &Self::Output,
    ) -> Option<Self::State>;
}

/// One operation of a recorded history.
#[derive(Debug, Clone, PartialEq)]
pub struct Operation<K, I, O> {
    /// Which client (process) ran it; for reports only.
    pub client: u64,
    /// The key it touched.
    pub key: K,
    /// When the client invoked it.
    pub call: u64,
    /// When it completed, or [`PENDING`].
    pub ret: u64,
    /// What was asked.
    pub input: I,
    /// What came back (for a pending operation, whatever the model treats as "unknown").
    pub output: O,
}

/// The outcome of a check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict<K> {
    /// Every key's history is linearizable.
    Linearizable,
    /// This key's history is not.
    NotLinearizable(Counterexample<K>),
    /// The search for this key exceeded its budget; nothing is claimed.
    Unknown {
        /// The key.
        key: K,
    },
}

/// Where the search for a non-linearizable key got stuck.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Counterexample<K> {
    /// The key.
    pub key: K,
    /// Indices (into the history given to [`check`]) of the longest sequence of that key's
    /// operations the search could linearize, in linearization order.
    pub longest_prefix: Vec<usize>,
    /// Indices of the operations that completed before any order could place them, after that
    /// prefix: at least one of them returned something impossible.
    pub stuck_at: Vec<usize>,
}

/// How many search steps one key may take before the check gives up with [`Verdict::Unknown`].
pub const DEFAULT_BUDGET: u64 = 10_000_000;

/// Checks `history` against `model`, one key at a time, within [`DEFAULT_BUDGET`] steps per key.
pub fn check<M, K>(model: &M, history: &[Operation<K, M::Input, M::Output>]) -> Verdict<K>
where
    M: Model,
    K: Clone + Eq + Hash + Ord,
{
    check_with_budget(model, history, DEFAULT_BUDGET)
}

/// As [`check`], with a budget of `budget` search steps per key.
pub fn check_with_budget<M, K>(
    model: &M,
    history: &[Operation<K, M::Input, M::Output>],
    budget: u64,
) -> Verdict<K>
where
    M: Model,
    K: Clone + Eq + Hash + Ord,
{
    let mut by_key: HashMap<&K, Vec<usize>> = HashMap::new();
    for (i, op) in history.iter().enumerate() {
        by_key.entry(&op.key).or_default().push(i);
    }
    let mut keys: Vec<&K> = by_key.keys().copied().collect();
    keys.sort();
    for key in keys {
        match check_key(model, history, &by_key[key], budget) {
            KeyVerdict::Ok => {}
            KeyVerdict::Stuck { longest_prefix, stuck_at } => {
                return Verdict::NotLinearizable(Counterexample {
                    key: key.clone(),
                    longest_prefix,
                    stuck_at,
                })
            }
            KeyVerdict::OutOfBudget => return Verdict::Unknown { key: key.clone() },
        }
    }
    Verdict::Linearizable
}

enum KeyVerdict {
    Ok,
    Stuck { longest_prefix: Vec<usize>, stuck_at: Vec<usize> },
    OutOfBudget,
}

/// An invocation or completion in the search's doubly linked list of events.
#[derive(Clone, Copy)]
struct Entry {
    /// The operation (index into the key's operations).
    op: usize,
    /// Invocation (`true`) or completion.
    call: bool,
    prev: usize,
    next: usize,
}

/// A fixed-size bit set of linearized operations.
#[derive(Clone, PartialEq, Eq, Hash)]
struct Bits(Vec<u64>);

impl Bits {
    fn new(n: usize) -> Bits {
        Bits(vec![0; n.div_ceil(64)])
    }
    fn set(&mut self, i: usize) {
        self.0[i / 64] |= 1 << (i % 64);
    }
    fn clear(&mut self, i: usize) {
        self.0[i / 64] &= !(1 << (i % 64));
    }
}

fn check_key<M: Model, K>(
    model: &M,
    history: &[Operation<K, M::Input, M::Output>],
    ops: &[usize],
    budget: u64,
) -> KeyVerdict {
    let n = ops.len();
    // Events in time order; at equal times invocations first (operations that touch in time
    // are concurrent, which is the lenient reading).
    let mut events: Vec<(u64, bool, usize)> = Vec::with_capacity(2 * n);
    for (j, &i) in ops.iter().enumerate() {
        let op = &history[i];
        events.push((op.call, true, j));
        events.push((op.ret.max(op.call), false, j));
    }
    events.sort_by_key(|&(t, call, j)| (t, !call, j));
    // Entry 0 is the head sentinel; events are 1..=2n; `HEAD`'s next is the first event.
    const HEAD: usize = 0;
    let end = 2 * n + 1;
    let mut list: Vec<Entry> = Vec::with_capacity(end + 1);
    list.push(Entry { op: usize::MAX, call: false, prev: HEAD, next: 1 });
    let mut call_at = vec![0; n];
    let mut ret_at = vec![0; n];
    for (k, &(_, call, j)) in events.iter().enumerate() {
        let idx = k + 1;
        list.push(Entry { op: j, call, prev: idx - 1, next: idx + 1 });
        if call {
            call_at[j] = idx;
        } else {
            ret_at[j] = idx;
        }
    }
    list.push(Entry { op: usize::MAX, call: false, prev: end - 1, next: end }); // tail sentinel
    let lift = |list: &mut Vec<Entry>, j: usize| {
        for idx in [call_at[j], ret_at[j]] {
            let Entry { prev, next, .. } = list[idx];
            list[prev].next = next;
            list[next].prev = prev;
        }
    };
    let unlift = |list: &mut Vec<Entry>, j: usize| {
        for idx in [ret_at[j], call_at[j]] {
            let Entry { prev, next, .. } = list[idx];
            list[prev].next = idx;
            list[next].prev = idx;
        }
    };

    let mut state = model.init();
    let mut linearized = Bits::new(n);
    let mut seen: HashSet<(Bits, M::State)> = HashSet::new();
    // (operation linearized, state before it)
    let mut stack: Vec<(usize, M::State)> = Vec::new();
    let mut longest: Vec<usize> = Vec::new();
    let mut stuck: Vec<usize> = Vec::new();
    let mut cursor = list[HEAD].next;
    let mut steps = 0u64;
    while list[HEAD].next != end {
        steps += 1;
        if steps > budget {
            return KeyVerdict::OutOfBudget;
        }
        let e = list[cursor];
        if e.call {
            let op = &history[ops[e.op]];
            if let Some(next_state) = model.step(&state, &op.input, &op.output) {
                let mut with = linearized.clone();
                with.set(e.op);
                if seen.insert((with.clone(), next_state.clone())) {
                    stack.push((e.op, std::mem::replace(&mut state, next_state)));
                    linearized = with;
                    lift(&mut list, e.op);
                    cursor = list[HEAD].next;
                    continue;
                }
            }
            cursor = e.next;
        } else {
            // A completion whose operation is not linearized: it must have taken effect
            // earlier. Undo the last choice and try the next candidate after it.
            if stack.len() >= longest.len() {
                longest = stack.iter().map(|&(j, _)| ops[j]).collect();
                stuck = pending_completions(&list, HEAD, end, ops);
            }
            let Some((j, before)) = stack.pop() else {
                return KeyVerdict::Stuck { longest_prefix: longest, stuck_at: stuck };
            };
            state = before;
            linearized.clear(j);
            unlift(&mut list, j);
            cursor = list[call_at[j]].next;
        }
    }
    KeyVerdict::Ok
}

/// The operations whose completions come before any remaining invocation (the ones that were
/// due and could not be placed), as history indices.
fn pending_completions(list: &[Entry], head: usize, end: usize, ops: &[usize]) -> Vec<usize> {
    let mut out = Vec::new();
    let mut at = list[head].next;
    while at != end {
        let e = list[at];
        if !e.call {
            out.push(ops[e.op]);
        } else if !out.is_empty() {
            break;
        }
        at = e.next;
    }
    out
}

/// An operation on a [`Register`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegisterInput<V> {
    /// Read the value.
    Read,
    /// Set the value (`None` deletes it).
    Write(Option<V>),
    /// Set `new` if the value is `expected`.
    Cas {
        /// The value the client expects.
        expected: Option<V>,
        /// The value to set if so.
        new: Option<V>,
    },
}

/// What an operation on a [`Register`] returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegisterOutput<V> {
    /// A read saw this value.
    Read(Option<V>),
    /// A write was acknowledged.
    Written,
    /// A compare-and-set succeeded (`true`) or found another value (`false`).
    Cas(bool),
    /// No answer (timeout, error after sending): the operation may or may not have happened.
    Unknown,
}

/// A register holding an optional value: reads, writes and compare-and-set — the model of a
/// single Redis string key under `GET`, `SET`, `DEL` and a check-and-set transaction.
#[derive(Debug, Clone, Copy, Default)]
pub struct Register<V>(std::marker::PhantomData<V>);

impl<V> Register<V> {
    /// The model.
    pub fn new() -> Self {
        Register(std::marker::PhantomData)
    }
}

impl<V: Clone + Eq + Hash + Debug> Model for Register<V> {
    type State = Option<V>;
    type Input = RegisterInput<V>;
    type Output = RegisterOutput<V>;

    fn init(&self) -> Option<V> {
        None
    }

    fn step(
        &self,
        state: &Option<V>,
        input: &RegisterInput<V>,
        output: &RegisterOutput<V>,
    ) -> Option<Option<V>> {
        match (input, output) {
            (RegisterInput::Read, RegisterOutput::Read(v)) => (v == state).then(|| state.clone()),
            (RegisterInput::Read, RegisterOutput::Unknown) => Some(state.clone()),
            (RegisterInput::Write(v), RegisterOutput::Written | RegisterOutput::Unknown) => {
                Some(v.clone())
            }
            (RegisterInput::Cas { expected, new }, RegisterOutput::Cas(true)) => {
                (expected == state).then(|| new.clone())
            }
            (RegisterInput::Cas { expected, .. }, RegisterOutput::Cas(false)) => {
                (expected != state).then(|| state.clone())
            }
            (RegisterInput::Cas { expected, new }, RegisterOutput::Unknown) => {
                Some(if expected == state { new.clone() } else { state.clone() })
            }
            _ => None, // an output that does not fit the input
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Op = Operation<&'static str, RegisterInput<u32>, RegisterOutput<u32>>;

    fn op(
        client: u64,
        call: u64,
        ret: u64,
        input: RegisterInput<u32>,
        output: RegisterOutput<u32>,
    ) -> Op {
        Operation { client, key: "k", call, ret, input, output }
    }
    fn w(c: u64, call: u64, ret: u64, v: u32) -> Op {
        op(c, call, ret, RegisterInput::Write(Some(v)), RegisterOutput::Written)
    }
    fn r(c: u64, call: u64, ret: u64, v: Option<u32>) -> Op {
        op(c, call, ret, RegisterInput::Read, RegisterOutput::Read(v))
    }

    fn verdict(h: &[Op]) -> Verdict<&'static str> {
        check(&Register::<u32>::new(), h)
    }

    #[test]
    fn sequential_and_concurrent_histories() {
        assert_eq!(verdict(&[]), Verdict::Linearizable);
        assert_eq!(verdict(&[w(0, 0, 1, 1), r(1, 2, 3, Some(1))]), Verdict::Linearizable);
        // A read overlapping a write may see either value.
        assert_eq!(verdict(&[w(0, 0, 10, 1), r(1, 2, 3, None)]), Verdict::Linearizable);
        assert_eq!(verdict(&[w(0, 0, 10, 1), r(1, 2, 3, Some(1))]), Verdict::Linearizable);
        // Two overlapping writes, then reads agreeing on the later one in either order.
        let h = [w(0, 0, 10, 1), w(1, 0, 10, 2), r(2, 11, 12, Some(1)), r(2, 13, 14, Some(1))];
        assert_eq!(verdict(&h), Verdict::Linearizable);
    }

    #[test]
    fn stale_reads_are_caught() {
        // The write completed before the read began, yet the read saw the old value.
        let h = [w(0, 0, 1, 1), r(1, 2, 3, None)];
        let Verdict::NotLinearizable(c) = verdict(&h) else { panic!("missed a stale read") };
        assert_eq!(c.key, "k");
        assert_eq!(c.stuck_at, vec![1]);
        // Reads going back in time: 2 then 1, with the write of 2 after that of 1.
        let h = [w(0, 0, 1, 1), w(0, 2, 3, 2), r(1, 0, 10, Some(2)), r(1, 11, 12, Some(1))];
        assert!(matches!(verdict(&h), Verdict::NotLinearizable(_)));
        // A value nobody wrote.
        assert!(matches!(verdict(&[r(0, 0, 1, Some(7))]), Verdict::NotLinearizable(_)));
    }

    #[test]
    fn reads_must_agree_on_one_order_of_concurrent_writes() {
        // Writes of 1 and 2 overlap; one reader sees 1 then 2, the other 2 then 1, after both
        // writes completed: no single order explains both.
        let h = [
            w(0, 0, 5, 1),
            w(1, 0, 5, 2),
            r(2, 6, 7, Some(1)),
            r(3, 6, 7, Some(2)),
            r(2, 8, 9, Some(2)),
            r(3, 8, 9, Some(1)),
        ];
        assert!(matches!(verdict(&h), Verdict::NotLinearizable(_)));
    }

    #[test]
    fn pending_operations_may_take_effect_later_or_never() {
        let lost = op(0, 0, PENDING, RegisterInput::Write(Some(5)), RegisterOutput::Unknown);
        // Never happened ...
        assert_eq!(verdict(&[lost.clone(), r(1, 10, 11, None)]), Verdict::Linearizable);
        // ... or happened long after its client gave up.
        assert_eq!(
            verdict(&[lost.clone(), r(1, 10, 11, None), r(1, 20, 21, Some(5))]),
            Verdict::Linearizable
        );
        // But not before it was invoked.
        let late = op(0, 10, PENDING, RegisterInput::Write(Some(5)), RegisterOutput::Unknown);
        assert!(matches!(verdict(&[r(1, 0, 1, Some(5)), late]), Verdict::NotLinearizable(_)));
    }

    #[test]
    fn compare_and_set() {
        let cas = |c, call, ret, e: Option<u32>, n: u32, ok| {
            op(
                c,
                call,
                ret,
                RegisterInput::Cas { expected: e, new: Some(n) },
                RegisterOutput::Cas(ok),
            )
        };
        // Two clients race a CAS from empty: exactly one may win.
        assert_eq!(
            verdict(&[cas(0, 0, 5, None, 1, true), cas(1, 0, 5, None, 2, false)]),
            Verdict::Linearizable
        );
        assert!(matches!(
            verdict(&[cas(0, 0, 5, None, 1, true), cas(1, 0, 5, None, 2, true)]),
            Verdict::NotLinearizable(_)
        ));
    }

    #[test]
    fn keys_are_checked_independently() {
        let mut h = vec![w(0, 0, 1, 1), r(1, 2, 3, Some(1))];
        h.push(Operation { key: "other", ..r(2, 0, 1, Some(9)) });
        let Verdict::NotLinearizable(c) = verdict(&h) else { panic!() };
        assert_eq!(c.key, "other");
        assert_eq!(c.stuck_at, vec![2]);
    }

    #[test]
    fn many_concurrent_clients_finish_quickly_and_a_budget_is_honoured() {
        // 8 clients, 250 rounds each of write-then-read of their own value, all overlapping
        // within a round: linearizable, and the memo keeps it fast.
        let mut h = Vec::new();
        let mut t = 0;
        for round in 0..250u32 {
            for c in 0..8u64 {
                h.push(w(c, t, t + 20, round * 8 + c as u32));
            }
            // Every reader sees the value of the write the search may place last: client 7's.
            for c in 0..8u64 {
                h.push(r(c, t + 21, t + 30, Some(round * 8 + 7)));
            }
            t += 40;
        }
        assert_eq!(verdict(&h), Verdict::Linearizable);
        assert_eq!(
            check_with_budget(&Register::<u32>::new(), &h, 10),
            Verdict::Unknown { key: "k" }
        );
    }

    /// A tiny deterministic generator (tests only).
    struct Lcg(u64);
    impl Lcg {
        fn below(&mut self, n: u64) -> u64 {
            self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (self.0 >> 33) % n
        }
    }

    /// Linearizability by brute force: some order of all operations that respects real time
    /// (a before b when a completed before b was invoked) and the model.
    fn brute_force(h: &[Op]) -> bool {
        fn go(h: &[Op], used: &mut Vec<bool>, state: Option<u32>) -> bool {
            if used.iter().all(|&u| u) {
                return true;
            }
            for i in 0..h.len() {
                if used[i] {
                    continue;
                }
                // i may go next only if no unused op completed before i was invoked.
                let blocked = (0..h.len()).any(|j| !used[j] && j != i && h[j].ret < h[i].call);
                if blocked {
                    continue;
                }
                if let Some(next) = Register::<u32>::new().step(&state, &h[i].input, &h[i].output) {
                    used[i] = true;
                    if go(h, used, next) {
                        return true;
                    }
                    used[i] = false;
                }
            }
            false
        }
        go(h, &mut vec![false; h.len()], None)
    }

    #[test]
    fn agrees_with_brute_force_on_random_small_histories() {
        let mut rng = Lcg(7);
        let (mut yes, mut no) = (0, 0);
        for _ in 0..3000 {
            let n = 1 + rng.below(6) as usize;
            let h: Vec<Op> = (0..n)
                .map(|i| {
                    let call = rng.below(10);
                    let ret = if rng.below(8) == 0 { PENDING } else { call + rng.below(6) };
                    let v = 1 + rng.below(3) as u32;
                    match rng.below(3) {
                        0 if ret == PENDING => op(
                            i as u64,
                            call,
                            ret,
                            RegisterInput::Write(Some(v)),
                            RegisterOutput::Unknown,
                        ),
                        0 => w(i as u64, call, ret, v),
                        1 => r(i as u64, call, ret, if rng.below(4) == 0 { None } else { Some(v) }),
                        _ => op(
                            i as u64,
                            call,
                            ret,
                            RegisterInput::Cas { expected: Some(v), new: Some(v % 3 + 1) },
                            if ret == PENDING {
                                RegisterOutput::Unknown
                            } else {
                                RegisterOutput::Cas(rng.below(2) == 0)
                            },
                        ),
                    }
                })
                .collect();
            let want = brute_force(&h);
            let got = verdict(&h) == Verdict::Linearizable;
            assert_eq!(got, want, "{h:#?}");
            if want {
                yes += 1
            } else {
                no += 1
            }
        }
        assert!(yes > 300 && no > 300, "both kinds exercised: {yes} linearizable, {no} not");
    }
}
