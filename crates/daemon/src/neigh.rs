//! Direct mode's next hops: the underlay device and the MACs of the nodes
//! on it, from the kernel's neighbour table.
//!
//! A refresher thread reads `/proc/net/arp` for the underlay device once a
//! second, or at once when a worker missed an entry, and asks the kernel to
//! resolve every direct-mode gateway it does not know yet (a datagram to the
//! gateway's discard port makes the kernel ARP for it). What it finds goes
//! into the snapshot's tables ([`NextHops`]), swapped in whole, so the
//! pipeline frames with it and answers `no-neighbour` itself.

use std::collections::HashMap;
use std::io;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::Shared;
use podwire::table::NextHops;
use podwire_io::netdev;
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

    /// Turns IPv4 forwarding off on the device, so that the kernel drops
    /// (silently) the frames for pods it would otherwise route; returns the
    /// previous value when it changed it.
    pub fn stop_forwarding(&self) -> Option<String> {
        let path = self.forwarding_path();
        let old = std::fs::read_to_string(&path).ok()?.trim().to_string();
        if old == "0" {
            return None;
        }
        match std::fs::write(&path, "0") {
            Ok(()) => {
                tracing::info!(device = %self.name, "IPv4 forwarding turned off on the underlay device (podwire forwards pod traffic itself)");
                Some(old)
            }
            Err(e) => {
                tracing::warn!(device = %self.name, "cannot turn forwarding off ({e}): the kernel may forward direct-mode pod traffic too");
                None
            }
        }
    }

    /// Puts back the forwarding setting found at start.
    pub fn restore_forwarding(&self, old: &str) {
        let _ = std::fs::write(self.forwarding_path(), old);
    }
}

/// Starts the refresher; it ends when the daemon stops (unpark it then).
pub fn start_refresher(shared: Arc<Shared>) -> io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("podwire-neigh".into())
        .spawn(move || refresh_loop(&shared))
}

fn refresh_loop(shared: &Shared) {
    let Some(dev) = &shared.underlay else { return };
    let mut solicited: HashMap<Ipv4Addr, Instant> = HashMap::new();
    while !shared.stop.load(Ordering::Relaxed) {
        let table: HashMap<Ipv4Addr, MacAddr> = match netdev::arp_table(&dev.name) {
            Ok(t) => t.into_iter().collect(),
            Err(e) => {
                tracing::warn!("cannot read the neighbour table: {e}");
                HashMap::new()
            }
        };
        let gateways = shared.snapshot.load().tables.direct_gateways();
        let mut missing = false;
        for gw in gateways {
            if table.contains_key(&gw) {
                continue;
            }
            missing = true;
            let due = solicited
                .get(&gw)
                .is_none_or(|t| t.elapsed() >= Duration::from_secs(1));
            if due {
                if let Err(e) = netdev::solicit(gw) {
                    tracing::debug!(%gw, "cannot solicit the next hop: {e}");
                }
                solicited.insert(gw, Instant::now());
            }
        }
        let next_hops = NextHops::new(dev.mac, table);
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
        // While a gateway is unresolved, look again soon.
        let wait = if missing { 50 } else { 1000 };
        std::thread::park_timeout(Duration::from_millis(wait));
    }
}
