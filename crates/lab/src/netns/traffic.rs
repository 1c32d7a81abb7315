//! Traffic between namespaces, what it looked like on the wire, and what
//! the daemons counted.

use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use super::{Error, Harness, Io, err, must};

/// What `ping` said.
#[derive(Debug, Clone)]
pub struct Ping {
    pub output: Output,
    /// Replies received (`N received`).
    pub received: usize,
    /// The average round-trip time in ms, as ping prints it.
    pub rtt_avg: Option<String>,
}

impl Ping {
    /// Standard output.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.output.stdout).into_owned()
    }
}

/// A transfer's outcome.
#[derive(Debug, Clone)]
pub struct Transfer {
    pub sender: Output,
    /// SHA-256 of what was sent, in hex.
    pub sent: String,
    /// SHA-256 of what arrived, unless the sender failed.
    pub received: Option<String>,
}

/// The first word of `sha256sum`'s output.
fn digest(text: &str) -> String {
    text.split_whitespace().next().unwrap_or("").to_string()
}

impl Harness {
    /// `count` pings from namespace `from` to `to`, 0.2 s apart, waiting
    /// 2 s for each reply.
    pub fn ping(&self, from: &str, to: &str, count: usize) -> Result<Ping, Error> {
        self.check()?;
        let n = count.to_string();
        let output = self.exec(from, &["ping", "-c", &n, "-i", "0.2", "-W", "2", to])?;
        let text = String::from_utf8_lossy(&output.stdout).into_owned();
        let received = text
            .lines()
            .find_map(|l| {
                l.split(", ")
                    .nth(1)?
                    .strip_suffix(" received")?
                    .parse::<usize>()
                    .ok()
            })
            .unwrap_or(0);
        let rtt_avg = text
            .lines()
            .find(|l| l.starts_with("rtt"))
            .and_then(|l| l.split('/').nth(4))
            .map(str::to_string);
        Ok(Ping {
            output,
            received,
            rtt_avg,
        })
    }

    /// A TCP transfer with nc of `mbytes` MB of random data from namespace
    /// `from` to `to_ip`:`port` (in namespace `to`), hashed with SHA-256 at
    /// both ends.
    pub fn transfer(
        &mut self,
        from: &str,
        to: &str,
        to_ip: &str,
        mbytes: usize,
        port: u16,
    ) -> Result<Transfer, Error> {
        let file = self.dir.join(format!("payload-{port}.bin"));
        let path = file.display().to_string();
        must(
            "dd",
            &[
                "if=/dev/urandom",
                &format!("of={path}"),
                "bs=1M",
                &format!("count={mbytes}"),
                "status=none",
            ],
        )?;
        let sent = digest(&must("sha256sum", &[&path])?);
        let tag = format!("receiver-{port}");
        let receive = format!("nc -l {port} | sha256sum");
        self.spawn(&tag, to, &["sh", "-c", &receive], Io::Piped)?;
        std::thread::sleep(Duration::from_millis(300));
        let send = format!("nc -N -w 10 {to_ip} {port} < {path}");
        let sender = self.exec(from, &["sh", "-c", &send])?;
        let received = if sender.status.success() {
            let got = self.wait(&tag, Duration::from_secs(60))?;
            Some(digest(&String::from_utf8_lossy(&got.stdout)))
        } else {
            let _ = self.stop(&tag, "TERM", Duration::from_secs(5));
            None
        };
        Ok(Transfer {
            sender,
            sent,
            received,
        })
    }

