//! What a daemon that is killed leaves for the next one: the state file.
//!
//! Endpoint devices are persistent TUN devices (see `io::tun`), so a
//! SIGKILL leaves them, with the pods' addresses and routes, where they
//! are. The state file, next to the control socket (`<control>.state`,
//! JSON, written atomically), records where each device is — its current
//! name and network namespace, read from the device's own descriptor once a
//! second and after every reload — and, with the host path, the
//! `ip_forward` value found at start. A restarted daemon reads it before it
//! creates anything:
//!
//! - an endpoint that is still configured is re-attached: new queues on
//!   the same device, from inside its namespace, so the pod keeps its
//!   interface, addresses and routes;
//! - an endpoint that is gone from the configuration is attached too, made
//!   non-persistent and closed, so the kernel deletes it;
//! - the recorded `ip_forward` value is the one to restore at stop;
//! - an underlay forwarding setting recorded by an older podwire (which
//!   turned it off in direct mode) is put back.
//!
//! A clean stop deletes the devices and the file.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::Shared;
use podwire_io::tun::{self, NetnsId, TunQueue};

/// The contents of the state file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    /// The PID that wrote it (for people reading the file).
    pub pid: u32,
    /// An older podwire turned IPv4 forwarding off on this device in
    /// direct mode; this was its value before (read, never written now).
    #[serde(default)]
    pub forwarding: Option<Forwarding>,
    /// The host path set `net.ipv4.ip_forward` to 1; this was its value.
    #[serde(default)]
    pub ip_forward: Option<String>,
    #[serde(default)]
    pub endpoints: Vec<Recorded>,
}

/// The forwarding setting found at start.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Forwarding {
    pub device: String,
    pub original: String,
}

/// Where an endpoint's device was last seen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recorded {
    /// The endpoint's `interfaceName`.
    pub interface: String,
    /// The device's name now (a pod's `eth0`, once moved and renamed).
    pub name: String,
    pub netns: NetnsId,
}

/// The state file of the daemon whose control socket is `control`.
pub fn path_for(control: &Path) -> PathBuf {
    let mut name = control.file_name().unwrap_or_default().to_os_string();
    name.push(".state");
    control.with_file_name(name)
}

/// Reads the state file; `None` when there is none (a clean stop or a
/// first start) or it cannot be read (logged).
pub fn load(path: &Path) -> Option<State> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return None,
        Err(e) => {
            tracing::warn!(path = %path.display(), "cannot read the state file: {e}");
            return None;
        }
    };
    match serde_json::from_str(&text) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(path = %path.display(), "ignoring a state file that does not parse: {e}");
            None
        }
    }
}

/// Writes the state file atomically (a temporary file, then rename).
pub fn save(path: &Path, state: &State) -> io::Result<()> {
    let mut tmp = path.as_os_str().to_os_string();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let text = serde_json::to_string_pretty(state).map_err(io::Error::other)?;
    std::fs::write(&tmp, text + "\n")?;
    std::fs::rename(&tmp, path)
}

/// Finds the devices `recorded` and attaches `queues` queues to each.
/// Returns (interface, queues, where it was found); what cannot be found
/// or attached is logged and skipped (the daemon then creates a new
/// device).
pub fn reattach(
    recorded: &[Recorded],
    mtu_of: impl Fn(&str) -> u16,
    queues: usize,
    offload: bool,
) -> Vec<(String, Vec<TunQueue>, Recorded)> {
    let own = tun::current_netns().ok();
    let mut out = Vec::new();
    for r in recorded {
        let path = if Some(r.netns) == own {
            None
        } else {
            match tun::find_netns(r.netns) {
                Some(p) => Some(p),
                None => {
                    tracing::info!(interface = %r.interface, netns = %r.netns, "the namespace of a previous endpoint device is gone (and the device with it)");
                    continue;
                }
            }
        };
        match tun::attach_in(
            path.as_deref(),
            &r.name,
            mtu_of(&r.interface),
            queues,
            offload,
        ) {
            Ok(Some(q)) => out.push((r.interface.clone(), q, r.clone())),
            Ok(None) => {
                tracing::info!(interface = %r.interface, name = %r.name, netns = %r.netns, "a previous endpoint device is gone")
            }
            Err(e) => tracing::warn!(
                interface = %r.interface,
                name = %r.name,
                netns = %r.netns,
                "cannot re-attach to a previous endpoint device ({e}); re-entering a pod's namespace needs CAP_SYS_ADMIN"
            ),
        }
    }
    out
}

/// What the running daemon would record now.
fn current(shared: &Shared) -> State {
    let snap = shared.snapshot.load();
    let endpoints = snap
        .endpoints
        .iter()
        .filter_map(|e| {
            let loc = e.queues.first()?.location().ok()?;
            Some(Recorded {
                interface: e.interface.clone(),
                name: loc.name,
                netns: loc.netns,
            })
        })
        .collect();
    State {
        pid: std::process::id(),
        forwarding: None,
        ip_forward: shared.host.as_ref().and_then(|h| h.ip_forward_to_restore()),
        endpoints,
    }
}

/// Keeps the state file up to date: once a second, and at once when
/// unparked (after a reload). Ends when the daemon stops; unpark it then.
pub fn start_tracker(
    shared: Arc<Shared>,
    path: PathBuf,
) -> io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("podwire-state".into())
        .spawn(move || {
            let mut last = None;
            let mut failing = false;
            while !shared.stop.load(std::sync::atomic::Ordering::Relaxed) {
                let now = current(&shared);
                if last.as_ref() != Some(&now) {
                    match save(&path, &now) {
                        Ok(()) => {
                            failing = false;
                            last = Some(now);
                        }
                        Err(e) if !failing => {
                            failing = true;
                            tracing::warn!(path = %path.display(), "cannot write the state file ({e}): a restart after a crash will not find the endpoint devices");
                        }
                        Err(_) => {}
                    }
                }
                std::thread::park_timeout(Duration::from_secs(1));
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_file_sits_next_to_the_control_socket() {
        assert_eq!(
            path_for(Path::new("/run/podwire/node1.sock")),
            Path::new("/run/podwire/node1.sock.state")
        );
        assert_eq!(path_for(Path::new("x.sock")), Path::new("x.sock.state"));
    }

    #[test]
    fn state_round_trips_through_the_file() {
        let dir = std::env::temp_dir().join(format!("podwire-state-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("n.sock.state");
        assert_eq!(load(&path), None);
        let s = State {
            pid: 7,
            forwarding: Some(Forwarding {
                device: "eth0".into(),
                original: "1".into(),
            }),
            ip_forward: Some("0".into()),
            endpoints: vec![Recorded {
                interface: "cali1".into(),
                name: "eth0".into(),
                netns: NetnsId {
                    dev: 4,
                    ino: 4026532000,
                },
            }],
        };
        save(&path, &s).unwrap();
        assert_eq!(load(&path), Some(s));
        std::fs::write(&path, "{not json").unwrap();
        assert_eq!(load(&path), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
