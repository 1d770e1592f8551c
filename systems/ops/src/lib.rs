//! The operator's window on a Selfman node: a small HTTP endpoint, read-only, that serves
//!
//! * `/metrics` — Prometheus text format: per component events handled, queue depth, faults,
//!   restarts and swaps; the transport's counters; the ring as this node sees it (in a ring or
//!   not, estimated size, list lengths, suspected peers, its range); plus whatever the system
//!   adds ([`Sources::metrics`]);
//! * `/api/node`, `/api/components`, `/api/ring`, `/api/replicas`, `/api/net`, `/api/peers` —
//!   JSON: who this node is, its component tree ([`selfman_core::SystemSnapshot`]), its ring
//!   view ([`selfman_ports::RingView`]), its replication state
//!   ([`selfman_ports::ReplicaView`]), its transport counters, and the other nodes' HTTP
//!   addresses;
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
//! Every response is bounded by the node's own state; request bodies are never read except an
//! admin action's (at most [`MAX_ADMIN_BODY`]); anything but `GET` and `HEAD` is answered `405`,
//! except `POST /api/admin/NAME`, which runs an action registered with [`Sources::action`] and
//! only with the token given to [`Sources::admin_token`]. The JSON paths allow any origin (they are read-only),
//! so one node's dashboard can poll the others.

pub mod client;
pub mod logging;
pub mod metrics;

pub use client::get;

use std::collections::BTreeMap;
use std::io::Read;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use selfman_core::SystemSnapshot;
use selfman_net::NetStats;
use selfman_ports::{ReplicaView, RingView};
use tiny_http::{Header, Method, Request, Response, Server};

use crate::metrics::Metrics;

type Getter<T> = Box<dyn Fn() -> T + Send + Sync>;
type Writer = Box<dyn Fn(&mut Metrics) + Send + Sync>;
type Run = Box<dyn Fn(&str) -> Result<String, String> + Send + Sync>;

/// An operator action (`POST /api/admin/NAME`).
struct Action {
    help: String,
    run: Run,
}

/// The largest admin request body accepted.
pub const MAX_ADMIN_BODY: usize = 64 << 10;

/// What a node shows on its endpoint: each part is a closure the server calls per request.
pub struct Sources {
    name: String,
    system: Option<Getter<Option<SystemSnapshot>>>,
    ring: Option<Getter<Option<RingView>>>,
    net: Option<Getter<NetStats>>,
    peers: Option<Getter<Vec<String>>>,
    replicas: Option<Getter<Option<ReplicaView>>>,
    extra: Option<Writer>,
    token: Option<String>,
    actions: BTreeMap<String, Action>,
    denied: AtomicU64,
    runs: AtomicU64,
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
        Sources {
            name: name.into(),
            system: None,
            ring: None,
            net: None,
            peers: None,
            replicas: None,
            extra: None,
            token: None,
            actions: BTreeMap::new(),
            denied: AtomicU64::new(0),
            runs: AtomicU64::new(0),
        }
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

    /// The node's replication state (`None` while it has none): what it owns, serves,
    /// receives and still hands over, and how many items it stores.
    #[must_use]
    pub fn replicas(mut self, f: impl Fn() -> Option<ReplicaView> + Send + Sync + 'static) -> Self {
        self.replicas = Some(Box::new(f));
        self
    }

    /// More metric families, written after the built-in ones.
    #[must_use]
    pub fn metrics(mut self, f: impl Fn(&mut Metrics) + Send + Sync + 'static) -> Self {
        self.extra = Some(Box::new(f));
        self
    }