    /// Starts tcpdump on `dev` in `ns`, tagged `tag`, writing `file`, with
    /// `extra` arguments; returns once it listens.
    pub fn capture(
        &mut self,
        tag: &str,
        ns: &str,
        dev: &str,
        file: &Path,
        extra: &[&str],
    ) -> Result<(), Error> {
        let f = file.display().to_string();
        let mut cmd = vec!["tcpdump", "--immediate-mode", "-i", dev, "-n", "-U"];
        cmd.extend_from_slice(extra);
        cmd.extend(["-w", &f]);
        self.spawn(tag, ns, &cmd, Io::Piped)?;
        // tcpdump creates the file when it opens the device, then listens.
        let deadline = Instant::now() + Duration::from_secs(10);
        while !file.exists() {
            self.check()?;
            if Instant::now() > deadline {
                return Err(err("tcpdump did not start"));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        std::thread::sleep(Duration::from_millis(500));
        Ok(())
    }

    /// Lets the last packets in, then stops capture `tag`.
    pub fn stop_capture(&mut self, tag: &str) -> Result<(), Error> {
        std::thread::sleep(Duration::from_millis(300));
        self.signal(tag, "INT")?;
        self.wait(tag, Duration::from_secs(10)).map(drop)
    }

    /// Runs iperf3 from `from` to a one-shot server on `to_ip` in `to` for
    /// `seconds`, with `extra` client arguments, and returns its JSON
    /// report. The client is retried until the server listens.
    pub fn iperf3_json(
        &mut self,
        from: &str,
        to: &str,
        to_ip: &str,
        extra: &[&str],
        seconds: u32,
    ) -> Result<serde_json::Value, Error> {
        self.check()?;
        let cpu = self.tools_cpu.map(|c| c.to_string());
        let server = pinned(&cpu, &["iperf3", "-s", "-1"]);
        self.spawn("iperf-server", to, &server, Io::Null)?;
        let secs = seconds.to_string();
        let mut args = pinned(&cpu, &["iperf3", "-c", to_ip, "-t", &secs, "-J"]);
        args.extend_from_slice(extra);
        let mut out = None;
        for _ in 0..50 {
            std::thread::sleep(Duration::from_millis(100));
            let o = self.exec(from, &args)?;
            if o.status.success() {
                out = Some(o);
                break;
            }
            self.check()?;
        }
        let _ = self.stop("iperf-server", "INT", Duration::from_secs(5));
        let out =
            out.ok_or_else(|| err(format!("iperf3 {} to {to_ip} failed", extra.join(" "))))?;
        serde_json::from_slice(&out.stdout).map_err(|e| err(format!("iperf3 output: {e}")))
    }
}

/// `cmd`, run on CPU `cpu` (`taskset -c`) when there is one.
fn pinned<'a>(cpu: &'a Option<String>, cmd: &[&'a str]) -> Vec<&'a str> {
    let mut v = match cpu {
        Some(c) => vec!["taskset", "-c", c.as_str()],
        None => Vec::new(),
    };
    v.extend_from_slice(cmd);
    v
}

/// The port of [`Harness::sockperf_ping_pong`]'s server (not iperf3's:
/// sockperf does not reuse a port a TCP connection just left).
pub const SOCKPERF_PORT: &str = "11111";

impl Harness {
    /// iperf3 on every pair (sender, receiver's namespace, receiver's
    /// address) at once, `extra` on each client; returns the JSON reports
    /// of the clients that finished, and what went wrong with the others.
    pub fn iperf3_concurrent(
        &mut self,
        pairs: &[(String, String, String)],
        extra: &[&str],
        seconds: u32,
    ) -> Result<(Vec<serde_json::Value>, Vec<String>), Error> {
        self.check()?;
        let cpu = self.tools_cpu.map(|c| c.to_string());
        let server = pinned(&cpu, &["iperf3", "-s", "-1"]);
        for (k, (_, to, _)) in pairs.iter().enumerate() {
            self.spawn(&format!("iperf-server-{k}"), to, &server, Io::Null)?;
        }
        // Every server listening before any client starts.
        for (k, (_, to, _)) in pairs.iter().enumerate() {
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            loop {
                let o = self.exec(to, &["ss", "-Hltn", "sport", "= :5201"])?;
                if !o.stdout.is_empty() {
                    break;
                }
                if std::time::Instant::now() > deadline {
                    return Err(err(format!("iperf3 server {k} in {to} did not listen")));
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let secs = seconds.to_string();
        for (k, (from, _, to_ip)) in pairs.iter().enumerate() {
            let mut args = pinned(&cpu, &["iperf3", "-c", to_ip, "-t", &secs, "-J"]);
            args.extend_from_slice(extra);
            self.spawn(&format!("iperf-client-{k}"), from, &args, Io::Piped)?;
        }
        let mut reports = Vec::with_capacity(pairs.len());
        let mut failed = Vec::new();
        // One deadline for all: a hung client costs the run once.
        let deadline = std::time::Instant::now() + Duration::from_secs(u64::from(seconds) + 30);
        for (k, (_, _, to_ip)) in pairs.iter().enumerate() {
            let limit = deadline
                .saturating_duration_since(std::time::Instant::now())
                .max(Duration::from_millis(100));
            match self.wait(&format!("iperf-client-{k}"), limit) {
                Ok(o) if o.status.success() => {
                    match serde_json::from_slice::<serde_json::Value>(&o.stdout) {
                        Ok(v) => reports.push(v),
                        Err(e) => failed.push(format!("iperf3 client {k}: {e}")),
                    }
                }
                Ok(o) => failed.push(format!(
                    "iperf3 client {k} to {to_ip}: {}",
                    String::from_utf8_lossy(&o.stdout)
                )),
                Err(e) => failed.push(e.to_string()),
            }
        }
        for k in 0..pairs.len() {
            let _ = self.stop(&format!("iperf-server-{k}"), "INT", Duration::from_secs(5));
        }
        Ok((reports, failed))
    }

    /// `sockperf ping-pong` of 64-byte messages from `from` to a sockperf
    /// server in `to` at `to_ip` (UDP, or TCP when `tcp`) for `seconds`;
    /// returns the client's output (its percentile summary).
    pub fn sockperf_ping_pong(
        &mut self,
        from: &str,
        to: &str,
        to_ip: &str,
        tcp: bool,
        seconds: u32,
    ) -> Result<String, Error> {
        self.check()?;
        const PORT: &str = SOCKPERF_PORT;
        let cpu = self.tools_cpu.map(|c| c.to_string());
        let mut server = pinned(&cpu, &["sockperf", "server", "-i", "0.0.0.0", "-p", PORT]);
        let mut client = pinned(
            &cpu,
            &["sockperf", "ping-pong", "-i", to_ip, "-p", PORT, "-m", "64"],
        );
        if tcp {
            server.push("--tcp");
            client.push("--tcp");
        }
        let secs = seconds.to_string();
        client.extend(["-t", &secs]);
        self.spawn("sockperf-server", to, &server, Io::Null)?;
        let mut out = None;
        for _ in 0..50 {
            std::thread::sleep(Duration::from_millis(100));
            let o = self.exec(from, &client)?;
            let text = String::from_utf8_lossy(&o.stdout).into_owned()
                + &String::from_utf8_lossy(&o.stderr);
            if o.status.success() && text.contains("percentile 50.000") {
                out = Some(text);
                break;
            }
            self.check()?;
        }
        let _ = self.stop("sockperf-server", "INT", Duration::from_secs(5));
        out.ok_or_else(|| err(format!("sockperf ping-pong to {to_ip} failed")))
    }
}

/// tshark's dissection of `file`, checksums checked: one row of `fields`
/// per packet matching `filter` (a field that repeats, outer layer first,
/// separated by commas).
pub fn tshark(file: &Path, filter: &str, fields: &[&str]) -> Result<Vec<Vec<String>>, Error> {
    let f = file.display().to_string();
    let mut args = vec![
        "-r",
        &f,
        "-o",
        "udp.check_checksum:TRUE",
        "-o",
        "ip.check_checksum:TRUE",
        "-o",
        "tcp.check_checksum:TRUE",
        "-Y",
        filter,
        "-T",
        "fields",
        "-E",
        "separator=|",
    ];
    for field in fields {
        args.extend(["-e", field]);
    }
    Ok(must("tshark", &args)?
        .lines()
        .map(|l| l.split('|').map(str::to_string).collect())
        .collect())
}

/// `podwire show <topic>` (`--json`) against the daemon at `control`.
pub fn show(control: &Path, topic: &str, json: bool) -> Result<String, Error> {
    let answer = podwire_daemon::control::request(control, topic, json).map_err(|e| {
        err(format!(
            "cannot reach the daemon at {}: {e}",
            control.display()
        ))
    })?;
    if answer.starts_with("error: ") {
        return Err(err(format!("show {topic}: {}", answer.trim_end())));
    }
    Ok(answer)
}

/// The daemon's counters, as `show stats --json` gives them.
pub fn stats(control: &Path) -> Result<serde_json::Value, Error> {
    serde_json::from_str(&show(control, "stats", true)?).map_err(|e| err(format!("stats: {e}")))
}

/// The daemon's count of drops for `reason`.
pub fn drops(control: &Path, reason: &str) -> Result<u64, Error> {
    stats(control)?["drops"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|d| d[0] == reason)
        .and_then(|d| d[1].as_u64())
        .ok_or_else(|| err(format!("no drop reason {reason}")))
}
