//! A worker's transmit side: what the pipeline decided, queued by [`Slot`]
//! (never copied), and flushed with as few system calls as the kernel
//! allows — TUN writes (consecutive segments of a flow merged by the
//! pipeline's GRO policy), `sendmmsg` on the raw socket, frames on the
//! packet socket, VXLAN runs through `UDP_SEGMENT` sockets, and VXLAN and
//! IPIP super-packets whole into the tunnel TAP and TUN.

use std::io::{self, IoSlice};
use std::net::{Ipv4Addr, SocketAddrV4};

use super::Snapshot;
use super::pool::{Pool, Slot};
use super::stats::{FlowTally, Mode, Tally};
use super::worker::RateLimited;
use podwire::pipeline::gro::{self, MAX_MERGE};
use podwire::pipeline::{self, DropReason, Target};
use podwire::table::EndpointId;
use podwire::wire::MacAddr;
use podwire::wire::vnet::{self, TNL_LEN, VnetHdr};
use podwire::wire::vxlan::ETH_LEN;
use podwire_io::tap::TapQueue;
use podwire_io::udp::{MAX_RUN_SEGMENTS, MAX_RUNS, SegmentSender};
use podwire_io::{SendReport, TxBatch};
use podwire_wire::tcp_gro::{self, MAX_HEADER_BLOCK};

/// The outer IPv4 and UDP headers a UDP socket writes itself.
const UDP_HEADERS: usize = 28;

/// A packet waiting to be written to an endpoint.
#[derive(Debug, Clone, Copy)]
struct Delivery {
    to: EndpointId,
    slot: Slot,
    /// A TCP super-packet after its virtio header, written as it is.
    whole: bool,
    /// Bytes of the packet (without a virtio header), for the counters.
    bytes: usize,
}

/// A packet waiting for an underlay socket.
#[derive(Debug, Clone, Copy)]
struct Pending {
    slot: Slot,
    dst: Ipv4Addr,
    mode: Mode,
}

/// A VXLAN packet waiting for the segment sender, with the source port and
/// outer TOS the pipeline gave it.
#[derive(Debug, Clone, Copy)]
struct PendingVxlan {
    slot: Slot,
    dst: Ipv4Addr,
    src_port: u16,
    tos: u8,
}

pub struct Tx {
    index: usize,
    raw: Box<dyn TxBatch>,
    direct: Option<Box<dyn TxBatch>>,
    vxlan: Option<SegmentSender>,
    deliveries: Vec<Delivery>,
    raw_queue: Vec<Pending>,
    frames: Vec<Pending>,
    vxlan_queue: Vec<PendingVxlan>,
    /// The tunnel TAP's MAC, and this worker's queue of it with the
    /// frames waiting, each with its tunnel header.
    tap_mac: Option<MacAddr>,
    tap: TunnelDevice<TNL_LEN>,
    /// This worker's queue of the IPIP tunnel TUN, and the packets
    /// waiting, each with its virtio header.
    ipip: TunnelDevice<{ vnet::LEN }>,
    errors: RateLimited,
}

/// A tunnel device's queue (the VXLAN TAP, the IPIP TUN) and what waits
/// for it: packets, each written after its header.
struct TunnelDevice<const N: usize> {
    device: Option<TapQueue>,
    pending: Vec<(Slot, [u8; N])>,
    /// What is sent through it, and the bytes of link-layer header in front
    /// of each packet (not counted as sent).
    mode: Mode,
    link: usize,
}

impl Tx {
    pub fn new(
        index: usize,
        raw: Box<dyn TxBatch>,
        direct: Option<Box<dyn TxBatch>>,
        vxlan: Option<SegmentSender>,
        tunnel: Option<(MacAddr, TapQueue)>,
        ipip_tun: Option<TapQueue>,
        capacity: usize,
    ) -> Tx {
        Tx {
            index,
            raw,
            direct,
            vxlan,
            deliveries: Vec::with_capacity(capacity),
            raw_queue: Vec::with_capacity(capacity),
            frames: Vec::with_capacity(capacity),
            vxlan_queue: Vec::with_capacity(capacity),
            tap_mac: tunnel.as_ref().map(|t| t.0),
            tap: TunnelDevice {
                device: tunnel.map(|t| t.1),
                pending: Vec::with_capacity(capacity),
                mode: Mode::Vxlan,
                link: ETH_LEN,
            },
            ipip: TunnelDevice {
                device: ipip_tun,
                pending: Vec::with_capacity(capacity),
                mode: Mode::Ipip,
                link: 0,
            },
            errors: RateLimited::new(),
        }
    }

