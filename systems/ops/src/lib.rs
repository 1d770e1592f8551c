//! The operator's window on a Selfman node: a small HTTP endpoint, read-only, that serves
//!
//! * `/metrics` — Prometheus text format: per component events handled, queue depth, faults,
//!   restarts and swaps; the transport's counters; the ring as this node sees it (in a ring or
//!   not, estimated size, list lengths, suspected peers, its range); plus whatever the system
//!   adds ([`Sources::metrics`]);
//! * `/api/node`, `/api/components`, `/api/ring`, `/api/net`, `/api/peers` — JSON: who this
//!   node is, its component tree ([`selfman_core::SystemSnapshot`]), its ring view
//!   ([`selfman_ports::RingView`]), its transport counters, and the other nodes' HTTP addresses;
//! * `/` — the dashboard: a page, shipped inside the binary (no build step, nothing fetched
//!   from the internet), that draws the ring from this node's and the other nodes' views and
//!   shows a chosen node's component tree and rates. It polls every second.
//!
//! A system says what its node shows by handing closures to [`Sources`]; the server calls them
//! on its own thread for each request, so they must be cheap and must not block.
//!
//! ```
//! use selfman_ops::{OpsServer, Sources};
//!
//! let sources = Sources::new("node-1").metrics(|m| {
//!     m.single("app_jobs_total", selfman_ops::metrics::Kind::Counter, "Jobs done.", 7.0)
//! });
//! let server = OpsServer::start("127.0.0.1:0".parse().unwrap(), sources).unwrap();
//! let body = selfman_ops::get(server.addr(), "/metrics").unwrap();
//! assert!(body.contains("app_jobs_total 7"));
//! server.shutdown();
//! ```
//!
//! Every response is bounded by the node's own state; request bodies are never read; anything
//! but `GET` and `HEAD` is answered `405`. The JSON paths allow any origin (they are read-only),
//! so one node's dashboard can poll the others.

pub mod metrics;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use selfman_core::SystemSnapshot;
use selfman_net::NetStats;
use selfman_ports::RingView;
use tiny_http::{Header, Method, Request, Response, Server};

use crate::metrics::Metrics;

type Getter<T> = Box<dyn Fn() -> T + Send + Sync>;
type Writer = Box<dyn Fn(&mut Metrics) + Send + Sync>;

/// What a node shows on its endpoint: each part is a closure the server calls per request.
pub struct Sources {
    name: String,
    system: Option<Getter<Option<SystemSnapshot>>>,
    ring: Option<Getter<Option<RingView>>>,
    net: Option<Getter<NetStats>>,
    peers: Option<Getter<Vec<String>>>,
    extra: Option<Writer>,
}

impl std::fmt::Debug for Sources {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sources")
            .field("name", &self.name)
            .field("system", &self.system.is_some())
            .field("ring", &self.ring.is_some())
            .field("net", &self.net.is_some())
            .field("peers", &self.peers.is_some())
            .finish_non_exhaustive()
    }
}

impl Sources {
    /// Nothing yet but the node's display name.
    #[must_use]
    pub fn new(name: impl Into<String>) -> Sources {
        Sources { name: name.into(), system: None, ring: None, net: None, peers: None, extra: None }
    }

    /// The component tree (`None` when it cannot be taken, e.g. the system shut down).
    #[must_use]
    pub fn system(
        mut self,
        f: impl Fn() -> Option<SystemSnapshot> + Send + Sync + 'static,
    ) -> Self {
        self.system = Some(Box::new(f));
        self
    }

    /// The node's ring view (`None` while it has none).
    #[must_use]
    pub fn ring(mut self, f: impl Fn() -> Option<RingView> + Send + Sync + 'static) -> Self {
        self.ring = Some(Box::new(f));
        self
    }

    /// The transport's counters.
    #[must_use]
    pub fn net(mut self, f: impl Fn() -> NetStats + Send + Sync + 'static) -> Self {
        self.net = Some(Box::new(f));
        self
    }

