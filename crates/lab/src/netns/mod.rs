//! The namespace harness of the lab, the bench and the integration tests:
//! hosts, switches and pods in network namespaces on one machine.
//!
//! Every namespace a [`Harness`] creates is named `<prefix><short>`, with a
//! prefix unique to the run, and is deleted by name when the harness is
//! dropped — pass, fail or Ctrl-C; every process it started is ended by its
//! PID. Links are created directly inside their namespaces (and named
//! `<prefix><short>` where a name must be unique to the run), and addresses
//! and routes live only inside the namespaces: the root namespace gets none.
//!
//! - this module: names, commands inside a namespace, background processes,
//!   the machine-wide lock that serialises concurrent test runs;
//! - [`hosts`](self::hosts): bridges, veth links, pods shaped as Calico shapes
//!   them, podwire daemons;
//! - [`traffic`](self::traffic): pings, transfers, captures, tshark, iperf3,
//!   and the daemons' control sockets.

mod hosts;
mod traffic;

pub use hosts::{Daemon, VethPod};
pub use traffic::{Ping, SOCKPERF_PORT, Transfer, drops, show, stats, tshark};

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// The lock file that serialises the root tests of every `cargo test` run
/// on this machine (they share its cores and its namespace names' space).
pub const TEST_LOCK: &str = "/run/podwire-tests.lock";

/// A failure, in words for the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// SIGINT or SIGTERM arrived (see [`Harness::interruptible`]).
    Interrupted,
    Failed(String),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Interrupted => f.write_str("interrupted"),
            Error::Failed(s) => f.write_str(s),
        }
    }
}

impl std::error::Error for Error {}

/// A [`Error::Failed`].
pub fn err(s: impl Into<String>) -> Error {
    Error::Failed(s.into())
}

/// Runs a command, returning its output.
pub fn run(cmd: &str, args: &[&str]) -> Result<Output, Error> {
    Command::new(cmd)
        .args(args)
        .output()
        .map_err(|e| err(format!("cannot run {cmd}: {e}")))
}

