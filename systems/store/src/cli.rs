//! The `selfman` program: `selfman node` runs one store node, `selfman cluster` a local
//! cluster of node processes.
//!
//! ```text
//! selfman node --listen 127.0.0.1:7100 --redis 127.0.0.1:7000 [--join 127.0.0.1:7101] …
//! selfman cluster --nodes 4 [--base-port 7000]
//! ```
//!
//! A node prints one readiness line once it is in the ring and serves Redis:
//! `ready <redis address> ring <ring address> pid <pid>`. It leaves the ring gracefully
//! (handing its data over) on SIGTERM or SIGINT, and on the end of its stdin if started with
//! `--exit-on-stdin-eof`, then exits with status 0.

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use clap::{Args, Parser, Subcommand};
use selfman_core::{Host, NodeAddr, NodeId, Selector};
use selfman_net::{NetConfig, TcpNetwork};
use selfman_ports::{HostId, Ring, RingIndication, RingRequest};
use selfman_runtime::Runtime;
use serde::Deserialize;

use crate::backend::{Backend, BackendStats, NotifyService, StoreService};
use crate::node::{build_store_node, StoreNodeConfig, StorePayload};
use crate::peers::{HttpPeers, OpsHello, PeerBook};
use crate::resp::Limits;
use crate::server::{serve, MovementStats, MovementWatcher, RingState, RingWatcher, Shared};
use crate::walk::{WalkService, WalkStats, Walker};

/// How long a node waits to be in the ring before it gives up.
const JOIN_WAIT: Duration = Duration::from_secs(60);
/// How long a leaving node waits for its hand-over before it exits anyway.
const LEAVE_WAIT: Duration = Duration::from_secs(15);

/// Selfman: a transactional, replicated, self-managing key/value store that Redis clients
/// talk to.
#[derive(Debug, Parser)]
#[command(name = "selfman", version, about, long_about = None)]
pub struct Cli {
    /// What to run.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run one store node: join a ring (or start one) and serve the Redis protocol.
    Node(NodeArgs),
    /// Start a local cluster of N node processes on 127.0.0.1 and stop them all on Ctrl-C.
    Cluster(ClusterArgs),
    /// Talk to a running node's HTTP endpoint (`--http`): list its admin actions and
    /// components, or run an action (for example swap its failure detector live).
    Admin(AdminArgs),
}

/// `selfman admin`'s options.
#[derive(Debug, Args, Clone)]
pub struct AdminArgs {
    /// The node's HTTP address (its `--http`).
    #[arg(long)]
    pub node: SocketAddr,
    /// A file holding the node's admin token (needed to run an action).
    #[arg(long)]
    pub token_file: Option<PathBuf>,
    /// `list` (actions and components), or an action's name.
    pub action: String,
    /// The action's argument (e.g. `swap-fd 200`: the new heartbeat period in ms; `swap-ring
    /// 500`: the stabilization period; `swap-repl 5000`: the repair period).
    pub arg: Option<String>,
}

/// `selfman node`'s options; each may also come from the `--config` file (the command line
/// wins).
#[derive(Debug, Args, Default, Clone)]
pub struct NodeArgs {
    /// The address the node's ring traffic listens on (IP:PORT).
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// The address the Redis protocol is served on (IP:PORT).
    #[arg(long)]
    pub redis: Option<SocketAddr>,
    /// The ring address (`--listen`) of any node of the ring to join; without it, a new ring.
    #[arg(long)]
    pub join: Option<SocketAddr>,
    /// This node's host number: the replicas of a key are kept on distinct hosts.
    #[arg(long)]
    pub host_id: Option<u32>,
    /// Which position of its host's sector to take (0, the anchor, for the first node of a
    /// host; 1, 2, … for further nodes of it).
    #[arg(long)]
    pub position: Option<u32>,
    /// Replicas per key, f (default 4); every node of a ring must use the same.
    #[arg(long)]
    pub replicas: Option<u32>,
    /// The default user's password (clients then AUTH).
    #[arg(long)]
    pub password: Option<String>,
    /// A TOML file with any of these settings (keys: listen, redis, join, host-id, position,
    /// replicas, password, exit-on-stdin-eof).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Leave and exit when stdin closes (for a launcher).
    #[arg(long)]
    pub exit_on_stdin_eof: bool,
    /// Serve the operator endpoint (metrics, JSON, dashboard, admin) on this address.
    #[arg(long)]
    pub http: Option<SocketAddr>,
    /// A file holding the admin token that `selfman admin` must present (without it, admin
    /// actions are refused).
    #[arg(long)]
    pub admin_token_file: Option<PathBuf>,
    /// A file holding the cluster secret (64 hex digits): node links are then authenticated
    /// and encrypted, and nodes without it are refused. Every node needs the same.
    #[arg(long)]
    pub secret_file: Option<PathBuf>,
    /// Log lines on stderr as `text` (default) or `json`; `SELFMAN_LOG` sets the filter.
    #[arg(long)]
    pub log_format: Option<String>,
    /// A deliberate mistake (test builds only): `ignores-watch`.
    #[cfg(feature = "flaws")]
    #[arg(long)]
    pub flaw: Option<String>,
}