    /// Other nodes' HTTP addresses (`host:port`), for the dashboard to poll.
    #[must_use]
    pub fn peers(mut self, f: impl Fn() -> Vec<String> + Send + Sync + 'static) -> Self {
        self.peers = Some(Box::new(f));
        self
    }

    /// More metric families, written after the built-in ones.
    #[must_use]
    pub fn metrics(mut self, f: impl Fn(&mut Metrics) + Send + Sync + 'static) -> Self {
        self.extra = Some(Box::new(f));
        self
    }

    fn metrics_text(&self) -> String {
        let mut m = Metrics::new();
        m.single("selfman_up", metrics::Kind::Gauge, "1 while the node serves.", 1.0);
        if let Some(snap) = self.system.as_ref().and_then(|f| f()) {
            metrics::write_components(&mut m, &snap);
        }
        if let Some(net) = &self.net {
            metrics::write_net(&mut m, &net());
        }
        if let Some(view) = self.ring.as_ref().and_then(|f| f()) {
            metrics::write_ring(&mut m, &view);
        }
        if let Some(extra) = &self.extra {
            extra(&mut m);
        }
        m.finish()
    }
}

/// Why the endpoint could not start.
#[derive(Debug)]
pub struct OpsError(String);

impl std::fmt::Display for OpsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "cannot start the HTTP endpoint: {}", self.0)
    }
}

impl std::error::Error for OpsError {}

/// A running endpoint. Stops (and joins its thread) on [`shutdown`](Self::shutdown) or drop.
pub struct OpsServer {
    addr: SocketAddr,
    server: Arc<Server>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for OpsServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpsServer").field("addr", &self.addr).finish_non_exhaustive()
    }
}

const DASHBOARD_HTML: &str = include_str!("../assets/dashboard.html");
const DASHBOARD_JS: &str = include_str!("../assets/dashboard.js");

impl OpsServer {
    /// Binds `listen` and serves `sources` on a thread of its own.
    ///
    /// # Errors
    ///
    /// The address cannot be bound (in use, not local, no permission).
    pub fn start(listen: SocketAddr, sources: Sources) -> Result<OpsServer, OpsError> {
        let server = Server::http(listen).map_err(|e| OpsError(format!("{listen}: {e}")))?;
        let addr = server
            .server_addr()
            .to_ip()
            .ok_or_else(|| OpsError("the server has no IP address".into()))?;
        let server = Arc::new(server);
        let srv = Arc::clone(&server);
        let sources = Arc::new(sources);
        let thread = std::thread::Builder::new()
            .name(format!("ops-http-{}", addr.port()))
            .spawn(move || {
                for req in srv.incoming_requests() {
                    handle(&sources, addr, req);
                }
            })
            .map_err(|e| OpsError(e.to_string()))?;
        tracing::info!(%addr, "HTTP endpoint serving");
        Ok(OpsServer { addr, server, thread: Some(thread) })
    }

