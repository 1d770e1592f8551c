//! The lines a ring node and its launcher exchange over the node's stdin and stdout (beside
//! `selfman-launch`'s `ready <node address>`): [`Command`]s in, [`NodeLine`]s out, one per
//! line, each with a `format` and a `parse` that round-trip.
//!
//! ```text
//! launcher → node                         node → launcher
//!   bootstrap                               started
//!   join ID@IP:PORT | join IP:PORT          view {RingView as JSON}         (on every change)
//!   lookup TAG KEY                          lookup TAG KEY {LookupOutcome as JSON}
//!   swap-fd period=MS initial=MS            swapped fd|ring MICROS
//!          increment=MS max=MS              swap-failed fd|ring WHY
//!   swap-ring k=K stabilize=MS              error WHY
//!            succ-list=N
//! ```
//!
//! `KEY` is a ring identifier in hex (16 digits, as [`RingId`] prints), `TAG` a decimal `u64`.
//!
//! Guarantees: [`Command::parse`] and [`NodeLine::parse`] never panic, refuse a line longer
//! than [`MAX_LINE`] and anything else that is not exactly one of the forms above, with an
//! error quoting (the start of) the line; a swap command is accepted only with a config that
//! passes its `validate`.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use selfman_core::{NodeAddr, NodeId};
use selfman_failure_detector::FdConfig;
use selfman_ports::{LookupOutcome, RingId, RingView};

/// The longest line either side accepts (`selfman-launch` cuts lines at 64 KiB too).
pub const MAX_LINE: usize = 64 * 1024;

/// A line that is not a valid command or node line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LineError {
    /// The start of the line (at most 120 characters).
    pub line: String,
    /// What is wrong with it.
    pub why: String,
}

impl fmt::Display for LineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "bad line `{}`: {}", self.line, self.why)
    }
}

impl std::error::Error for LineError {}

fn bad(line: &str, why: impl Into<String>) -> LineError {
    LineError { line: line.chars().take(120).collect(), why: why.into() }
}

/// How a ring node's ring is reconfigured by [`Command::SwapRing`]: these settings over the
/// ones it runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RingSettings {
    /// The finger table's arity.
    pub k: u32,
    /// The check-in period with the successor.
    pub stabilize: Duration,
    /// The successor list's length.
    pub succ_list_size: usize,
}

/// What the launcher tells a node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// Start a new ring.
    Bootstrap,
    /// Join the ring through this member.
    Join(NodeAddr),
    /// Look up `key`; the answer is a [`NodeLine::Lookup`] with the same tag.
    Lookup {
        /// The launcher's name for this lookup.
        tag: u64,
        /// The key.
        key: RingId,
    },
    /// Replace the failure detector live by one with this config, state transferred.
    SwapFd(FdConfig),
    /// Replace the ring live by one with these settings, state transferred.
    SwapRing(RingSettings),
}

impl Command {
    /// The command as one line (without newline).
    pub fn format(&self) -> String {
        match self {
            Command::Bootstrap => "bootstrap".to_owned(),
            Command::Join(a) => format!("join {a}"),
            Command::Lookup { tag, key } => format!("lookup {tag} {key}"),
            Command::SwapFd(c) => format!(
                "swap-fd period={} initial={} increment={} max={}",
                c.period.as_millis(),
                c.initial_timeout.as_millis(),
                c.increment.as_millis(),
                c.max_timeout.as_millis()
            ),
            Command::SwapRing(s) => format!(
                "swap-ring k={} stabilize={} succ-list={}",
                s.k,
                s.stabilize.as_millis(),
                s.succ_list_size
            ),
        }
    }

