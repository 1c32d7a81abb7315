//! What the root tests of podwire-io share: namespaces A and B joined by a
//! veth pair, made and deleted by each test (the root namespace's
//! addresses and routes are never touched), and threads that run in one
//! of them.

#![allow(dead_code)]

use std::fs::File;
use std::io::Write;
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::process::{Command, Stdio};

use podwire_io::netlink::{self, Link};
use podwire_wire::MacAddr;

pub const A_ADDR: &str = "192.168.77.1/24";
pub const B_ADDR: &str = "192.168.77.2/24";
pub const B_IP: Ipv4Addr = Ipv4Addr::new(192, 168, 77, 2);
/// On A's subnet, but no host has it.
pub const ABSENT: Ipv4Addr = Ipv4Addr::new(192, 168, 77, 99);
pub const A_MAC: MacAddr = MacAddr([0x02, 0x50, 0x57, 0x77, 0x00, 0x01]);
pub const B_MAC: MacAddr = MacAddr([0x02, 0x50, 0x57, 0x77, 0x00, 0x02]);

pub fn root_or_skip(test: &str) -> bool {
    if podwire_io::netdev::running_as_root() {
        return true;
    }
    // Straight to stderr, past the test harness's capture.
    let _ = writeln!(
        std::io::stderr(),
        "{test}: skipped: needs root (network namespaces, veth); CI runs it as root"
    );
    false
}

pub fn ip(args: &[&str]) -> String {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Namespaces `a` and `b` with a veth pair between them (`veth_a` in A,
/// `veth_b` in B), deleted by name on drop, after a panic too.
pub struct Pair {
    pub a: String,
    pub b: String,
    pub veth_a: String,
    pub veth_b: String,
}

impl Pair {
    /// `tag` tells apart the pairs of tests running at once.
    pub fn new(tag: char) -> Pair {
        let pid = std::process::id();
        let pair = Pair {
            a: format!("pwnl{tag}{pid}a"),
            b: format!("pwnl{tag}{pid}b"),
            veth_a: format!("nl{tag}{pid}a"),
            veth_b: format!("nl{tag}{pid}b"),
        };
        let veth_b = pair.veth_b.clone();
        assert!(pair.veth_a.len() <= 15);
        let (a, b, veth_a) = (&pair.a, &pair.b, &pair.veth_a);
        let (a_mac, b_mac) = (A_MAC.to_string(), B_MAC.to_string());
        ip(&["netns", "add", a]);
        ip(&["netns", "add", b]);
        #[rustfmt::skip]
        ip(&[
            "link", "add", veth_a, "address", &a_mac, "netns", a, "type", "veth",
            "peer", "name", &veth_b, "address", &b_mac, "netns", b,
        ]);
        ip(&["-n", a, "addr", "add", A_ADDR, "dev", veth_a]);
        ip(&["-n", b, "addr", "add", B_ADDR, "dev", &veth_b]);
        ip(&["-n", a, "link", "set", veth_a, "up"]);
        ip(&["-n", b, "link", "set", &veth_b, "up"]);
        pair
    }

    /// Runs `f` on a thread in namespace A, returning what it returns (or
    /// passing its panic on).
    pub fn in_a<T: Send + 'static>(&self, f: impl FnOnce(Link) -> T + Send + 'static) -> T {
        let veth_a = self.veth_a.clone();
        in_ns(
            &self.a,
            move || f(netlink::link(&veth_a).expect("A's veth")),
        )
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    }
}

/// Starts `f` on a thread that entered network namespace `ns`.
pub fn in_ns<T: Send + 'static>(
    ns: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> std::thread::JoinHandle<T> {
    let path = format!("/run/netns/{ns}");
    std::thread::spawn(move || {
        let ns = File::open(&path).expect("open the namespace");
        // SAFETY: setns with an open network-namespace fd moves only
        // this thread, which owns nothing tied to the old namespace.
        let r = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(r, 0, "setns: {}", std::io::Error::last_os_error());
        f()
    })
}

impl Drop for Pair {
    fn drop(&mut self) {
        for ns in [&self.a, &self.b] {
            let _ = Command::new("ip")
                .args(["netns", "del", ns])
                .stderr(Stdio::null())
                .status();
        }
    }
}
