//! `kv-load`: the load clients of the store comparison (`systems/store/bench/`).
//!
//! ```text
//! kv-load etcd-put  --endpoints URL[,URL...] --clients C --requests N [--keys K] [--value-bytes B]
//! kv-load redis-tx  --addr HOST:PORT[,HOST:PORT...] --clients C --transactions N [--keys K]
//! kv-load redis-fill --addr HOST:PORT[,...] --clients C --keys N [--pipeline P] [--value-bytes B]
//! kv-load redis-check --addr HOST:PORT --keys N [--sample S] [--value-bytes B]
//! kv-load redis-acked --addr HOST:PORT[,...] --clients C --duration-ms D [--interval-ms I]
//!         [--kill-pid PID --kill-at-ms T] [--window-ms W] [--value-bytes B]
//! ```
//!
//! Each client is one thread with one kept-alive connection, issuing its next request when the
//! previous one is answered (closed loop, like `redis-benchmark -c C`); the requests are split
//! evenly over the clients and the clients round-robin over the endpoints. Each prints one line:
//!
//! ```text
//! etcd-put clients=C requests=N elapsed_ms=X ops_per_s=Y p50_us=A p99_us=B errors=E
//! redis-tx clients=C transactions=N elapsed_ms=X tx_per_s=Y p50_us=A p99_us=B aborted=R errors=E
//! ```
//!
//! `etcd-put` writes random keys `key:NNNNNN` of `--keys` with `--value-bytes` values through
//! etcd's v3 JSON gateway (`POST /v3/kv/put`, base64 key and value). `redis-tx` runs, per
//! transaction, `MULTI; GET a; GET b; SET a ..; SET b ..; EXEC` on two distinct random keys of
//! `--keys` (two reads and two writes, one distributed transaction in Selfman); an `EXEC`
//! answered null (aborted) counts in `aborted` and its time in the latencies. Errors (error
//! replies, HTTP failures) are counted; the latencies are of completed requests.
//!
//! `redis-fill` writes the keys `fill:NNNNNNNN` (`0..N`, split over the clients in stripes)
//! with `SET`s pipelined `--pipeline` deep (default 64), or with `--per-command K` (K > 1) as
//! `MSET`s of K keys each (one transaction per `MSET`), then prints
//! `redis-fill clients=C keys=N pipeline=P per_command=K elapsed_ms=X sets_per_s=Y errors=E`
//! (`sets_per_s` counts keys, and `errors` commands); any error
//! reply makes it exit non-zero after the line, so a partly loaded store is never mistaken for
//! a full one.
//!
//! `redis-check` reads `--sample` (default 2,000) of `redis-fill`'s keys, evenly spread over
//! `0..N`, with pipelined `GET`s at the first address and prints `redis-check keys=N sample=S
//! elapsed_ms=X wrong=W errors=E` (`wrong`: absent or another value); it exits non-zero
//! unless every one was read with its value.
//!
//! `redis-acked` is the kill test's load (`systems/store/bench/kill9.sh`): each client `SET`s
//! keys of its own that are never written twice (`ack:<run>:<client>:<n>`, value
//! `<client>-<n>` padded to `--value-bytes`) for `--duration-ms`, one at a time, and remembers
//! every `SET` answered `+OK` (acknowledged). A dropped connection (the node died) leaves that
//! `SET`'s outcome unknown (`unknown`, not acknowledged); the client reconnects to the next
//! address, round-robin. An error reply counts in `errors`. With `--kill-pid`, the process
//! sends SIGKILL to that PID (`kill -KILL`) `--kill-at-ms` after the load started. Then it reads
//! every acknowledged key back with `GET` (pipelined, from whichever address still answers) and
//! counts the keys missing or holding another value as `lost`. Acknowledged `SET`s are counted
//! per `--interval-ms` (default 100) interval of their answer's time; the rates are over a
//! sliding window of `--window-ms` (default 500) moved by one interval:
//!
//! ```text
//! redis-acked clients=C duration_ms=D acked=A unknown=U errors=E lost=L before_ops_s=X dip_ops_s=Y recovered_ms=Z kill_at_ms=T
//! timeline_ops_s=R0,R1,...   (one rate per interval, for plotting)
//! ```
//!
//! `before_ops_s` is the mean rate over the 2 s before the kill, `dip_ops_s` the lowest window
//! rate from the kill to the end of the load, and `recovered_ms` the time from the kill to the
//! end of the last window whose rate is below 80 % of `before_ops_s` (0 when none is; `none`
//! when the load's last window is still below, i.e. it never came back).

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("etcd-put") => etcd_put(&Opts::parse(&args[1..])),
        Some("redis-tx") => redis_tx(&Opts::parse(&args[1..])),
        Some("redis-fill") => redis_fill(&Opts::parse(&args[1..])),
        Some("redis-acked") => redis_acked(&Opts::parse(&args[1..])),
        Some("redis-check") => redis_check(&Opts::parse(&args[1..])),
        _ => Err(
            "usage: kv-load etcd-put|redis-tx|redis-fill|redis-check|redis-acked [options] (see the source's header)"
                .into(),
        ),
    };
    if let Err(e) = result {
        eprintln!("kv-load: {e}");
        std::process::exit(2);
    }
}

