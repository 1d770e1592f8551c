//! Support of the process tests: a local cluster of `selfman node` processes (every one
//! stopped and reaped by PID through `selfman-launch`, also when a test fails) and a small
//! RESP2 client.

#![allow(dead_code, unreachable_pub)]

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use selfman_launch::{Cluster, Program, Stderr};

/// How long a node may take to print its readiness line.
pub const READY: Duration = Duration::from_secs(60);

/// The `selfman` program built for this test run.
pub fn selfman() -> Program {
    Program::new(env!("CARGO_BIN_EXE_selfman")).stderr(Stderr::Capture)
}

/// A running node: where it serves Redis and its ring.
#[derive(Debug, Clone, Copy)]
pub struct NodeInfo {
    pub redis: SocketAddr,
    pub ring: SocketAddr,
    pub pid: u32,
}

/// Parses `ready <redis> ring <ring> pid <pid>`'s text after `ready `.
pub fn parse_ready(text: &str) -> NodeInfo {
    let w: Vec<&str> = text.split_whitespace().collect();
    assert!(w.len() == 5 && w[1] == "ring" && w[3] == "pid", "a readiness line: {text:?}");
    NodeInfo {
        redis: w[0].parse().expect("a redis address"),
        ring: w[2].parse().expect("a ring address"),
        pid: w[4].parse().expect("a pid"),
    }
}

/// A local store cluster of node processes on ephemeral ports.
pub struct StoreCluster {
    pub procs: Cluster,
    pub nodes: Vec<NodeInfo>,
    pub replicas: u32,
    /// Further arguments of every node.
    pub extra: Vec<String>,
}

impl StoreCluster {
    /// Starts `n` nodes with `f` replicas, one after the other, each joining through node 0.
    pub fn start(n: u32, f: u32) -> StoreCluster {
        StoreCluster::start_with(n, f, &[])
    }

    /// As [`StoreCluster::start`], every node with the further arguments `extra`.
    pub fn start_with(n: u32, f: u32, extra: &[&str]) -> StoreCluster {
        let extra = extra.iter().map(|s| (*s).to_owned()).collect();
        let mut c = StoreCluster { procs: Cluster::new(), nodes: Vec::new(), replicas: f, extra };
        for _ in 0..n {
            c.add();
        }
        c
    }

    /// Starts one more node, as host `len()`, and waits until it serves.
    pub fn add(&mut self) -> NodeInfo {
        let i = self.procs.len() as u32;
        let position = if i < self.replicas { 0 } else { 1 + i };
        let mut p = selfman()
            .args([
                "node",
                "--exit-on-stdin-eof",
                "--listen",
                "127.0.0.1:0",
                "--redis",
                "127.0.0.1:0",
            ])
            .args(["--host-id", &i.to_string(), "--replicas", &self.replicas.to_string()])
            .args(["--position", &position.to_string()])
            .args(&self.extra);
        if let Some(first) = self.nodes.first() {
            p = p.arg("--join").arg(first.ring.to_string());
        }
        let index = self.procs.spawn(&p).expect("start a node");
        let member = self.procs.iter_mut().nth(index).expect("the member just started");
        let info = parse_ready(&member.wait_ready(READY).expect("the node serves"));
        assert_eq!(info.pid, member.pid(), "the node prints its own pid");
        self.nodes.push(info);
        info
    }

    /// A client of node `i`.
    pub fn client(&self, i: usize) -> Client {
        Client::connect(self.nodes[i % self.nodes.len()].redis)
    }
}

impl Drop for StoreCluster {
    fn drop(&mut self) {
        let _ = self.procs.stop_all(Duration::from_secs(20));
    }
}

/// A RESP2 reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum V {
    Simple(String),
    Err(String),
    Int(i64),
    Bulk(Option<Vec<u8>>),
    Array(Option<Vec<V>>),
}

impl V {
    pub fn bulk(s: &str) -> V {
        V::Bulk(Some(s.as_bytes().to_vec()))
    }

    pub fn ok() -> V {
        V::Simple("OK".into())
    }

    /// The integer in an integer reply or a bulk string.
    pub fn int(&self) -> i64 {
        match self {
            V::Int(n) => *n,
            V::Bulk(Some(b)) => std::str::from_utf8(b).unwrap().parse().unwrap(),
            other => panic!("not an integer: {other:?}"),
        }
    }
}

/// A blocking RESP2 client.
pub struct Client {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Client {
    pub fn connect(addr: SocketAddr) -> Client {
        let s = TcpStream::connect(addr).expect("connect to the node");
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        Client { reader: BufReader::new(s.try_clone().unwrap()), writer: s }
    }

    /// Turns Nagle's algorithm off: each request leaves at once, even while an earlier one is
    /// not acknowledged yet (else a request sent right after another waits for its reply).
    pub fn no_delay(&mut self) {
        self.writer.set_nodelay(true).expect("set TCP_NODELAY");
    }

    /// Sends `args` as one multibulk request.
    pub fn send(&mut self, args: &[&[u8]]) {
        let mut out = format!("*{}\r\n", args.len()).into_bytes();
        for a in args {
            out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            out.extend_from_slice(a);
            out.extend_from_slice(b"\r\n");
        }
        self.writer.write_all(&out).expect("send a request");
    }

    /// Reads one reply.
    pub fn read(&mut self) -> V {
        let mut line = Vec::new();
        self.reader.read_until(b'\n', &mut line).expect("read a reply");
        self.parse_line(line)
    }

    fn parse_line(&mut self, line: Vec<u8>) -> V {
        assert!(line.ends_with(b"\r\n"), "a reply line: {line:?}");
        let body = String::from_utf8_lossy(&line[1..line.len() - 2]).into_owned();
        match line[0] {
            b'+' => V::Simple(body),
            b'-' => V::Err(body),
            b':' => V::Int(body.parse().unwrap()),
            b'$' => {
                let n: i64 = body.parse().unwrap();
                if n < 0 {
                    return V::Bulk(None);
                }
                let mut buf = vec![0; n as usize + 2];
                std::io::Read::read_exact(&mut self.reader, &mut buf).unwrap();
                buf.truncate(n as usize);
                V::Bulk(Some(buf))
            }
            b'*' => {
                let n: i64 = body.parse().unwrap();
                if n < 0 {
                    return V::Array(None);
                }
                V::Array(Some((0..n).map(|_| self.read()).collect()))
            }
            other => panic!("unknown reply type {other:?} in {line:?}"),
        }
    }

    /// As [`Client::cmd`], with I/O errors (a killed node) returned instead of panicking.
    pub fn try_cmd(&mut self, line: &str) -> std::io::Result<V> {
        let args: Vec<&[u8]> = line.split_whitespace().map(str::as_bytes).collect();
        let mut out = format!("*{}\r\n", args.len()).into_bytes();
        for a in &args {
            out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            out.extend_from_slice(a);
            out.extend_from_slice(b"\r\n");
        }
        self.writer.write_all(&out)?;
        let mut peek = Vec::new();
        self.reader.read_until(b'\n', &mut peek)?;
        if peek.is_empty() {
            return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "closed"));
        }
        Ok(self.parse_line(peek))
    }

    /// Sends a command written as words and reads its reply.
    pub fn cmd(&mut self, line: &str) -> V {
        let args: Vec<&[u8]> = line.split_whitespace().map(str::as_bytes).collect();
        self.send(&args);
        self.read()
    }
}
