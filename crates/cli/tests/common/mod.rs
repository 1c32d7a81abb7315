//! Test hosts in network namespaces, for the end-to-end tests.
//!
//! Every namespace and link gets a name unique to the run (`pw<pid>x<n>…`)
//! and is deleted by name when the [`Lab`] is dropped, pass or fail; every
//! process it started is killed by PID. Addresses live only inside the
//! namespaces: the root namespace gets none, and links are created directly
//! inside their namespaces.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// The podwire binary under test.
pub const PODWIRE: &str = env!("CARGO_BIN_EXE_podwire");

/// End-to-end tests share two cores: run them one at a time.
static SERIAL: Mutex<()> = Mutex::new(());
static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// True when running as root; otherwise says why the test does nothing.
pub fn root_or_skip(test: &str) -> bool {
    // SAFETY-free check: the effective UID from /proc.
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let euid = status
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .and_then(|l| l.split_whitespace().nth(2))
        .unwrap_or("");
    if euid == "0" {
        return true;
    }
    eprintln!(
        "SKIPPED {test}: needs root (network namespaces, TUN devices, raw sockets); run the tests as root, as CI does"
    );
    false
}

/// Runs a command, returning its output; panics if it cannot start.
pub fn run(cmd: &str, args: &[&str]) -> Output {
    Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd}: {e}"))
}

