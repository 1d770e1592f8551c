//! Differential test against a real `redis-server` 7.0: the same connection-level commands,
//! malformed requests and argument errors are sent to it and to our session + reply encoder,
//! and the replies are compared byte for byte (and whether the connection was closed).
//!
//! Only cases whose every reply the front door gives by itself are compared: a case that
//! reaches the backend (an `Execute` or `Exec`) fails the test, because there is no data here
//! to answer it with. The reference servers run with one database (`--databases 1`, so that
//! `SELECT 1` is out of range as here), one without and one with a password.
//!
//! `redis-server` must be installed (Debian: `apt-get install -y redis-server redis-tools`,
//! which `.ci/run` does when it is missing). Without it the test fails, saying so: it never
//! skips. Every server started is killed and reaped by its PID, also when the test fails.

use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use selfman_store::resp::{Limits, RequestDecoder};
use selfman_store::session::{ReplyQueue, Request, Session, SessionConfig};

const PASSWORD: &str = "sekret";

/// A `redis-server` process, killed and reaped by PID when dropped.
struct Server {
    child: Child,
    port: u16,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The installed server's version, or a failure that says how to install it.
fn redis_version() -> String {
    let out = Command::new("redis-server").arg("--version").output().unwrap_or_else(|e| {
        panic!(
            "the differential test needs redis-server 7.0 ({e}); install it with \
             `apt-get install -y redis-server redis-tools` (.ci/run does this when it is missing)"
        )
    });
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let version = text
        .split_whitespace()
        .find_map(|w| w.strip_prefix("v="))
        .unwrap_or_else(|| panic!("cannot read redis-server's version from {text:?}"))
        .to_owned();
    assert!(
        version.starts_with("7.0."),
        "the differential test compares against Redis 7.0's texts; found redis-server {version}"
    );
    version
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    listener.local_addr().expect("a bound address").port()
}

fn start(password: Option<&str>) -> Server {
    let port = free_port();
    let mut cmd = Command::new("redis-server");
    cmd.args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly"])
        .args(["no", "--databases", "1", "--daemonize", "no", "--protected-mode", "no"])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if let Some(p) = password {
        cmd.args(["--requirepass", p]);
    }
    let child = cmd.spawn().expect("start redis-server");
    let server = Server { child, port };
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "redis-server did not listen on {port} within 10 s");
        std::thread::sleep(Duration::from_millis(20));
    }
    server
}

/// Reads until `want` bytes have come and nothing more comes for a moment, the peer closes,
/// or a deadline passes. Returns the bytes and whether the peer closed.
fn read_reply(stream: &mut TcpStream, want: usize) -> (Vec<u8>, bool) {
    let mut got = Vec::new();
    let mut buf = [0u8; 65536];
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let quiet = if got.len() >= want { 60 } else { 500 };
        stream.set_read_timeout(Some(Duration::from_millis(quiet))).expect("set a timeout");
        match stream.read(&mut buf) {
            Ok(0) => return (got, true),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                if got.len() >= want || Instant::now() > deadline {
                    return (got, false);
                }
            }
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return (got, true),
            Err(e) => panic!("reading from redis-server: {e}"),
        }
    }
}

/// A connection to `server` with its client id learnt (and, with a password, left
/// unauthenticated again by RESET, which keeps the id).
fn connect(server: &Server, password: bool) -> (TcpStream, u64) {
    let mut stream = TcpStream::connect(("127.0.0.1", server.port)).expect("connect");
    let prefix = if password {
        format!("AUTH {PASSWORD}\r\nCLIENT ID\r\nRESET\r\n")
    } else {
        "CLIENT ID\r\n".to_owned()
    };
    stream.write_all(prefix.as_bytes()).expect("write");
    let mut got = Vec::new();
    let end: &[u8] = if password { b"+RESET\r\n" } else { b"\r\n" };
    let mut byte = [0u8; 1];
    while !(got.ends_with(end) && got.contains(&b':')) {
        stream.read_exact(&mut byte).expect("read the client id");
        got.push(byte[0]);
    }
    let text = String::from_utf8_lossy(&got);
    let id = text
        .lines()
        .find_map(|l| l.strip_prefix(':'))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no client id in {text:?}"));
    (stream, id)
}

