//! World (a): the heartbeat protocol as three OS processes talking TCP on 127.0.0.1.

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// One `heartbeat-node` process; killed and reaped by PID when dropped.
struct Node {
    child: Child,
    stdin: Option<ChildStdin>,
    addr: SocketAddr,
    node: selfman_core::NodeAddr,
    lines: mpsc::Receiver<String>,
}

impl Node {
    fn start() -> Node {
        let mut child = Command::new(env!("CARGO_BIN_EXE_heartbeat-node"))
            .args(["--period-ms", "50", "--timeout-ms", "1000"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn heartbeat-node");
        let stdin = child.stdin.take();
        let out = BufReader::new(child.stdout.take().unwrap());
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for l in out.lines().map_while(Result::ok) {
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        let ready = lines.recv_timeout(Duration::from_secs(20)).expect("node did not start");
        let addr = ready.strip_prefix("ready ").expect(&ready);
        let node = addr.parse::<selfman_core::NodeAddr>().unwrap();
        Node { child, stdin, addr: node.addr, node, lines }
    }

    fn tell_peers(&mut self, peers: &[selfman_core::NodeAddr]) {
        let list: Vec<String> = peers.iter().map(|p| p.to_string()).collect();
        let stdin = self.stdin.as_mut().unwrap();
        writeln!(stdin, "peers {}", list.join(",")).unwrap();
        stdin.flush().unwrap();
        let l = self.lines.recv_timeout(Duration::from_secs(20)).expect("no `started`");
        assert_eq!(l, "started");
    }

    /// Waits until the node prints `line`; returns what it printed meanwhile.
    fn wait_for(&self, line: &str, timeout: Duration) -> Result<Vec<String>, Vec<String>> {
        let deadline = Instant::now() + timeout;
        let mut seen = Vec::new();
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(l) if l == line => return Ok(seen),
                Ok(l) => seen.push(l),
                Err(_) => break,
            }
        }
        Err(seen)
    }

    fn drain(&self) -> Vec<String> {
        self.lines.try_iter().collect()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        drop(self.stdin.take()); // the node exits when its stdin closes
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
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
    let mut early: Vec<Vec<String>> = nodes.iter().map(|n| n.drain()).collect();
    // Kill the third process outright (SIGKILL: no goodbye on the sockets).
    let mut victim = nodes.pop().unwrap();
    victim.child.kill().unwrap();
    victim.child.wait().unwrap();
    let dead = victim.addr;
    for (i, n) in nodes.iter().enumerate() {
        match n.wait_for(&format!("suspect {dead}"), Duration::from_secs(20)) {
            Ok(seen) => early[i].extend(seen),
            Err(seen) => {
                panic!("node {} never suspected the killed node; printed {seen:?}", n.addr)
            }
        }
    }
    // The two survivors do not (still) suspect each other.
    for (i, n) in nodes.iter().enumerate() {
        early[i].extend(n.drain());
        let other = nodes[1 - i].addr;
        assert!(!suspects(&early[i], other), "{} suspects live {other}: {:?}", n.addr, early[i]);
    }
}
