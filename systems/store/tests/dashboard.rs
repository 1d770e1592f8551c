//! The operator's view of a cluster of store node processes, each with `--http`:
//!
//! * `/metrics` carries the store's own families after writes and a `MULTI`/`EXEC`:
//!   commits with a latency histogram whose count is the commits, timeouts, commands by name,
//!   connections, and data movement (hand-overs, repair rounds and their bytes);
//! * the nodes learn each other's endpoints by the ops hello, so `/api/peers` of one node
//!   lists the others, and its dashboard (in headless Chromium) draws the whole ring; after one
//!   node is killed the picture shows one node fewer answering; it charts node 0's commits. Screenshots are kept in
//!   `target/tmp/dashboard-store-*.png`.

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use support::{StoreCluster, V};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// `n` nodes with `f = n`, node i with its endpoint at the i-th returned address.
fn cluster(n: u32) -> (StoreCluster, Vec<SocketAddr>) {
    let mut c = StoreCluster::start_with(0, n, &[]);
    let mut https = Vec::new();
    for _ in 0..n {
        let http: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        c.extra = vec!["--http".into(), http.to_string()];
        c.add();
        https.push(http);
    }
    (c, https)
}

fn wait(what: &str, limit: Duration, mut ok: impl FnMut() -> bool) {
    let end = Instant::now() + limit;
    while !ok() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The samples of a Prometheus text document: (name with labels, value); panics on a line
/// that is neither a comment nor `NAME[{LABELS}] VALUE`.
fn samples(text: &str) -> Vec<(String, f64)> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (name, value) = l.rsplit_once(' ').unwrap_or_else(|| panic!("a sample: {l:?}"));
            let v = match value {
                "+Inf" => f64::INFINITY,
                v => v.parse().unwrap_or_else(|_| panic!("a number: {l:?}")),
            };
            (name.to_owned(), v)
        })
        .collect()
}

fn value(s: &[(String, f64)], name: &str) -> f64 {
    s.iter().find(|(n, _)| n == name).unwrap_or_else(|| panic!("no sample {name}")).1
}

fn metrics(http: SocketAddr) -> Vec<(String, f64)> {
    samples(&selfman_ops::get(http, "/metrics").unwrap())
}

fn peers(http: SocketAddr) -> Vec<String> {
    serde_json::from_str(&selfman_ops::get(http, "/api/peers").unwrap()).unwrap()
}

#[test]
fn store_metrics_count_writes_transactions_commands_and_data_movement() {
    let (c, https) = cluster(3);
    let mut client = c.client(0);
    for i in 0..20 {
        assert_eq!(client.cmd(&format!("SET k{i} v{i}")), V::ok());
    }
    assert_eq!(client.cmd("MULTI"), V::Simple("OK".into()));
    assert_eq!(client.cmd("INCR n"), V::Simple("QUEUED".into()));
    assert_eq!(client.cmd("SET k0 w"), V::Simple("QUEUED".into()));
    assert!(matches!(client.cmd("EXEC"), V::Array(Some(a)) if a.len() == 2));
    assert_eq!(client.cmd("GET k0"), V::bulk("w"));
    let _ = client.cmd("NOSUCHCOMMAND");

    let m = metrics(https[0]);
    let commits = value(&m, "selfman_store_commits_total");
    assert!(commits >= 21.0, "20 SETs and one EXEC committed: {commits}");
    // every commit is observed once in the histogram, with a positive latency
    let h = "selfman_store_commit_latency_seconds";
    assert_eq!(value(&m, &format!("{h}_count")), commits);
    assert_eq!(value(&m, &format!("{h}_bucket{{le=\"+Inf\"}}")), commits);
    assert!(value(&m, &format!("{h}_sum")) > 0.0);
    let buckets: Vec<f64> =
        m.iter().filter(|(n, _)| n.starts_with(&format!("{h}_bucket"))).map(|s| s.1).collect();
    assert!(buckets.len() > 5 && buckets.windows(2).all(|w| w[0] <= w[1]), "cumulative");
    assert_eq!(value(&m, "selfman_store_timeouts_total"), 0.0);
    let cmd =
        |name: &str| value(&m, &format!("selfman_store_commands_total{{command=\"{name}\"}}"));
    assert_eq!(cmd("set"), 21.0, "20 SETs and one queued");
    assert_eq!((cmd("multi"), cmd("exec"), cmd("incr"), cmd("get")), (1.0, 1.0, 1.0, 1.0));
    assert_eq!(cmd("unknown"), 1.0);
    assert_eq!(value(&m, "selfman_store_connections_total"), 1.0);
    assert_eq!(value(&m, "selfman_store_clients"), 1.0);
    // its replication state: f = 3, some ranges served, replicas of the writes stored
    let r: serde_json::Value =
        serde_json::from_str(&selfman_ops::get(https[0], "/api/replicas").unwrap()).unwrap();
    assert_eq!(r["f"], 3, "{r}");
    assert!(r["items"].as_u64().unwrap() > 0, "node 0 stores replicas of the writes: {r}");
    assert!(!r["serving"].as_array().unwrap().is_empty(), "{r}");
    // node 0 bootstrapped alone, then two nodes joined: its neighbours changed
    assert!(value(&m, "selfman_ring_successor_changes_total") >= 1.0);
    assert!(value(&m, "selfman_ring_predecessor_changes_total") >= 1.0);
    assert!(value(&m, "selfman_ring_range_changes_total") >= 2.0, "bootstrapped, then lost parts");
    // the TYPE lines say what each family is
    let text = selfman_ops::get(https[0], "/metrics").unwrap();
    assert!(text.contains(&format!("# TYPE {h} histogram\n")));
    assert!(text.contains("# TYPE selfman_store_commands_total counter\n"));

    // Data moved when the nodes joined (node 0 handed ranges over), and the replicas compare
    // themselves every 10 s: a repair round with its bytes shows up at some node.
    let sum = |name: &str| https.iter().map(|h| value(&metrics(*h), name)).sum::<f64>();
    assert!(
        sum("selfman_repl_handovers_total") + sum("selfman_repl_received_total") > 0.0,
        "ranges moved while the nodes joined"
    );
    wait("a repair round", Duration::from_secs(40), || {
        sum("selfman_repl_repair_rounds_total") > 0.0
    });
    assert!(sum("selfman_repl_repair_bytes_total") > 0.0, "a round sends bytes");
    drop(c);
}