    /// Parses one line.
    ///
    /// # Errors
    ///
    /// A [`LineError`] for anything but one of the forms of the module documentation, or a
    /// swap to a config that does not validate.
    pub fn parse(line: &str) -> Result<Command, LineError> {
        if line.len() > MAX_LINE {
            return Err(bad(line, format!("longer than {MAX_LINE} bytes")));
        }
        let words: Vec<&str> = line.split(' ').collect();
        match words.as_slice() {
            ["bootstrap"] => Ok(Command::Bootstrap),
            ["join", access] => parse_access(access).map(Command::Join).map_err(|w| bad(line, w)),
            ["lookup", tag, key] => {
                let tag = tag.parse().map_err(|_| bad(line, "the tag is not a u64"))?;
                let key = parse_id(key).map_err(|w| bad(line, w))?;
                Ok(Command::Lookup { tag, key })
            }
            ["swap-fd", rest @ ..] => {
                let v = settings(rest, &["period", "initial", "increment", "max"])
                    .map_err(|w| bad(line, w))?;
                let ms = Duration::from_millis;
                let c = FdConfig {
                    period: ms(v[0]),
                    initial_timeout: ms(v[1]),
                    increment: ms(v[2]),
                    max_timeout: ms(v[3]),
                };
                c.validate().map_err(|e| bad(line, e.to_string()))?;
                Ok(Command::SwapFd(c))
            }
            ["swap-ring", rest @ ..] => {
                let v =
                    settings(rest, &["k", "stabilize", "succ-list"]).map_err(|w| bad(line, w))?;
                let k = u32::try_from(v[0]).map_err(|_| bad(line, "k is too large"))?;
                let succ_list_size =
                    usize::try_from(v[2]).map_err(|_| bad(line, "succ-list is too large"))?;
                let s = RingSettings { k, stabilize: Duration::from_millis(v[1]), succ_list_size };
                Ok(Command::SwapRing(s))
            }
            _ => Err(bad(line, "not a command")),
        }
    }
}

/// `ID@IP:PORT` (one incarnation) or `IP:PORT` (whichever runs there).
fn parse_access(s: &str) -> Result<NodeAddr, String> {
    if s.contains('@') {
        return s.parse::<NodeAddr>().map_err(|e| e.to_string());
    }
    let addr = s.parse().map_err(|_| format!("`{s}` is neither ID@IP:PORT nor IP:PORT"))?;
    Ok(NodeAddr::new(addr, NodeId::UNKNOWN))
}

/// A ring identifier: 1 to 16 hex digits.
fn parse_id(s: &str) -> Result<RingId, String> {
    if s.is_empty() || s.len() > 16 {
        return Err(format!("`{s}` is not a ring identifier (1 to 16 hex digits)"));
    }
    u64::from_str_radix(s, 16).map(RingId).map_err(|_| format!("`{s}` is not hex"))
}

/// `name=value` words, exactly `names` in that order, values decimal `u64`.
fn settings(words: &[&str], names: &[&str]) -> Result<Vec<u64>, String> {
    if words.len() != names.len() {
        return Err(format!("expected {}", names.join("=.. ") + "=.."));
    }
    words
        .iter()
        .zip(names)
        .map(|(w, name)| {
            let v = w
                .strip_prefix(name)
                .and_then(|r| r.strip_prefix('='))
                .ok_or_else(|| format!("expected `{name}=`, got `{w}`"))?;
            u64::from_str(v).map_err(|_| format!("{name}: `{v}` is not a number"))
        })
        .collect()
}

/// Which component a swap replaced.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Swapped {
    /// The failure detector.
    Fd,
    /// The ring.
    Ring,
}

impl Swapped {
    fn word(self) -> &'static str {
        match self {
            Swapped::Fd => "fd",
            Swapped::Ring => "ring",
        }
    }

    fn from_word(w: &str) -> Option<Swapped> {
        match w {
            "fd" => Some(Swapped::Fd),
            "ring" => Some(Swapped::Ring),
            _ => None,
        }
    }
}