/// `selfman cluster`'s options.
#[derive(Debug, Args, Clone)]
pub struct ClusterArgs {
    /// How many nodes.
    #[arg(long, default_value_t = 4)]
    pub nodes: u32,
    /// Node i serves Redis on base-port + i and its ring on base-port + 100 + i.
    #[arg(long, default_value_t = 7000)]
    pub base_port: u16,
    /// Replicas per key.
    #[arg(long, default_value_t = 4)]
    pub replicas: u32,
    /// Give every node an operator endpoint: node i serves HTTP on base-port + 200 + i (open
    /// any one's dashboard: it draws the whole ring).
    #[arg(long)]
    pub http: bool,
}

/// The config file's contents.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct FileConfig {
    listen: Option<String>,
    redis: Option<String>,
    join: Option<String>,
    host_id: Option<u32>,
    position: Option<u32>,
    replicas: Option<u32>,
    password: Option<String>,
    exit_on_stdin_eof: Option<bool>,
    http: Option<String>,
    admin_token_file: Option<String>,
    secret_file: Option<String>,
    log_format: Option<String>,
}

/// The settings of one node, complete and checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeSettings {
    /// Ring traffic's address.
    pub listen: SocketAddr,
    /// The Redis address.
    pub redis: SocketAddr,
    /// A ring member to join through.
    pub join: Option<SocketAddr>,
    /// The host number.
    pub host_id: u32,
    /// The position attempt in the host's sector.
    pub position: u32,
    /// Replicas per key.
    pub replicas: u32,
    /// The password.
    pub password: Option<String>,
    /// Exit when stdin closes.
    pub exit_on_stdin_eof: bool,
    /// The operator endpoint's address.
    pub http: Option<SocketAddr>,
    /// The admin token (read from its file).
    pub admin_token: Option<String>,
    /// The cluster secret (read from its file).
    pub secret: Option<selfman_net::ClusterSecret>,
    /// How log lines are written.
    pub log_format: selfman_ops::logging::LogFormat,
    /// The backend's deliberate mistake (test builds only).
    #[cfg(feature = "flaws")]
    pub flaw: Option<crate::backend::Flaw>,
}

fn addr(key: &str, v: &str) -> Result<SocketAddr, String> {
    v.parse().map_err(|_| format!("config key `{key}`: `{v}` is not an address IP:PORT"))
}

