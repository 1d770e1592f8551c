//! World (a): the heartbeat protocol as three OS processes talking TCP on 127.0.0.1.

use std::net::SocketAddr;
use std::time::Duration;

use selfman_launch::{Process, Program};

/// One `heartbeat-node` process; reaped by PID when dropped (`selfman_launch::Process`).
struct Node {
    proc: Process,
    addr: SocketAddr,
    node: selfman_core::NodeAddr,
}

impl Node {
    fn start() -> Node {
        let mut proc = Program::new(env!("CARGO_BIN_EXE_heartbeat-node"))
            .args(["--period-ms", "50", "--timeout-ms", "1000"])
            .grace(Duration::from_secs(5))
            .spawn()
            .unwrap_or_else(|e| panic!("{e}"));
        let ready = proc.wait_ready(Duration::from_secs(20)).unwrap_or_else(|e| panic!("{e}"));
        let node = ready.parse::<selfman_core::NodeAddr>().unwrap();
        Node { proc, addr: node.addr, node }
    }

    fn tell_peers(&mut self, peers: &[selfman_core::NodeAddr]) {
        let list: Vec<String> = peers.iter().map(|p| p.to_string()).collect();
        self.proc.send_line(&format!("peers {}", list.join(","))).unwrap();
        let l = self.proc.next_line(Duration::from_secs(20)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(l, "started");
    }

    /// Waits until the node prints `line`; returns what else it printed meanwhile.
    fn wait_for(&mut self, line: &str, timeout: Duration) -> Result<Vec<String>, String> {
        match self.proc.wait_for_line(|l| l == line, timeout) {
            Ok(_) => Ok(self.drain()),
            Err(e) => Err(format!("{e}; unread lines: {:?}", self.drain())),
        }
    }

    fn drain(&mut self) -> Vec<String> {
        self.proc.take_lines()
    }
}

/// Whether the last line a node printed about `peer` is a suspicion.
fn suspects(lines: &[String], peer: SocketAddr) -> bool {
    let s = format!("suspect {peer}");
    let r = format!("restore {peer}");
    lines.iter().rev().find(|l| **l == s || **l == r).is_some_and(|l| *l == s)
}

#[test]
fn three_processes_detect_a_killed_one_over_tcp() {
    let mut nodes: Vec<Node> = (0..3).map(|_| Node::start()).collect();
    let addrs: Vec<_> = nodes.iter().map(|n| n.node).collect();
    for (i, n) in nodes.iter_mut().enumerate() {
        let others: Vec<_> = addrs.iter().copied().filter(|&a| a != addrs[i]).collect();
        n.tell_peers(&others);
    }
    // Let them exchange beats for a while: nobody stays suspected.
    std::thread::sleep(Duration::from_millis(1500));
    let mut early: Vec<Vec<String>> = nodes.iter_mut().map(|n| n.drain()).collect();
    // Kill the third process outright (SIGKILL: no goodbye on the sockets).
    let mut victim = nodes.pop().unwrap();
    victim.proc.kill_9().unwrap();
    let dead = victim.addr;
    for (i, n) in nodes.iter_mut().enumerate() {
        match n.wait_for(&format!("suspect {dead}"), Duration::from_secs(20)) {
            Ok(seen) => early[i].extend(seen),
            Err(e) => panic!("node {} never suspected the killed node: {e}", n.addr),
        }
    }
    // The two survivors do not (still) suspect each other.
    let addrs: Vec<SocketAddr> = nodes.iter().map(|n| n.addr).collect();
    for (i, n) in nodes.iter_mut().enumerate() {
        early[i].extend(n.drain());
        let other = addrs[1 - i];
        assert!(!suspects(&early[i], other), "{} suspects live {other}: {:?}", n.addr, early[i]);
    }
}
