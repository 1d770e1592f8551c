//! `launch-test-node`: a node program for the tests of `selfman-launch`, well behaved by default
//! and misbehaving on request.
//!
//! ```text
//! launch-test-node [--say LINE]... [--stderr LINE]... [--sleep-ms N] [--exit CODE]
//!                  [--no-ready | --ready WHAT] [--ignore-term] [--ignore-stdin]
//!                  [--echo] [--flood N]
//! ```
//!
//! In order: ignores SIGTERM if asked; prints the `--say` lines on stdout and the `--stderr`
//! lines on stderr; sleeps; exits with CODE if `--exit` is given; announces `ready WHAT`
//! (default `127.0.0.1:0`) unless `--no-ready`; prints N numbered lines of 100 bytes if
//! `--flood`, then `flooded`; echoes each stdin line as `echo LINE` if `--echo`; then runs
//! until its stdin closes (or forever, with `--ignore-stdin`) and exits 0.

use std::process::ExitCode;
use std::time::Duration;

use selfman_launch::node;

#[derive(Default)]
struct Options {
    say: Vec<String>,
    stderr: Vec<String>,
    sleep: Duration,
    exit: Option<u8>,
    ready: Option<String>,
    no_ready: bool,
    ignore_term: bool,
    ignore_stdin: bool,
    echo: bool,
    flood: u64,
}

fn parse(args: &[String]) -> Result<Options, String> {
    let mut o = Options::default();
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let mut value = || it.next().cloned().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--say" => o.say.push(value()?),
            "--stderr" => o.stderr.push(value()?),
            "--sleep-ms" => {
                o.sleep = Duration::from_millis(value()?.parse().map_err(|e| format!("{e}"))?)
            }
            "--exit" => o.exit = Some(value()?.parse().map_err(|e| format!("{e}"))?),
            "--ready" => o.ready = Some(value()?),
            "--flood" => o.flood = value()?.parse().map_err(|e| format!("{e}"))?,
            "--no-ready" => o.no_ready = true,
            "--ignore-term" => o.ignore_term = true,
            "--ignore-stdin" => o.ignore_stdin = true,
            "--echo" => o.echo = true,
            other => return Err(format!("unknown option `{other}`")),
        }
    }
    Ok(o)
}

fn run(o: Options) -> Result<ExitCode, String> {
    if o.ignore_term {
        // SAFETY: setting a signal's disposition to SIG_IGN installs no handler code; it is done
        // before any other thread exists.
        unsafe { libc::signal(libc::SIGTERM, libc::SIG_IGN) };
    }
    for l in &o.say {
        println!("{l}");
    }
    for l in &o.stderr {
        eprintln!("{l}");
    }
    std::thread::sleep(o.sleep);
    if let Some(code) = o.exit {
        return Ok(ExitCode::from(code));
    }
    if o.no_ready {
        loop {
            std::thread::sleep(Duration::from_secs(1));
        }
    }
    let ready = o.ready.unwrap_or_else(|| "127.0.0.1:0".into());
    let mut launcher = node::announce_ready(ready).map_err(|e| e.to_string())?;
    if o.flood > 0 {
        for i in 0..o.flood {
            launcher.say(format_args!("{i:0>100}")).map_err(|e| e.to_string())?;
        }
        launcher.say("flooded").map_err(|e| e.to_string())?;
    }
    if o.echo {
        while let Some(line) = launcher.read_line().map_err(|e| e.to_string())? {
            launcher.say(format_args!("echo {line}")).map_err(|e| e.to_string())?;
        }
    }
    if o.ignore_stdin {
        loop {
            std::thread::sleep(Duration::from_secs(1));
        }
    }
    launcher.wait_until_closed();
    Ok(ExitCode::SUCCESS)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match parse(&args).and_then(run) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("launch-test-node: {e}");
            ExitCode::from(2)
        }
    }
}
