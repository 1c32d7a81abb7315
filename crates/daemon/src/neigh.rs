//! Direct mode's next hops: the underlay device and the MACs of the nodes
//! on it, from the kernel's neighbour table over netlink.
//!
//! The refresher thread dumps the underlay's IPv4 neighbours once, then
//! follows `RTNLGRP_NEIGH` events (re-dumping when the kernel reports it
//! dropped some), and asks the kernel to resolve each direct-mode next hop
//! that has no usable entry (`RTM_NEWNEIGH` with `NTF_USE`, at most once a
//! second per next hop; never for an entry that is usable, which would
//! demote a permanent one). What it knows goes into the snapshot's tables
//! ([`NextHops`]), swapped in whole, so the pipeline frames with it and
//! answers `no-neighbour` itself. A worker that missed a next hop wakes it.

use std::collections::HashMap;
use std::io;
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token, Waker};

use super::Shared;
use podwire::table::NextHops;
use podwire_io::netdev;
use podwire_io::netlink::{NeighEvent, NeighWatch, Neighbour};
use podwire_wire::MacAddr;

/// The underlay device as direct mode needs it.
#[derive(Debug, Clone)]
pub struct UnderlayDev {
    pub name: String,
    pub ifindex: u32,
    pub mac: MacAddr,
}

impl UnderlayDev {
    pub fn open(name: &str) -> io::Result<Self> {
        Ok(UnderlayDev {
            name: name.to_string(),
            ifindex: netdev::ifindex(name)?,
            mac: netdev::mac(name)?,
        })
    }

    fn forwarding_path(&self) -> String {
        format!("/proc/sys/net/ipv4/conf/{}/forwarding", self.name)
    }

    /// Puts back a forwarding setting an older podwire turned off.
    pub fn restore_forwarding(&self, old: &str) {
        let _ = std::fs::write(self.forwarding_path(), old);
    }
}

/// The refresher's wake-up: workers use it when they miss a next hop, the
/// daemon when it stops.
pub const WAKE: Token = Token(1);
const EVENTS: Token = Token(0);

/// Starts the refresher; it ends when the daemon stops (wake it then).
/// Returns it and its waker.
pub fn start_refresher(shared: Arc<Shared>) -> io::Result<(JoinHandle<()>, Arc<Waker>)> {
    let poll = Poll::new()?;
    let waker = Arc::new(Waker::new(poll.registry(), WAKE)?);
    let watch = match &shared.underlay {
        Some(dev) => Some(NeighWatch::open(dev.ifindex)?),
        None => None,
    };
    if let Some(w) = &watch {
        poll.registry()
            .register(&mut SourceFd(&w.as_raw_fd()), EVENTS, Interest::READABLE)?;
    }
    let handle = std::thread::Builder::new()
        .name("podwire-neigh".into())
        .spawn(move || {
            if let (Some(w), Some(dev)) = (watch, shared.underlay.clone()) {
                refresh_loop(&shared, &dev, w, poll);
            }
        })?;
    Ok((handle, waker))
}

/// The usable MACs of a dump.
fn usable(dump: Vec<Neighbour>) -> HashMap<Ipv4Addr, MacAddr> {
    dump.into_iter()
        .filter_map(|n| n.usable_mac().map(|m| (n.ip, m)))
        .collect()
}

fn refresh_loop(shared: &Shared, dev: &UnderlayDev, mut watch: NeighWatch, mut poll: Poll) {
    let mut table = watch.dump(dev.ifindex).map(usable).unwrap_or_else(|e| {
        tracing::warn!(device = %dev.name, "cannot read the neighbour table: {e}");
        HashMap::new()
    });
    let mut solicited: HashMap<Ipv4Addr, Instant> = HashMap::new();
    let mut events = Events::with_capacity(8);
    let mut changes = Vec::new();
    while !shared.stop.load(Ordering::Relaxed) {
        let gateways = shared.snapshot.load().tables.direct_gateways();
        for gw in gateways.iter().filter(|gw| !table.contains_key(gw)) {
            let due = solicited
                .get(gw)
                .is_none_or(|t| t.elapsed() >= Duration::from_secs(1));
            if due {
                if let Err(e) = watch.resolve(dev.ifindex, *gw) {
                    tracing::debug!(%gw, "cannot ask the kernel to resolve the next hop: {e}");
                }
                solicited.insert(*gw, Instant::now());
            }
        }
        let next_hops = NextHops::new(dev.mac, table.iter().map(|(ip, mac)| (*ip, *mac)));
        {
            let _swap = shared.swap.lock().unwrap_or_else(|p| p.into_inner());
            let snap = shared.snapshot.load_full();
            if *snap.tables.next_hops() != next_hops {
                shared.snapshot.store(Arc::new(super::Snapshot {
                    generation: snap.generation,
                    tables: snap.tables.with_next_hops(next_hops),
                    endpoints: snap.endpoints.clone(),
                }));
            }
        }
        // While a next hop is unresolved, ask again within a second.
        let missing = gateways.iter().any(|gw| !table.contains_key(gw));
        let wait = Duration::from_millis(if missing { 200 } else { 1000 });
        if let Err(e) = poll.poll(&mut events, Some(wait)) {
            if e.kind() != io::ErrorKind::Interrupted {
                tracing::warn!("neighbour refresher: poll failed: {e}");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        changes.clear();
        if let Err(e) = watch.recv_events(&mut changes) {
            tracing::warn!("cannot read neighbour events: {e}");
        }
        for change in changes.drain(..) {
            match change {
                NeighEvent::Update(n) => match n.usable_mac() {
                    Some(mac) => {
                        table.insert(n.ip, mac);
                    }
                    None => {
                        table.remove(&n.ip);
                    }
                },
                NeighEvent::Delete(n) => {
                    table.remove(&n.ip);
                }
                NeighEvent::Overrun => match watch.dump(dev.ifindex) {
                    Ok(d) => table = usable(d),
                    Err(e) => tracing::warn!("cannot read the neighbour table again: {e}"),
                },
            }
        }
    }
}
