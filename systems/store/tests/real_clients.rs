//! Real Redis clients against a local Selfman cluster: `redis-cli`, `redis-benchmark`
//! (Debian's redis-tools) and redis-py (in the venv `./test.sh` creates; its python is named
//! by `SELFMAN_PYTHON`). A missing tool fails the test, saying how to get it: never a skip.
//! Every node is stopped and reaped by PID (support module).

mod support;

use std::process::{Command, Output};

use support::{StoreCluster, V};

fn tool(name: &str, args: &[&str], stdin: Option<&str>) -> Output {
    use std::io::Write;
    let mut cmd = Command::new(name);
    cmd.args(args).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
    cmd.stdin(if stdin.is_some() {
        std::process::Stdio::piped()
    } else {
        std::process::Stdio::null()
    });
    let mut child = cmd.spawn().unwrap_or_else(|e| {
        panic!("{name} is needed by this test ({e}): run ./test.sh, which installs redis-tools")
    });
    if let Some(text) = stdin {
        child.stdin.take().expect("piped stdin").write_all(text.as_bytes()).expect("write stdin");
    }
    let out = child.wait_with_output().expect("wait for the tool");
    assert!(
        out.status.success(),
        "{name} {args:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn redis_cli_and_redis_benchmark() {
    let c = StoreCluster::start(3, 3);
    let port = |i: usize| c.nodes[i].redis.port().to_string();
    let cli = |i: usize, args: &[&str]| {
        let p = port(i);
        let mut all = vec!["-h", "127.0.0.1", "-p", p.as_str()];
        all.extend_from_slice(args);
        text(&tool("redis-cli", &all, None))
    };
    assert_eq!(cli(0, &["PING"]), "PONG\n");
    assert_eq!(cli(0, &["SET", "greeting", "hello world"]), "OK\n");
    assert_eq!(cli(1, &["GET", "greeting"]), "hello world\n");
    assert_eq!(cli(2, &["INCRBY", "cli:n", "7"]), "7\n");
    assert_eq!(cli(1, &["SADD", "cli:s", "x", "y"]), "2\n");
    // redis-cli prints an error reply, then an empty line.
    assert_eq!(
        cli(2, &["GET", "cli:s"]).trim_end(),
        "WRONGTYPE Operation against a key holding the wrong kind of value"
    );
    // A MULTI/EXEC block typed into redis-cli's stdin.
    let p = port(1);
    let block = tool(
        "redis-cli",
        &["-h", "127.0.0.1", "-p", &p],
        Some("MULTI\nINCR cli:n\nSET cli:other 1\nGET cli:n\nEXEC\n"),
    );
    assert_eq!(text(&block), "OK\nQUEUED\nQUEUED\nQUEUED\n8\nOK\n8\n");
    let info = cli(2, &["INFO", "selfman"]);
    assert!(info.contains("ring_joined:1") && info.contains("replicas:3"), "{info}");

    // redis-benchmark: plain and pipelined, against two different nodes.
    for (i, extra) in [(0usize, vec![]), (1, vec!["-P", "16"])] {
        let p = port(i);
        let mut args = vec!["-h", "127.0.0.1", "-p", p.as_str(), "-t", "set,get", "-n", "2000"];
        args.extend(["-c", "20", "-r", "1000", "-q"]);
        args.extend(extra);
        let out = text(&tool("redis-benchmark", &args, None));
        for t in ["SET", "GET"] {
            let line = out
                .lines()
                .rev()
                .find(|l| l.trim_start().starts_with(&format!("{t}: ")))
                .unwrap_or_else(|| panic!("no {t} line in {out:?}"));
            assert!(line.contains("requests per second"), "{line}");
            eprintln!("redis-benchmark (node {i}) {line}");
        }
    }
    // Every node answered every command: no error counted.
    for i in 0..3 {
        let mut cl = c.client(i);
        let V::Bulk(Some(info)) = cl.cmd("INFO selfman") else {
            panic!("INFO answers a bulk string")
        };
        let info = String::from_utf8(info).unwrap();
        assert!(info.contains("tx_failed:0\r\n"), "node {i}: {info}");
    }
    // The benchmark's SETs wrote its 3-byte values.
    assert_eq!(cli(2, &["GET", "key:000000000001"]).len(), 4);
}

#[test]
fn redis_py() {
    let python = std::env::var("SELFMAN_PYTHON").unwrap_or_else(|_| {
        let venv = concat!(env!("CARGO_MANIFEST_DIR"), "/../../.venv-clients/bin/python");
        assert!(
            std::path::Path::new(venv).exists(),
            "redis-py is needed by this test: run ./test.sh, which creates the venv {venv}"
        );
        venv.to_owned()
    });
    let c = StoreCluster::start(3, 3);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients/redis_py_check.py");
    let addrs: Vec<String> = c.nodes.iter().map(|n| n.redis.to_string()).collect();
    let mut args = vec![script];
    args.extend(addrs.iter().map(String::as_str));
    let out = tool(&python, &args, None);
    let said = text(&out);
    assert!(said.contains("redis-py: all checks passed"), "{said}");
    eprintln!("{said}");
}