/// The options, as `--name value` pairs.
struct Opts(Vec<(String, String)>);

impl Opts {
    fn parse(args: &[String]) -> Opts {
        let mut pairs = Vec::new();
        let mut it = args.iter();
        while let Some(name) = it.next() {
            let value = it.next().cloned().unwrap_or_default();
            pairs.push((name.trim_start_matches("--").to_owned(), value));
        }
        Opts(pairs)
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().rev().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    fn num(&self, name: &str, default: u64) -> Result<u64, String> {
        match self.get(name) {
            None => Ok(default),
            Some(v) => v.parse().map_err(|_| format!("--{name} {v}: not a number")),
        }
    }

    fn list(&self, name: &str) -> Result<Vec<String>, String> {
        let v = self.get(name).ok_or(format!("--{name} is required"))?;
        Ok(v.split(',').map(str::to_owned).collect())
    }
}

/// A small xorshift generator per client.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// What one client thread measured.
#[derive(Default)]
struct Tally {
    latencies_us: Vec<u64>,
    errors: u64,
    aborted: u64,
}

/// Runs `clients` threads, client `i` calling `work(i)`; returns the merged tally and the
/// wall time from the first start to the last end.
fn run_clients<F>(clients: u64, work: F) -> Result<(Tally, Duration), String>
where
    F: Fn(u64) -> Result<Tally, String> + Send + Sync + 'static,
{
    let work = Arc::new(work);
    let start = Instant::now();
    let handles: Vec<_> = (0..clients)
        .map(|i| {
            let work = Arc::clone(&work);
            std::thread::spawn(move || work(i))
        })
        .collect();
    let mut all = Tally::default();
    for h in handles {
        let t = h.join().map_err(|_| "a client thread panicked".to_owned())??;
        all.latencies_us.extend(t.latencies_us);
        all.errors += t.errors;
        all.aborted += t.aborted;
    }
    let elapsed = start.elapsed();
    all.latencies_us.sort_unstable();
    Ok((all, elapsed))
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn share(total: u64, clients: u64, i: u64) -> u64 {
    total / clients + u64::from(i < total % clients)
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn base64(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for j in 0..4 {
            if j <= chunk.len() {
                out.push(B64[(n >> (18 - 6 * j) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn etcd_put(o: &Opts) -> Result<(), String> {
    let endpoints = o.list("endpoints")?;
    let clients = o.num("clients", 50)?.max(1);
    let requests = o.num("requests", 20_000)?;
    let keys = o.num("keys", 100_000)?.max(1);
    let value = vec![b'x'; o.num("value-bytes", 3)? as usize];
    let value = base64(&value);
    let work = move |i: u64| -> Result<Tally, String> {
        let url = format!("{}/v3/kv/put", endpoints[(i as usize) % endpoints.len()]);
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(10)))
            .http_status_as_error(false)
            .build()
            .into();
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ (i + 1).wrapping_mul(0x2545_f491_4f6c_dd1d));
        let mut t = Tally::default();
        for _ in 0..share(requests, clients, i) {
            let key = base64(format!("key:{:06}", rng.next() % keys).as_bytes());
            let body = format!("{{\"key\":\"{key}\",\"value\":\"{value}\"}}");
            let began = Instant::now();
            let ok = match agent.post(&url).content_type("application/json").send(&body) {
                Ok(mut resp) => {
                    let status = resp.status().as_u16();
                    let text = resp.body_mut().read_to_string().unwrap_or_default();
                    status == 200 && text.contains("\"header\"")
                }
                Err(_) => false,
            };
            if ok {
                t.latencies_us.push(began.elapsed().as_micros() as u64);
            } else {
                t.errors += 1;
            }
        }
        Ok(t)
    };
    let (t, elapsed) = run_clients(clients, work)?;
    let done = t.latencies_us.len() as f64;
    println!(
        "etcd-put clients={clients} requests={requests} elapsed_ms={} ops_per_s={:.0} p50_us={} p99_us={} errors={}",
        elapsed.as_millis(),
        done / elapsed.as_secs_f64(),
        percentile(&t.latencies_us, 0.50),
        percentile(&t.latencies_us, 0.99),
        t.errors
    );
    Ok(())
}

/// A RESP reply, as far as this client needs it.
#[derive(Debug, PartialEq)]
enum Resp {
    Simple,
    Error(String),
    Int,
    Bulk(Vec<u8>),
    Null,
    Array(usize),
}

fn read_reply(r: &mut BufReader<TcpStream>) -> Result<Resp, String> {
    let mut line = String::new();
    if r.read_line(&mut line).map_err(|e| e.to_string())? == 0 {
        return Err("the server closed the connection".into());
    }
    let line = line.trim_end();
    let (kind, rest) = line.split_at(1.min(line.len()));
    let n = || rest.parse::<i64>().map_err(|_| format!("bad reply line {line:?}"));
    Ok(match kind {
        "+" => Resp::Simple,
        "-" => Resp::Error(rest.to_owned()),
        ":" => Resp::Int,
        "_" => Resp::Null,
        "$" => match n()? {
            -1 => Resp::Null,
            len => {
                let mut buf = vec![0u8; len as usize + 2];
                std::io::Read::read_exact(r, &mut buf).map_err(|e| e.to_string())?;
                buf.truncate(len as usize);
                Resp::Bulk(buf)
            }
        },
        "*" => match n()? {
            -1 => Resp::Null,
            len => {
                let len = len as usize;
                for _ in 0..len {
                    read_reply(r)?;
                }
                Resp::Array(len)
            }
        },
        _ => return Err(format!("bad reply line {line:?}")),
    })
}

fn command(out: &mut Vec<u8>, parts: &[&[u8]]) {
    out.extend_from_slice(format!("*{}\r\n", parts.len()).as_bytes());
    for p in parts {
        out.extend_from_slice(format!("${}\r\n", p.len()).as_bytes());
        out.extend_from_slice(p);
        out.extend_from_slice(b"\r\n");
    }
}

fn redis_tx(o: &Opts) -> Result<(), String> {
    let addrs = o.list("addr")?;
    let clients = o.num("clients", 50)?.max(1);
    let total = o.num("transactions", 20_000)?;
    let keys = o.num("keys", 100_000)?.max(2);
    let work = move |i: u64| -> Result<Tally, String> {
        let addr = &addrs[(i as usize) % addrs.len()];
        let stream = TcpStream::connect(addr).map_err(|e| format!("{addr}: {e}"))?;
        stream.set_nodelay(true).map_err(|e| e.to_string())?;
        stream.set_read_timeout(Some(Duration::from_secs(70))).map_err(|e| e.to_string())?;
        let mut w = stream.try_clone().map_err(|e| e.to_string())?;
        let mut r = BufReader::new(stream);
        let mut rng = Rng(0x2545_f491_4f6c_dd1d ^ (i + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let mut t = Tally::default();
        let mut buf = Vec::new();
        for n in 0..share(total, clients, i) {
            let a = rng.next() % keys;
            let mut b = rng.next() % keys;
            if b == a {
                b = (a + 1) % keys;
            }
            let (ka, kb) = (format!("tx:{a:06}"), format!("tx:{b:06}"));
            let v = format!("{i}-{n}");
            buf.clear();
            command(&mut buf, &[b"MULTI"]);
            command(&mut buf, &[b"GET", ka.as_bytes()]);
            command(&mut buf, &[b"GET", kb.as_bytes()]);
            command(&mut buf, &[b"SET", ka.as_bytes(), v.as_bytes()]);
            command(&mut buf, &[b"SET", kb.as_bytes(), v.as_bytes()]);
            command(&mut buf, &[b"EXEC"]);
            let began = Instant::now();
            w.write_all(&buf).map_err(|e| e.to_string())?;
            // +OK to MULTI, +QUEUED ×4, then the EXEC's array (or null, or an error).
            let mut failed = false;
            for _ in 0..5 {
                failed |= matches!(read_reply(&mut r)?, Resp::Error(_));
            }
            match read_reply(&mut r)? {
                Resp::Array(4) if !failed => {
                    t.latencies_us.push(began.elapsed().as_micros() as u64)
                }
                Resp::Null if !failed => {
                    t.aborted += 1;
                    t.latencies_us.push(began.elapsed().as_micros() as u64);
                }
                _ => t.errors += 1,
            }
        }
        Ok(t)
    };
    let (t, elapsed) = run_clients(clients, work)?;
    let committed = t.latencies_us.len() as u64 - t.aborted;
    println!(
        "redis-tx clients={clients} transactions={total} elapsed_ms={} tx_per_s={:.0} p50_us={} p99_us={} aborted={} errors={}",
        elapsed.as_millis(),
        committed as f64 / elapsed.as_secs_f64(),
        percentile(&t.latencies_us, 0.50),
        percentile(&t.latencies_us, 0.99),
        t.aborted,
        t.errors
    );
    Ok(())
}

/// A connection to one of several addresses.
struct Conn {
    r: BufReader<TcpStream>,
    w: TcpStream,
}

impl Conn {
    /// Connects to `addrs[*next]`, then the following ones round-robin (advancing `*next`),
    /// until one accepts or `deadline` passes.
    fn any(addrs: &[String], next: &mut usize, deadline: Instant) -> Result<Conn, String> {
        let mut last = String::from("no address tried");
        loop {
            for _ in 0..addrs.len() {
                let addr = &addrs[*next % addrs.len()];
                *next += 1;
                match Conn::open(addr) {
                    Ok(c) => return Ok(c),
                    Err(e) => last = format!("{addr}: {e}"),
                }
            }
            if Instant::now() >= deadline {
                return Err(format!("no address accepted a connection ({last})"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn open(addr: &str) -> Result<Conn, String> {
        let stream = TcpStream::connect(addr).map_err(|e| e.to_string())?;
        stream.set_nodelay(true).map_err(|e| e.to_string())?;
        stream.set_read_timeout(Some(Duration::from_secs(30))).map_err(|e| e.to_string())?;
        let w = stream.try_clone().map_err(|e| e.to_string())?;
        Ok(Conn { r: BufReader::new(stream), w })
    }
}

/// `base` padded with `x` to `len` bytes (never cut).
fn padded(base: String, len: usize) -> Vec<u8> {
    let mut v = base.into_bytes();
    if v.len() < len {
        v.resize(len, b'x');
    }
    v
}

fn redis_fill(o: &Opts) -> Result<(), String> {
    let addrs = o.list("addr")?;
    let clients = o.num("clients", 8)?.max(1);
    let keys = o.num("keys", 1_000_000)?;
    let pipeline = o.num("pipeline", 64)?.max(1);
    let value_bytes = o.num("value-bytes", 8)? as usize;
    let per_command = o.num("per-command", 1)?.max(1) as usize;
    let work = move |i: u64| -> Result<Tally, String> {
        let addr = &addrs[(i as usize) % addrs.len()];
        let mut c = Conn::open(addr).map_err(|e| format!("{addr}: {e}"))?;
        let mut t = Tally::default();
        let mut buf = Vec::new();
        let mine: Vec<u64> = (i..keys).step_by(clients as usize).collect();
        for batch in mine.chunks(pipeline as usize * per_command) {
            buf.clear();
            let mut sent = Vec::new();
            for group in batch.chunks(per_command) {
                let mut parts: Vec<Vec<u8>> =
                    vec![if per_command > 1 { b"MSET".to_vec() } else { b"SET".to_vec() }];
                for &n in group {
                    parts.push(format!("fill:{n:08}").into_bytes());
                    parts.push(padded(format!("{n}"), value_bytes));
                }
                let parts: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
                command(&mut buf, &parts);
                sent.push(group.len());
            }
            c.w.write_all(&buf).map_err(|e| format!("{addr}: {e}"))?;
            for keys in sent {
                match read_reply(&mut c.r).map_err(|e| format!("{addr}: {e}"))? {
                    Resp::Simple => t.latencies_us.extend(std::iter::repeat_n(0, keys)),
                    _ => t.errors += 1,
                }
            }
        }
        Ok(t)
    };
    let (t, elapsed) = run_clients(clients, work)?;
    println!(
        "redis-fill clients={clients} keys={keys} pipeline={pipeline} per_command={per_command} elapsed_ms={} sets_per_s={:.0} errors={}",
        elapsed.as_millis(),
        t.latencies_us.len() as f64 / elapsed.as_secs_f64(),
        t.errors
    );
    if t.errors > 0 {
        return Err(format!("{} commands were answered with an error", t.errors));
    }
    Ok(())
}

fn redis_check(o: &Opts) -> Result<(), String> {
    let addr = o.list("addr")?.swap_remove(0);
    let keys = o.num("keys", 1_000_000)?.max(1);
    let sample = o.num("sample", 2000)?.clamp(1, keys);
    let value_bytes = o.num("value-bytes", 8)? as usize;
    let mut c = Conn::open(&addr).map_err(|e| format!("{addr}: {e}"))?;
    let ns: Vec<u64> = (0..sample).map(|j| j * keys / sample).collect();
    let began = Instant::now();
    let (mut wrong, mut errors) = (0u64, 0u64);
    let mut buf = Vec::new();
    for batch in ns.chunks(100) {
        buf.clear();
        for &n in batch {
            command(&mut buf, &[b"GET", format!("fill:{n:08}").as_bytes()]);
        }
        c.w.write_all(&buf).map_err(|e| format!("{addr}: {e}"))?;
        for &n in batch {
            match read_reply(&mut c.r).map_err(|e| format!("{addr}: {e}"))? {
                Resp::Bulk(v) if v == padded(format!("{n}"), value_bytes) => {}
                Resp::Error(_) => errors += 1,
                _ => wrong += 1,
            }
        }
    }
    println!(
        "redis-check keys={keys} sample={sample} elapsed_ms={} wrong={wrong} errors={errors}",
        began.elapsed().as_millis()
    );
    if wrong + errors > 0 {
        return Err(format!("{wrong} keys read wrong and {errors} with an error"));
    }
    Ok(())
}

/// What one `redis-acked` client did.
#[derive(Default)]
struct Acked {
    /// The `n` of every acknowledged `SET`.
    acked: Vec<u64>,
    /// When each was acknowledged, in ms since the load started.
    at_ms: Vec<u64>,
    unknown: u64,
    errors: u64,
}

/// Throughput around a kill, from acknowledgements counted per interval.
#[derive(Debug, PartialEq)]
struct Recovery {
    /// Mean rate (per second) over the 2 s before the kill.
    before: f64,
    /// The lowest window rate from the kill on.
    dip: f64,
    /// From the kill to the end of the last window below 80 % of `before`: 0 when none is,
    /// `None` when the last window is (it never came back) or no window follows the kill.
    recovered_ms: Option<u64>,
}

/// `counts[i]`: acknowledgements in `[i·interval, (i+1)·interval)` ms; windows of `window`
/// ms slide by one interval, starting at the first interval boundary at or after `kill_ms`.
fn recovery(counts: &[u64], interval_ms: u64, window_ms: u64, kill_ms: u64) -> Recovery {
    let per_s = |n: u64, ms: u64| n as f64 * 1000.0 / ms.max(1) as f64;
    let first_before = kill_ms.saturating_sub(2000) / interval_ms;
    let kill_i = kill_ms / interval_ms;
    let before_n: u64 =
        counts.iter().take(kill_i as usize).skip(first_before as usize).copied().sum();
    let before = per_s(before_n, (kill_i - first_before) * interval_ms);
    let w = (window_ms / interval_ms).max(1) as usize;
    let start = kill_ms.div_ceil(interval_ms) as usize;
    let mut dip = f64::INFINITY;
    let mut last_below = None;
    let mut last_window = None;
    for s in start..=counts.len().saturating_sub(w) {
        if s + w > counts.len() {
            break;
        }
        let rate = per_s(counts[s..s + w].iter().sum(), w as u64 * interval_ms);
        dip = dip.min(rate);
        if rate < 0.8 * before {
            last_below = Some(s);
        }
        last_window = Some(s);
    }
    let recovered_ms = match (last_window, last_below) {
        (None, _) => None,
        (Some(l), Some(b)) if b == l => None,
        (Some(_), Some(b)) => Some((b + w) as u64 * interval_ms - kill_ms),
        (Some(_), None) => Some(0),
    };
    Recovery { before, dip: if dip.is_finite() { dip } else { 0.0 }, recovered_ms }
}

fn redis_acked(o: &Opts) -> Result<(), String> {
    let addrs = Arc::new(o.list("addr")?);
    let clients = o.num("clients", 20)?.max(1);
    let duration = o.num("duration-ms", 12_000)?;
    let interval = o.num("interval-ms", 100)?.max(1);
    let window = o.num("window-ms", 500)?.max(interval);
    let value_bytes = o.num("value-bytes", 16)? as usize;
    let kill_pid = match o.get("kill-pid") {
        None => None,
        Some(v) => Some(v.parse::<u32>().map_err(|_| format!("--kill-pid {v}: not a PID"))?),
    };
    let kill_at = o.num("kill-at-ms", duration / 3)?;
    if kill_pid.is_some() && (kill_at < 2000 || kill_at + window > duration) {
        return Err(format!(
            "--kill-at-ms {kill_at}: the kill needs 2 s of load before it and a {window} ms window after it within --duration-ms {duration}"
        ));
    }
    let run = format!(
        "{:x}{:x}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0)
    );
    let start = Instant::now();
    let end = start + Duration::from_millis(duration);
    let killer = kill_pid.map(|pid| {
        std::thread::spawn(move || -> Result<u64, String> {
            std::thread::sleep(
                (start + Duration::from_millis(kill_at)).saturating_duration_since(Instant::now()),
            );
            let at = start.elapsed().as_millis() as u64;
            let status = std::process::Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status()
                .map_err(|e| format!("kill -KILL {pid}: {e}"))?;
            if !status.success() {
                return Err(format!("kill -KILL {pid} failed ({status}): was the PID alive?"));
            }
            Ok(at)
        })
    });
    let value = move |i: u64, n: u64| padded(format!("{i}-{n}"), value_bytes);
    let key = {
        let run = run.clone();
        move |i: u64, n: u64| format!("ack:{run}:{i}:{n}")
    };
    let handles: Vec<_> = (0..clients)
        .map(|i| {
            let addrs = Arc::clone(&addrs);
            let key = key.clone();
            std::thread::spawn(move || -> Result<Acked, String> {
                let mut next = i as usize;
                let mut t = Acked::default();
                let mut conn = None;
                let mut buf = Vec::new();
                let mut n = 0u64;
                while Instant::now() < end {
                    let c = match conn.as_mut() {
                        Some(c) => c,
                        None => conn.insert(Conn::any(&addrs, &mut next, end)?),
                    };
                    buf.clear();
                    command(&mut buf, &[b"SET", key(i, n).as_bytes(), &value(i, n)]);
                    let reply =
                        c.w.write_all(&buf)
                            .map_err(|e| e.to_string())
                            .and_then(|()| read_reply(&mut c.r));
                    match reply {
                        Ok(Resp::Simple) => {
                            t.acked.push(n);
                            t.at_ms.push(start.elapsed().as_millis() as u64);
                        }
                        Ok(_) => t.errors += 1,
                        Err(_) => {
                            t.unknown += 1;
                            conn = None;
                        }
                    }
                    n += 1;
                }
                Ok(t)
            })
        })
        .collect();
    let mut tallies = Vec::new();
    for h in handles {
        tallies.push(h.join().map_err(|_| "a client thread panicked".to_owned())??);
    }
    let kill_ms = match killer {
        None => None,
        Some(k) => Some(k.join().map_err(|_| "the kill thread panicked".to_owned())??),
    };
    let intervals = (duration / interval) as usize;
    let mut counts = vec![0u64; intervals];
    for t in &tallies {
        for &ms in &t.at_ms {
            if let Some(c) = counts.get_mut((ms / interval) as usize) {
                *c += 1;
            }
        }
    }
    // Read every acknowledged key back, from whichever addresses still answer.
    let wanted: Vec<(u64, u64)> = tallies
        .iter()
        .enumerate()
        .flat_map(|(i, t)| t.acked.iter().map(move |&n| (i as u64, n)))
        .collect();
    let wanted = Arc::new(wanted);
    let readers = clients.min(8);
    let verify: Vec<_> = (0..readers)
        .map(|r| {
            let (addrs, wanted, key) = (Arc::clone(&addrs), Arc::clone(&wanted), key.clone());
            std::thread::spawn(move || -> Result<(u64, u64), String> {
                let mine: Vec<(u64, u64)> =
                    wanted.iter().copied().skip(r as usize).step_by(readers as usize).collect();
                let (mut lost, mut unread) = (0, 0);
                let mut next = r as usize;
                let mut buf = Vec::new();
                for batch in mine.chunks(256) {
                    let mut tries = 0;
                    loop {
                        tries += 1;
                        let deadline = Instant::now() + Duration::from_secs(30);
                        let mut c = Conn::any(&addrs, &mut next, deadline)?;
                        buf.clear();
                        for &(i, n) in batch {
                            command(&mut buf, &[b"GET", key(i, n).as_bytes()]);
                        }
                        let answers: Result<Vec<Resp>, String> =
                            c.w.write_all(&buf).map_err(|e| e.to_string()).and_then(|()| {
                                batch.iter().map(|_| read_reply(&mut c.r)).collect()
                            });
                        let Ok(answers) = answers else { continue };
                        let errors = answers.iter().filter(|a| matches!(a, Resp::Error(_))).count();
                        if errors > 0 && tries < 5 {
                            std::thread::sleep(Duration::from_millis(200));
                            continue;
                        }
                        for (&(i, n), a) in batch.iter().zip(&answers) {
                            match a {
                                Resp::Bulk(v) if *v == value(i, n) => {}
                                Resp::Error(_) => unread += 1,
                                _ => lost += 1,
                            }
                        }
                        break;
                    }
                }
                Ok((lost, unread))
            })
        })
        .collect();
    let (mut lost, mut unread) = (0, 0);
    for h in verify {
        let (l, u) = h.join().map_err(|_| "a reader thread panicked".to_owned())??;
        lost += l;
        unread += u;
    }
    let acked = wanted.len();
    let unknown: u64 = tallies.iter().map(|t| t.unknown).sum();
    let errors: u64 = tallies.iter().map(|t| t.errors).sum();
    let rec = match kill_ms {
        Some(k) => recovery(&counts, interval, window, k),
        None => recovery(&counts, interval, window, duration.saturating_sub(window)),
    };
    let recovered = rec.recovered_ms.map_or("none".to_owned(), |ms| ms.to_string());
    println!(
        "redis-acked clients={clients} duration_ms={duration} acked={acked} unknown={unknown} errors={errors} lost={lost} unread={unread} before_ops_s={:.0} dip_ops_s={:.0} recovered_ms={recovered} kill_at_ms={}",
        rec.before,
        rec.dip,
        kill_ms.map_or("none".to_owned(), |k| k.to_string())
    );
    let rates: Vec<String> =
        counts.iter().map(|&c| format!("{:.0}", c as f64 * 1000.0 / interval as f64)).collect();
    println!("timeline_ops_s={}", rates.join(","));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_the_rfc_examples() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
    }

    #[test]
    fn shares_add_up() {
        assert_eq!((0..7).map(|i| share(100, 7, i)).sum::<u64>(), 100);
        assert_eq!(percentile(&[1, 2, 3, 4, 5], 0.5), 3);
    }

    #[test]
    fn recovery_finds_the_dip_and_the_end_of_the_last_slow_window() {
        // 100 ms intervals: 100 acks each (1,000/s), the kill at 3,000 ms, then 5 intervals
        // at 10 (100/s), then back to 100.
        let mut counts = vec![100u64; 30];
        counts.extend([10, 10, 10, 10, 10]);
        counts.extend(vec![100u64; 20]);
        let r = recovery(&counts, 100, 500, 3000);
        assert_eq!(r.before, 1000.0);
        assert_eq!(r.dip, 100.0);
        // Windows of 5 intervals: the one starting at interval 33 holds 10 + 10 + 3 × 100 = 320
        // (640/s, below 800/s) and ends at 3,800 ms; the one at 34 holds 410 (820/s).
        assert_eq!(r.recovered_ms, Some(800));
    }

    #[test]
    fn recovery_without_a_dip_is_zero_and_without_a_return_is_none() {
        let flat = vec![50u64; 60];
        assert_eq!(recovery(&flat, 100, 500, 3000).recovered_ms, Some(0));
        let mut dead = vec![50u64; 30];
        dead.extend(vec![0u64; 30]);
        let r = recovery(&dead, 100, 500, 3000);
        assert_eq!((r.dip, r.recovered_ms), (0.0, None));
        // A kill so late that no window follows it.
        assert_eq!(recovery(&flat, 100, 500, 5800).recovered_ms, None);
    }

    #[test]
    fn padding_never_cuts() {
        assert_eq!(padded("3-14".into(), 6), b"3-14xx");
        assert_eq!(padded("12345".into(), 2), b"12345");
    }
}
