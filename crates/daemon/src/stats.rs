//! Counters: one shard per worker (cache-line aligned, relaxed atomics, never
//! shared between writers), summed when someone asks.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use serde::Serialize;

use podwire::pipeline::DropReason;

/// The ways a packet leaves or enters a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Ipip = 0,
    Vxlan = 1,
    Direct = 2,
    /// Pod to pod on this node.
    Local = 3,
}

impl Mode {
    pub const ALL: [Mode; 4] = [Mode::Ipip, Mode::Vxlan, Mode::Direct, Mode::Local];

    pub fn name(self) -> &'static str {
        match self {
            Mode::Ipip => "ipip",
            Mode::Vxlan => "vxlan",
            Mode::Direct => "direct",
            Mode::Local => "local",
        }
    }
}

/// Packets and bytes one way.
#[derive(Debug, Default)]
pub struct Flow {
    pub packets: AtomicU64,
    pub bytes: AtomicU64,
}

impl Flow {
    fn read(&self) -> FlowCount {
        FlowCount {
            packets: self.packets.load(Relaxed),
            bytes: self.bytes.load(Relaxed),
        }
    }
}

/// A worker's counters.
#[derive(Debug, Default)]
#[repr(align(64))]
pub struct WorkerStats {
    drops: [AtomicU64; DropReason::COUNT],
    /// Sent on the underlay (or to a local pod), per mode.
    tx: [Flow; 4],
    /// Received from the underlay and delivered, per mode.
    rx: [Flow; 4],
    /// Batches read, and the packets in them.
    batches: AtomicU64,
    batch_packets: AtomicU64,
    /// System calls that moved packets (reads, writes, batched sends).
    syscalls: AtomicU64,
    /// TCP super-packets: from pods sent whole, from pods cut up in
    /// userspace, from the underlay delivered whole.
    super_packets: [AtomicU64; 3],
}

/// What happened to a TCP super-packet.
#[derive(Debug, Clone, Copy)]
pub enum SuperPacket {
    SentWhole = 0,
    Split = 1,
    ReceivedWhole = 2,
}

/// A worker's counts for one batch, in plain integers: the packet path adds
/// to these, and [`WorkerStats::publish`] adds them to the shared shard once
/// per batch (a few atomic additions per batch, none per packet).
#[derive(Debug, Clone, Default)]
pub struct Tally {
    drops: [u64; DropReason::COUNT],
    tx: [(u64, u64); 4],
    rx: [(u64, u64); 4],
    batches: u64,
    batch_packets: u64,
    syscalls: u64,
    super_packets: [u64; 3],
}

impl Tally {
    #[inline]
    pub fn drop(&mut self, reason: DropReason) {
        self.drops[reason as usize] += 1;
    }

    #[inline]
    pub fn drops(&mut self, reason: DropReason, n: usize) {
        self.drops[reason as usize] += n as u64;
    }

    #[inline]
    pub fn tx(&mut self, mode: Mode, bytes: usize) {
        let f = &mut self.tx[mode as usize];
        f.0 += 1;
        f.1 += bytes as u64;
    }

    #[inline]
    pub fn rx(&mut self, mode: Mode, bytes: usize) {
        let f = &mut self.rx[mode as usize];
        f.0 += 1;
        f.1 += bytes as u64;
    }

    #[inline]
    pub fn batch(&mut self, packets: usize) {
        self.batches += 1;
        self.batch_packets += packets as u64;
    }

    #[inline]
    pub fn syscalls(&mut self, n: usize) {
        self.syscalls += n as u64;
    }

    #[inline]
    pub fn super_packet(&mut self, what: SuperPacket) {
        self.super_packets[what as usize] += 1;
    }
}

