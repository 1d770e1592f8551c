//! The endpoint on real ring nodes: four nodes over TCP in this process (one runtime each),
//! each with its HTTP endpoint; metrics and JSON checked by parsing them, and the dashboard
//! drawn by headless Chromium before and after one node is killed.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use selfman_core::Host;
use selfman_net::{NetConfig, TcpNetwork};
use selfman_ops::{get, OpsServer, Sources};
use selfman_ports::{RingRequest, RingStatus};
use selfman_ring_cluster::{build_node, NodeConfig, RingNode};
use selfman_runtime::Runtime;

struct Node {
    rt: Runtime,
    net: Arc<TcpNetwork>,
    ring: RingNode<u64>,
    ops: Option<OpsServer>,
}

impl Node {
    fn stop(mut self) {
        if let Some(o) = self.ops.take() {
            o.shutdown();
        }
        self.net.shutdown();
        drop(self.ring);
        self.rt.shutdown().unwrap();
    }
}

/// `n` ring nodes, node 0 bootstrapped and the others joined through it, each serving HTTP;
/// every node lists all endpoints as its peers.
fn cluster(n: usize) -> Vec<Node> {
    let http: Arc<Mutex<Vec<String>>> = Arc::default();
    let mut nodes = Vec::new();
    for i in 0..n {
        let rt = Runtime::builder().workers(1).build();
        let net =
            Arc::new(TcpNetwork::start(&rt, NetConfig::default().local_delivery(false)).unwrap());
        let ring = build_node::<u64, _>(&*net, &NodeConfig::default()).unwrap();
        for c in ring.components() {
            rt.start(&c).unwrap();
        }
        let (r, sys, stats) = (ring.ring.clone(), net.system().clone(), Arc::clone(&net));
        let peers = Arc::clone(&http);
        let (swap_sys, swap_node) =
            (net.system().clone(), RingNode { fd: ring.fd.clone(), ring: ring.ring.clone() });
        let sources = Sources::new(format!("node-{i}"))
            .admin_token(token(i))
            .action(
                "swap-fd",
                "replace the failure detector live; body: heartbeat period in ms",
                move |body| {
                    let ms: u64 =
                        body.trim().parse().map_err(|_| format!("not a period in ms: {body:?}"))?;
                    let fd = selfman_failure_detector::FdConfig {
                        period: Duration::from_millis(ms),
                        ..Default::default()
                    };
                    let started = Instant::now();
                    let swaps = selfman_ring_cluster::reconfigure_node(
                        &swap_sys,
                        &swap_node,
                        Some(fd),
                        None,
                    )
                    .map_err(|e| e.to_string())?;
                    if let Some(s) = swaps.fd {
                        s.wait(Duration::from_secs(5)).map_err(|e| e.to_string())?;
                    }
                    Ok(format!("detector swapped in {} us", started.elapsed().as_micros()))
                },
            )
            .ring(move || r.on_definition(|d| selfman_ports::RingInspect::ring_view(d)).ok())
            .system(move || sys.snapshot().ok())
            .net(move || stats.stats())
            .peers(move || peers.lock().unwrap().clone());
        let ops = OpsServer::start("127.0.0.1:0".parse().unwrap(), sources).unwrap();
        http.lock().unwrap().push(ops.addr().to_string());
        nodes.push(Node { rt, net, ring, ops: Some(ops) });
    }
    nodes[0].ring.ring_port().unwrap().request(RingRequest::Bootstrap).unwrap();
    let access = nodes[0].net.local();
    for node in &nodes[1..] {
        node.ring.ring_port().unwrap().request(RingRequest::Join { access }).unwrap();
    }
    wait("every node in the ring, with a full successor list", Duration::from_secs(20), || {
        nodes.iter().all(|n| {
            n.ring
                .ring
                .on_definition(|d| {
                    let v = selfman_ports::RingInspect::ring_view(d);
                    v.status == RingStatus::InRing && v.succ_list.len() >= n_minus_one(nodes.len())
                })
                .unwrap_or(false)
        })
    });
    nodes
}