/// Our answer to `input`: the bytes written and whether the connection closes.
fn ours(input: &[u8], id: u64, password: bool, version: &str) -> Result<(Vec<u8>, bool), String> {
    let mut config = SessionConfig::new(id);
    config.server_name = "redis".to_owned();
    config.server_version = version.to_owned();
    if password {
        config.password = Some(PASSWORD.as_bytes().to_vec());
    }
    let mut session = Session::new(config);
    let mut decoder = RequestDecoder::new(Limits::default());
    let mut queue = ReplyQueue::new();
    let mut actions = Vec::new();
    session.receive(&mut decoder, input, &mut actions);
    for action in actions {
        if let Some(Request::Execute { .. } | Request::Exec { .. }) = queue.issue(action) {
            return Err("the case reaches the backend; compare only front-door cases".to_owned());
        }
    }
    Ok((queue.take_output(), queue.is_closed()))
}

/// A command as clients send it.
fn mb(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Several commands, each written as space-separated arguments.
fn lines(cmds: &[&str]) -> Vec<u8> {
    cmds.iter().flat_map(|c| mb(&c.split(' ').map(str::as_bytes).collect::<Vec<_>>())).collect()
}

/// Cases for the server without a password: (name, bytes).
fn open_cases() -> Vec<(String, Vec<u8>)> {
    let mut cases: Vec<(String, Vec<u8>)> = Vec::new();
    let mut add = |name: &str, bytes: Vec<u8>| cases.push((name.to_owned(), bytes));
    // One wrong arity per command and subcommand of the table, generated from it: one
    // argument too many for an exact arity, one too few for a minimum (where that still names
    // the command).
    for spec in selfman_store::command::COMMANDS {
        for s in std::iter::once(spec).chain(spec.subcommands) {
            let mut args: Vec<&[u8]> = s.name.split('|').map(str::as_bytes).collect();
            let need = s.arity.unsigned_abs() as usize;
            let argc = if s.arity > 0 { need + 1 } else { need - 1 };
            if argc < args.len().max(1) {
                continue; // any count that names the command is accepted
            }
            args.resize(argc, b"x");
            add(&format!("arity of {}", s.name), mb(&args));
        }
    }
    for (name, cmds) in [
        ("unknown", &["FOO a b", "foo", "nosuchcommand k f v"][..]),
        ("set syntax", &["SET k v NX XX", "SET k v FOO", "SET k v EX", "SET k v KEEPTTL EX 1"]),
        ("integers", &["INCRBY k x", "INCRBY k 01", "INCRBY k +1", "INCRBY k 1.5", "DECRBY k x"]),
        ("decrby min", &["DECRBY k -9223372036854775808"]),
        ("scan", &["SCAN x", "SCAN 0 COUNT", "SCAN 0 COUNT 0", "SCAN 0 COUNT x", "SCAN 0 FOO x"]),
        ("scan cursor", &["SCAN 18446744073709551616", "SCAN -", "SCAN 1x"]),
        ("flush", &["FLUSHALL x", "FLUSHDB async x", "FLUSHALL ASYNC SYNC"]),
        ("mset odd", &["MSET a b c"]),
        ("select", &["SELECT 0", "SELECT 1", "SELECT -1", "SELECT x", "SELECT 00"]),
        ("ping echo", &["PING", "PING x", "ECHO e", "ping a b", "echo "]),
        ("hello errors", &["HELLO x", "HELLO 4", "HELLO 1", "HELLO -1", "HELLO 03"]),
        ("hello options", &["HELLO 2 AUTH a", "HELLO 2 FOO", "HELLO 2 SETNAME", "HELLO 3 setname"]),
        ("hello", &["HELLO"]),
        ("hello 3", &["HELLO 3", "PING", "HELLO 2", "PING"]),
        ("hello setname", &["HELLO 3 SETNAME a SETNAME b", "CLIENT GETNAME"]),
        ("hello auth", &["HELLO 3 auth default anything", "CLIENT GETNAME"]),
        ("auth", &["AUTH x", "AUTH default x", "AUTH bob x", "AUTH a b c"]),
        (
            "client name",
            &[
                "CLIENT GETNAME",
                "CLIENT SETNAME x",
                "CLIENT GETNAME",
                "CLIENT SETNAME ",
                "CLIENT GETNAME",
            ],
        ),
        ("client", &["CLIENT ID", "CLIENT FOO", "client setname x y"]),
        ("config", &["CONFIG FOO", "CONFIG REWRITEX"]),
        ("command", &["COMMAND FOO"]),
        ("multi nested", &["MULTI", "MULTI", "EXEC"]),
        ("multi watch", &["MULTI", "WATCH k", "EXEC"]),
        ("without multi", &["EXEC", "DISCARD"]),
        ("multi arity", &["MULTI", "GET", "PING", "EXEC"]),
        ("multi unknown", &["MULTI", "FOO", "EXEC"]),
        (
            "multi known",
            &["MULTI", "SET k v NX XX", "INCRBY k x", "PING", "ECHO e", "SELECT 1", "EXEC"],
        ),
        ("multi exec x", &["MULTI", "EXEC x", "EXEC"]),
        ("multi discard x", &["MULTI", "PING", "DISCARD x", "EXEC"]),
        ("multi discard", &["MULTI", "DISCARD", "DISCARD"]),
        ("multi reset", &["MULTI", "RESET", "EXEC"]),
        ("multi quit", &["MULTI", "QUIT", "PING"]),
        ("multi client", &["MULTI", "CLIENT ID", "CLIENT GETNAME", "EXEC"]),
        ("watch", &["WATCH k", "UNWATCH"]),
        ("quit", &["QUIT x", "PING"]),
        (
            "pubsub",
            &[
                "SUBSCRIBE a",
                "GET k",
                "PING",
                "PING x",
                "EXEC",
                "MULTI",
                "ECHO x",
                "FOO",
                "GET",
                "UNSUBSCRIBE a",
                "PING",
            ],
        ),
        (
            "pubsub counts",
            &[
                "SUBSCRIBE a",
                "PSUBSCRIBE p*",
                "UNSUBSCRIBE",
                "UNSUBSCRIBE",
                "PUNSUBSCRIBE",
                "PUNSUBSCRIBE",
            ],
        ),
        ("pubsub repeat", &["SUBSCRIBE a a", "RESET", "PING"]),
        ("unsubscribe nothing", &["UNSUBSCRIBE", "PUNSUBSCRIBE x", "UNSUBSCRIBE a"]),
        ("pubsub resp3", &["HELLO 3", "SUBSCRIBE a", "PING", "UNSUBSCRIBE a b", "RESET", "PING"]),
        ("pubsub quit", &["SUBSCRIBE a", "QUIT"]),
    ] {
        add(name, lines(cmds));
    }
    add("command info get", mb(&[b"COMMAND", b"INFO", b"get", b"nope"]));
    let a = [b'a'; 100];
    add("unknown, long arguments", mb(&[b"FOO", &a, &a, &a]));
    add("unknown, long name", mb(&[&[b'X'; 200]]));
    add("unknown, line breaks", mb(&[b"FOO", b"a\r\nb"]));
    add("unknown, NUL", mb(&[b"FOO", b"a\0b", b"c"]));
    add("unknown subcommand, NUL", mb(&[b"CLIENT", b"k\0ill"]));
    add("unknown, binary", mb(&[b"\xff\xfe", b"\xc3"]));
    add("inline", b"PING\r\nPING   hello\r\necho 'it\\'s' \r\n".to_vec());
    add("inline quotes", b"ECHO \"a\\x41\\n\"\r\nECHO \"open\r\n".to_vec());
    add("protocol: $", b"PING\r\n*1\r\n+x\r\nPING\r\n".to_vec());
    add("protocol: count", b"*x\r\n".to_vec());
    add("protocol: bulk length", b"*1\r\n$-1\r\n".to_vec());
    add("protocol: bulk length text", b"*2\r\n$3\r\nGET\r\n$1x\r\n".to_vec());
    // Not compared: `*1048577`. Redis 7.0 accepts counts up to 2^31 - 1 and waits for the
    // arguments; the decoder refuses more than `Limits::max_args` (1,048,576) at once, a
    // deliberate bound (docs/store.md).
    add("empty requests", b"\r\n*0\r\n*-1\r\nPING\r\n".to_vec());
    cases
}

/// Cases for the server with a password.
fn password_cases() -> Vec<(String, Vec<u8>)> {
    let mut cases: Vec<(String, Vec<u8>)> = Vec::new();
    for (name, cmds) in [
        (
            "noauth",
            &["PING", "GET k", "MULTI", "CLIENT ID", "SUBSCRIBE a", "SELECT 0", "ECHO x"][..],
        ),
        ("before auth", &["FOO x", "GET", "HELLO 4", "HELLO x"]),
        ("auth wrong", &["AUTH wrong", "AUTH bob sekret", "AUTH default wrong", "PING"]),
        ("auth", &["AUTH sekret", "PING"]),
        ("auth user", &["AUTH default sekret", "PING"]),
        ("hello noauth", &["HELLO 3", "HELLO"]),
        ("hello auth wrong", &["HELLO 3 AUTH default wrong", "HELLO 2 AUTH bob sekret"]),
        ("hello auth", &["HELLO 2 AUTH default sekret SETNAME nm", "CLIENT GETNAME"]),
        ("hello 3 auth", &["HELLO 3 AUTH default sekret", "PING"]),
        ("exec", &["EXEC", "EXEC x"]),
        ("reset", &["RESET", "AUTH sekret", "RESET", "PING"]),
        ("quit", &["QUIT"]),
    ] {
        cases.push((name.to_owned(), lines(cmds)));
    }
    let eleven: Vec<&[u8]> = vec![b"PING"; 11];
    cases.push(("unauthenticated multibulk length".into(), mb(&eleven)));
    cases.push(("unauthenticated bulk length".into(), b"*1\r\n$16385\r\n".to_vec()));
    // An 11-argument ECHO (a wrong arity) is decoded only once AUTH has lifted the bound.
    let mut after = lines(&["AUTH sekret"]);
    let mut echo: Vec<&[u8]> = vec![b"x"; 11];
    echo[0] = b"ECHO";
    after.extend_from_slice(&mb(&echo));
    cases.push(("bounds lifted after auth".into(), after));
    cases
}

fn escape(bytes: &[u8]) -> String {
    bytes.escape_ascii().to_string()
}

#[test]
fn replies_match_redis_7_0_byte_for_byte() {
    let version = redis_version();
    let open = start(None);
    let locked = start(Some(PASSWORD));
    let mut failures = Vec::new();
    let mut compared = 0;
    for (server, password, cases) in
        [(&open, false, open_cases()), (&locked, true, password_cases())]
    {
        for (name, input) in cases {
            let (mut stream, id) = connect(server, password);
            let (want, want_closed) = match ours(&input, id, password, &version) {
                Ok(out) => out,
                Err(why) => {
                    failures.push(format!("{name}: {why}"));
                    continue;
                }
            };
            stream.write_all(&input).expect("write the case");
            let (got, got_closed) = read_reply(&mut stream, want.len());
            compared += 1;
            if got != want || got_closed != want_closed {
                failures.push(format!(
                    "{name} (password: {password}): sent {}\n  redis ({}): {}\n  ours  ({}): {}",
                    escape(&input),
                    if got_closed { "closed" } else { "open" },
                    escape(&got),
                    if want_closed { "closed" } else { "open" },
                    escape(&want),
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {compared} cases differ from redis-server {version}:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(compared > 100, "only {compared} cases compared");
}