    /// Enables the admin actions: `POST /api/admin/NAME` runs only with the header
    /// `Authorization: Bearer TOKEN`. Without a token (the default) every action is refused
    /// with `403`. Use a long random token and keep the endpoint on a trusted network: HTTP
    /// carries it in clear.
    #[must_use]
    pub fn admin_token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// An operator action: `run` gets the request body (at most [`MAX_ADMIN_BODY`] bytes, UTF-8)
    /// and answers a message, or an error the caller sees with status `400`. It runs on the
    /// endpoint's thread: other requests wait until it returns.
    #[must_use]
    pub fn action(
        mut self,
        name: impl Into<String>,
        help: impl Into<String>,
        run: impl Fn(&str) -> Result<String, String> + Send + Sync + 'static,
    ) -> Self {
        self.actions.insert(name.into(), Action { help: help.into(), run: Box::new(run) });
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
        m.single(
            "selfman_ops_admin_denied_total",
            metrics::Kind::Counter,
            "Admin requests refused for a missing or wrong token.",
            self.denied.load(Ordering::Relaxed) as f64,
        );
        m.single(
            "selfman_ops_admin_actions_total",
            metrics::Kind::Counter,
            "Admin actions run.",
            self.runs.load(Ordering::Relaxed) as f64,
        );
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
    if status == 405 {
        r = r.with_header(header("Allow", "GET, HEAD"));
    }
    if status == 401 {
        r = r.with_header(header("WWW-Authenticate", "Bearer"));
    }
    let _ = req.respond(r);
}

fn json_error(req: Request, status: u16, msg: &str) {
    let body = serde_json::json!({ "error": msg }).to_string();
    respond(req, status, "application/json", body, true);
}

fn handle(sources: &Sources, addr: SocketAddr, req: Request) {
    if let Some(name) = req.url().strip_prefix("/api/admin/") {
        let name = name.split('?').next().unwrap_or("").to_owned();
        return admin(sources, &name, req);
    }
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
        "/api/replicas" => match sources.replicas.as_ref().and_then(|f| f()) {
            Some(v) => respond(req, 200, JSON, to_json(&v), true),
            None => json_error(req, 404, "this node shows no replication state"),
        },
        "/api/net" => match &sources.net {
            Some(f) => respond(req, 200, JSON, to_json(&f()), true),
            None => json_error(req, 404, "this node shows no transport counters"),
        },
        "/api/admin" => {
            let actions: Vec<_> = sources
                .actions
                .iter()
                .map(|(n, a)| serde_json::json!({ "name": n, "help": a.help }))
                .collect();
            let body =
                serde_json::json!({ "enabled": sources.token.is_some(), "actions": actions });
            respond(req, 200, JSON, body.to_string(), true);
        }
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

/// `POST /api/admin/NAME`: authenticated, bounded, then the action.
fn admin(sources: &Sources, name: &str, mut req: Request) {
    if *req.method() != Method::Post {
        let m = req.method().to_string();
        let r = Response::from_string(
            serde_json::json!({ "error": format!("{m} is not allowed: admin actions are POST") })
                .to_string(),
        )
        .with_status_code(405)
        .with_header(header("Content-Type", "application/json"))
        .with_header(header("Allow", "POST"));
        let _ = req.respond(r);
        return;
    }
    let from = req.remote_addr().map_or_else(|| "?".to_owned(), ToString::to_string);
    let Some(token) = &sources.token else {
        return json_error(req, 403, "admin actions are disabled on this node (no admin token)");
    };
    let given = req
        .headers()
        .iter()
        .find(|h| h.field.equiv("Authorization"))
        .and_then(|h| h.value.as_str().strip_prefix("Bearer ").map(str::to_owned))
        .unwrap_or_default();
    let ok = subtle::ConstantTimeEq::ct_eq(given.as_bytes(), token.as_bytes());
    if !bool::from(ok) {
        sources.denied.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(%from, action = name, "admin request refused: missing or wrong token");
        return json_error(req, 401, "a valid admin token is required (Authorization: Bearer …)");
    }
    let Some(action) = sources.actions.get(name) else {
        return json_error(req, 404, &format!("no such admin action: {name}"));
    };
    if req.body_length().is_some_and(|n| n > MAX_ADMIN_BODY) {
        return json_error(req, 413, &format!("the body exceeds {MAX_ADMIN_BODY} bytes"));
    }
    let mut body = Vec::new();
    let read = req.as_reader().take(MAX_ADMIN_BODY as u64 + 1).read_to_end(&mut body);
    if read.is_err() || body.len() > MAX_ADMIN_BODY {
        return json_error(req, 413, &format!("the body exceeds {MAX_ADMIN_BODY} bytes"));
    }
    let Ok(text) = String::from_utf8(body) else {
        return json_error(req, 400, "the body is not UTF-8");
    };
    sources.runs.fetch_add(1, Ordering::Relaxed);
    tracing::info!(%from, action = name, "admin action");
    match (action.run)(&text) {
        Ok(msg) => {
            let body = serde_json::json!({ "ok": msg }).to_string();
            respond(req, 200, "application/json", body, false);
        }
        Err(e) => json_error(req, 400, &e),
    }
}
