//! What the hostile test watches and sends with: podwire's and the node
//! kernel's counters, the pods' listeners (`listen.py`), and the injectors
//! (`inject.py`).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};

use crate::common::Lab;

const INJECT: &str = include_str!("inject.py");
const LISTEN: &str = include_str!("listen.py");

// --- counters --------------------------------------------------------------

/// podwire's drop counters, by reason.
pub(crate) fn podwire_drops(lab: &Lab, ctl: &Path) -> BTreeMap<String, u64> {
    let stats = lab.stats(ctl);
    stats["drops"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| (d[0].as_str().unwrap().to_string(), d[1].as_u64().unwrap()))
        .collect()
}

/// The kernel's IPv4 and UDP counters in namespace `ns`, as `Ip.InHdrErrors`,
/// `IpExt.InCsumErrors`, `Udp.InErrors`, ...
pub(crate) fn kernel_counters(lab: &Lab, ns: &str) -> BTreeMap<String, u64> {
    let text = lab.must_exec(ns, &["cat", "/proc/net/snmp", "/proc/net/netstat"]);
    let lines: Vec<&str> = text.lines().collect();
    let mut out = BTreeMap::new();
    for pair in lines.chunks(2) {
        let [names, values] = pair else { continue };
        let (Some((group, names)), Some((_, values))) =
            (names.split_once(": "), values.split_once(": "))
        else {
            continue;
        };
        for (n, v) in names.split_whitespace().zip(values.split_whitespace()) {
            if let Ok(v) = v.parse::<i64>() {
                out.insert(format!("{group}.{n}"), v.max(0) as u64);
            }
        }
    }
    out
}

/// Kernel counters that count a packet the kernel refused. Every kind that
/// the kernel must let through to podwire leaves them all unchanged.
pub(crate) const KERNEL_ERRORS: [&str; 7] = [
    "Ip.InHdrErrors",
    "IpExt.InCsumErrors",
    "IpExt.InTruncatedPkts",
    "Ip.ReasmFails",
    "IpExt.ReasmOverlaps",
    "Udp.InErrors",
    "Udp.InCsumErrors",
];

/// Kernel counters shown in the table when they move.
pub(crate) const KERNEL_SHOWN: [&str; 12] = [
    "Ip.InHdrErrors",
    "IpExt.InCsumErrors",
    "IpExt.InTruncatedPkts",
    "Ip.ReasmReqds",
    "Ip.ReasmOKs",
    "Ip.ReasmFails",
    "Ip.ReasmTimeout",
    "IpExt.ReasmOverlaps",
    "Udp.InErrors",
    "Udp.InCsumErrors",
    "Udp.IgnoredMulti",
    "Udp.NoPorts",
];

pub(crate) fn kernel_delta(
    before: &BTreeMap<String, u64>,
    after: &BTreeMap<String, u64>,
    key: &str,
) -> u64 {
    let d = |k: &str| {
        after
            .get(k)
            .copied()
            .unwrap_or(0)
            .saturating_sub(before.get(k).copied().unwrap_or(0))
    };
    if key == "Udp.InErrors" {
        // A full receive buffer also counts as an input error; that is load
        // from the transfer, not a refused datagram.
        d(key).saturating_sub(d("Udp.RcvbufErrors") + d("Udp.MemErrors"))
    } else {
        d(key)
    }
}

pub(crate) fn podwire_delta(
    before: &BTreeMap<String, u64>,
    after: &BTreeMap<String, u64>,
) -> BTreeMap<String, u64> {
    after
        .iter()
        .filter_map(|(r, n)| {
            let d = n.saturating_sub(before.get(r).copied().unwrap_or(0));
            (d > 0).then(|| (r.clone(), d))
        })
        .collect()
}

// --- the pods' listeners -----------------------------------------------------

/// A line of listen.py's output.
#[derive(Debug, Clone)]
pub(crate) struct Seen {
    pub(crate) tag: String,
    pub(crate) len: usize,
    pub(crate) intact: bool,
    pub(crate) tos: i64,
    pub(crate) ttl: i64,
}

pub(crate) fn listener_lines(path: &Path) -> Vec<Seen> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .filter(|l| *l != "listening")
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let [tag, len, ok, tos, ttl] = f[..] else {
                return None;
            };
            Some(Seen {
                tag: tag.to_string(),
                len: len.parse().ok()?,
                intact: ok == "ok",
                tos: tos.parse().ok()?,
                ttl: ttl.parse().ok()?,
            })
        })
        .collect()
}

pub(crate) fn start_listener(lab: &mut Lab, pod: &str, addr: &str, name: &str) -> PathBuf {
    let script = lab.file("listen.py", LISTEN);
    let out = lab.dir.join(format!("{name}.seen"));
    lab.spawn(
        pod,
        name,
        &[
            "/usr/bin/python3",
            script.to_str().unwrap(),
            addr,
            out.to_str().unwrap(),
        ],
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while !std::fs::read_to_string(&out)
        .unwrap_or_default()
        .contains("listening")
    {
        assert!(Instant::now() < deadline, "listener {name} did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    out
}

// --- the injectors ----------------------------------------------------------

/// inject.py, running in a namespace and driven one kind at a time.
pub(crate) struct Injector {
    child: Child,
    stdin: ChildStdin,
    lines: Receiver<String>,
    log: PathBuf,
}

impl Injector {
    pub(crate) fn start(lab: &Lab, ns: &str, args: &[&str], tag: &str) -> Injector {
        let script = lab.file("inject.py", INJECT);
        let log = lab.dir.join(format!("{tag}.stderr"));
        let mut cmd = vec![
            "netns",
            "exec",
            ns,
            "/usr/bin/python3",
            "-u",
            script.to_str().unwrap(),
        ];
        cmd.extend_from_slice(args);
        let mut child = Command::new("ip")
            .args(&cmd)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start inject.py");
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Injector {
            child,
            stdin,
            lines,
            log,
        }
    }

    fn ask(&mut self, line: &str) -> String {
        writeln!(self.stdin, "{line}").expect("write to inject.py");
        self.stdin.flush().unwrap();
        self.lines
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| {
                panic!(
                    "inject.py did not answer {line}: {}",
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                )
            })
    }

    /// Every kind the script knows.
    pub(crate) fn kinds(&mut self) -> Vec<String> {
        let answer = self.ask("list");
        answer
            .strip_prefix("list ")
            .unwrap_or_else(|| panic!("inject.py: {answer}"))
            .split_whitespace()
            .map(str::to_string)
            .collect()
    }

    /// Sends kind `name`; returns how many packets went out.
    pub(crate) fn send(&mut self, name: &str) -> Result<u64, String> {
        let answer = self.ask(name);
        let mut f = answer.split_whitespace();
        match (f.next(), f.next(), f.next()) {
            (Some("sent"), Some(n), Some(count)) if n == name => Ok(count.parse().unwrap()),
            _ => Err(answer),
        }
    }
}

impl Drop for Injector {
    fn drop(&mut self) {
        // `ip netns exec` runs python in its own process: this PID is ours.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