/// Reads the config file (if any) under the command line's options, and checks the result.
///
/// # Errors
///
/// A message naming the file and the key: an unknown key, a value of the wrong type, an
/// address that does not parse, replicas outside 1..=64, or a missing `listen`/`redis`.
pub fn settings(args: &NodeArgs) -> Result<NodeSettings, String> {
    let file = match &args.config {
        None => FileConfig::default(),
        Some(path) => read_config(path)?,
    };
    let from_file = |key: &str, v: &Option<String>| v.as_deref().map(|v| addr(key, v)).transpose();
    let listen = args.listen.or(from_file("listen", &file.listen)?);
    let redis = args.redis.or(from_file("redis", &file.redis)?);
    let join = args.join.or(from_file("join", &file.join)?);
    let replicas = args.replicas.or(file.replicas).unwrap_or(4);
    if !(1..=selfman_replication::MAX_F).contains(&replicas) {
        return Err(format!(
            "`replicas`: {replicas} is out of range (1..={})",
            selfman_replication::MAX_F
        ));
    }
    let http = args.http.or(from_file("http", &file.http)?);
    let path = |cli: &Option<PathBuf>, f: &Option<String>| {
        cli.clone().or_else(|| f.as_ref().map(PathBuf::from))
    };
    let admin_token = match path(&args.admin_token_file, &file.admin_token_file) {
        None => None,
        Some(p) => {
            let t = std::fs::read_to_string(&p)
                .map_err(|e| format!("`admin-token-file` {}: cannot read it: {e}", p.display()))?;
            let t = t.trim().to_owned();
            if t.len() < 16 {
                return Err(format!(
                    "`admin-token-file` {}: the token must be at least 16 characters",
                    p.display()
                ));
            }
            Some(t)
        }
    };
    let secret = match path(&args.secret_file, &file.secret_file) {
        None => None,
        Some(p) => {
            let t = std::fs::read_to_string(&p)
                .map_err(|e| format!("`secret-file` {}: cannot read it: {e}", p.display()))?;
            Some(t.parse().map_err(|e| format!("`secret-file` {}: {e}", p.display()))?)
        }
    };
    let log_format = args
        .log_format
        .clone()
        .or(file.log_format)
        .map(|f| f.parse().map_err(|e| format!("`log-format`: {e}")))
        .transpose()?
        .unwrap_or_default();
    Ok(NodeSettings {
        http,
        admin_token,
        secret,
        log_format,
        listen: listen
            .ok_or("`listen` is required (--listen IP:PORT or `listen` in the config)")?,
        redis: redis.ok_or("`redis` is required (--redis IP:PORT or `redis` in the config)")?,
        join,
        host_id: args.host_id.or(file.host_id).unwrap_or(0),
        position: args.position.or(file.position).unwrap_or(0),
        replicas,
        password: args.password.clone().or(file.password),
        exit_on_stdin_eof: args.exit_on_stdin_eof || file.exit_on_stdin_eof.unwrap_or(false),
        #[cfg(feature = "flaws")]
        flaw: match args.flaw.as_deref() {
            None => None,
            Some("ignores-watch") => Some(crate::backend::Flaw::IgnoresWatch),
            Some("fast-read-trusts-any-majority") => {
                Some(crate::backend::Flaw::FastReadTrustsAnyMajority)
            }
            Some(other) => {
                return Err(format!(
                    "--flaw: unknown flaw `{other}` (ignores-watch, fast-read-trusts-any-majority)"
                ))
            }
        },
    })
}

fn read_config(path: &Path) -> Result<FileConfig, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read the config file {}: {e}", path.display()))?;
    toml::from_str(&text).map_err(|e| format!("config file {}: {e}", path.display()))
}

/// Runs the program with these arguments; returns the exit status.
pub fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Node(args) => settings(&args).and_then(|s| run_node(&s)),
        Command::Cluster(args) => run_cluster(&args),
        Command::Admin(args) => run_admin(&args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("selfman: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Why a node or the cluster stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    Signal(i32),
    StdinClosed,
}

/// Blocks SIGTERM and SIGINT in this thread (and every thread it starts later) and starts a
/// thread that reports them on `to`.
fn catch_signals(to: mpsc::Sender<Stop>) -> Result<(), String> {
    // SAFETY: sigemptyset/sigaddset write into a local sigset_t that we own.
    let set = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGINT);
        set
    };
    // SAFETY: `set` is initialised above; a null old-set pointer is allowed.
    let rc = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    if rc != 0 {
        return Err(format!("cannot block SIGTERM/SIGINT (error {rc})"));
    }
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || loop {
            let mut sig: libc::c_int = 0;
            // SAFETY: `set` is a valid, initialised signal set, `sig` a valid out-pointer.
            if unsafe { libc::sigwait(&set, &mut sig) } == 0 && to.send(Stop::Signal(sig)).is_err()
            {
                return;
            }
        })
        .map(|_| ())
        .map_err(|e| format!("cannot start the signal thread: {e}"))
}

fn watch_stdin(to: mpsc::Sender<Stop>) {
    let _ = std::thread::Builder::new().name("stdin".into()).spawn(move || {
        let mut sink = Vec::new();
        let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut sink);
        let _ = to.send(Stop::StdinClosed);
    });
}