/// Runs a command and panics with its stderr unless it succeeds.
pub fn must(cmd: &str, args: &[&str]) -> String {
    let out = run(cmd, args);
    assert!(
        out.status.success(),
        "{cmd} {}: {}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A set of namespaces, links and processes belonging to one test.
pub struct Lab {
    prefix: String,
    namespaces: Vec<String>,
    children: Vec<(String, Child)>,
    pub dir: PathBuf,
    _serial: std::sync::MutexGuard<'static, ()>,
}

impl Lab {
    pub fn new() -> Lab {
        let serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let prefix = format!("pw{:x}x{n}", std::process::id() & 0xffff);
        let dir = std::env::temp_dir().join(format!("podwire-test-{prefix}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Lab {
            prefix,
            namespaces: Vec::new(),
            children: Vec::new(),
            dir,
            _serial: serial,
        }
    }

    /// The unique name of namespace or link `short`.
    pub fn name(&self, short: &str) -> String {
        let name = format!("{}{short}", self.prefix);
        assert!(name.len() <= 15, "link name {name} too long");
        name
    }

    /// Creates namespace `short` with loopback up; returns its full name.
    pub fn netns(&mut self, short: &str) -> String {
        let ns = self.name(short);
        must("ip", &["netns", "add", &ns]);
        self.namespaces.push(ns.clone());
        must("ip", &["-n", &ns, "link", "set", "lo", "up"]);
        ns
    }

    /// Runs `cmd` inside namespace `ns`.
    pub fn exec(&self, ns: &str, cmd: &[&str]) -> Output {
        let mut args = vec!["netns", "exec", ns];
        args.extend_from_slice(cmd);
        run("ip", &args)
    }

    /// Like [`Lab::exec`], panicking on failure; returns stdout.
    pub fn must_exec(&self, ns: &str, cmd: &[&str]) -> String {
        let mut args = vec!["netns", "exec", ns];
        args.extend_from_slice(cmd);
        must("ip", &args)
    }

    /// `ip -n ns …`
    pub fn ip(&self, ns: &str, args: &[&str]) -> String {
        let mut a = vec!["-n", ns];
        a.extend_from_slice(args);
        must("ip", &a)
    }

    /// A bridge `br` in namespace `ns` (the underlay segment).
    pub fn bridge(&self, ns: &str, br: &str) {
        self.ip(ns, &["link", "add", br, "type", "bridge"]);
        self.ip(ns, &["link", "set", br, "up"]);
    }

    /// Connects `host_ns` to bridge `br` in `switch_ns` with a veth whose
    /// host end is `ifname`, addressed `addr` (with prefix).
    pub fn attach(&self, switch_ns: &str, br: &str, host_ns: &str, ifname: &str, addr: &str) {
        let port = self.name(&format!("p{}", &host_ns[host_ns.len().saturating_sub(3)..]));
        must(
            "ip",
            &[
                "link", "add", ifname, "netns", host_ns, "type", "veth", "peer", "name", &port,
                "netns", switch_ns,
            ],
        );
        self.ip(switch_ns, &["link", "set", &port, "master", br]);
        self.ip(switch_ns, &["link", "set", &port, "up"]);
        self.ip(host_ns, &["addr", "add", addr, "dev", ifname]);
        self.ip(host_ns, &["link", "set", ifname, "up"]);
    }

    /// Starts `podwire run` for `node` in namespace `ns`; returns the
    /// control socket path once the daemon answers on it.
    pub fn podwire(&mut self, ns: &str, config: &Path, node: &str, extra: &[&str]) -> PathBuf {
        self.podwire_via(ns, &[], config, node, extra)
    }

    /// As [`Lab::podwire`], with the daemon started through `wrapper` (a
    /// command and its arguments, e.g. `setpriv …`) inside the namespace.
    pub fn podwire_via(
        &mut self,
        ns: &str,
        wrapper: &[&str],
        config: &Path,
        node: &str,
        extra: &[&str],
    ) -> PathBuf {
        let control = self.dir.join(format!("{node}.sock"));
        let log = std::fs::File::create(self.dir.join(format!("{node}.log"))).unwrap();
        let mut args = vec!["netns".to_string(), "exec".into(), ns.into()];
        args.extend(wrapper.iter().map(|s| s.to_string()));
        args.extend([
            PODWIRE.into(),
            "run".into(),
            "--config".into(),
            config.display().to_string(),
            "--node".into(),
            node.into(),
            "--control".into(),
            control.display().to_string(),
        ]);
        args.extend(extra.iter().map(|s| s.to_string()));
        let child = Command::new("ip")
            .args(&args)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start podwire");
        self.children.push((node.to_string(), child));
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let out = run(
                PODWIRE,
                &["show", "stats", "--control", control.to_str().unwrap()],
            );
            if out.status.success() {
                return control;
            }
            if let Some((_, c)) = self.children.last_mut() {
                if let Ok(Some(status)) = c.try_wait() {
                    panic!(
                        "podwire for {node} exited with {status}: {}",
                        self.log(node)
                    );
                }
            }
            assert!(
                Instant::now() < deadline,
                "podwire for {node} did not come up: {}",
                self.log(node)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The log of the daemon of `node`.
    pub fn log(&self, node: &str) -> String {
        std::fs::read_to_string(self.dir.join(format!("{node}.log"))).unwrap_or_default()
    }

    /// Sends `signal` to the daemon of `node` (by the PID of its process).
    pub fn signal(&self, node: &str, signal: &str) {
        let (_, child) = self
            .children
            .iter()
            .find(|(n, _)| n == node)
            .expect("no such daemon");
        must("kill", &[&format!("-{signal}"), &child.id().to_string()]);
    }

    /// Stops the daemon of `node` with SIGTERM and waits for it.
    pub fn stop(&mut self, node: &str) -> std::process::ExitStatus {
        let i = self
            .children
            .iter()
            .position(|(n, _)| n == node)
            .expect("no such daemon");
        let (_, mut child) = self.children.remove(i);
        must("kill", &["-TERM", &child.id().to_string()]);
        wait_child(&mut child, Duration::from_secs(10))
    }

    /// Moves endpoint `iface` from `node_ns` into a new pod namespace and
    /// configures it the way Calico configures a pod: `eth0`, the address as
    /// a /32, `169.254.1.1` on link, default route through it.
    pub fn pod(&mut self, short: &str, node_ns: &str, iface: &str, ip: &str) -> String {
        let pod = self.netns(short);
        let deadline = Instant::now() + Duration::from_secs(5);
        while !run("ip", &["-n", node_ns, "link", "show", iface])
            .status
            .success()
        {
            assert!(
                Instant::now() < deadline,
                "endpoint {iface} never appeared in {node_ns}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        self.ip(node_ns, &["link", "set", iface, "netns", &pod]);
        self.ip(&pod, &["link", "set", iface, "name", "eth0"]);
        self.ip(&pod, &["addr", "add", &format!("{ip}/32"), "dev", "eth0"]);
        self.ip(&pod, &["link", "set", "eth0", "up"]);
        self.ip(
            &pod,
            &[
                "route",
                "add",
                "169.254.1.1",
                "dev",
                "eth0",
                "scope",
                "link",
            ],
        );
        self.ip(
            &pod,
            &[
                "route",
                "add",
                "default",
                "via",
                "169.254.1.1",
                "dev",
                "eth0",
            ],
        );
        pod
    }

    /// Starts a background process in `ns`, killed when the lab ends.
    pub fn spawn(&mut self, ns: &str, tag: &str, cmd: &[&str]) -> usize {
        let mut args = vec!["netns", "exec", ns];
        args.extend_from_slice(cmd);
        let child = Command::new("ip")
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
        self.children.push((tag.to_string(), child));
        self.children.len() - 1
    }

    /// The PID of background process `tag`.
    pub fn pid(&self, tag: &str) -> u32 {
        self.children
            .iter()
            .find(|(n, _)| n == tag)
            .map(|(_, c)| c.id())
            .expect("no such process")
    }

    /// Waits for the background process `tag` and returns its output.
    pub fn wait(&mut self, tag: &str, timeout: Duration) -> Output {
        let i = self
            .children
            .iter()
            .position(|(n, _)| n == tag)
            .expect("no such process");
        let (_, mut child) = self.children.remove(i);
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(_)) = child.try_wait() {
                return child.wait_with_output().unwrap();
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let out = child.wait_with_output().unwrap();
                panic!(
                    "{tag} did not finish in {timeout:?}: {}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `podwire show <topic>` against a control socket.
    pub fn show(&self, control: &Path, topic: &str, json: bool) -> String {
        let mut args = vec!["show", topic, "--control", control.to_str().unwrap()];
        if json {
            args.push("--json");
        }
        must(PODWIRE, &args)
    }

    /// The daemon's counters as JSON.
    pub fn stats(&self, control: &Path) -> serde_json::Value {
        serde_json::from_str(&self.show(control, "stats", true)).unwrap()
    }

    /// The number of drops for `reason`.
    pub fn drops(&self, control: &Path, reason: &str) -> u64 {
        let s = self.stats(control);
        s["drops"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d[0] == reason)
            .map(|d| d[1].as_u64().unwrap())
            .unwrap_or_else(|| panic!("no drop reason {reason}"))
    }

    /// Writes a file in the lab's directory and returns its path.
    pub fn file(&self, name: &str, text: &str) -> PathBuf {
        let p = self.dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }
}

/// `count` pings from namespace `from` to `to`, all answered.
pub fn ping(lab: &Lab, from: &str, to: &str, count: usize) {
    let n = count.to_string();
    let out = lab.exec(from, &["ping", "-c", &n, "-i", "0.2", "-W", "2", to]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains(&format!("{count} received")),
        "ping {from} -> {to}: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A TCP transfer of `mbytes` MB of random data from namespace `from` to
/// `to_ip` (in namespace `to`), compared at the far end by SHA-256.
pub fn transfer(lab: &mut Lab, from: &str, to: &str, to_ip: &str, mbytes: usize, port: u16) {
    let file = lab.dir.join(format!("payload-{port}.bin"));
    must(
        "dd",
        &[
            "if=/dev/urandom",
            &format!("of={}", file.display()),
            "bs=1M",
            &format!("count={mbytes}"),
            "status=none",
        ],
    );
    let want = must("sha256sum", &[file.to_str().unwrap()]);
    let tag = format!("receiver-{port}");
    lab.spawn(
        to,
        &tag,
        &["sh", "-c", &format!("nc -l {port} | sha256sum")],
    );
    std::thread::sleep(Duration::from_millis(300));
    let send = format!("nc -N -w 10 {to_ip} {port} < {}", file.display());
    let out = lab.exec(from, &["sh", "-c", &send]);
    assert!(
        out.status.success(),
        "sender: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got = lab.wait(&tag, Duration::from_secs(60));
    assert_eq!(
        String::from_utf8_lossy(&got.stdout)
            .split_whitespace()
            .next(),
        want.split_whitespace().next(),
        "content of the transfer from {from} to {to}"
    );
}

/// Starts tcpdump on `dev` in `ns`, writing `file`; returns once it listens.
pub fn capture(lab: &mut Lab, ns: &str, dev: &str, file: &Path, tag: &str) {
    let f = file.display().to_string();
    lab.spawn(
        ns,
        tag,
        &[
            "tcpdump",
            "--immediate-mode",
            "-i",
            dev,
            "-n",
            "-U",
            "-w",
            &f,
        ],
    );
    // tcpdump creates the file when it opens the device, then listens.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !file.exists() {
        assert!(Instant::now() < deadline, "tcpdump did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(500));
}

pub fn stop_capture(lab: &mut Lab, tag: &str) {
    std::thread::sleep(Duration::from_millis(300));
    let pid = lab.pid(tag);
    must("kill", &["-INT", &pid.to_string()]);
    lab.wait(tag, Duration::from_secs(10));
}

/// tshark's dissection of `file`: one row of `fields` per packet matching `filter`.
pub fn tshark(file: &Path, filter: &str, fields: &[&str]) -> Vec<Vec<String>> {
    let mut args = vec![
        "-r",
        file.to_str().unwrap(),
        "-o",
        "udp.check_checksum:TRUE",
        "-o",
        "ip.check_checksum:TRUE",
        "-Y",
        filter,
        "-T",
        "fields",
        "-E",
        "separator=|",
    ];
    for f in fields {
        args.push("-e");
        args.push(f);
    }
    let out = must("tshark", &args);
    out.lines()
        .map(|l| l.split('|').map(str::to_string).collect())
        .collect()
}

fn wait_child(child: &mut Child, timeout: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(Some(s)) = child.try_wait() {
            return s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            return child.wait().unwrap();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for (_, child) in &mut self.children {
            let _ = run("kill", &["-TERM", &child.id().to_string()]);
        }
        for (_, child) in &mut self.children {
            wait_child(child, Duration::from_secs(5));
        }
        for ns in self.namespaces.iter().rev() {
            let _ = run("ip", &["netns", "del", ns]);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
