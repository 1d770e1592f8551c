//! `kv-load`: the load clients of the store comparison (`systems/store/bench/`).
//!
//! ```text
//! kv-load etcd-put  --endpoints URL[,URL...] --clients C --requests N [--keys K] [--value-bytes B]
//! kv-load redis-tx  --addr HOST:PORT[,HOST:PORT...] --clients C --transactions N [--keys K]
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

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("etcd-put") => etcd_put(&Opts::parse(&args[1..])),
        Some("redis-tx") => redis_tx(&Opts::parse(&args[1..])),
        _ => Err("usage: kv-load etcd-put|redis-tx [options] (see the source's header)".into()),
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
    Bulk,
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
                Resp::Bulk
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
                Resp::Array(4) if !failed => t.latencies_us.push(began.elapsed().as_micros() as u64),
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
}
