//! Two network namespaces joined by one virtual link, for the partition run
//! (`ring-cluster --partition-s S`).
//!
//! ```text
//!   namespace  selfman-rc-<pid>-a              namespace  selfman-rc-<pid>-b
//!   nodes 0, 2, 4, … listen on 10.213.0.1      nodes 1, 3, 5, … listen on 10.213.0.2
//!            └── veth smrc<pid>a ═══════════ veth smrc<pid>b ──┘
//! ```
//!
//! The nodes of one side reach each other over the side's own address (the kernel's local
//! route, whatever the link's state); every message between the sides crosses the link.
//! [`Split::cut`] sets the link down — packets across are no longer routed, so both sides see
//! the other fall silent, as in a real partition — and [`Split::heal`] sets it up again. Both
//! namespaces (and with them the link) are deleted when the [`Split`] is dropped, on every path;
//! a namespace left by a launcher that was itself killed is deleted by the next run
//! ([`remove_stale`]), recognised by its name and the launcher PID in it.
//!
//! Needs root and iproute2's `ip`.

use std::net::{IpAddr, Ipv4Addr};
use std::process::Command;

/// The prefix of every namespace this program creates.
const PREFIX: &str = "selfman-rc-";

/// The two sides' addresses (a /30 of its own inside each run's namespaces, so runs do not
/// collide).
pub(super) const SIDE_IPS: [IpAddr; 2] =
    [IpAddr::V4(Ipv4Addr::new(10, 213, 0, 1)), IpAddr::V4(Ipv4Addr::new(10, 213, 0, 2))];

/// `net.ipv4.tcp_retries2` inside both namespaces: TCP gives up on a connection whose data
/// goes unacknowledged for about 12.6 s (RTOs of 0.2, 0.4, … 6.4 s) instead of Linux's ~15
/// minutes. Why: an established connection across the cut keeps what the nodes sent meanwhile
/// and delivers it when the link comes back, and those late messages (probes, ring
/// maintenance) rejoin the rings by themselves — measured: without this, a ring with merging
/// switched off was one ring again 275 ms after a 35 s partition. A partition that outlasts
/// TCP's patience (minutes on a default system, seconds here) is the case the merge is for.
pub(super) const TCP_RETRIES2: u32 = 5;

/// The two namespaces and the link between them.
#[derive(Debug)]
pub(super) struct Split {
    /// Namespace names, side a then side b.
    pub(super) names: [String; 2],
    /// The link's ends, in side a and side b.
    veths: [String; 2],
}

/// Runs `ip ARGS`; `Err` with what it printed.
fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run `ip` (iproute2): {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`ip {}` failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Deletes the namespaces of earlier launchers that no longer run (they were killed before
/// they could clean up). Best effort.
pub(super) fn remove_stale() {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else { return };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let name = line.split_whitespace().next().unwrap_or("");
        if let Some(pid) = launcher_pid(name) {
            if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
                let _ = ip(&["netns", "del", name]);
            }
        }
    }
}

/// The launcher PID in a namespace name of this program (`selfman-rc-<pid>-a|b`).
fn launcher_pid(name: &str) -> Option<u32> {
    let rest = name.strip_prefix(PREFIX)?;
    let (pid, side) = rest.rsplit_once('-')?;
    if side != "a" && side != "b" {
        return None;
    }
    pid.parse().ok()
}

impl Split {
    /// Creates both namespaces (loopback up), the link between them and the two addresses,
    /// with the link up. Whatever was created is removed again if a step fails.
    pub(super) fn create() -> Result<Split, String> {
        let pid = std::process::id();
        let split = Split {
            names: [format!("{PREFIX}{pid}-a"), format!("{PREFIX}{pid}-b")],
            // Interface names have at most 15 bytes: "smrc" + up to 10 digits + side.
            veths: [format!("smrc{pid}a"), format!("smrc{pid}b")],
        };
        // From here on, `Drop` deletes whatever exists.
        let [na, nb] = &split.names;
        let [va, vb] = &split.veths;
        ip(&["netns", "add", na]).map_err(|e| {
            format!("--partition-s needs root and iproute2 to create network namespaces: {e}")
        })?;
        ip(&["netns", "add", nb])?;
        ip(&["link", "add", va, "netns", na, "type", "veth", "peer", "name", vb, "netns", nb])?;
        for (side, (ns, veth)) in split.names.iter().zip(&split.veths).enumerate() {
            let retries = format!("net.ipv4.tcp_retries2={TCP_RETRIES2}");
            ip(&["netns", "exec", ns, "sysctl", "-q", "-w", &retries])?;
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
            ip(&["-n", ns, "addr", "add", &format!("{}/30", SIDE_IPS[side]), "dev", veth])?;
            ip(&["-n", ns, "link", "set", veth, "up"])?;
        }
        Ok(split)
    }

    /// Sets the link down: nothing crosses between the sides.
    pub(super) fn cut(&self) -> Result<(), String> {
        ip(&["-n", &self.names[0], "link", "set", &self.veths[0], "down"])
    }

    /// Sets the link up again.
    pub(super) fn heal(&self) -> Result<(), String> {
        ip(&["-n", &self.names[0], "link", "set", &self.veths[0], "up"])
    }
}

impl Drop for Split {
    fn drop(&mut self) {
        // Deleting a namespace deletes its end of the link, and with it the other end.
        for ns in &self.names {
            let _ = ip(&["netns", "del", ns]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::launcher_pid;

    #[test]
    fn only_this_programs_namespaces_are_recognised() {
        assert_eq!(launcher_pid("selfman-rc-1234-a"), Some(1234));
        assert_eq!(launcher_pid("selfman-rc-1234-b"), Some(1234));
        for other in ["selfman-rc-1234-c", "selfman-rc-x-a", "other-1234-a", "selfman-rc-", ""] {
            assert_eq!(launcher_pid(other), None, "{other}");
        }
    }
}