    /// True when the direct-mode socket takes frames after a virtio header
    /// (and so TCP super-packets may go to direct-mode next hops whole).
    pub fn direct_vnet(&self) -> bool {
        self.direct.as_ref().is_some_and(|t| t.vnet())
    }

    /// The tunnel TAP's MAC, when VXLAN super-packets may go whole.
    pub fn tunnel_mac(&self) -> Option<MacAddr> {
        self.tap_mac
    }

    /// True when IPIP super-packets may go whole (the IPIP tunnel TUN).
    pub fn ipip_tun(&self) -> bool {
        self.ipip.device.is_some()
    }

    /// Queues an IPIP packet framed for the IPIP tunnel TUN, written after
    /// `hdr`.
    pub fn queue_ipip_tun(&mut self, slot: Slot, hdr: VnetHdr) {
        let mut h = [0u8; vnet::LEN];
        hdr.write(&mut h);
        self.ipip.pending.push((slot, h));
    }

    /// Queues a VXLAN super-packet framed for the tunnel TAP, written after
    /// `hdr`.
    pub fn queue_tunnel(&mut self, slot: Slot, hdr: [u8; TNL_LEN]) {
        self.tap.pending.push((slot, hdr));
    }

    pub fn queue_delivery(&mut self, to: EndpointId, slot: Slot, whole: bool, bytes: usize) {
        self.deliveries.push(Delivery {
            to,
            slot,
            whole,
            bytes,
        });
    }

    /// Queues a framed direct-mode packet.
    pub fn queue_frame(&mut self, slot: Slot, gw: Ipv4Addr) {
        self.frames.push(Pending {
            slot,
            dst: gw,
            mode: Mode::Direct,
        });
    }

    /// Queues an encapsulated packet (`tos`: its outer TOS).
    pub fn queue_send(&mut self, slot: Slot, target: Target, tos: u8) {
        match target {
            Target::Vxlan { node, src_port, .. } if self.vxlan.is_some() => {
                self.vxlan_queue.push(PendingVxlan {
                    slot,
                    dst: node,
                    src_port,
                    tos,
                })
            }
            Target::Vxlan { node, .. } => self.raw_queue.push(Pending {
                slot,
                dst: node,
                mode: Mode::Vxlan,
            }),
            Target::Ipip { node } => self.raw_queue.push(Pending {
                slot,
                dst: node,
                mode: Mode::Ipip,
            }),
            // Framed by the worker before it is queued.
            Target::Direct { gw } => self.queue_frame(slot, gw),
        }
    }

    /// Sends everything queued, and writes what waits for endpoints.
    pub fn flush(&mut self, snap: &Snapshot, pool: &mut Pool, t: &mut Tally) {
        self.flush_endpoints(snap, pool, t);
        self.flush_vxlan(snap, pool, t);
        self.tap.flush(pool, t, &mut self.errors, self.index);
        self.ipip.flush(pool, t, &mut self.errors, self.index);
        if !self.raw_queue.is_empty() {
            let report = self
                .raw
                .send_batch(&mut self.raw_queue.iter().map(|p| (pool.bytes(&p.slot), p.dst)));
            account(&self.raw_queue, report, t, &mut self.errors, self.index);
        }
        if !self.frames.is_empty() {
            if let Some(tx) = self.direct.as_mut() {
                let report =
                    tx.send_batch(&mut self.frames.iter().map(|p| (pool.bytes(&p.slot), p.dst)));
                account(&self.frames, report, t, &mut self.errors, self.index);
            } else {
                t.drops(DropReason::NoUnderlay, self.frames.len());
            }
        }
        self.raw_queue.clear();
        self.frames.clear();
    }