    /// The bound address.
    #[must_use]
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops serving and joins the server thread.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        self.server.unblock();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for OpsServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn header(k: &str, v: &str) -> Header {
    Header::from_bytes(k.as_bytes(), v.as_bytes())
        .expect("static header names and values are valid")
}

fn respond(req: Request, status: u16, content_type: &str, body: String, cors: bool) {
    let mut r = Response::from_string(body)
        .with_status_code(status)
        .with_header(header("Content-Type", content_type))
        .with_header(header("Cache-Control", "no-store"));
    if cors {
        r = r.with_header(header("Access-Control-Allow-Origin", "*"));
    }
    if *req.method() == Method::Get || *req.method() == Method::Head {
        let _ = req.respond(r);
    } else {
        let _ = req.respond(r.with_header(header("Allow", "GET, HEAD")));
    }
}

fn json_error(req: Request, status: u16, msg: &str) {
    let body = serde_json::json!({ "error": msg }).to_string();
    respond(req, status, "application/json", body, true);
}

fn handle(sources: &Sources, addr: SocketAddr, req: Request) {
    if !matches!(req.method(), Method::Get | Method::Head) {
        let m = req.method().to_string();
        return json_error(req, 405, &format!("{m} is not allowed: this endpoint is read-only"));
    }
    let path = req.url().split('?').next().unwrap_or("/").to_owned();
    const JSON: &str = "application/json";
    match path.as_str() {
        "/" | "/index.html" => {
            respond(req, 200, "text/html; charset=utf-8", DASHBOARD_HTML.into(), false)
        }
        "/dashboard.js" => {
            respond(req, 200, "text/javascript; charset=utf-8", DASHBOARD_JS.into(), false);
        }
        "/metrics" => respond(
            req,
            200,
            "text/plain; version=0.0.4; charset=utf-8",
            sources.metrics_text(),
            false,
        ),
        "/api/node" => {
            let ring = sources.ring.as_ref().and_then(|f| f());
            let body = serde_json::json!({
                "name": sources.name,
                "http": addr.to_string(),
                "node": ring.as_ref().map(|v| v.me.addr),
                "ring_id": ring.as_ref().map(|v| v.me.id.0.to_string()),
                "has_system": sources.system.is_some(),
                "has_ring": sources.ring.is_some(),
            });
            respond(req, 200, JSON, body.to_string(), true);
        }
        "/api/components" => match sources.system.as_ref().and_then(|f| f()) {
            Some(s) => respond(req, 200, JSON, to_json(&s), true),
            None => json_error(req, 404, "this node shows no component tree"),
        },
        "/api/ring" => match sources.ring.as_ref().and_then(|f| f()) {
            Some(v) => respond(req, 200, JSON, ring_json(&v), true),
            None => json_error(req, 404, "this node has no ring view"),
        },
        "/api/net" => match &sources.net {
            Some(f) => respond(req, 200, JSON, to_json(&f()), true),
            None => json_error(req, 404, "this node shows no transport counters"),
        },
        "/api/peers" => {
            let peers = sources.peers.as_ref().map(|f| f()).unwrap_or_default();
            respond(req, 200, JSON, to_json(&peers), true);
        }
        _ => json_error(req, 404, &format!("no such path: {path}")),
    }
}

fn to_json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v)
        .unwrap_or_else(|e| serde_json::json!({ "error": e.to_string() }).to_string())
}

/// A ring view as JSON, with every identifier also given as a decimal string (`*_s` fields are
/// exact; JavaScript numbers are not beyond 2^53) and as a fraction of the circle (`*_f`, for
/// drawing).
fn ring_json(v: &RingView) -> String {
    let frac = |id: selfman_ports::RingId| id.0 as f64 / 2f64.powi(64);
    let peer = |p: &selfman_ports::Peer| serde_json::json!({ "id": p.id.0.to_string(), "f": frac(p.id), "addr": p.addr });
    let body = serde_json::json!({
        "me": peer(&v.me),
        "status": format!("{:?}", v.status),
        "range": v.range.map(|r| serde_json::json!({
            "start": r.start.0.to_string(), "end": r.end.0.to_string(),
            "start_f": frac(r.start), "end_f": frac(r.end),
        })),
        "succ": v.succ.as_ref().map(peer),
        "pred": v.pred.as_ref().map(peer),
        "succ_list": v.succ_list.iter().map(peer).collect::<Vec<_>>(),
        "pred_list": v.pred_list.iter().map(peer).collect::<Vec<_>>(),
        "fingers": v.fingers.iter().map(peer).collect::<Vec<_>>(),
        "crashed": v.crashed,
        "size_estimate": metrics::estimate_size(v),
    });
    body.to_string()
}

/// A tiny blocking `GET` of `path` on `addr` for tests and tools (HTTP/1.0, the whole body,
/// at most 16 MiB, 5 s timeouts). Not a general HTTP client.
///
/// # Errors
///
/// The connection fails, times out, or the status is not 200 (the error holds the status line).
pub fn get(addr: SocketAddr, path: &str) -> std::io::Result<String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.set_write_timeout(Some(Duration::from_secs(5)))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut raw = Vec::new();
    s.take(16 << 20).read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.lines().next().unwrap_or("");
    if status.split_whitespace().nth(1) != Some("200") {
        return Err(std::io::Error::other(format!("{status}: {body}")));
    }
    Ok(body.to_owned())
}
