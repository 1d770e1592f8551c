//! The node program's operator side, as processes: `selfman node --http` serves metrics
//! (the store's counters among them) and the component tree; `selfman admin` lists and runs
//! admin actions with the node's token (swapping the failure detector live) and is refused
//! without it; `--secret-file` secures the node links, and a node with another secret never
//! gets in.

mod support;

use std::io::Write as _;
use std::time::Duration;

use support::{selfman, StoreCluster};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn file(dir: &std::path::Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    let mut f = std::fs::File::create(&p).unwrap();
    writeln!(f, "{text}").unwrap();
    p.display().to_string()
}

fn admin(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_selfman"))
        .arg("admin")
        .args(args)
        .output()
        .expect("run selfman admin")
}

#[test]
fn http_metrics_admin_and_secured_links_on_a_node_process() {
    let dir = std::env::temp_dir().join(format!("selfman-ops-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let secret = file(&dir, "cluster.secret", &"ab".repeat(32));
    let other = file(&dir, "other.secret", &"cd".repeat(32));
    let token = file(&dir, "admin.token", "a-long-enough-admin-token");
    let wrong = file(&dir, "wrong.token", "not-the-admin-token-at-all");
    let http = format!("127.0.0.1:{}", free_port());
    let c = StoreCluster::start_with(
        1,
        1,
        &["--secret-file", &secret, "--http", &http, "--admin-token-file", &token],
    );
    let h: std::net::SocketAddr = http.parse().unwrap();

    // a write, then the store's counters and the ring in /metrics
    let mut client = c.client(0);
    assert_eq!(client.cmd("SET k v"), support::V::ok());
    let m = selfman_ops::get(h, "/metrics").unwrap();
    let value = |name: &str| {
        m.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse::<f64>().ok())
    };
    assert!(value("selfman_store_commits_total").unwrap() >= 1.0, "{m}");
    assert_eq!(value("selfman_ring_in_ring"), Some(1.0));
    assert_eq!(value("selfman_store_clients"), Some(1.0));
    assert!(m.contains("SymmetricReplication") && m.contains("TxLayer"), "components listed");

    // selfman admin: list, refuse a wrong token, swap the detector with the right one
    let list = admin(&["--node", &http, "list"]);
    let out = String::from_utf8_lossy(&list.stdout);
    assert!(list.status.success(), "{out}");
    assert!(out.contains("swap-fd") && out.contains("HeartbeatFd"), "{out}");
    let refused = admin(&["--node", &http, "--token-file", &wrong, "swap-fd", "200"]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("401"), "{refused:?}");
    let swapped = admin(&["--node", &http, "--token-file", &token, "swap-fd", "200"]);
    let out = String::from_utf8_lossy(&swapped.stdout);
    assert!(swapped.status.success() && out.contains("failure detector swapped"), "{swapped:?}");
    let tree = selfman_ops::get(h, "/api/components").unwrap();
    assert!(tree.contains("\"swaps\":1"), "one component swapped: {tree}");
    assert_eq!(client.cmd("GET k"), support::V::bulk("v"), "still serving after the swap");

    // the ring and replication swapped live with new settings, keeping their state; a bad
    // argument swaps nothing
    let swaps = |ty: &str| -> u64 {
        let tree: serde_json::Value =
            serde_json::from_str(&selfman_ops::get(h, "/api/components").unwrap()).unwrap();
        let c = tree["components"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type_name"].as_str().unwrap().contains(ty));
        c.unwrap_or_else(|| panic!("no {ty}")).get("swaps").and_then(|v| v.as_u64()).unwrap()
    };
    for bad in ["10", "soon"] {
        let refused = admin(&["--node", &http, "--token-file", &token, "swap-ring", bad]);
        assert!(!refused.status.success(), "{refused:?}");
    }
    assert_eq!(swaps("RelaxedRing<"), 0);
    let swapped = admin(&["--node", &http, "--token-file", &token, "swap-ring", "500"]);
    let out = String::from_utf8_lossy(&swapped.stdout);
    assert!(swapped.status.success() && out.contains("ring swapped"), "{swapped:?}");
    let swapped = admin(&["--node", &http, "--token-file", &token, "swap-repl", "5000"]);
    let out = String::from_utf8_lossy(&swapped.stdout);
    assert!(swapped.status.success() && out.contains("replication swapped"), "{swapped:?}");
    assert_eq!((swaps("RelaxedRing<"), swaps("SymmetricReplication<")), (1, 1));
    assert_eq!(client.cmd("GET k"), support::V::bulk("v"), "the data survived the swaps");
    assert_eq!(client.cmd("SET k2 v2"), support::V::ok(), "and the node still writes");

    // a node holding another secret cannot join: it never becomes ready, and the member
    // logs the refusal
    let ring = c.nodes[0].ring.to_string();
    let mut procs = selfman_launch::Cluster::new();
    let intruder = selfman()
        .args(["node", "--exit-on-stdin-eof", "--listen", "127.0.0.1:0", "--redis", "127.0.0.1:0"])
        .args(["--replicas", "1", "--host-id", "9", "--secret-file", &other, "--join", &ring]);
    let i = procs.spawn(&intruder).unwrap();
    let member = procs.iter_mut().nth(i).unwrap();
    assert!(member.wait_ready(Duration::from_secs(4)).is_err(), "the intruder got in");
    let logged = c.procs.iter().next().unwrap().stderr_lines().join("\n");
    assert!(logged.contains("failed authentication"), "no refusal logged:\n{logged}");
    let _ = procs.stop_all(Duration::from_secs(5));
    drop(c);
    let _ = std::fs::remove_dir_all(&dir);
}