    /// Writes the queued deliveries, endpoint by endpoint in their order.
    /// With offloads, consecutive TCP segments of one flow go in one
    /// gathered write as a super-packet (the pipeline's [`gro::plan`]);
    /// anything else goes alone.
    pub fn flush_endpoints(&mut self, snap: &Snapshot, pool: &Pool, t: &mut Tally) {
        let list = std::mem::take(&mut self.deliveries);
        let mut full = 0;
        let mut failed = 0;
        let mut last_error = None;
        let mut counted = FlowTally::default();
        let mut i = 0;
        while i < list.len() {
            let to = list[i].to;
            let Some(ep) = snap.endpoints.get(to.index()) else {
                i += 1;
                continue;
            };
            let Some(queue) = ep.queues.get(self.index) else {
                i += 1;
                continue;
            };
            let first = pool.bytes(&list[i].slot);
            if list[i].whole && !queue.offload() {
                // Cannot happen (super-packets go whole only between devices
                // with offloads), but never write a virtio header as data.
                t.drop(DropReason::UnsupportedGso);
                i += 1;
                continue;
            }
            let mut block = [0u8; MAX_HEADER_BLOCK];
            let mut parts = [IoSlice::new(&[]); MAX_MERGE + 1];
            let (count, n) = if list[i].whole || !queue.offload() {
                // Written as it is: a super-packet after its virtio header,
                // or a packet to a device without offloads.
                parts[0] = IoSlice::new(first);
                (1, 1)
            } else {
                let rest = list[i + 1..]
                    .iter()
                    .take_while(|d| d.to == to && !d.whole)
                    .map(|d| pool.bytes(&d.slot));
                let m = gro::plan(first, rest, &mut block);
                if m.block_len == 0 {
                    parts[0] = IoSlice::new(&tcp_gro::PLAIN_VNET_HDR);
                    parts[1] = IoSlice::new(first);
                    (1, 2)
                } else {
                    parts[0] = IoSlice::new(&block[..m.block_len]);
                    for (k, d) in list[i..i + m.count].iter().enumerate() {
                        parts[k + 1] = IoSlice::new(gro::payload(pool.bytes(&d.slot)));
                    }
                    (m.count, m.count + 1)
                }
            };
            t.syscalls(1);
            let sent = if n == 1 && !queue.offload() {
                queue.send(first).map(|_| ())
            } else {
                queue.send_vectored(&parts[..n]).map(|_| ())
            };
            match sent {
                Ok(()) => {}
                Err(e) if is_full(&e) => full += count,
                Err(e) => {
                    failed += count;
                    last_error = Some((to, e));
                }
            }
            for d in &list[i..i + count] {
                counted.add(d.bytes);
            }
            i += count;
            if list.get(i).is_none_or(|d| d.to != to) {
                counted.publish(&ep.stats[self.index].to_workload);
            }
        }
        t.drops(DropReason::TxFull, full);
        t.drops(DropReason::TxError, failed);
        if let Some((to, e)) = last_error {
            if let Some(held) = self.errors.allow() {
                let interface = &snap.endpoints[to.index()].interface;
                tracing::warn!(
                    worker = self.index,
                    interface = %interface,
                    "write to endpoint: {e} ({held} similar errors not logged)"
                );
            }
        }
        self.deliveries = list;
        self.deliveries.clear();
    }

