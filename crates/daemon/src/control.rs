//! The control socket: a Unix stream socket, mode 0600, that answers one
//! request per connection, many connections at once (`listen`: an idle
//! or slow client delays no other). A request is one line, `show <what>` with an
//! optional ` json`, where `<what>` is `routes`, `neigh`, `fdb`,
//! `endpoints` or `stats`; the answer is the text, and the connection
//! closes. An answer that starts with `error: ` is a refusal.

use std::io::{self, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use super::stats::Totals;
use super::{Daemon, listen};
use podwire::table::Tables;

/// What `podwire show` can ask for.
pub const TOPICS: [&str; 6] = ["routes", "neigh", "fdb", "endpoints", "stats", "host"];

/// The running control socket.
pub struct Server {
    path: PathBuf,
    running: listen::Running,
}

/// How many clients the control socket holds at once, and how long each
/// has to send its request and take its answer.
pub const LIMITS: listen::Limits = listen::Limits {
    max_clients: 128,
    max_request: MAX_REQUEST,
    deadline: Duration::from_secs(2),
    // One thread computes the answers (each is short: a table printed, a
    // device made); reading and writing stay concurrent. A second one
    // costs a malloc arena of its own, which the live-updates test saw as
    // half a megabyte of resident memory grown after start.
    answerers: 1,
};

/// The control socket's requests and answers.
struct Control {
    daemon: Arc<Daemon>,
}

impl listen::Service for Control {
    fn complete(&self, buf: &[u8]) -> bool {
        buf.contains(&b'\n')
    }

    fn answer(&self, request: &[u8]) -> Vec<u8> {
        let line = request.split(|&b| b == b'\n').next().unwrap_or_default();
        if let Some(a) = std::str::from_utf8(line)
            .ok()
            .and_then(|l| super::attach::answer(&self.daemon, l))
        {
            return a.into_bytes();
        }
        let shared = self.daemon.shared();
        let snap = shared.snapshot.load();
        respond(request, &snap.tables, || shared.totals()).into_bytes()
    }

    fn busy(&self) -> Vec<u8> {
        format!(
            "error: busy: {} clients are connected; try again\n",
            LIMITS.max_clients
        )
        .into_bytes()
    }
}

impl Server {
    /// Listens on `path` (replacing a stale socket) and serves requests,
    /// many clients at once, on threads of its own (see `listen`).
    pub fn start(path: &Path, daemon: Arc<Daemon>) -> io::Result<Server> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        if in_use(path) {
            return Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                "another daemon answers on it",
            ));
        }
        // A stale socket file, left by a daemon that was killed.
        let _ = std::fs::remove_file(path);
        let listener = UnixListener::bind(path)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
        listener.set_nonblocking(true)?;
        let running = listen::start(
            "podwire-control",
            listen::Listener::Unix(mio::net::UnixListener::from_std(listener)),
            Arc::new(Control { daemon }),
            LIMITS,
        )?;
        Ok(Server {
            path: path.to_path_buf(),
            running,
        })
    }

    /// Stops serving and removes the socket file.
    pub fn stop(self) {
        self.running.stop();
        let _ = std::fs::remove_file(&self.path);
    }
}

/// True when a daemon answers on `path`.
pub fn in_use(path: &Path) -> bool {
    UnixStream::connect(path).is_ok()
}

/// Longest request the socket reads, newline included.
pub const MAX_REQUEST: usize = 256;

/// What a request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topic {
    Routes,
    Neigh,
    Fdb,
    Endpoints,
    Stats,
    Host,
}

impl Topic {
    /// Every topic, in the order of [`TOPICS`].
    pub const ALL: [Topic; 6] = [
        Topic::Routes,
        Topic::Neigh,
        Topic::Fdb,
        Topic::Endpoints,
        Topic::Stats,
        Topic::Host,
    ];

    /// The topic's name in a request.
    pub fn name(self) -> &'static str {
        TOPICS[self as usize]
    }
}

/// One parsed request: `show <topic>` with an optional ` json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request {
    pub topic: Topic,
    pub json: bool,
}

impl std::fmt::Display for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "show {}", self.topic.name())?;
        if self.json {
            f.write_str(" json")?;
        }
        Ok(())
    }
}

/// A request the control socket refuses; [`RequestError::answer`] is the
/// one line sent back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("request longer than {} bytes", MAX_REQUEST - 1)]
    TooLong,
    #[error("request is not UTF-8")]
    NotUtf8,
    #[error("unknown request {0:?} (expected: show <topic> [json])")]
    UnknownRequest(String),
    #[error("unknown topic {topic:?} (expected one of: {})", TOPICS.join(", "))]
    UnknownTopic { topic: String },
    #[error("unknown option {0:?}")]
    UnknownOption(String),
    #[error("unexpected {0:?} after the request")]
    Unexpected(String),
}

