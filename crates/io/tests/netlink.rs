//! `podwire_io::netlink` against the kernel: namespaces A and B joined by a
//! veth pair, made and deleted by each test (the root namespace's
//! addresses and routes are never touched). The test body runs on a thread
//! that entered A with `setns`, so that its netlink sockets are A's.
//! Needs root; without it each test says it was skipped and passes.

use std::fs::File;
use std::io::Write;
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use podwire_io::netlink::{self, Link, NeighEvent, NeighState, NeighWatch, Neighbour};
use podwire_wire::MacAddr;

const A_ADDR: &str = "192.168.77.1/24";
const B_ADDR: &str = "192.168.77.2/24";
const B_IP: Ipv4Addr = Ipv4Addr::new(192, 168, 77, 2);
/// On A's subnet, but no host has it.
const ABSENT: Ipv4Addr = Ipv4Addr::new(192, 168, 77, 99);
const A_MAC: MacAddr = MacAddr([0x02, 0x50, 0x57, 0x77, 0x00, 0x01]);
const B_MAC: MacAddr = MacAddr([0x02, 0x50, 0x57, 0x77, 0x00, 0x02]);

fn root_or_skip(test: &str) -> bool {
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

fn ip(args: &[&str]) -> String {
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
struct Pair {
    a: String,
    b: String,
    veth_a: String,
}

impl Pair {
    /// `tag` tells apart the pairs of tests running at once.
    fn new(tag: char) -> Pair {
        let pid = std::process::id();
        let pair = Pair {
            a: format!("pwnl{tag}{pid}a"),
            b: format!("pwnl{tag}{pid}b"),
            veth_a: format!("nl{tag}{pid}a"),
        };
        let veth_b = format!("nl{tag}{pid}b");
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
    fn in_a<T: Send + 'static>(&self, f: impl FnOnce(Link) -> T + Send + 'static) -> T {
        let path = format!("/run/netns/{}", self.a);
        let veth_a = self.veth_a.clone();
        std::thread::spawn(move || {
            let ns = File::open(&path).expect("open the namespace");
            // SAFETY: setns with an open network-namespace fd moves only
            // this thread, which owns nothing tied to the old namespace.
            let r = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(r, 0, "setns: {}", std::io::Error::last_os_error());
            f(netlink::link(&veth_a).expect("A's veth"))
        })
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    }
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

/// Waits with mio, as the daemon would, until an event matches `want`;
/// returns it, or panics after `limit`.
fn wait_for(
    watch: &mut NeighWatch,
    limit: Duration,
    want: impl Fn(&NeighEvent) -> bool,
) -> NeighEvent {
    let mut poll = Poll::new().unwrap();
    let fd = watch.as_raw_fd();
    poll.registry()
        .register(&mut SourceFd(&fd), Token(0), Interest::READABLE)
        .unwrap();
    let deadline = Instant::now() + limit;
    let mut ready = Events::with_capacity(4);
    let mut seen = Vec::new();
    // Events already queued count: edge-triggered readiness would not
    // report them again.
    loop {
        let start = seen.len();
        watch.recv_events(&mut seen).unwrap();
        if let Some(e) = seen[start..].iter().find(|e| want(e)) {
            return *e;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "no such event within {limit:?}: {seen:?}");
        poll.poll(&mut ready, Some(left)).unwrap();
    }
}

fn find(watch: &mut NeighWatch, ifindex: u32, ip: Ipv4Addr) -> Option<Neighbour> {
    let table = watch.dump(ifindex).expect("dump");
    table.into_iter().find(|n| n.ip == ip)
}

#[test]
fn resolve_makes_the_kernel_arp_and_a_delete_is_an_event() {
    if !root_or_skip("resolve_makes_the_kernel_arp_and_a_delete_is_an_event") {
        return;
    }
    let pair = Pair::new('r');
    let (ns_a, ns_b, veth_a) = (pair.a.clone(), pair.b.clone(), pair.veth_a.clone());
    pair.in_a(move |link| {
        assert_eq!((link.mac, link.mtu), (Some(A_MAC), 1500));
        let ifindex = link.ifindex;
        let mut watch = NeighWatch::open(ifindex).unwrap();
        assert_eq!(find(&mut watch, ifindex, B_IP), None);
        let mut pending = Vec::new();
        assert_eq!(watch.recv_events(&mut pending).unwrap(), 0, "{pending:?}");

        // (a) The kernel ARPs; the entry turns REACHABLE with B's MAC.
        let asked = Instant::now();
        watch.resolve(ifindex, B_IP).unwrap();
        let event = wait_for(
            &mut watch,
            Duration::from_secs(2),
            |e| matches!(e, NeighEvent::Update(n) if n.ip == B_IP && n.state.usable()),
        );
        eprintln!("{event:?} {:?} after resolve", asked.elapsed());
        let NeighEvent::Update(n) = event else {
            unreachable!()
        };
        assert_eq!((n.state, n.mac), (NeighState::Reachable, Some(B_MAC)));
        let dumped = find(&mut watch, ifindex, B_IP).expect("B in the dump");
        assert_eq!((dumped.state, dumped.usable_mac()), (n.state, Some(B_MAC)));
        // B learnt A from A's ARP request.
        let b_table = ip(&["-n", &ns_b, "neigh", "show", "192.168.77.1"]);
        assert!(b_table.contains(&A_MAC.to_string()), "B: {b_table}");

        // Resolving a REACHABLE entry again is fine and changes nothing.
        watch.resolve(ifindex, B_IP).unwrap();
        let again = find(&mut watch, ifindex, B_IP).unwrap();
        assert_eq!(again.usable_mac(), Some(B_MAC));

        // (b) `ip neigh del` is a delete event.
        ip(&["-n", &ns_a, "neigh", "del", "192.168.77.2", "dev", &veth_a]);
        let event = wait_for(
            &mut watch,
            Duration::from_secs(2),
            |e| matches!(e, NeighEvent::Delete(n) if n.ip == B_IP),
        );
        eprintln!("{event:?}");
        assert_eq!(find(&mut watch, ifindex, B_IP), None);
    });
}

#[test]
fn an_absent_host_is_not_usable_and_kernel_errors_are_returned() {
    if !root_or_skip("an_absent_host_is_not_usable_and_kernel_errors_are_returned") {
        return;
    }
    let pair = Pair::new('x');
    pair.in_a(move |link| {
        let ifindex = link.ifindex;
        let mut watch = NeighWatch::open(ifindex).unwrap();

        // (c) INCOMPLETE while the kernel probes, then FAILED.
        watch.resolve(ifindex, ABSENT).unwrap();
        let n = find(&mut watch, ifindex, ABSENT).expect("the entry resolve made");
        assert!(
            matches!(n.state, NeighState::Incomplete | NeighState::Failed),
            "{n:?}"
        );
        assert!(!n.state.usable());
        assert_eq!(n.usable_mac(), None);
        let event = wait_for(&mut watch, Duration::from_secs(6), |e| {
            matches!(e, NeighEvent::Update(n) if n.ip == ABSENT && n.state == NeighState::Failed)
        });
        let NeighEvent::Update(n) = event else {
            unreachable!()
        };
        assert!(!n.state.usable());
        assert_eq!(n.usable_mac(), None);

        // The kernel's refusals come back as errors, not silence.
        let err = watch.resolve(ifindex + 1000, B_IP).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ENODEV), "{err}");
        let err = watch.link("pwnl-absent0").unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ENODEV), "{err}");
        // The request socket is still in step after the errors.
        assert!(find(&mut watch, ifindex, ABSENT).is_some());
        assert_eq!(watch.link("lo").unwrap().ifindex, 1);
    });
}