    /// Sends queued VXLAN packets: each run of packets to one node from one
    /// source port with one TOS, all the size of the first but the last, is
    /// one `UDP_SEGMENT` message, and consecutive runs from one source port
    /// go out in one `sendmmsg`. A run the socket path refuses (a source
    /// port already taken on this host) goes out of the raw socket instead,
    /// its UDP checksum completed in software.
    fn flush_vxlan(&mut self, snap: &Snapshot, pool: &mut Pool, t: &mut Tally) {
        let Some(tx) = self.vxlan.as_mut() else {
            return;
        };
        let vxlan_port = snap.tables.vxlan().port;
        // One datagram a run once the kernel refused UDP_SEGMENT.
        let max_segments = tx.max_segments();
        let list = std::mem::take(&mut self.vxlan_queue);
        let mut a = 0;
        while a < list.len() {
            let (dst, sport) = (list[a].dst, list[a].src_port);
            // Runs from `a` on, while they share the node and source port.
            let mut runs = [(0usize, 0u8); MAX_RUNS];
            let mut nruns = 0;
            let mut b = a;
            while b < list.len() && nruns < MAX_RUNS {
                let head = &list[b];
                if head.dst != dst || head.src_port != sport {
                    break;
                }
                let (tos, size) = (head.tos, head.slot.len());
                // A UDP datagram carries at most 65507 bytes: so does a run.
                let mut total = size - UDP_HEADERS;
                let mut c = b + 1;
                while c < list.len() && c - b < max_segments && c - a < MAX_RUN_SEGMENTS {
                    let p = &list[c];
                    let same = p.dst == dst && p.src_port == sport && p.tos == tos;
                    let len = p.slot.len();
                    let prev = list[c - 1].slot.len();
                    if !same || len > size || prev != size || total + len - UDP_HEADERS > 65_507 {
                        break;
                    }
                    total += len - UDP_HEADERS;
                    c += 1;
                }
                if c - a > MAX_RUN_SEGMENTS {
                    break;
                }
                runs[nruns] = (c - b, tos);
                nruns += 1;
                b = c;
            }
            let (sent, error) = {
                let mut slices: [&[u8]; MAX_RUN_SEGMENTS] = [&[]; MAX_RUN_SEGMENTS];
                for (k, p) in list[a..b].iter().enumerate() {
                    // The VXLAN payload: past the outer IPv4 and UDP headers.
                    slices[k] = pool.bytes(&p.slot).get(UDP_HEADERS..).unwrap_or_default();
                }
                let to = SocketAddrV4::new(dst, vxlan_port);
                tx.send_runs(sport, to, &runs[..nruns], &slices[..b - a])
            };
            t.syscalls(1);
            let done = a + runs[..sent].iter().map(|r| r.0).sum::<usize>();
            for p in &list[a..done] {
                t.tx(Mode::Vxlan, p.slot.len());
            }
            match error {
                None => {}
                Some(e) if is_full(&e) => t.drops(DropReason::TxFull, b - done),
                Some(e) => {
                    if let Some(held) = self.errors.allow() {
                        tracing::warn!(
                            worker = self.index,
                            source_port = sport,
                            "VXLAN through a UDP socket failed ({e}); sending through the raw socket ({held} similar errors not logged)"
                        );
                    }
                    for p in &list[done..b] {
                        pipeline::finish_udp_checksum(pool.bytes_mut(&p.slot));
                        self.raw_queue.push(Pending {
                            slot: p.slot,
                            dst: p.dst,
                            mode: Mode::Vxlan,
                        });
                    }
                }
            }
            a = b;
        }
        self.vxlan_queue = list;
        self.vxlan_queue.clear();
    }
}

impl<const N: usize> TunnelDevice<N> {
    /// Writes what is pending, one `writev` each: the header, then the
    /// packet (counted as sent without its link-layer header).
    fn flush(&mut self, pool: &Pool, t: &mut Tally, errors: &mut RateLimited, index: usize) {
        let Some(device) = self.device.as_ref() else {
            t.drops(DropReason::NoUnderlay, self.pending.len());
            self.pending.clear();
            return;
        };
        let (mut full, mut failed, mut last_error) = (0, 0, None);
        for (slot, hdr) in &self.pending {
            let packet = pool.bytes(slot);
            t.syscalls(1);
            match device.send_vectored(&[IoSlice::new(hdr), IoSlice::new(packet)]) {
                Ok(_) => t.tx(self.mode, packet.len().saturating_sub(self.link)),
                Err(e) if is_full(&e) => full += 1,
                Err(e) => {
                    failed += 1;
                    last_error = Some(e);
                }
            }
        }
        self.pending.clear();
        t.drops(DropReason::TxFull, full);
        t.drops(DropReason::TxError, failed);
        if let (Some(e), Some(held)) = (last_error, errors.allow()) {
            tracing::warn!(
                worker = index,
                "write to the {} tunnel device: {e} ({held} similar errors not logged)",
                self.mode.name()
            );
        }
    }
}

/// A full queue or socket buffer, as opposed to a refusal.
fn is_full(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::WouldBlock || e.raw_os_error() == Some(libc::ENOBUFS)
}

/// Counts what a batched send did.
fn account(
    list: &[Pending],
    report: SendReport,
    t: &mut Tally,
    errors: &mut RateLimited,
    index: usize,
) {
    t.syscalls(report.syscalls);
    // Which packets failed is not reported one by one: count the first
    // `sent` as sent.
    for p in list.iter().take(report.sent) {
        t.tx(p.mode, p.slot.len());
    }
    t.drops(DropReason::TxFull, report.full);
    t.drops(DropReason::TxError, report.failed);
    if let (Some(code), Some(held)) = (report.last_error, errors.allow()) {
        tracing::warn!(
            worker = index,
            "underlay send refused: {} ({held} similar errors not logged)",
            io::Error::from_raw_os_error(code)
        );
    }
}
