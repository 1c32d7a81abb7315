//! The control socket: a Unix stream socket, mode 0600, that answers one
//! request per connection. A request is one line, `show <what>` with an
//! optional ` json`, where `<what>` is `routes`, `neigh`, `fdb`,
//! `endpoints` or `stats`; the answer is the text, and the connection
//! closes. An answer that starts with `error: ` is a refusal.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::{Value, json};

use super::Daemon;
use crate::table::{IPIP_DEV, Tables, VXLAN_DEV, Via};

/// What `podwire show` can ask for.
pub const TOPICS: [&str; 5] = ["routes", "neigh", "fdb", "endpoints", "stats"];

/// The running control socket.
pub struct Server {
    path: PathBuf,
    stop: Arc<AtomicBool>,
}

impl Server {
    /// Listens on `path` (replacing a stale socket) and serves requests on
    /// a thread of its own.
    pub fn start(path: &Path, daemon: Arc<Daemon>) -> io::Result<Server> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        match UnixStream::connect(path) {
            Ok(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    "another daemon answers on it",
                ));
            }
            Err(_) => {
                let _ = std::fs::remove_file(path);
            }
        }
        let listener = UnixListener::bind(path)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = Arc::clone(&stop);
        std::thread::Builder::new()
            .name("podwire-control".into())
            .spawn(move || {
                for conn in listener.incoming() {
                    if stop2.load(Ordering::Relaxed) {
                        break;
                    }
                    match conn {
                        Ok(stream) => {
                            if let Err(e) = serve(stream, &daemon) {
                                tracing::debug!("control request failed: {e}");
                            }
                        }
                        Err(e) => tracing::warn!("control socket accept: {e}"),
                    }
                }
            })?;
        Ok(Server {
            path: path.to_path_buf(),
            stop,
        })
    }

    /// Stops serving and removes the socket file.
    pub fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = UnixStream::connect(&self.path);
        let _ = std::fs::remove_file(&self.path);
    }
}

fn serve(stream: UnixStream, daemon: &Daemon) -> io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut line = String::new();
    BufReader::new(&stream).take(256).read_line(&mut line)?;
    let answer = answer(line.trim(), daemon);
    let mut stream = stream;
    stream.write_all(answer.as_bytes())
}

/// The answer to one request.
fn answer(request: &str, daemon: &Daemon) -> String {
    let mut words = request.split_whitespace();
    let (Some("show"), Some(topic)) = (words.next(), words.next()) else {
        return format!("error: unknown request {request:?} (expected: show <topic> [json])\n");
    };
    let json = match words.next() {
        None => false,
        Some("json") => true,
        Some(other) => return format!("error: unknown option {other:?}\n"),
    };
    let snap = daemon.shared().snapshot.load();
    let t = &snap.tables;
    match (topic, json) {
        ("routes", false) => t.routes_text(),
        ("neigh", false) => t.neigh_text(),
        ("fdb", false) => t.fdb_text(),
        ("routes", true) => pretty(routes_json(t)),
        ("neigh", true) => pretty(neigh_json(t)),
        ("fdb", true) => pretty(fdb_json(t)),
        ("endpoints", json) => {
            let totals = daemon.shared().totals();
            if json {
                pretty(serde_json::to_value(&totals.endpoints).unwrap_or(Value::Null))
            } else {
                endpoints_text(&totals.endpoints)
            }
        }
        ("stats", false) => daemon.shared().totals().text(),
        ("stats", true) => {
            pretty(serde_json::to_value(daemon.shared().totals()).unwrap_or(Value::Null))
        }
        (other, _) => format!(
            "error: unknown topic {other:?} (expected one of: {})\n",
            TOPICS.join(", ")
        ),
    }
}

fn pretty(v: Value) -> String {
    let mut s = serde_json::to_string_pretty(&v).unwrap_or_default();
    s.push('\n');
    s
}

/// Routes in the shape `ip -j route` prints them.
pub fn routes_json(t: &Tables) -> Value {
    let dst = |r: &crate::table::Route| {
        if r.dst.prefix() == 32 {
            r.dst.ip().to_string()
        } else {
            format!("{}/{}", r.dst.network(), r.dst.prefix())
        }
    };
    Value::Array(
        t.routes()
            .iter()
            .map(|r| match r.via {
                Via::Blackhole => json!({"type": "blackhole", "dst": dst(r), "flags": []}),
                Via::Endpoint(id) => json!({
                    "dst": dst(r),
                    "dev": t.endpoint(id).map(|e| e.interface.as_str()).unwrap_or("?"),
                    "scope": "link",
                    "flags": [],
                }),
                Via::Vxlan { gw } => {
                    json!({"dst": dst(r), "gateway": gw.to_string(), "dev": VXLAN_DEV, "flags": ["onlink"]})
                }
                Via::Ipip { gw } => {
                    json!({"dst": dst(r), "gateway": gw.to_string(), "dev": IPIP_DEV, "flags": ["onlink"]})
                }
                Via::Direct { gw } => json!({
                    "dst": dst(r),
                    "gateway": gw.to_string(),
                    "dev": t.underlay().name,
                    "flags": ["onlink"],
                }),
            })
            .collect(),
    )
}

/// Neighbours in the shape `ip -j neigh` prints them.
pub fn neigh_json(t: &Tables) -> Value {
    Value::Array(
        t.neigh()
            .iter()
            .map(|n| {
                json!({"dst": n.ip.to_string(), "dev": VXLAN_DEV, "lladdr": n.mac.to_string(), "state": ["PERMANENT"]})
            })
            .collect(),
    )
}

/// FDB entries in the shape `bridge -j fdb` prints them.
pub fn fdb_json(t: &Tables) -> Value {
    Value::Array(
        t.fdb()
            .iter()
            .map(|f| {
                json!({"mac": f.mac.to_string(), "ifname": VXLAN_DEV, "dst": f.dst.to_string(), "flags": ["self"], "state": "permanent"})
            })
            .collect(),
    )
}

fn endpoints_text(eps: &[super::stats::EndpointTotals]) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:<16} {:<16} {:>5} {:>12} {:>14} {:>12} {:>14}  workload",
        "interface", "addresses", "mtu", "from-pkts", "from-bytes", "to-pkts", "to-bytes"
    );
    for e in eps {
        let _ = writeln!(
            s,
            "{:<16} {:<16} {:>5} {:>12} {:>14} {:>12} {:>14}  {}",
            e.interface,
            e.addresses.join(","),
            e.mtu,
            e.from_workload.packets,
            e.from_workload.bytes,
            e.to_workload.packets,
            e.to_workload.bytes,
            e.workload
        );
    }
    s
}

/// Asks the daemon behind `path` and returns its answer.
pub fn request(path: &Path, topic: &str, json: bool) -> io::Result<String> {
    let mut stream = UnixStream::connect(path)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let line = if json {
        format!("show {topic} json\n")
    } else {
        format!("show {topic}\n")
    };
    stream.write_all(line.as_bytes())?;
    stream.shutdown(std::net::Shutdown::Write)?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer)?;
    Ok(answer)
}