/// What a node tells the launcher.
#[derive(Clone, Debug, PartialEq)]
pub enum NodeLine {
    /// The node's components run.
    Started,
    /// The ring's state changed; this is the new one.
    View(Box<RingView>),
    /// The answer to [`Command::Lookup`].
    Lookup {
        /// The launcher's tag.
        tag: u64,
        /// The key.
        key: RingId,
        /// The answer.
        outcome: LookupOutcome,
    },
    /// A swap requested by the launcher took effect, after this many microseconds.
    Swapped(Swapped, u64),
    /// A swap failed; the old component runs on.
    SwapFailed(Swapped, String),
    /// A command could not be carried out.
    Error(String),
}

impl NodeLine {
    /// The line (without newline).
    pub fn format(&self) -> String {
        let json = |r: serde_json::Result<String>| {
            r.expect("ring views and lookup outcomes are plain data that serialise to JSON")
        };
        match self {
            NodeLine::Started => "started".to_owned(),
            NodeLine::View(v) => format!("view {}", json(serde_json::to_string(v))),
            NodeLine::Lookup { tag, key, outcome } => {
                format!("lookup {tag} {key} {}", json(serde_json::to_string(outcome)))
            }
            NodeLine::Swapped(w, us) => format!("swapped {} {us}", w.word()),
            NodeLine::SwapFailed(w, why) => format!("swap-failed {} {}", w.word(), one_line(why)),
            NodeLine::Error(why) => format!("error {}", one_line(why)),
        }
    }

    /// Parses one line.
    ///
    /// # Errors
    ///
    /// A [`LineError`] for anything but one of the forms of the module documentation.
    pub fn parse(line: &str) -> Result<NodeLine, LineError> {
        if line.len() > MAX_LINE {
            return Err(bad(line, format!("longer than {MAX_LINE} bytes")));
        }
        let (word, rest) = line.split_once(' ').unwrap_or((line, ""));
        match word {
            "started" if rest.is_empty() => Ok(NodeLine::Started),
            "view" => serde_json::from_str(rest)
                .map(|v| NodeLine::View(Box::new(v)))
                .map_err(|e| bad(line, format!("not a ring view: {e}"))),
            "lookup" => {
                let mut parts = rest.splitn(3, ' ');
                let (Some(tag), Some(key), Some(outcome)) =
                    (parts.next(), parts.next(), parts.next())
                else {
                    return Err(bad(line, "expected `lookup TAG KEY OUTCOME`"));
                };
                let tag = tag.parse().map_err(|_| bad(line, "the tag is not a u64"))?;
                let key = parse_id(key).map_err(|w| bad(line, w))?;
                let outcome = serde_json::from_str(outcome)
                    .map_err(|e| bad(line, format!("not a lookup outcome: {e}")))?;
                Ok(NodeLine::Lookup { tag, key, outcome })
            }
            "swapped" => {
                let (w, us) = rest.split_once(' ').ok_or_else(|| bad(line, "expected 2 words"))?;
                let w = Swapped::from_word(w).ok_or_else(|| bad(line, "not fd or ring"))?;
                let us = us.parse().map_err(|_| bad(line, "not a number of microseconds"))?;
                Ok(NodeLine::Swapped(w, us))
            }
            "swap-failed" => {
                let (w, why) = rest.split_once(' ').unwrap_or((rest, ""));
                let w = Swapped::from_word(w).ok_or_else(|| bad(line, "not fd or ring"))?;
                Ok(NodeLine::SwapFailed(w, why.to_owned()))
            }
            "error" => Ok(NodeLine::Error(rest.to_owned())),
            _ => Err(bad(line, "not a node line")),
        }
    }
}