fn token(i: usize) -> String {
    format!("secret-token-of-node-{i}")
}

fn n_minus_one(n: usize) -> usize {
    n.saturating_sub(1).min(selfman_relaxed_ring::RingConfig::default().succ_list_size)
}

fn wait(what: &str, limit: Duration, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !ok() {
        assert!(Instant::now() < deadline, "not within {limit:?}: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn addr(n: &Node) -> SocketAddr {
    n.ops.as_ref().unwrap().addr()
}

fn metric(text: &str, line_prefix: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(line_prefix)?.trim().parse().ok())
}

#[test]
fn metrics_and_json_describe_the_node() {
    let nodes = cluster(3);
    let a = addr(&nodes[1]);

    let m = get(a, "/metrics").unwrap();
    assert_eq!(metric(&m, "selfman_up "), Some(1.0));
    assert_eq!(metric(&m, "selfman_ring_in_ring "), Some(1.0));
    assert_eq!(metric(&m, "selfman_ring_size_estimate "), Some(3.0), "{m}");
    assert_eq!(metric(&m, "selfman_ring_successors "), Some(2.0));
    assert!(metric(&m, "selfman_net_frames_in_total ").unwrap() > 0.0);
    assert_eq!(metric(&m, "selfman_net_auth_failures_total "), Some(0.0));
    assert!(m.contains("# TYPE selfman_component_events_handled_total counter"));
    let ring_line = m
        .lines()
        .find(|l| {
            l.starts_with("selfman_component_events_handled_total{") && l.contains("RelaxedRing")
        })
        .expect("the ring component is listed");
    assert!(ring_line.rsplit(' ').next().unwrap().parse::<f64>().unwrap() > 0.0, "{ring_line}");
    // every sample line is `name{labels} value` or `name value`, every family typed once
    for l in m.lines().filter(|l| !l.starts_with('#')) {
        let (name, value) = l.rsplit_once(' ').unwrap();
        assert!(value.parse::<f64>().is_ok(), "{l}");
        let family = name.split('{').next().unwrap();
        assert!(m.contains(&format!("# TYPE {family} ")), "untyped {family}");
    }

    let ring: serde_json::Value = serde_json::from_str(&get(a, "/api/ring").unwrap()).unwrap();
    assert_eq!(ring["status"], "InRing");
    assert_eq!(ring["succ_list"].as_array().unwrap().len(), 2);
    let f = ring["me"]["f"].as_f64().unwrap();
    assert!((0.0..1.0).contains(&f));
    let id: u64 = ring["me"]["id"].as_str().unwrap().parse().unwrap();
    assert!((id as f64 / 2f64.powi(64) - f).abs() < 1e-9, "the fraction matches the exact id");

    let tree: serde_json::Value =
        serde_json::from_str(&get(a, "/api/components").unwrap()).unwrap();
    let types: Vec<&str> = tree["components"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["type_name"].as_str().unwrap())
        .collect();
    assert!(types.iter().any(|t| t.contains("HeartbeatFd")), "{types:?}");
    assert!(types.iter().any(|t| t.contains("RelaxedRing")), "{types:?}");

    let net: serde_json::Value = serde_json::from_str(&get(a, "/api/net").unwrap()).unwrap();
    assert!(net["frames_out"].as_u64().unwrap() > 0);
    let peers: Vec<String> = serde_json::from_str(&get(a, "/api/peers").unwrap()).unwrap();
    assert_eq!(peers.len(), 3);
    let node: serde_json::Value = serde_json::from_str(&get(a, "/api/node").unwrap()).unwrap();
    assert_eq!(node["name"], "node-1");
    assert_eq!(node["http"], a.to_string());

    let page = get(a, "/").unwrap();
    assert!(page.contains("<svg id=\"ring\"") && page.contains("/dashboard.js"));
    assert!(get(a, "/dashboard.js").unwrap().contains("function drawRing"));
    let missing = get(a, "/nope").unwrap_err().to_string();
    assert!(missing.contains("404") && missing.contains("no such path"), "{missing}");

    for n in nodes {
        n.stop();
    }
}

fn swaps_of(a: SocketAddr, ty: &str) -> u64 {
    let tree: serde_json::Value =
        serde_json::from_str(&get(a, "/api/components").unwrap()).unwrap();
    tree["components"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type_name"].as_str().unwrap().contains(ty))
        .map(|c| c["swaps"].as_u64().unwrap())
        .unwrap()
}

#[test]
fn admin_actions_need_the_token_and_swap_a_component_live() {
    use selfman_ops::client::{admin, ClientError};
    let nodes = cluster(3);
    let a = addr(&nodes[2]);
    let listing: serde_json::Value = serde_json::from_str(&get(a, "/api/admin").unwrap()).unwrap();
    assert_eq!(listing["enabled"], true);
    assert_eq!(listing["actions"][0]["name"], "swap-fd");

    // refused: no token, another node's token, a GET, an unknown action, a huge body
    for bad in ["", &token(0)] {
        let e = admin(a, bad, "swap-fd", "500").unwrap_err();
        assert!(matches!(&e, ClientError::Status(401, b) if b.contains("admin token")), "{e}");
    }
    let e = get(a, "/api/admin/swap-fd").unwrap_err();
    assert!(matches!(&e, ClientError::Status(405, _)), "{e}");
    let e = admin(a, &token(2), "reboot", "").unwrap_err();
    assert!(matches!(&e, ClientError::Status(404, b) if b.contains("no such admin action")), "{e}");
    let e =
        admin(a, &token(2), "swap-fd", &"9".repeat(selfman_ops::MAX_ADMIN_BODY + 1)).unwrap_err();
    assert!(matches!(&e, ClientError::Status(413, _)), "{e}");
    let e = admin(a, &token(2), "swap-fd", "soon").unwrap_err();
    assert!(matches!(&e, ClientError::Status(400, b) if b.contains("not a period")), "{e}");
    assert_eq!(swaps_of(a, "HeartbeatFd"), 0, "nothing was swapped by a refused request");
    let m = get(a, "/metrics").unwrap();
    assert_eq!(metric(&m, "selfman_ops_admin_denied_total "), Some(2.0));

    // the right token swaps the detector live; the ring stays whole
    let ok = admin(a, &token(2), "swap-fd", "200").unwrap();
    assert!(ok.contains("detector swapped in"), "{ok}");
    assert_eq!(swaps_of(a, "HeartbeatFd"), 1);
    assert_eq!(swaps_of(addr(&nodes[0]), "HeartbeatFd"), 0, "only that node");
    let ring: serde_json::Value = serde_json::from_str(&get(a, "/api/ring").unwrap()).unwrap();
    assert_eq!(ring["status"], "InRing");
    let m = get(a, "/metrics").unwrap();
    assert_eq!(
        metric(&m, "selfman_ops_admin_actions_total "),
        Some(2.0),
        "the failed and the good run"
    );
    for n in nodes {
        n.stop();
    }
}

#[test]
fn the_endpoint_is_read_only_and_survives_junk() {
    use std::io::{Read, Write};
    let server = OpsServer::start("127.0.0.1:0".parse().unwrap(), Sources::new("lonely")).unwrap();
    let a = server.addr();
    let send = |raw: &[u8]| {
        let mut s = std::net::TcpStream::connect(a).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(raw).unwrap();
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        String::from_utf8_lossy(&out).into_owned()
    };
    let post = send(b"POST /metrics HTTP/1.0\r\nContent-Length: 3\r\n\r\nabc");
    assert!(post.starts_with("HTTP/1.0 405") || post.starts_with("HTTP/1.1 405"), "{post}");
    assert!(post.contains("read-only"));
    let del = send(b"DELETE /api/ring HTTP/1.0\r\n\r\n");
    assert!(del.contains(" 405 "), "{del}");
    // admin is off without a token, whatever is sent
    let off = send(b"POST /api/admin/anything HTTP/1.0\r\nAuthorization: Bearer x\r\n\r\n");
    assert!(off.contains(" 403 ") && off.contains("disabled"), "{off}");
    // garbage and an unfinished request do not take the server down
    let _ = send(b"\x00\x01\x02 not http at all\r\n\r\n");
    let _ = send(b"GET /metr");
    assert!(get(a, "/metrics").unwrap().contains("selfman_up 1"));
    // nothing to show is said plainly
    let ring = get(a, "/api/ring").unwrap_err().to_string();
    assert!(ring.contains("404") && ring.contains("no ring view"), "{ring}");
    server.shutdown();
    // tiny_http's accept thread lets go of the socket just after the server is dropped
    wait("the listening socket closes", Duration::from_secs(5), || {
        std::net::TcpStream::connect_timeout(&a, Duration::from_millis(200)).is_err()
    });
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

/// Loads the dashboard in headless Chromium, lets it poll for a few (virtual) seconds, and
/// returns the DOM; also writes a screenshot to `shot`.
fn render(browser: &str, url: &str, shot: &std::path::Path) -> String {
    let profile = tempdir();
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
    let run = |extra: &[String]| {
        let mut child = std::process::Command::new(browser)
            .args(&common)
            .args(extra)
            .arg(url)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start chromium");
        let pid = child.id();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if child.try_wait().unwrap().is_some() {
                break;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("chromium (pid {pid}) did not finish within 60 s");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let mut out = String::new();
        std::io::Read::read_to_string(child.stdout.as_mut().unwrap(), &mut out).unwrap();
        out
    };
    let dom = run(&["--dump-dom".into()]);
    run(&[format!("--screenshot={}", shot.display())]);
    let _ = std::fs::remove_dir_all(&profile);
    dom
}

fn tempdir() -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!(
        "selfman-ops-chromium-{}-{}",
        std::process::id(),
        Instant::now().elapsed().as_nanos()
    ));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn count(dom: &str, needle: &str) -> usize {
    dom.matches(needle).count()
}

#[test]
fn the_dashboard_draws_the_ring_and_sees_a_node_go() {
    let Some(browser) = chromium() else {
        eprintln!("SELFMAN_NO_BROWSER set and no Chromium: dashboard test skipped");
        return;
    };
    let mut nodes = cluster(4);
    let url = format!("http://{}/", addr(&nodes[0]));
    let out = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"));
    let dom = render(browser, &url, &out.join("dashboard-4-nodes.png"));
    assert!(dom.contains("data-nodes-up=\"4\""), "four nodes drawn as up:\n{dom}");
    assert_eq!(count(&dom, "class=\"node up"), 4, "{dom}");
    assert_eq!(count(&dom, "class=\"succ\""), 4, "a successor link per node");
    assert_eq!(count(&dom, "class=\"range\""), 4, "a shaded range per node");
    assert!(dom.contains("RelaxedRing"), "node 0's component tree is listed");
    assert!(dom.contains("size estimate 4"), "the lists of a ring of 4 meet: exact size");

    // Kill one node; the survivors' page must show three.
    let gone = nodes.pop().unwrap();
    gone.stop();
    let dom = render(browser, &url, &out.join("dashboard-after-kill.png"));
    assert!(dom.contains("data-nodes-up=\"3\""), "three nodes drawn as up:\n{dom}");
    assert_eq!(count(&dom, "class=\"node up"), 3, "{dom}");
    assert!(dom.contains("1 node(s) never answered"), "the dead endpoint is reported");
    println!("screenshots: {}", out.display());
    for n in nodes {
        n.stop();
    }
}