#[test]
fn dropped_events_are_reported_as_an_overrun() {
    if !root_or_skip("dropped_events_are_reported_as_an_overrun") {
        return;
    }
    let pair = Pair::new('o');
    let (ns_a, veth_a) = (pair.a.clone(), pair.veth_a.clone());
    pair.in_a(move |link| {
        let ifindex = link.ifindex;
        let mut watch = NeighWatch::open(ifindex).unwrap();
        // The smallest buffer the kernel allows holds a few events.
        socket2::SockRef::from(&watch)
            .set_recv_buffer_size(0)
            .unwrap();
        let batch: String = (1..=200)
            .map(|i| {
                format!(
                    "neigh add 192.168.78.{i} lladdr 02:00:00:00:00:01 dev {veth_a} nud permanent\n"
                )
            })
            .collect();
        let mut child = Command::new("ip")
            .args(["-n", &ns_a, "-batch", "-"])
            .stdin(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(batch.as_bytes())
            .unwrap();
        assert!(child.wait().unwrap().success());

        let mut events = Vec::new();
        watch.recv_events(&mut events).unwrap();
        assert!(events.contains(&NeighEvent::Overrun), "{events:?}");
        assert!(events.len() < 200, "{} events", events.len());
        // What the caller does then: dump again.
        let table = watch.dump(ifindex).unwrap();
        let permanent = table
            .iter()
            .filter(|n| n.state == NeighState::Permanent)
            .count();
        assert_eq!(permanent, 200);
        // Nothing more is pending, and the socket still works.
        events.clear();
        assert_eq!(watch.recv_events(&mut events).unwrap(), 0);
    });
}