impl WorkerStats {
    /// Adds a batch's counts to the shard and clears them.
    pub fn publish(&self, t: &mut Tally) {
        let add = |a: &AtomicU64, n: u64| {
            if n != 0 {
                a.fetch_add(n, Relaxed);
            }
        };
        for (a, &n) in self.drops.iter().zip(&t.drops) {
            add(a, n);
        }
        for (f, &(p, b)) in self.tx.iter().zip(&t.tx).chain(self.rx.iter().zip(&t.rx)) {
            add(&f.packets, p);
            add(&f.bytes, b);
        }
        add(&self.batches, t.batches);
        add(&self.batch_packets, t.batch_packets);
        add(&self.syscalls, t.syscalls);
        for (a, &n) in self.super_packets.iter().zip(&t.super_packets) {
            add(a, n);
        }
        *t = Tally::default();
    }
}

/// An endpoint's packets and bytes one way, counted over a batch and added
/// to its shard once.
#[derive(Debug, Clone, Copy, Default)]
pub struct FlowTally {
    pub packets: u64,
    pub bytes: u64,
}

impl FlowTally {
    #[inline]
    pub fn add(&mut self, bytes: usize) {
        self.packets += 1;
        self.bytes += bytes as u64;
    }

    /// Adds the counts to `flow` and clears them.
    pub fn publish(&mut self, flow: &Flow) {
        if self.packets != 0 {
            flow.packets.fetch_add(self.packets, Relaxed);
            flow.bytes.fetch_add(self.bytes, Relaxed);
        }
        *self = FlowTally::default();
    }
}

/// TCP super-packets (`show stats`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct SuperPackets {
    /// From pods, sent whole (direct mode, or to a local pod).
    pub sent_whole: u64,
    /// From pods, cut into segments in userspace.
    pub split: u64,
    /// From the underlay, delivered whole (direct mode).
    pub received_whole: u64,
}

/// An endpoint's counters in one worker.
#[derive(Debug, Default)]
#[repr(align(64))]
pub struct EndpointStats {
    /// Read from the workload's TUN device.
    pub from_workload: Flow,
    /// Written to the workload's TUN device.
    pub to_workload: Flow,
}

/// Packets and bytes, read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct FlowCount {
    pub packets: u64,
    pub bytes: u64,
}

impl std::ops::AddAssign for FlowCount {
    fn add_assign(&mut self, o: Self) {
        self.packets += o.packets;
        self.bytes += o.bytes;
    }
}

/// An endpoint's totals.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct EndpointTotals {
    pub interface: String,
    pub workload: String,
    pub addresses: Vec<String>,
    pub mtu: u16,
    pub from_workload: FlowCount,
    pub to_workload: FlowCount,
}

/// Sums one endpoint's shards.
pub fn endpoint_totals(shards: &[EndpointStats]) -> (FlowCount, FlowCount) {
    let mut from = FlowCount::default();
    let mut to = FlowCount::default();
    for s in shards {
        from += s.from_workload.read();
        to += s.to_workload.read();
    }
    (from, to)
}

/// Per-mode totals.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ModeTotals {
    pub tx: FlowCount,
    pub rx: FlowCount,
}

/// Which offloads the daemon runs with.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Offloads {
    /// TUN devices with `IFF_VNET_HDR`, checksum and TSO.
    pub tun: bool,
    /// VXLAN sent with `UDP_SEGMENT` and checksum offload.
    pub udp_segment: bool,
    /// VXLAN received with `UDP_GRO`.
    pub udp_gro: bool,
    /// Direct mode: TCP super-packets sent and received whole through
    /// packet sockets with `PACKET_VNET_HDR`.
    pub packet_gso: bool,
    /// VXLAN: TCP super-packets sent whole into the kernel through the
    /// tunnel TAP, which cuts them into segments.
    pub tunnel_gso: bool,
    /// VXLAN received whole through a packet socket with virtio headers.
    pub vxlan_packet_rx: bool,
    /// IPIP: TCP super-packets sent whole into the kernel through the
    /// IPIP tunnel TUN, whose program has the kernel cut them as IPIP.
    pub ipip_gso: bool,
    /// IPIP received whole through a packet socket with virtio headers.
    pub ipip_packet_rx: bool,
}