/// Runs one node until a signal (or the end of stdin, if asked).
///
/// # Errors
///
/// A message if the node cannot bind, wire, join or serve.
pub fn run_node(s: &NodeSettings) -> Result<(), String> {
    // warnings and errors on stderr unless SELFMAN_LOG/RUST_LOG say otherwise
    selfman_ops::logging::init_or(s.log_format, "warn").map_err(|e| e.to_string())?;
    let (stop_tx, stop_rx) = mpsc::channel();
    catch_signals(stop_tx.clone())?;
    let err = |e: selfman_core::Error| e.to_string();
    let rt = Runtime::builder().workers(2).spin(Duration::ZERO).build();
    let net_config =
        NetConfig::default().listen(s.listen).io_spin(Duration::ZERO).secret(s.secret.clone());
    let net = TcpNetwork::start(&rt, net_config)
        .map_err(|e| format!("ring address {}: {e}", s.listen))?;
    let config = StoreNodeConfig {
        host: HostId(s.host_id),
        attempt: s.position,
        salt: u64::from(s.host_id) << 32 | u64::from(s.listen.port()),
        replicas: s.replicas,
        ..StoreNodeConfig::default()
    };
    let node = build_store_node(&net, &config).map_err(err)?;
    let stats = Arc::new(BackendStats::default());
    let backend_config = config.backend();
    let backend = {
        let stats = Arc::clone(&stats);
        #[cfg(feature = "flaws")]
        let flaw = s.flaw;
        net.create(move || {
            let b = Backend::new(backend_config, Arc::clone(&stats));
            #[cfg(feature = "flaws")]
            let b = b.with_flaw(flaw);
            b
        })
        .map_err(err)?
    };
    node.connect_backend(&net, &backend).map_err(err)?;
    let walk_stats = Arc::new(WalkStats::default());
    let walker = {
        let stats = Arc::clone(&walk_stats);
        net.create(move || Walker::new(Arc::clone(&stats))).map_err(err)?
    };
    node.connect_walker(&net, &walker).map_err(err)?;
    // Every node keeps the book of its neighbours' endpoints (so that it understands their
    // hellos even without an endpoint of its own) and counts data movement.
    let http_peers = Arc::new(HttpPeers::new());
    let book = {
        let peers = Arc::clone(&http_peers);
        net.create(move || PeerBook::new(Arc::clone(&peers))).map_err(err)?
    };
    let hello = net.network::<OpsHello>(crate::peers::PROTOCOL).map_err(err)?;
    rt.connect(&hello, &book.required().map_err(err)?).map_err(err)?;
    let movement = Arc::new(MovementStats::default());
    let mover = {
        let stats = Arc::clone(&movement);
        net.create(move || MovementWatcher::new(Arc::clone(&stats))).map_err(err)?
    };
    let moves = Selector::<selfman_ports::Replication>::indications(|i| {
        matches!(i, selfman_ports::ReplicationIndication::Movement(_))
    });
    rt.connect_with(
        &node.repl.provided::<selfman_ports::Replication>().map_err(err)?,
        &mover.required().map_err(err)?,
        moves,
    )
    .map_err(err)?;
    let ring_state = Arc::new(Mutex::new(RingState::default()));
    let watcher = {
        let st = Arc::clone(&ring_state);
        net.create(move || RingWatcher::new(Arc::clone(&st))).map_err(err)?
    };
    let ring_port = node.ring.provided::<Ring<StorePayload>>().map_err(err)?;
    // Only what it records reaches it (not a copy of every routed message).
    let told = Selector::<Ring<StorePayload>>::indications(|i| {
        matches!(
            i,
            RingIndication::Joined { .. }
                | RingIndication::Responsibility(_)
                | RingIndication::Neighbours(_)
                | RingIndication::Left
                | RingIndication::JoinRefused(_)
        )
    });
    rt.connect_with(&ring_port, &watcher.required().map_err(err)?, told).map_err(err)?;
    rt.start(&watcher).map_err(err)?;
    for c in node.components() {
        rt.start(&c).map_err(err)?;
    }
    rt.start(&backend).map_err(err)?;
    rt.start(&walker).map_err(err)?;
    rt.start(&book).map_err(err)?;
    rt.start(&mover).map_err(err)?;
    let request = match s.join {
        None => RingRequest::Bootstrap,
        Some(a) => RingRequest::Join { access: NodeAddr::new(a, NodeId::UNKNOWN) },
    };
    ring_port.request(request).map_err(err)?;
    let deadline = Instant::now() + JOIN_WAIT;
    loop {
        let st = ring_state.lock().map(|r| r.clone()).unwrap_or_default();
        if st.id.is_some() {
            break;
        }
        if st.refused {
            return Err(format!(
                "the ring refused the join: position {} of host {}'s sector is taken (use --position {})",
                s.position,
                s.host_id,
                s.position + 1
            ));
        }
        if Instant::now() > deadline {
            return Err(format!(
                "not in a ring after {JOIN_WAIT:?} (is --join {:?} a ring member?)",
                s.join
            ));
        }
        if let Ok(stop) = stop_rx.try_recv() {
            return Err(format!("stopped ({stop:?}) before joining"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let listener =
        TcpListener::bind(s.redis).map_err(|e| format!("redis address {}: {e}", s.redis))?;
    let redis = listener.local_addr().map_err(|e| e.to_string())?;
    let mut settings = BTreeMap::new();
    settings.insert("redis".to_owned(), redis.to_string());
    settings.insert("listen".to_owned(), net.local().addr.to_string());
    settings.insert("replicas".to_owned(), s.replicas.to_string());
    settings.insert("host-id".to_owned(), s.host_id.to_string());
    settings.insert("databases".to_owned(), "1".to_owned());
    settings.insert("save".to_owned(), String::new());
    settings.insert("appendonly".to_owned(), "no".to_owned());
    let shared = Arc::new(Shared {
        service: backend.provided::<StoreService>().map_err(err)?,
        notifier: backend.provided::<NotifyService>().map_err(err)?,
        stats,
        walker: walker.provided::<WalkService>().map_err(err)?,
        walk_stats,
        ring: Arc::clone(&ring_state),
        settings,
        password: s.password.clone().map(String::into_bytes),
        limits: Limits::default(),
        clients: AtomicU64::new(0),
        next_id: AtomicU64::new(1),
        protocol_errors: AtomicU64::new(0),
        stopping: AtomicBool::new(false),
        started: Instant::now(),
        connections_total: AtomicU64::new(0),
        commands: crate::server::CommandCounts::default(),
    });
    let server = {
        let shared = Arc::clone(&shared);
        std::thread::Builder::new()
            .name("redis-accept".into())
            .spawn(move || serve(listener, shared))
            .map_err(|e| e.to_string())?
    };
    let ops = match s.http {
        None => None,
        Some(http) => {
            let parts = crate::ops::OpsParts {
                net: &net,
                node: &node,
                shared: &shared,
                hello,
                movement,
                redis,
                config,
            };
            Some(crate::ops::start(http, s, parts, http_peers)?)
        }
    };
    let ready = format!("{redis} ring {} pid {}", net.local().addr, std::process::id());
    selfman_launch::node::announce_ready(ready).map_err(|e| e.to_string())?;
    if s.exit_on_stdin_eof {
        watch_stdin(stop_tx);
    }
    let why = stop_rx.recv().unwrap_or(Stop::StdinClosed);
    eprintln!("selfman node {redis}: stopping ({why:?}); leaving the ring");
    shared.stopping.store(true, Ordering::Release);
    let _ = server.join();
    let _ = ring_port.request(RingRequest::Leave);
    let deadline = Instant::now() + LEAVE_WAIT;
    while !ring_state.lock().map(|r| r.left).unwrap_or(true) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    if let Some(o) = ops {
        o.shutdown();
    }

    net.shutdown();
    rt.shutdown().map_err(|e| e.to_string())
}

/// `selfman admin`: lists a node's admin actions and components, or runs an action.
///
/// # Errors
///
/// The node does not answer, refuses (wrong token, unknown action) or the action fails.
pub fn run_admin(a: &AdminArgs) -> Result<(), String> {
    use selfman_ops::client;
    if a.action == "list" {
        let admin: serde_json::Value =
            serde_json::from_str(&client::get(a.node, "/api/admin").map_err(|e| e.to_string())?)
                .map_err(|e| e.to_string())?;
        let enabled = admin["enabled"].as_bool().unwrap_or(false);
        println!(
            "admin actions ({}):",
            if enabled { "enabled" } else { "disabled: the node has no admin token" }
        );
        for act in admin["actions"].as_array().into_iter().flatten() {
            println!(
                "  {:<12} {}",
                act["name"].as_str().unwrap_or("?"),
                act["help"].as_str().unwrap_or("")
            );
        }
        let tree: serde_json::Value = serde_json::from_str(
            &client::get(a.node, "/api/components").map_err(|e| e.to_string())?,
        )
        .map_err(|e| e.to_string())?;
        println!("components:");
        for c in tree["components"].as_array().into_iter().flatten() {
            println!(
                "  {:>4} {:<10} queued {:>5} handled {:>10} swaps {} {}",
                c["id"],
                c["state"].as_str().unwrap_or("?"),
                c["queued"],
                c["handled"],
                c["swaps"],
                selfman_ops::metrics::short_type(c["type_name"].as_str().unwrap_or("?"))
            );
        }
        return Ok(());
    }
    let path = a
        .token_file
        .as_ref()
        .ok_or("running an action needs --token-file FILE (the node's admin token)")?;
    let token = std::fs::read_to_string(path)
        .map_err(|e| format!("--token-file {}: {e}", path.display()))?;
    let out = client::admin(a.node, token.trim(), &a.action, a.arg.as_deref().unwrap_or(""))
        .map_err(|e| e.to_string())?;
    let v: serde_json::Value = serde_json::from_str(&out).unwrap_or(serde_json::Value::String(out));
    println!("{}", v["ok"].as_str().unwrap_or(&v.to_string()));
    Ok(())
}

/// Starts the local cluster, waits for a signal (or the end of stdin), stops every node.
///
/// # Errors
///
/// A message if a node cannot be started or does not become ready.
pub fn run_cluster(a: &ClusterArgs) -> Result<(), String> {
    if a.nodes == 0 {
        return Err("--nodes must be at least 1".to_owned());
    }
    let top = u32::from(a.base_port) + if a.http { 200 } else { 100 } + a.nodes;
    if top > u32::from(u16::MAX) || a.nodes > 100 {
        return Err(format!(
            "--base-port {} leaves no room for {} nodes (at most 100, ports base..base+100+N, base+200+N with --http)",
            a.base_port, a.nodes
        ));
    }
    let (stop_tx, stop_rx) = mpsc::channel();
    catch_signals(stop_tx)?;
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this program: {e}"))?;
    let mut cluster = selfman_launch::Cluster::new();
    let ring0 = SocketAddr::from(([127, 0, 0, 1], a.base_port + 100));
    for i in 0..a.nodes {
        let port = |off: u32| (u32::from(a.base_port) + off + i).to_string();
        let mut p = selfman_launch::Program::new(&exe)
            .args(["node", "--exit-on-stdin-eof", "--listen"])
            .arg(format!("127.0.0.1:{}", port(100)))
            .arg("--redis")
            .arg(format!("127.0.0.1:{}", port(0)))
            .args(["--host-id", &i.to_string(), "--replicas", &a.replicas.to_string()])
            .args(["--position", &if i < a.replicas { 0 } else { 1 + i }.to_string()]);
        if i > 0 {
            p = p.arg("--join").arg(ring0.to_string());
        }
        if a.http {
            p = p.arg("--http").arg(format!("127.0.0.1:{}", port(200)));
        }
        let index = cluster.spawn(&p).map_err(|e| e.to_string())?;
        let member = cluster.iter_mut().nth(index).ok_or("the member just started")?;
        let ready = member.wait_ready(JOIN_WAIT).map_err(|e| format!("node {i}: {e}"))?;
        let redis = ready.split_whitespace().next().unwrap_or("?");
        match a.http {
            true => println!(
                "node {i}: redis {redis} http 127.0.0.1:{} pid {}",
                port(200),
                member.pid()
            ),
            false => println!("node {i}: redis {redis} pid {}", member.pid()),
        }
    }
    println!(
        "cluster ready: {} nodes; try `redis-cli -p {}`; Ctrl-C stops every node",
        a.nodes, a.base_port
    );
    let why = stop_rx.recv().unwrap_or(Stop::StdinClosed);
    println!("stopping ({why:?}): {} nodes, pids {:?}", cluster.len(), cluster.pids());
    let statuses =
        cluster.stop_all(LEAVE_WAIT + Duration::from_secs(5)).map_err(|e| e.to_string())?;
    let failed = statuses.iter().filter(|s| !s.success()).count();
    println!("stopped: {} nodes, {failed} exited with an error", statuses.len());
    Ok(())
}