/// `s` with line breaks replaced, so that it stays one line.
fn one_line(s: &str) -> String {
    s.replace(['\n', '\r'], " ")
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use selfman_core::{NodeAddr, NodeId};
    use selfman_failure_detector::FdConfig;
    use selfman_ports::{LookupOutcome, Peer, Range, RingId, RingStatus, RingView, Unavailable};

    use super::{Command, NodeLine, RingSettings, Swapped, MAX_LINE};

    fn addr(i: u32) -> NodeAddr {
        NodeAddr::new(
            format!("127.0.0.1:{}", 4000 + i).parse().unwrap(),
            NodeId(0xabc + u64::from(i)),
        )
    }

    #[test]
    fn commands_round_trip() {
        let all = [
            Command::Bootstrap,
            Command::Join(addr(1)),
            Command::Join(NodeAddr::new(addr(2).addr, NodeId::UNKNOWN)),
            Command::Lookup { tag: 7, key: RingId(u64::MAX) },
            Command::Lookup { tag: 0, key: RingId(0) },
            Command::SwapFd(FdConfig::beernet()),
            Command::SwapRing(RingSettings {
                k: 2,
                stabilize: Duration::from_millis(500),
                succ_list_size: 5,
            }),
        ];
        for c in all {
            assert_eq!(Command::parse(&c.format()), Ok(c.clone()), "{}", c.format());
        }
        // A plain address joins whichever incarnation runs there.
        let Command::Join(a) = Command::parse("join 127.0.0.1:9").unwrap() else { panic!() };
        assert_eq!(a.id, NodeId::UNKNOWN);
    }

    #[test]
    fn bad_commands_are_refused_with_the_reason() {
        for (line, why) in [
            ("", "not a command"),
            ("bootstrap now", "not a command"),
            ("join", "not a command"),
            ("join nowhere", "neither"),
            ("lookup x 10", "tag"),
            ("lookup 1 12345678901234567", "1 to 16 hex digits"),
            ("lookup 1 zz", "not hex"),
            ("swap-fd period=100 initial=400 increment=200", "expected"),
            ("swap-fd period=0 initial=400 increment=200 max=2000", "period"),
            ("swap-fd initial=400 period=100 increment=200 max=2000", "expected `period=`"),
            ("swap-ring k=x stabilize=500 succ-list=5", "not a number"),
        ] {
            let e = Command::parse(line).unwrap_err();
            assert!(e.why.contains(why), "{line:?}: {e}");
        }
        let long = "lookup 1 ".to_owned() + &"0".repeat(MAX_LINE);
        assert!(Command::parse(&long).unwrap_err().why.contains("longer"));
    }

    #[test]
    fn node_lines_round_trip() {
        let me = Peer::new(RingId(42), addr(1));
        let other = Peer::new(RingId(7), addr(2));
        let view = RingView {
            me,
            status: RingStatus::InRing,
            range: Some(Range::new(RingId(7), RingId(42))),
            succ: Some(other),
            pred: Some(other),
            succ_list: vec![other],
            pred_list: vec![other],
            fingers: vec![other],
            crashed: vec![addr(3)],
        };
        let all = [
            NodeLine::Started,
            NodeLine::View(Box::new(view)),
            NodeLine::Lookup {
                tag: 3,
                key: RingId(9),
                outcome: LookupOutcome::Found { peer: other, hops: 2 },
            },
            NodeLine::Lookup {
                tag: 4,
                key: RingId(9),
                outcome: LookupOutcome::Unavailable(Unavailable::RangeUnavailable),
            },
            NodeLine::Swapped(Swapped::Ring, 135),
            NodeLine::SwapFailed(Swapped::Fd, "destroyed".into()),
            NodeLine::Error("bad line".into()),
        ];
        for l in all {
            assert_eq!(NodeLine::parse(&l.format()), Ok(l.clone()), "{}", l.format());
        }
        let multi = NodeLine::Error("two\nlines".into()).format();
        assert!(!multi.contains('\n'));
    }

    #[test]
    fn bad_node_lines_are_refused() {
        for line in [
            "",
            "view {",
            "view",
            "lookup 1 2",
            "lookup 1 2 {}",
            "swapped disk 3",
            "swapped fd x",
            "hello",
        ] {
            assert!(NodeLine::parse(line).is_err(), "{line:?}");
        }
    }
}
