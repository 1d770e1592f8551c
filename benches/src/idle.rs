//! CPU used by an idle system: C components, each with a pending (far-off) timer.

use std::time::{Duration, Instant};

use selfman::prelude::*;
use selfman::LifecycleState;

use crate::args::Args;

#[derive(Default)]
struct Sleeper {
    timer: Required<Timer>,
}

impl Sleeper {
    fn on_timeout(&mut self, _: Timeout) -> Handled {
        Ok(())
    }
}

impl ComponentDefinition for Sleeper {
    fn setup(&mut self, s: &mut Setup<Self>) {
        s.require(|c| &mut c.timer, Self::on_timeout);
    }
    fn on_start(&mut self) -> Handled {
        self.timer.schedule_once(TimerId(1), Duration::from_secs(3600));
        Ok(())
    }
}

/// User + system CPU time of this process, from /proc/self/stat (Linux), in clock ticks.
fn cpu_ticks() -> Result<u64, String> {
    let stat = std::fs::read_to_string("/proc/self/stat").map_err(|e| e.to_string())?;
    let after = stat.rsplit_once(')').ok_or("bad /proc/self/stat")?.1;
    let f: Vec<&str> = after.split_whitespace().collect();
    let utime: u64 = f.get(11).and_then(|v| v.parse().ok()).ok_or("bad utime")?;
    let stime: u64 = f.get(12).and_then(|v| v.parse().ok()).ok_or("bad stime")?;
    Ok(utime + stime)
}

pub(crate) fn run(a: &Args) -> Result<String, String> {
    let count = a.get("components", 10_000)? as usize;
    let seconds = a.get("seconds", 5)?;
    let threads = a.threads()?;
    let rt = Runtime::builder().workers(threads).build();
    let err = |e: selfman::Error| e.to_string();
    let mut all = Vec::with_capacity(count);
    for _ in 0..count {
        let c = rt.create(Sleeper::default).map_err(err)?;
        rt.connect_timer(&c).map_err(err)?;
        rt.start(&c).map_err(err)?;
        all.push(c);
    }
    for c in &all {
        c.await_state(LifecycleState::Active, Duration::from_secs(60)).map_err(err)?;
    }
    std::thread::sleep(Duration::from_millis(500)); // let the timer requests settle
    let t0 = cpu_ticks()?;
    let w0 = Instant::now();
    std::thread::sleep(Duration::from_secs(seconds));
    let ticks = cpu_ticks()? - t0;
    let wall = w0.elapsed().as_secs_f64();
    // Linux reports CPU time in USER_HZ = 100 ticks per second.
    let cpu_percent = ticks as f64 / 100.0 / wall * 100.0;
    rt.shutdown().map_err(err)?;
    Ok(format!(
        "idle components={count} timers={count} threads={threads} seconds={seconds} cpu_percent={cpu_percent:.2}"
    ))
}