/// Everything `podwire show stats` prints.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Totals {
    pub offloads: Offloads,
    pub uptime_seconds: u64,
    pub workers: usize,
    pub reloads: u64,
    pub reloads_rejected: u64,
    /// The datastore's state, when the resources come from one.
    pub datastore: Option<podwire::config::SourceState>,
    pub modes: Vec<(String, ModeTotals)>,
    pub drops: Vec<(String, u64)>,
    pub batches: u64,
    pub batch_packets: u64,
    pub average_batch: f64,
    pub syscalls: u64,
    pub packets_per_syscall: f64,
    pub super_packets: SuperPackets,
    pub endpoints: Vec<EndpointTotals>,
}

/// Sums the worker shards.
pub fn sum(workers: &[WorkerStats]) -> Totals {
    let mut t = Totals {
        workers: workers.len(),
        ..Totals::default()
    };
    for mode in Mode::ALL {
        let mut m = ModeTotals::default();
        for w in workers {
            m.tx += w.tx[mode as usize].read();
            m.rx += w.rx[mode as usize].read();
        }
        t.modes.push((mode.name().to_string(), m));
    }
    for &r in DropReason::ALL {
        let n = workers
            .iter()
            .map(|w| w.drops[r as usize].load(Relaxed))
            .sum();
        t.drops.push((r.name().to_string(), n));
    }
    t.batches = workers.iter().map(|w| w.batches.load(Relaxed)).sum();
    t.batch_packets = workers.iter().map(|w| w.batch_packets.load(Relaxed)).sum();
    t.syscalls = workers.iter().map(|w| w.syscalls.load(Relaxed)).sum();
    t.average_batch = ratio(t.batch_packets, t.batches);
    let sp = |k: SuperPacket| {
        workers
            .iter()
            .map(|w| w.super_packets[k as usize].load(Relaxed))
            .sum()
    };
    t.super_packets = SuperPackets {
        sent_whole: sp(SuperPacket::SentWhole),
        split: sp(SuperPacket::Split),
        received_whole: sp(SuperPacket::ReceivedWhole),
    };
    let moved: u64 = t
        .modes
        .iter()
        .map(|(_, m)| m.tx.packets + m.rx.packets)
        .sum();
    t.packets_per_syscall = ratio(moved, t.syscalls);
    t
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
}

impl Totals {
    /// The drop count of one reason.
    pub fn drop_count(&self, reason: DropReason) -> u64 {
        self.drops
            .iter()
            .find(|(n, _)| n == reason.name())
            .map_or(0, |(_, c)| *c)
    }