impl RequestError {
    /// The answer to send back: one line, starting with `error: `.
    pub fn answer(&self) -> String {
        format!("error: {self}\n")
    }
}

/// Parses what a client sent: the bytes up to the first newline (all of
/// them without one), at most [`MAX_REQUEST`].
pub fn parse(bytes: &[u8]) -> Result<Request, RequestError> {
    let line = match bytes.iter().position(|&b| b == b'\n') {
        Some(i) => &bytes[..i],
        None if bytes.len() >= MAX_REQUEST => return Err(RequestError::TooLong),
        None => bytes,
    };
    let line = std::str::from_utf8(line).map_err(|_| RequestError::NotUtf8)?;
    let request = line.trim();
    let mut words = request.split_whitespace();
    let (Some("show"), Some(topic)) = (words.next(), words.next()) else {
        return Err(RequestError::UnknownRequest(request.to_string()));
    };
    let Some(topic) = Topic::ALL.into_iter().find(|t| t.name() == topic) else {
        return Err(RequestError::UnknownTopic {
            topic: topic.to_string(),
        });
    };
    let json = match words.next() {
        None => false,
        Some("json") => true,
        Some(other) => return Err(RequestError::UnknownOption(other.to_string())),
    };
    if let Some(extra) = words.next() {
        return Err(RequestError::Unexpected(extra.to_string()));
    }
    Ok(Request { topic, json })
}

/// The answer to a request, as text or JSON.
pub fn render(request: Request, t: &Tables, totals: impl FnOnce() -> Totals) -> String {
    match (request.topic, request.json) {
        (Topic::Routes, false) => t.routes_text(),
        (Topic::Neigh, false) => t.neigh_text(),
        (Topic::Fdb, false) => t.fdb_text(),
        (Topic::Routes, true) => pretty(t.routes_json()),
        (Topic::Neigh, true) => pretty(t.neigh_json()),
        (Topic::Fdb, true) => pretty(t.fdb_json()),
        (Topic::Endpoints, false) => endpoints_text(&totals().endpoints),
        (Topic::Endpoints, true) => {
            pretty(serde_json::to_value(&totals().endpoints).unwrap_or(Value::Null))
        }
        (Topic::Stats, false) => totals().text(),
        (Topic::Stats, true) => pretty(serde_json::to_value(totals()).unwrap_or(Value::Null)),
        (Topic::Host, false) => super::host::report_text(t),
        (Topic::Host, true) => pretty(super::host::report_json(t)),
    }
}

/// The whole answer to the bytes a client sent: [`parse`], then
/// [`render`] or the refusal.
pub fn respond(bytes: &[u8], t: &Tables, totals: impl FnOnce() -> Totals) -> String {
    match parse(bytes) {
        Ok(request) => render(request, t, totals),
        Err(refusal) => refusal.answer(),
    }
}

fn pretty(v: Value) -> String {
    let mut s = serde_json::to_string_pretty(&v).unwrap_or_default();
    s.push('\n');
    s
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_request_it_prints() {
        for topic in Topic::ALL {
            for json in [false, true] {
                let req = Request { topic, json };
                let line = format!("{req}\n");
                assert_eq!(parse(line.as_bytes()), Ok(req), "{line:?}");
                // The client may omit the newline and pad with blanks or CR.
                let padded = format!("  {}\t\r\n", line.trim_end().replace(' ', "   "));
                assert_eq!(parse(padded.as_bytes()), Ok(req), "{padded:?}");
            }
        }
        assert_eq!(
            parse(b"show stats json"),
            Ok(Request {
                topic: Topic::Stats,
                json: true
            })
        );
        // Only the first line counts.
        assert_eq!(
            parse(b"show fdb\nshow routes json\n"),
            Ok(Request {
                topic: Topic::Fdb,
                json: false
            })
        );
    }

    #[test]
    fn refuses_everything_else_with_one_line() {
        let long = [b'x'; MAX_REQUEST];
        let cases: [(&[u8], &str); 9] = [
            (b"", "error: unknown request \"\""),
            (b"\n", "error: unknown request \"\""),
            (b"show\n", "error: unknown request \"show\""),
            (b"list routes\n", "error: unknown request \"list routes\""),
            (b"show route\n", "error: unknown topic \"route\""),
            (b"show routes yaml\n", "error: unknown option \"yaml\""),
            (b"show routes json x\n", "error: unexpected \"x\""),
            (b"show \xff\xfe\n", "error: request is not UTF-8"),
            (&long, "error: request longer than 255 bytes"),
        ];
        for (bytes, want) in cases {
            let got = parse(bytes).expect_err(want).answer();
            assert!(got.starts_with(want), "{bytes:?}: {got:?}");
            assert!(
                got.ends_with('\n') && got.matches('\n').count() == 1,
                "{got:?}"
            );
        }
    }
}
