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
            "offloads: tun {}, udp-segment {}, udp-gro {}, packet-gso {}",
            on(self.offloads.tun),
            on(self.offloads.udp_segment),
            on(self.offloads.udp_gro),
            on(self.offloads.packet_gso)
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

    /// The Prometheus text exposition format.
    pub fn prometheus(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "# HELP podwire_packets_total Packets through the dataplane, by mode and direction."
        );
        let _ = writeln!(s, "# TYPE podwire_packets_total counter");
        for (name, m) in &self.modes {
            let _ = writeln!(
                s,
                "podwire_packets_total{{mode=\"{name}\",direction=\"tx\"}} {}",
                m.tx.packets
            );
            let _ = writeln!(
                s,
                "podwire_packets_total{{mode=\"{name}\",direction=\"rx\"}} {}",
                m.rx.packets
            );
        }
        let _ = writeln!(
            s,
            "# HELP podwire_bytes_total Bytes through the dataplane, by mode and direction."
        );
        let _ = writeln!(s, "# TYPE podwire_bytes_total counter");
        for (name, m) in &self.modes {
            let _ = writeln!(
                s,
                "podwire_bytes_total{{mode=\"{name}\",direction=\"tx\"}} {}",
                m.tx.bytes
            );
            let _ = writeln!(
                s,
                "podwire_bytes_total{{mode=\"{name}\",direction=\"rx\"}} {}",
                m.rx.bytes
            );
        }
        let _ = writeln!(s, "# HELP podwire_drops_total Packets dropped, by reason.");
        let _ = writeln!(s, "# TYPE podwire_drops_total counter");
        for (name, n) in &self.drops {
            let _ = writeln!(s, "podwire_drops_total{{reason=\"{name}\"}} {n}");
        }
        let _ = writeln!(
            s,
            "# HELP podwire_endpoint_packets_total Packets from and to each workload endpoint."
        );
        let _ = writeln!(s, "# TYPE podwire_endpoint_packets_total counter");
        for e in &self.endpoints {
            let _ = writeln!(
                s,
                "podwire_endpoint_packets_total{{interface=\"{}\",direction=\"from_workload\"}} {}",
                e.interface, e.from_workload.packets
            );
            let _ = writeln!(
                s,
                "podwire_endpoint_packets_total{{interface=\"{}\",direction=\"to_workload\"}} {}",
                e.interface, e.to_workload.packets
            );
        }
        let _ = writeln!(
            s,
            "# HELP podwire_endpoint_bytes_total Bytes from and to each workload endpoint."
        );
        let _ = writeln!(s, "# TYPE podwire_endpoint_bytes_total counter");
        for e in &self.endpoints {
            let _ = writeln!(
                s,
                "podwire_endpoint_bytes_total{{interface=\"{}\",direction=\"from_workload\"}} {}",
                e.interface, e.from_workload.bytes
            );
            let _ = writeln!(
                s,
                "podwire_endpoint_bytes_total{{interface=\"{}\",direction=\"to_workload\"}} {}",
                e.interface, e.to_workload.bytes
            );
        }
        let _ = writeln!(s, "# HELP podwire_batches_total Batches of packets read.");
        let _ = writeln!(s, "# TYPE podwire_batches_total counter");
        let _ = writeln!(s, "podwire_batches_total {}", self.batches);
        let _ = writeln!(
            s,
            "# HELP podwire_batch_packets_total Packets in those batches."
        );
        let _ = writeln!(s, "# TYPE podwire_batch_packets_total counter");
        let _ = writeln!(s, "podwire_batch_packets_total {}", self.batch_packets);
        let _ = writeln!(
            s,
            "# HELP podwire_syscalls_total System calls that moved packets."
        );
        let _ = writeln!(s, "# TYPE podwire_syscalls_total counter");
        let _ = writeln!(s, "podwire_syscalls_total {}", self.syscalls);
        let _ = writeln!(
            s,
            "# HELP podwire_reloads_total Configuration reloads, by result."
        );
        let _ = writeln!(s, "# TYPE podwire_reloads_total counter");
        let _ = writeln!(
            s,
            "podwire_reloads_total{{result=\"applied\"}} {}",
            self.reloads
        );
        let _ = writeln!(
            s,
            "podwire_reloads_total{{result=\"rejected\"}} {}",
            self.reloads_rejected
        );
        if let Some(d) = &self.datastore {
            let gauges: [(&str, &str, i64); 3] = [
                (
                    "connected",
                    "1 while connected to a datastore member.",
                    i64::from(d.connected),
                ),
                (
                    "in_sync",
                    "1 while the tables are those of the datastore's last read and its watch runs.",
                    i64::from(d.in_sync),
                ),
                (
                    "revision",
                    "The datastore revision of the resources held.",
                    d.revision,
                ),
            ];
            for (name, help, v) in gauges {
                let _ = writeln!(s, "# HELP podwire_datastore_{name} {help}");
                let _ = writeln!(s, "# TYPE podwire_datastore_{name} gauge");
                let _ = writeln!(s, "podwire_datastore_{name}{{kind=\"{}\"}} {v}", d.kind);
            }
            let counters: [(&str, &str, u64); 4] = [
                (
                    "events",
                    "Changes received from the datastore's watch.",
                    d.events,
                ),
                (
                    "relists",
                    "Full reads of the datastore after the first.",
                    d.relists,
                ),
                (
                    "values_rejected",
                    "Datastore values left out because they do not parse or validate.",
                    d.values_rejected,
                ),
                (
                    "connect_failures",
                    "Failed attempts to reach a datastore member.",
                    d.connect_failures,
                ),
            ];
            for (name, help, v) in counters {
                let _ = writeln!(s, "# HELP podwire_datastore_{name}_total {help}");
                let _ = writeln!(s, "# TYPE podwire_datastore_{name}_total counter");
                let _ = writeln!(
                    s,
                    "podwire_datastore_{name}_total{{kind=\"{}\"}} {v}",
                    d.kind
                );
            }
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
        assert!(t.text().contains("  unknown-peer         3\n"));
    }
}