/// The installed Chromium, or `None` when the test may be skipped (`SELFMAN_NO_BROWSER=1`).
fn chromium() -> Option<&'static str> {
    for c in ["chromium", "chromium-browser"] {
        if std::process::Command::new(c).arg("--version").output().is_ok_and(|o| o.status.success())
        {
            return Some(c);
        }
    }
    if std::env::var_os("SELFMAN_NO_BROWSER").is_some() {
        return None;
    }
    panic!(
        "the dashboard test needs Chromium: `apt-get install -y chromium` \
         (or set SELFMAN_NO_BROWSER=1 to skip it)"
    );
}

/// Loads `url` in headless Chromium for six virtual seconds; returns the DOM and writes a
/// screenshot to `shot`.
fn render(browser: &str, url: &str, shot: &std::path::Path) -> String {
    let profile =
        std::env::temp_dir().join(format!("selfman-store-chromium-{}", std::process::id()));
    std::fs::create_dir_all(&profile).unwrap();
    let common = [
        "--headless".to_string(),
        "--no-sandbox".into(),
        "--disable-gpu".into(),
        "--disable-dev-shm-usage".into(),
        "--no-first-run".into(),
        format!("--user-data-dir={}", profile.display()),
        "--virtual-time-budget=6000".into(),
        "--window-size=1280,900".into(),
    ];
    let run = |extra: &str| {
        let mut child = std::process::Command::new(browser)
            .args(&common)
            .arg(extra)
            .arg(url)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start chromium");
        let deadline = Instant::now() + Duration::from_secs(60);
        while child.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("chromium (pid {}) did not finish within 60 s", child.id());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let mut out = String::new();
        std::io::Read::read_to_string(child.stdout.as_mut().unwrap(), &mut out).unwrap();
        out
    };
    let dom = run("--dump-dom");
    run(&format!("--screenshot={}", shot.display()));
    let _ = std::fs::remove_dir_all(&profile);
    dom
}

fn count(dom: &str, needle: &str) -> usize {
    dom.matches(needle).count()
}

#[test]
fn the_dashboard_of_one_store_node_draws_every_node() {
    let Some(browser) = chromium() else {
        eprintln!("SELFMAN_NO_BROWSER set and no Chromium: dashboard test skipped");
        return;
    };
    let (mut c, https) = cluster(4);
    // the ops hello: every node hears its neighbours' endpoints (each node's lists hold all
    // three others in a ring of four)
    for (i, h) in https.iter().enumerate() {
        let mut others: Vec<String> =
            https.iter().filter(|o| *o != h).map(ToString::to_string).collect();
        others.sort();
        wait(&format!("node {i}'s peers"), Duration::from_secs(20), || peers(*h) == others);
    }
    let mut client = c.client(0);
    for i in 0..10 {
        assert_eq!(client.cmd(&format!("SET d{i} x")), V::ok());
    }
    let url = format!("http://{}/", https[0]);
    let out = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"));
    let dom = render(browser, &url, &out.join("dashboard-store-4-nodes.png"));
    assert!(dom.contains("data-nodes-up=\"4\""), "four nodes drawn as up:\n{dom}");
    assert_eq!(count(&dom, "class=\"node up"), 4, "{dom}");
    assert_eq!(count(&dom, "class=\"succ\""), 4, "a successor link per node");
    assert_eq!(count(&dom, "class=\"range\""), 4, "a shaded range per node");
    assert!(dom.contains("SymmetricReplication"), "node 0's component tree is listed");
    assert!(dom.contains("data-commits=\"10\""), "node 0's commits read from /metrics");
    assert!(dom.contains("(10 commits in all)"), "{dom}");

    // Kill node 3 (no leave): node 0 still lists it until it is forgotten, and it does not
    // answer; the page shows three nodes up.
    let gone = c.procs.iter_mut().nth(3).unwrap();
    gone.kill_9().unwrap();
    let dom = render(browser, &url, &out.join("dashboard-store-after-kill.png"));
    assert!(dom.contains("data-nodes-up=\"3\""), "three nodes drawn as up:\n{dom}");
    assert_eq!(count(&dom, "class=\"node up"), 3, "{dom}");
    assert!(dom.contains("1 node(s) never answered"), "the dead endpoint is reported:\n{dom}");
    println!("screenshots: {}", out.display());
    drop(c);
}