/// Runs a command that must succeed; returns its stdout.
pub fn must(cmd: &str, args: &[&str]) -> Result<String, Error> {
    let out = run(cmd, args)?;
    if !out.status.success() {
        return Err(err(format!(
            "{cmd} {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// True when running as root.
pub fn is_root() -> bool {
    podwire_io::netdev::running_as_root()
}

/// Takes the exclusive lock on `path` (created if need be), waiting for
/// whoever holds it: another harness of this process or of another one.
pub fn lock(path: &Path) -> Result<File, Error> {
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(|e| err(format!("{}: {e}", path.display())))?;
    file.lock()
        .map_err(|e| err(format!("lock {}: {e}", path.display())))?;
    Ok(file)
}

/// Where a background process's output goes.
#[derive(Debug, Clone)]
pub enum Io {
    /// Nowhere.
    Null,
    /// To pipes, for [`Harness::wait`].
    Piped,
    /// Standard error to this file, standard output nowhere.
    Log(PathBuf),
}

/// Everything one run created; removed on drop unless detached.
pub struct Harness {
    prefix: String,
    namespaces: Vec<String>,
    children: Vec<(String, Child)>,
    /// Where the run's files go.
    pub dir: PathBuf,
    remove_dir: bool,
    interrupted: Option<Arc<AtomicBool>>,
    /// Released last, once everything is removed.
    lock: Option<File>,
    /// The CPU the traffic tools (iperf3, sockperf) run on, both ends;
    /// `None`: wherever the scheduler puts them.
    pub tools_cpu: Option<usize>,
}

impl Harness {
    /// An empty harness whose namespaces are named `<prefix>…`, writing
    /// into `dir`, which it leaves in place.
    pub fn new(prefix: impl Into<String>, dir: PathBuf) -> Harness {
        Harness {
            prefix: prefix.into(),
            namespaces: Vec::new(),
            children: Vec::new(),
            dir,
            remove_dir: false,
            interrupted: None,
            lock: None,
            tools_cpu: None,
        }
    }

    /// As [`Harness::new`], with a fresh directory of its own under the
    /// temporary directory, removed on drop.
    pub fn temporary(prefix: impl Into<String>) -> Result<Harness, Error> {
        let prefix = prefix.into();
        let dir = std::env::temp_dir().join(format!("podwire-test-{prefix}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| err(format!("{}: {e}", dir.display())))?;
        let mut h = Harness::new(prefix, dir);
        h.remove_dir = true;
        Ok(h)
    }

    /// Holds `lock` (from [`lock`]) until everything is removed.
    pub fn holding(mut self, lock: File) -> Harness {
        self.lock = Some(lock);
        self
    }

    /// Fails with [`Error::Interrupted`] once `flag` is set (by a signal
    /// handler), at the next step.
    pub fn interruptible(mut self, flag: Arc<AtomicBool>) -> Harness {
        self.interrupted = Some(flag);
        self
    }

    /// [`Error::Interrupted`] if the run was interrupted.
    pub fn check(&self) -> Result<(), Error> {
        match &self.interrupted {
            Some(f) if f.load(Ordering::Relaxed) => Err(Error::Interrupted),
            _ => Ok(()),
        }
    }

    /// The run's prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The unique name of namespace `short`.
    pub fn name(&self, short: &str) -> String {
        format!("{}{short}", self.prefix)
    }

    /// The unique name of link `short`: the prefix without its dashes,
    /// within Linux's 15 bytes.
    pub fn link_name(&self, short: &str) -> Result<String, Error> {
        let name = format!("{}{short}", self.prefix.replace('-', ""));
        if name.len() > 15 {
            return Err(err(format!("link name {name} too long")));
        }
        Ok(name)
    }

    /// Creates namespace `short` with loopback up; returns its full name.
    pub fn netns(&mut self, short: &str) -> Result<String, Error> {
        self.check()?;
        let ns = self.name(short);
        must("ip", &["netns", "add", &ns])?;
        self.namespaces.push(ns.clone());
        self.ip(&ns, &["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// `ip -n ns …`, which must succeed; returns its stdout.
    pub fn ip(&self, ns: &str, args: &[&str]) -> Result<String, Error> {
        let mut a = vec!["-n", ns];
        a.extend_from_slice(args);
        must("ip", &a)
    }

    /// Runs `cmd` inside namespace `ns`.
    pub fn exec(&self, ns: &str, cmd: &[&str]) -> Result<Output, Error> {
        let mut a = vec!["netns", "exec", ns];
        a.extend_from_slice(cmd);
        run("ip", &a)
    }

    /// Runs `cmd` inside namespace `ns`, which must succeed; returns its stdout.
    pub fn exec_ok(&self, ns: &str, cmd: &[&str]) -> Result<String, Error> {
        let mut a = vec!["netns", "exec", ns];
        a.extend_from_slice(cmd);
        must("ip", &a)
    }

    /// `sysctl -w setting` (like `net.ipv4.ip_forward=1`) inside `ns`.
    pub fn sysctl(&self, ns: &str, setting: &str) -> Result<(), Error> {
        self.exec_ok(ns, &["sysctl", "-q", "-w", setting]).map(drop)
    }

    /// Starts `cmd` in `ns` in the background, tagged `tag`; returns its
    /// PID (`ip netns exec` execs the command: the PID is the command's).
    pub fn spawn(&mut self, tag: &str, ns: &str, cmd: &[&str], io: Io) -> Result<u32, Error> {
        self.spawn_env(tag, ns, cmd, io, &[])
    }

    /// As [`Harness::spawn`], with these environment variables.
    pub fn spawn_env(
        &mut self,
        tag: &str,
        ns: &str,
        cmd: &[&str],
        io: Io,
        env: &[(&str, &str)],
    ) -> Result<u32, Error> {
        self.start(tag, &["ip", "netns", "exec", ns], cmd, io, env)
    }

    /// As [`Harness::spawn`], but entering only the network namespace
    /// (`nsenter --net=`): the process keeps the machine's mounts, where
    /// `ip netns exec` gives it a `/sys` of its own (which breaks runc).
    pub fn spawn_net(&mut self, tag: &str, ns: &str, cmd: &[&str], io: Io) -> Result<u32, Error> {
        let net = format!("--net=/var/run/netns/{ns}");
        self.start(tag, &["nsenter", &net, "--"], cmd, io, &[])
    }

    fn start(
        &mut self,
        tag: &str,
        enter: &[&str],
        cmd: &[&str],
        io: Io,
        env: &[(&str, &str)],
    ) -> Result<u32, Error> {
        self.check()?;
        let (stdout, stderr) = match io {
            Io::Null => (Stdio::null(), Stdio::null()),
            Io::Piped => (Stdio::piped(), Stdio::piped()),
            Io::Log(path) => {
                let f = File::create(&path).map_err(|e| err(format!("{}: {e}", path.display())))?;
                (Stdio::null(), Stdio::from(f))
            }
        };
        let child = Command::new(enter[0])
            .args(&enter[1..])
            .args(cmd)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .map_err(|e| err(format!("cannot start {}: {e}", cmd.first().unwrap_or(&""))))?;
        let pid = child.id();
        self.children.push((tag.to_string(), child));
        Ok(pid)
    }

    fn position(&self, tag: &str) -> Result<usize, Error> {
        self.children
            .iter()
            .position(|(t, _)| t == tag)
            .ok_or_else(|| err(format!("no process {tag}")))
    }

    /// The PID of background process `tag`.
    pub fn pid(&self, tag: &str) -> Result<u32, Error> {
        Ok(self.children[self.position(tag)?].1.id())
    }

    /// Whether background process `tag` has ended, and how.
    pub fn exited(&mut self, tag: &str) -> Result<Option<ExitStatus>, Error> {
        let i = self.position(tag)?;
        Ok(self.children[i].1.try_wait().ok().flatten())
    }

    /// Sends `signal` (`HUP`, `KILL`, …) to background process `tag`, by PID.
    pub fn signal(&self, tag: &str, signal: &str) -> Result<(), Error> {
        let pid = self.pid(tag)?.to_string();
        must("kill", &[&format!("-{signal}"), &pid]).map(drop)
    }

    /// Waits for background process `tag` to end by itself and returns its
    /// output; after `timeout` it is killed, and that is an error.
    pub fn wait(&mut self, tag: &str, timeout: Duration) -> Result<Output, Error> {
        let i = self.position(tag)?;
        let (_, mut child) = self.children.remove(i);
        let deadline = Instant::now() + timeout;
        while !matches!(child.try_wait(), Ok(Some(_))) {
            if Instant::now() > deadline {
                let _ = child.kill();
                let out = child.wait_with_output().map_err(|e| err(e.to_string()))?;
                return Err(err(format!(
                    "{tag} did not finish in {timeout:?}: {}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        child.wait_with_output().map_err(|e| err(e.to_string()))
    }

    /// Sends `signal` to every background process tagged `tag` and waits
    /// for each, killing it after `timeout`; returns the last one's status.
    pub fn stop(
        &mut self,
        tag: &str,
        signal: &str,
        timeout: Duration,
    ) -> Result<ExitStatus, Error> {
        let (mine, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut self.children)
            .into_iter()
            .partition(|(t, _)| t == tag);
        self.children = rest;
        let mut status = Err(err(format!("no process {tag}")));
        for (_, mut c) in mine {
            let _ = run("kill", &[&format!("-{signal}"), &c.id().to_string()]);
            status = Ok(wait_child(&mut c, timeout));
        }
        status
    }

    /// Leaves everything running and in place: forgets the namespaces and
    /// processes (returned, as names and as tags with PIDs), so that drop
    /// removes nothing.
    pub fn detach(&mut self) -> (Vec<String>, Vec<(String, u32)>) {
        let pids = std::mem::take(&mut self.children)
            .into_iter()
            .map(|(t, c)| (t, c.id()))
            .collect();
        (std::mem::take(&mut self.namespaces), pids)
    }

    /// Writes a file in the run's directory and returns its path.
    pub fn file(&self, name: &str, text: &str) -> Result<PathBuf, Error> {
        let p = self.dir.join(name);
        std::fs::write(&p, text).map_err(|e| err(format!("{}: {e}", p.display())))?;
        Ok(p)
    }
}

/// Waits for `child`, killing it after `timeout`.
fn wait_child(child: &mut Child, timeout: Duration) -> ExitStatus {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(Some(s)) = child.try_wait() {
            return s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            if let Ok(s) = child.wait() {
                return s;
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        for (_, child) in &self.children {
            let _ = run("kill", &["-TERM", &child.id().to_string()]);
        }
        for (_, child) in &mut self.children {
            wait_child(child, Duration::from_secs(5));
        }
        for ns in self.namespaces.iter().rev() {
            let _ = run("ip", &["netns", "del", ns]);
        }
        if self.remove_dir {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_the_prefix_and_links_fit_linux() {
        let h = Harness::new("pwbenchffff4-", PathBuf::from("/nonexistent"));
        assert_eq!(h.name("sw"), "pwbenchffff4-sw");
        assert_eq!(h.link_name("pn1").unwrap(), "pwbenchffff4pn1");
        assert!(h.link_name("pn12").is_err());
    }

    #[test]
    fn the_lock_is_exclusive_between_handles() {
        let path = std::env::temp_dir().join(format!("podwire-lock-test-{}", std::process::id()));
        let first = lock(&path).unwrap();
        let second = File::options().write(true).open(&path).unwrap();
        assert!(matches!(
            second.try_lock(),
            Err(std::fs::TryLockError::WouldBlock)
        ));
        drop(first);
        second.try_lock().unwrap();
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn interruption_is_seen_at_the_next_step() {
        let flag = Arc::new(AtomicBool::new(false));
        let mut h = Harness::new("pwx-", PathBuf::from("/nonexistent")).interruptible(flag.clone());
        assert_eq!(h.check(), Ok(()));
        flag.store(true, Ordering::Relaxed);
        assert_eq!(h.netns("a"), Err(Error::Interrupted));
        assert_eq!(Error::Interrupted.to_string(), "interrupted");
    }
}