    /// Human-readable text, as `podwire show stats` prints it.
    pub fn text(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "uptime {}s, {} worker(s), {} reload(s), {} rejected",
            self.uptime_seconds, self.workers, self.reloads, self.reloads_rejected
        );
        if let Some(d) = &self.datastore {
            let _ = writeln!(
                s,
                "datastore {} {}: {}, {}, revision {}, {} event(s), {} relist(s), {} value(s) rejected, {} failed connection(s){}",
                d.kind,
                d.endpoint,
                if d.connected {
                    "connected"
                } else {
                    "disconnected"
                },
                if d.in_sync { "in sync" } else { "not in sync" },
                d.revision,
                d.events,
                d.relists,
                d.values_rejected,
                d.connect_failures,
                d.last_error
                    .as_ref()
                    .map(|e| format!(", last error: {e}"))
                    .unwrap_or_default()
            );
        }
        let on = |b: bool| if b { "on" } else { "off" };
        let _ = writeln!(
            s,
            "offloads: tun {}, udp-segment {}, udp-gro {}, packet-gso {}, tunnel-gso {}, vxlan-packet-rx {}, ipip-gso {}, ipip-packet-rx {}",
            on(self.offloads.tun),
            on(self.offloads.udp_segment),
            on(self.offloads.udp_gro),
            on(self.offloads.packet_gso),
            on(self.offloads.tunnel_gso),
            on(self.offloads.vxlan_packet_rx),
            on(self.offloads.ipip_gso),
            on(self.offloads.ipip_packet_rx)
        );
        let _ = writeln!(
            s,
            "batches {} ({} packets, average {:.1}), {:.2} packets per system call",
            self.batches, self.batch_packets, self.average_batch, self.packets_per_syscall
        );
        let _ = writeln!(
            s,
            "super-packets: {} sent whole, {} cut up, {} received whole",
            self.super_packets.sent_whole,
            self.super_packets.split,
            self.super_packets.received_whole
        );
        let _ = writeln!(
            s,
            "{:<8} {:>12} {:>14} {:>12} {:>14}",
            "mode", "tx-packets", "tx-bytes", "rx-packets", "rx-bytes"
        );
        for (name, m) in &self.modes {
            let _ = writeln!(
                s,
                "{:<8} {:>12} {:>14} {:>12} {:>14}",
                name, m.tx.packets, m.tx.bytes, m.rx.packets, m.rx.bytes
            );
        }
        let _ = writeln!(s, "drops");
        for (name, n) in &self.drops {
            let _ = writeln!(s, "  {name:<20} {n}");
        }
        s
    }

    /// The counters in the OpenMetrics text format (which Prometheus
    /// reads), encoded by prometheus-client from a registry made for this
    /// scrape: the counters live in the workers' atomics, the registry only
    /// carries their values.
    pub fn prometheus(&self) -> String {
        use prometheus_client::metrics::counter::Counter;
        use prometheus_client::metrics::family::Family;
        use prometheus_client::metrics::gauge::Gauge;
        use prometheus_client::registry::Registry;

        type Labels = Vec<(&'static str, String)>;
        let mut r = Registry::default();
        let counters = |r: &mut Registry, name: &str, help: &str, values: Vec<(Labels, u64)>| {
            let f = Family::<Labels, Counter>::default();
            for (labels, v) in values {
                f.get_or_create(&labels).inc_by(v);
            }
            r.register(name, help, f);
        };
        let direction =
            |mode: &str, d: &str| vec![("mode", mode.to_string()), ("direction", d.to_string())];
        counters(
            &mut r,
            "podwire_packets",
            "Packets through the dataplane, by mode and direction",
            self.modes
                .iter()
                .flat_map(|(name, m)| {
                    [
                        (direction(name, "tx"), m.tx.packets),
                        (direction(name, "rx"), m.rx.packets),
                    ]
                })
                .collect(),
        );
        counters(
            &mut r,
            "podwire_bytes",
            "Bytes through the dataplane, by mode and direction",
            self.modes
                .iter()
                .flat_map(|(name, m)| {
                    [
                        (direction(name, "tx"), m.tx.bytes),
                        (direction(name, "rx"), m.rx.bytes),
                    ]
                })
                .collect(),
        );
        counters(
            &mut r,
            "podwire_drops",
            "Packets dropped, by reason",
            self.drops
                .iter()
                .map(|(name, n)| (vec![("reason", name.to_string())], *n))
                .collect(),
        );
        let endpoint = |e: &EndpointTotals, d: &str| {
            vec![
                ("interface", e.interface.clone()),
                ("direction", d.to_string()),
            ]
        };
        counters(
            &mut r,
            "podwire_endpoint_packets",
            "Packets from and to each workload endpoint",
            self.endpoints
                .iter()
                .flat_map(|e| {
                    [
                        (endpoint(e, "from_workload"), e.from_workload.packets),
                        (endpoint(e, "to_workload"), e.to_workload.packets),
                    ]
                })
                .collect(),
        );
        counters(
            &mut r,
            "podwire_endpoint_bytes",
            "Bytes from and to each workload endpoint",
            self.endpoints
                .iter()
                .flat_map(|e| {
                    [
                        (endpoint(e, "from_workload"), e.from_workload.bytes),
                        (endpoint(e, "to_workload"), e.to_workload.bytes),
                    ]
                })
                .collect(),
        );
        for (name, help, v) in [
            ("podwire_batches", "Batches of packets read", self.batches),
            (
                "podwire_batch_packets",
                "Packets in those batches",
                self.batch_packets,
            ),
            (
                "podwire_syscalls",
                "System calls that moved packets",
                self.syscalls,
            ),
        ] {
            counters(&mut r, name, help, vec![(Vec::new(), v)]);
        }
        counters(
            &mut r,
            "podwire_reloads",
            "Configuration reloads, by result",
            vec![
                (vec![("result", "applied".to_string())], self.reloads),
                (
                    vec![("result", "rejected".to_string())],
                    self.reloads_rejected,
                ),
            ],
        );
        if let Some(d) = &self.datastore {
            let kind = || vec![("kind", d.kind.to_string())];
            for (name, help, v) in [
                (
                    "connected",
                    "1 while connected to a datastore member",
                    i64::from(d.connected),
                ),
                (
                    "in_sync",
                    "1 while the tables are those of the datastore's last read and its watch runs",
                    i64::from(d.in_sync),
                ),
                (
                    "revision",
                    "The datastore revision of the resources held",
                    d.revision,
                ),
            ] {
                let f = Family::<Labels, Gauge>::default();
                f.get_or_create(&kind()).set(v);
                r.register(format!("podwire_datastore_{name}"), help, f);
            }
            for (name, help, v) in [
                (
                    "events",
                    "Changes received from the datastore's watch",
                    d.events,
                ),
                (
                    "relists",
                    "Full reads of the datastore after the first",
                    d.relists,
                ),
                (
                    "values_rejected",
                    "Datastore values left out because they do not parse or validate",
                    d.values_rejected,
                ),
                (
                    "connect_failures",
                    "Failed attempts to reach a datastore member",
                    d.connect_failures,
                ),
            ] {
                counters(
                    &mut r,
                    &format!("podwire_datastore_{name}"),
                    help,
                    vec![(kind(), v)],
                );
            }
        }
        let mut s = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut s, &r) {
            tracing::warn!("cannot encode the metrics: {e}");
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_sum_and_print() {
        let w = [WorkerStats::default(), WorkerStats::default()];
        let mut t0 = Tally::default();
        let mut t1 = Tally::default();
        t0.tx(Mode::Vxlan, 100);
        t1.tx(Mode::Vxlan, 50);
        t1.rx(Mode::Ipip, 10);
        t0.drop(DropReason::UnknownPeer);
        t1.drops(DropReason::UnknownPeer, 2);
        t0.batch(3);
        t1.batch(1);
        t0.syscalls(2);
        w[0].publish(&mut t0);
        w[1].publish(&mut t1);
        // Publishing clears the tally: a second publish adds nothing.
        w[0].publish(&mut t0);
        let t = sum(&w);
        let vx = t.modes.iter().find(|(n, _)| n == "vxlan").unwrap().1;
        assert_eq!(
            vx.tx,
            FlowCount {
                packets: 2,
                bytes: 150
            }
        );
        assert_eq!(t.drop_count(DropReason::UnknownPeer), 3);
        assert_eq!(t.average_batch, 2.0);
        assert_eq!(t.packets_per_syscall, 1.5);
        let p = t.prometheus();
        assert!(
            p.contains("podwire_drops_total{reason=\"unknown-peer\"} 3\n"),
            "{p}"
        );
        assert!(p.contains("podwire_packets_total{mode=\"vxlan\",direction=\"tx\"} 2\n"));
        // OpenMetrics: the family's type line, and the end marker.
        assert!(p.contains("# TYPE podwire_drops counter\n"), "{p}");
        assert!(p.ends_with("# EOF\n"), "{p}");
        assert!(t.text().contains("  unknown-peer         3\n"));
    }
}
