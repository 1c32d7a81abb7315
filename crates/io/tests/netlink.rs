//! `podwire_io::netlink` against the kernel: namespaces A and B joined by a
//! veth pair, made and deleted by each test (the root namespace's
//! addresses and routes are never touched). The test body runs on a thread
//! that entered A with `setns`, so that its netlink sockets are A's.
//! Needs root; without it each test says it was skipped and passes.

mod common;

use std::io::Write;
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use podwire_io::netlink::{NeighEvent, NeighState, NeighWatch, Neighbour};

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
