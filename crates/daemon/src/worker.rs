//! A worker: one thread that owns its buffers, one queue of every TUN
//! device, its VXLAN receive socket (`SO_REUSEPORT`), its raw send socket,
//! and (worker 0 only) the IPIP receive socket. It waits with mio, and runs
//! each batch to completion against one table snapshot, loaded once per
//! batch: a reload never blocks it, and packets in flight finish on the
//! snapshot they started with.

use std::collections::HashMap;
use std::io;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token, Waker};

use super::stats::{Mode, SuperPacket};
use super::{EndpointIo, Shared, Snapshot};
use podwire::pipeline::{self, DropReason, HEADROOM, Packet, State, Target, UdpChecksum, Verdict};
use podwire::table::{EndpointId, Hop, Via};
use podwire_io::socket::{
    BATCH, MAX_RUN_SEGMENTS, MAX_RUNS, MAX_SEGMENTS, RawSender, Received, Receiver, SegmentSender,
};
use podwire_wire::tcp_gro;
use podwire_wire::vnet::{self, VnetHdr};
use podwire_wire::vxlan::{ETH_LEN, ETHERTYPE_IPV4};

/// The largest packet a buffer holds after its headroom.
const MAX_PACKET: usize = 65_535;
/// Buffers for fragments of one batch.
const FRAG_BUFS: usize = 64;
/// Receive buffers: room for the segments of a few TUN reads (a 64 KB
/// super-packet is up to 122 segments at the smallest MSS).
const RX_BUFS: usize = 256;
/// Segments a TUN read may need; fewer free buffers than this flushes first.
const SEGMENTS_PER_READ: usize = 128;
/// The most segments merged into one TUN write.
const MAX_MERGE: usize = 64;

pub const WAKER: Token = Token(0);
const IPIP_RX: Token = Token(1);
const VXLAN_RX: Token = Token(2);
const DIRECT_RX: Token = Token(3);
const FIRST_ENDPOINT: usize = 4;

/// What a worker is given at start.
pub struct WorkerIo {
    pub raw_tx: RawSender,
    pub ipip_rx: Option<Receiver>,
    pub vxlan_rx: Option<Receiver>,
    /// Direct mode: frames out on the underlay device.
    pub direct_tx: Option<RawSender>,
    /// Direct mode: frames in for local endpoints (worker 0 only).
    pub direct_rx: Option<Receiver>,
    /// VXLAN out through per-source-port UDP sockets with `UDP_SEGMENT`;
    /// without it, VXLAN goes out of `raw_tx` with a software checksum.
    pub vxlan_tx: Option<SegmentSender>,
}

/// A packet waiting to be written to an endpoint.
#[derive(Debug, Clone, Copy)]
struct Delivery {
    to: EndpointId,
    frag: bool,
    buf: usize,
    start: usize,
    end: usize,
    /// A TCP super-packet, written whole for the pod's kernel to take as
    /// it would from GRO.
    gso: Option<Gso>,
}

/// A TCP/IPv4 super-packet that goes whole: its segment size (payload
/// bytes per segment) and whether its segments carry ECN.
#[derive(Debug, Clone, Copy)]
struct Gso {
    size: u16,
    ecn: bool,
}

impl Gso {
    fn of(h: &VnetHdr) -> Option<Gso> {
        h.is_tcp4_gso().then_some(Gso {
            size: h.gso_size,
            ecn: h.gso_type & vnet::GSO_ECN != 0,
        })
    }
}

/// A packet waiting in the transmit batch.
#[derive(Debug, Clone, Copy)]
struct Pending {
    frag: bool,
    buf: usize,
    start: usize,
    end: usize,
    dst: Ipv4Addr,
    mode: Mode,
}

/// A log line at most once per interval, with the count of what it stood for.
struct RateLimited {
    last: Option<Instant>,
    suppressed: u64,
}

impl RateLimited {
    fn new() -> Self {
        RateLimited {
            last: None,
            suppressed: 0,
        }
    }

    /// True when a line may be logged now; returns how many were held back.
    fn allow(&mut self) -> Option<u64> {
        let now = Instant::now();
        match self.last {
            Some(t) if now.duration_since(t) < Duration::from_secs(5) => {
                self.suppressed += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.suppressed))
            }
        }
    }
}

pub struct Worker {
    index: usize,
    shared: Arc<Shared>,
    poll: Poll,
    io: WorkerIo,
    bufs: Vec<Box<[u8]>>,
    frag_bufs: Vec<Box<[u8]>>,
    /// Segment lengths of the last TUN read's split.
    sizes: Vec<usize>,
    /// Packets waiting to be written to endpoints (in `bufs` or
    /// `frag_bufs`, not copied).
    deliveries: Vec<Delivery>,
    received: Vec<Received>,
    pending: Vec<Pending>,
    /// Direct-mode frames waiting for the packet socket.
    pending_frames: Vec<Pending>,
    /// VXLAN packets waiting for the segment sender.
    pending_vxlan: Vec<Pending>,
    frags_used: usize,
    /// Next-hop MACs for direct mode, loaded once per batch.
    neighbours: Arc<super::neigh::Neighbours>,
    state: State,
    /// The snapshot generation registrations match.
    generation: u64,
    /// Registered endpoint queues by token, and their id in `generation`.
    registered: HashMap<Token, (Arc<EndpointIo>, Option<EndpointId>)>,
    next_token: usize,
    io_errors: RateLimited,
    tx_errors: RateLimited,
}

impl Worker {
    pub fn new(index: usize, shared: Arc<Shared>, poll: Poll, io: WorkerIo) -> io::Result<Self> {
        let registry = poll.registry();
        if let Some(rx) = &io.ipip_rx {
            registry.register(&mut SourceFd(&rx.as_raw_fd()), IPIP_RX, Interest::READABLE)?;
        }
        if let Some(rx) = &io.vxlan_rx {
            registry.register(&mut SourceFd(&rx.as_raw_fd()), VXLAN_RX, Interest::READABLE)?;
        }
        if let Some(rx) = &io.direct_rx {
            registry.register(
                &mut SourceFd(&rx.as_raw_fd()),
                DIRECT_RX,
                Interest::READABLE,
            )?;
        }
        // Room for a whole frame after a virtio header on a packet socket.
        let buf = || vec![0u8; HEADROOM + vnet::LEN + ETH_LEN + MAX_PACKET].into_boxed_slice();
        let checksum = if io.vxlan_tx.is_some() {
            UdpChecksum::Offload
        } else {
            UdpChecksum::Full
        };
        Ok(Worker {
            index,
            shared,
            poll,
            io,
            bufs: (0..RX_BUFS).map(|_| buf()).collect(),
            frag_bufs: (0..FRAG_BUFS).map(|_| buf()).collect(),
            sizes: vec![0; RX_BUFS],
            deliveries: Vec::with_capacity(RX_BUFS + FRAG_BUFS),
            received: vec![Received::default(); BATCH],
            pending: Vec::with_capacity(BATCH + FRAG_BUFS),
            pending_frames: Vec::with_capacity(BATCH + FRAG_BUFS),
            pending_vxlan: Vec::with_capacity(RX_BUFS + FRAG_BUFS),
            frags_used: 0,
            neighbours: Arc::default(),
            state: State::new((index as u16).wrapping_mul(0x3c00)).with_udp_checksum(checksum),
            generation: u64::MAX,
            registered: HashMap::new(),
            next_token: FIRST_ENDPOINT,
            io_errors: RateLimited::new(),
            tx_errors: RateLimited::new(),
        })
    }

    /// Runs until the daemon stops.
    pub fn run(mut self) {
        let mut events = Events::with_capacity(256);
        while !self.shared.stop.load(Ordering::Relaxed) {
            {
                // Not held across the poll: a removed endpoint's device goes
                // as soon as the worker has let go of it.
                let snap = self.shared.snapshot.load_full();
                if snap.generation != self.generation {
                    self.resync(&snap);
                }
            }
            if let Err(e) = self
                .poll
                .poll(&mut events, Some(Duration::from_millis(500)))
            {
                if e.kind() != io::ErrorKind::Interrupted {
                    tracing::error!(worker = self.index, "poll failed: {e}");
                    std::thread::sleep(Duration::from_millis(10));
                }
                continue;
            }
            for event in events.iter() {
                // Each batch loads the newest snapshot once.
                let snap = self.shared.snapshot.load_full();
                if snap.generation != self.generation {
                    self.resync(&snap);
                }
                match event.token() {
                    WAKER => {}
                    IPIP_RX => self.drain_underlay(&snap, Mode::Ipip),
                    VXLAN_RX => self.drain_underlay(&snap, Mode::Vxlan),
                    DIRECT_RX => self.drain_underlay(&snap, Mode::Direct),
                    token => self.drain_endpoint(&snap, token),
                }
            }
        }
        tracing::debug!(worker = self.index, "stopped");
    }

    /// Registers the queues of new endpoints and drops those of removed ones.
    fn resync(&mut self, snap: &Snapshot) {
        let registry = self.poll.registry();
        let mut keep: HashMap<*const EndpointIo, EndpointId> = HashMap::new();
        for (i, ep) in snap.endpoints.iter().enumerate() {
            keep.insert(Arc::as_ptr(ep), EndpointId(i as u32));
        }
        let w = self.index;
        self.registered.retain(|_, (ep, _)| {
            let kept = keep.contains_key(&Arc::as_ptr(ep));
            if !kept {
                if let Some(q) = ep.queues.get(w) {
                    let _ = registry.deregister(&mut SourceFd(&q.as_raw_fd()));
                }
            }
            kept
        });
        let mut have: HashMap<*const EndpointIo, Token> = HashMap::new();
        for (token, (ep, id)) in self.registered.iter_mut() {
            *id = keep.get(&Arc::as_ptr(ep)).copied();
            have.insert(Arc::as_ptr(ep), *token);
        }
        for (i, ep) in snap.endpoints.iter().enumerate() {
            if have.contains_key(&Arc::as_ptr(ep)) {
                continue;
            }
            let Some(q) = ep.queues.get(w) else { continue };
            let token = Token(self.next_token);
            self.next_token += 1;
            match registry.register(&mut SourceFd(&q.as_raw_fd()), token, Interest::READABLE) {
                Ok(()) => {
                    self.registered
                        .insert(token, (Arc::clone(ep), Some(EndpointId(i as u32))));
                }
                Err(e) => tracing::error!(
                    worker = w,
                    interface = %ep.interface,
                    "cannot watch the endpoint's queue: {e}"
                ),
            }
        }
        if let Some(rx) = &self.io.direct_rx {
            let nets = local_prefixes(&snap.tables);
            if let Err(e) = rx.filter_ipv4_destinations(&nets) {
                tracing::error!(worker = w, "cannot filter direct-mode frames: {e}");
            }
        }
        self.generation = snap.generation;
        self.shared.worker_generations[self.index].store(snap.generation, Ordering::Release);
    }

    fn stats(&self) -> &super::stats::WorkerStats {
        &self.shared.workers[self.index]
    }

    fn log_io_error(&mut self, what: &str, interface: &str, e: &io::Error) {
        if let Some(held) = self.io_errors.allow() {
            tracing::warn!(
                worker = self.index,
                interface,
                "{what}: {e} ({held} similar errors not logged)"
            );
        }
    }

    /// Reads every packet waiting on an endpoint's queue, batch by batch:
    /// each read may bring a super-packet, split into segments; a batch is
    /// processed and flushed when the buffers run low or the queue is empty.
    fn drain_endpoint(&mut self, snap: &Snapshot, token: Token) {
        let Some((ep, Some(from))) = self.registered.get(&token).cloned() else {
            return;
        };
        let Some(queue) = ep.queues.get(self.index) else {
            return;
        };
        self.neighbours = self.shared.neighbours.load_full();
        let counters = &ep.stats[self.index];
        let mut filled = 0;
        loop {
            // Room for the next read's segments: flush first if there is not.
            if self.bufs.len() - filled < SEGMENTS_PER_READ + 1 {
                self.stats().batch(filled);
                self.flush(snap);
                filled = 0;
            }
            // With offloads, the virtio header lands in the headroom and the
            // packet at HEADROOM, where the pipeline wants it.
            let at = if queue.offload() {
                HEADROOM - vnet::LEN
            } else {
                HEADROOM
            };
            let read = queue.recv(&mut self.bufs[filled][at..]);
            self.stats().syscalls(1);
            let n = match read {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.log_io_error("read from endpoint", &ep.interface, &e);
                    break;
                }
            };
            if !queue.offload() {
                counters.from_workload.add(n);
                self.egress_one(snap, from, filled, n, None);
                filled += 1;
                continue;
            }
            let Some(hdr) = VnetHdr::parse(&self.bufs[filled][at..at + n]) else {
                self.stats().drop(DropReason::Malformed);
                continue;
            };
            let len = n - vnet::LEN;
            if hdr.gso_type == vnet::GSO_NONE {
                if hdr.needs_csum() {
                    let pkt = &mut self.bufs[filled][HEADROOM..HEADROOM + len];
                    let (start, offset) = (hdr.csum_start.into(), hdr.csum_offset.into());
                    if !vnet::complete_checksum(pkt, start, offset) {
                        self.stats().drop(DropReason::Malformed);
                        continue;
                    }
                }
                counters.from_workload.add(len);
                self.egress_one(snap, from, filled, len, None);
                filled += 1;
                continue;
            }
            if let Some(whole) = self.whole(snap, filled, len, &hdr) {
                self.stats().super_packet(SuperPacket::SentWhole);
                counters.from_workload.add(len);
                self.egress_one(snap, from, filled, len, Some(whole));
                filled += 1;
                continue;
            }
            // Cut into segments with complete checksums (tun-rs's port of
            // wireguard-go's), each through the pipeline on its own.
            let Ok(t) = tun_rs::VirtioNetHdr::decode(&self.bufs[filled][at..]) else {
                self.stats().drop(DropReason::Malformed);
                continue;
            };
            let v6 = self.bufs[filled][HEADROOM] >> 4 == 6;
            let (input, rest) = self.bufs.split_at_mut(filled + 1);
            let split = tun_rs::gso_split(
                &mut input[filled][HEADROOM..HEADROOM + len],
                t,
                rest,
                &mut self.sizes[filled + 1..],
                HEADROOM,
                v6,
            );
            self.stats().super_packet(SuperPacket::Split);
            let k = match split {
                Ok(k) => k,
                Err(e) => {
                    self.stats().drop(DropReason::Malformed);
                    self.log_io_error("split a super-packet from endpoint", &ep.interface, &e);
                    continue;
                }
            };
            for i in filled + 1..filled + 1 + k {
                let len = self.sizes[i];
                counters.from_workload.add(len);
                self.egress_one(snap, from, i, len, None);
            }
            filled += 1 + k;
        }
        if filled > 0 {
            self.stats().batch(filled);
        }
        self.flush(snap);
    }

    /// Whether super-packet `i` (`len` bytes, header `hdr`) can go whole:
    /// TCP/IPv4 to a local endpoint, or to a direct-mode route through a
    /// packet socket that takes super-packets, with segments within the
    /// MTU. Returns its segment size and the size of its segments on the
    /// wire.
    fn whole(&self, snap: &Snapshot, i: usize, len: usize, hdr: &VnetHdr) -> Option<(Gso, usize)> {
        let gso = Gso::of(hdr)?;
        let pkt = self.bufs[i].get(HEADROOM..HEADROOM + len)?;
        let segment = vnet::tcp4_header_len(pkt)? + usize::from(gso.size);
        let dst = u32::from_be_bytes(*pkt.get(16..20)?.first_chunk()?);
        let ok = match snap.tables.lookup(dst) {
            Some(Hop::Endpoint(_)) => true,
            Some(Hop::Direct { .. }) => {
                self.io.direct_tx.as_ref().is_some_and(|t| t.vnet())
                    && segment <= usize::from(snap.tables.mtu().direct)
            }
            _ => false,
        };
        ok.then_some((gso, segment))
    }

    /// Runs egress on buffer `i` and acts on the verdict.
    fn egress_one(
        &mut self,
        snap: &Snapshot,
        from: EndpointId,
        i: usize,
        len: usize,
        gso: Option<(Gso, usize)>,
    ) {
        let mut pkt = Packet::new(&mut self.bufs[i], HEADROOM, len);
        let verdict = match gso {
            Some((_, segment)) => {
                pipeline::egress_gso(&snap.tables, &mut self.state, from, &mut pkt, segment)
            }
            None => pipeline::egress(&snap.tables, &mut self.state, from, &mut pkt),
        };
        let (start, end) = (pkt.offset(), pkt.offset() + pkt.len());
        let gso = gso.map(|g| g.0);
        match verdict {
            Verdict::Deliver(to) => {
                self.write_endpoint(snap, to, false, i, start, end, Mode::Local, gso);
            }
            Verdict::Icmp { to, reason } => {
                self.stats().drop(reason);
                self.write_endpoint(snap, to, false, i, start, end, Mode::Local, None);
            }
            Verdict::Send(Target::Direct { gw }) => {
                self.queue_frame(false, i, start, end, gw, gso);
            }
            Verdict::Send(target) => self.queue_send(false, i, start, end, target),
            Verdict::Fragment(job) => {
                for k in 0..job.count() {
                    if self.frags_used == FRAG_BUFS {
                        self.flush(snap);
                    }
                    let f = self.frags_used;
                    let original = &self.bufs[i][start..end];
                    let mut out = Packet::new(&mut self.frag_bufs[f], HEADROOM, 0);
                    match job.emit(&snap.tables, &mut self.state, original, k, &mut out) {
                        Some(Verdict::Send(target)) => {
                            let (s, e) = (out.offset(), out.offset() + out.len());
                            self.frags_used += 1;
                            self.queue_send(true, f, s, e, target);
                        }
                        Some(other) => {
                            if let Some(r) = other.drop_reason() {
                                self.stats().drop(r);
                            }
                            break;
                        }
                        None => break,
                    }
                }
            }
            Verdict::Drop(reason) => self.stats().drop(reason),
        }
    }

    fn queue_send(&mut self, frag: bool, buf: usize, start: usize, end: usize, target: Target) {
        let (dst, mode) = match target {
            Target::Ipip { node } => (node, Mode::Ipip),
            Target::Vxlan { node, .. } => (node, Mode::Vxlan),
            Target::Direct { gw } => return self.queue_frame(frag, buf, start, end, gw, None),
        };
        if mode == Mode::Vxlan && self.io.vxlan_tx.is_some() {
            self.pending_vxlan.push(Pending {
                frag,
                buf,
                start,
                end,
                dst,
                mode,
            });
            return;
        }
        self.pending.push(Pending {
            frag,
            buf,
            start,
            end,
            dst,
            mode,
        });
    }

    /// Frames an inner packet for the next hop `gw` on the underlay: its
    /// MAC from the neighbour table, ours, EtherType IPv4, written into
    /// the headroom in front of the packet — and in front of that, when the
    /// socket takes them, a `virtio_net_hdr`: for a super-packet (`gso`),
    /// the segment size and the partial checksum's place, for anything
    /// else zeros.
    fn queue_frame(
        &mut self,
        frag: bool,
        buf: usize,
        start: usize,
        end: usize,
        gw: Ipv4Addr,
        gso: Option<Gso>,
    ) {
        let (Some(dev), Some(tx)) = (&self.shared.underlay, &self.io.direct_tx) else {
            self.stats().drop(DropReason::NoNeighbour);
            return;
        };
        let Some(mac) = self.neighbours.get(&gw).copied() else {
            self.stats().drop(DropReason::NoNeighbour);
            if let Some(t) = self.shared.neigh_thread.get() {
                t.unpark();
            }
            return;
        };
        let src = dev.mac;
        let pool = if frag {
            &mut self.frag_bufs
        } else {
            &mut self.bufs
        };
        let Some(eth) = start
            .checked_sub(ETH_LEN)
            .and_then(|s| pool[buf].get_mut(s..start))
        else {
            self.stats().drop(DropReason::TooBig);
            return;
        };
        eth[..6].copy_from_slice(&mac.0);
        eth[6..12].copy_from_slice(&src.0);
        eth[12..14].copy_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
        let mut first = start - ETH_LEN;
        if tx.vnet() {
            let hdr = match gso {
                Some(g) => VnetHdr::tcp4_gso(&pool[buf][start..end], ETH_LEN as u16, g.size, g.ecn),
                None => Some(VnetHdr::default()),
            };
            let slot = first
                .checked_sub(vnet::LEN)
                .and_then(|s| pool[buf].get_mut(s..first))
                .and_then(|b| b.first_chunk_mut::<{ vnet::LEN }>());
            let (Some(hdr), Some(slot)) = (hdr, slot) else {
                self.stats().drop(DropReason::TooBig);
                return;
            };
            hdr.write(slot);
            first -= vnet::LEN;
        } else if gso.is_some() {
            // Unreachable: super-packets go whole only to a socket that
            // takes them.
            self.stats().drop(DropReason::TooBig);
            return;
        }
        self.pending_frames.push(Pending {
            frag,
            buf,
            start: first,
            end,
            dst: gw,
            mode: Mode::Direct,
        });
    }

    /// Sends the pending batches, and writes what waits for endpoints.
    fn flush(&mut self, snap: &Snapshot) {
        self.flush_endpoints(snap);
        self.flush_vxlan(snap);
        if !self.pending.is_empty() {
            let report = self.io.raw_tx.send_batch(
                self.pending
                    .iter()
                    .map(|p| (slice(&self.bufs, &self.frag_bufs, p), p.dst)),
            );
            self.account(report, false);
        }
        if !self.pending_frames.is_empty() {
            if let Some(tx) = self.io.direct_tx.as_mut() {
                let report = tx.send_batch(
                    self.pending_frames
                        .iter()
                        .map(|p| (slice(&self.bufs, &self.frag_bufs, p), p.dst)),
                );
                self.account(report, true);
            }
        }
        self.pending.clear();
        self.pending_frames.clear();
        self.frags_used = 0;
    }

    /// Sends pending VXLAN packets: each run of packets to one node from
    /// one source port with one TOS, all the size of the first but the last,
    /// is one `UDP_SEGMENT` message, and consecutive runs from one source
    /// port go out in one `sendmmsg`. A run the socket path refuses (a
    /// source port already taken on this host) goes out of the raw socket
    /// instead, its UDP checksum completed in software.
    fn flush_vxlan(&mut self, snap: &Snapshot) {
        let Some(tx) = self.io.vxlan_tx.as_mut() else {
            return;
        };
        let port = |b: &[u8]| u16::from_be_bytes([b[20], b[21]]);
        let stats = &self.shared.workers[self.index];
        let vxlan_port = snap.tables.vxlan().port;
        let mut a = 0;
        let list = std::mem::take(&mut self.pending_vxlan);
        while a < list.len() {
            let first = slice(&self.bufs, &self.frag_bufs, &list[a]);
            let (dst, sport) = (list[a].dst, port(first));
            // Runs from `a` on, while they share the node and source port.
            let mut runs = [(0usize, 0u8); MAX_RUNS];
            let mut nruns = 0;
            let mut b = a;
            while b < list.len() && nruns < MAX_RUNS {
                let head = slice(&self.bufs, &self.frag_bufs, &list[b]);
                if list[b].dst != dst || port(head) != sport {
                    break;
                }
                let (tos, size) = (head[1], head.len());
                // A UDP datagram carries at most 65507 bytes: so does a run.
                let mut total = size - 28;
                let mut c = b + 1;
                while c < list.len() && c - b < MAX_SEGMENTS && c - a < MAX_RUN_SEGMENTS {
                    let p = slice(&self.bufs, &self.frag_bufs, &list[c]);
                    let same = list[c].dst == dst && port(p) == sport && p[1] == tos;
                    let prev = slice(&self.bufs, &self.frag_bufs, &list[c - 1]).len();
                    if !same || p.len() > size || prev != size || total + p.len() - 28 > 65_507 {
                        break;
                    }
                    total += p.len() - 28;
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
                    slices[k] = &slice(&self.bufs, &self.frag_bufs, p)[28..];
                }
                let to = SocketAddrV4::new(dst, vxlan_port);
                tx.send_runs(sport, to, &runs[..nruns], &slices[..b - a])
            };
            stats.syscalls(1);
            let done = a + runs[..sent].iter().map(|r| r.0).sum::<usize>();
            for p in &list[a..done] {
                stats.tx(Mode::Vxlan, p.end - p.start);
            }
            match error {
                None => {}
                Some(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    stats.drops(DropReason::TxFull, b - done);
                }
                Some(e) => {
                    if let Some(held) = self.tx_errors.allow() {
                        tracing::warn!(
                            worker = self.index,
                            source_port = sport,
                            "VXLAN through a UDP socket failed ({e}); sending through the raw socket ({held} similar errors not logged)"
                        );
                    }
                    for p in &list[done..b] {
                        let pool = if p.frag {
                            &mut self.frag_bufs
                        } else {
                            &mut self.bufs
                        };
                        pipeline::finish_udp_checksum(&mut pool[p.buf][p.start..p.end]);
                        self.pending.push(*p);
                    }
                }
            }
            a = b;
        }
        self.pending_vxlan = list;
        self.pending_vxlan.clear();
    }

    /// Counts what a batched send did.
    fn account(&mut self, report: podwire_io::socket::SendReport, frames: bool) {
        let stats = &self.shared.workers[self.index];
        let list = if frames {
            &self.pending_frames
        } else {
            &self.pending
        };
        stats.syscalls(report.syscalls);
        // Which packets failed is not reported one by one: count the first
        // `sent` as sent.
        for p in list.iter().take(report.sent) {
            stats.tx(p.mode, p.end - p.start);
        }
        stats.drops(DropReason::TxFull, report.full + report.failed);
        if let (Some(code), Some(held)) = (report.last_error, self.tx_errors.allow()) {
            tracing::warn!(
                worker = self.index,
                "underlay send refused: {} ({held} similar errors not logged)",
                io::Error::from_raw_os_error(code)
            );
        }
    }

    /// Queues a packet for an endpoint's TUN queue; it is written (without
    /// a copy) when the batch is flushed.
    #[allow(clippy::too_many_arguments)]
    fn write_endpoint(
        &mut self,
        snap: &Snapshot,
        to: EndpointId,
        frag: bool,
        buf: usize,
        start: usize,
        end: usize,
        mode: Mode,
        gso: Option<Gso>,
    ) {
        let Some(ep) = snap.endpoints.get(to.index()) else {
            self.stats().drop(DropReason::NotLocal);
            return;
        };
        ep.stats[self.index].to_workload.add(end - start);
        self.shared.workers[self.index].rx(mode, end - start);
        self.deliveries.push(Delivery {
            to,
            frag,
            buf,
            start,
            end,
            gso,
        });
    }

    /// Writes the queued packets, endpoint by endpoint in their order. With
    /// offloads, consecutive TCP segments of one flow go in one gathered
    /// write as a super-packet (`wire::tcp_gro`); anything else goes alone.
    fn flush_endpoints(&mut self, snap: &Snapshot) {
        let list = std::mem::take(&mut self.deliveries);
        let data = |d: &Delivery| -> &[u8] {
            let pool = if d.frag { &self.frag_bufs } else { &self.bufs };
            &pool[d.buf][d.start..d.end]
        };
        let stats = &self.shared.workers[self.index];
        let mut failed = 0;
        let mut last_error = None;
        let mut i = 0;
        while i < list.len() {
            let to = list[i].to;
            let queue = snap
                .endpoints
                .get(to.index())
                .and_then(|e| e.queues.get(self.index));
            let Some(queue) = queue else {
                i += 1;
                continue;
            };
            let first = data(&list[i]);
            if let Some(g) = list[i].gso {
                // A super-packet: alone, after its virtio header.
                let hdr = VnetHdr::tcp4_gso(first, 0, g.size, g.ecn).filter(|_| queue.offload());
                let mut block = [0u8; vnet::LEN];
                stats.syscalls(1);
                let sent = match hdr {
                    Some(h) => {
                        h.write(&mut block);
                        let parts = [std::io::IoSlice::new(&block), std::io::IoSlice::new(first)];
                        queue.send_vectored(&parts).map(|_| ())
                    }
                    None => Err(io::Error::other(
                        "a super-packet for a device without offloads",
                    )),
                };
                if let Err(e) = sent {
                    failed += 1;
                    last_error = Some((to, e));
                }
                i += 1;
                continue;
            }
            if !queue.offload() {
                stats.syscalls(1);
                if let Err(e) = queue.send(first) {
                    failed += 1;
                    last_error = Some((to, e));
                }
                i += 1;
                continue;
            }
            // Extend a run of mergeable segments from packet i.
            let mut j = i + 1;
            let head = tcp_gro::segment(first).filter(|_| tcp_gro::tcp_checksum_valid(first));
            let (mut merged, mut last, mut psh) =
                head.map_or((0, 0, true), |f| (f.payload_len, f.payload_len, f.psh));
            if let Some(f) = &head {
                while j < list.len()
                    && j - i < MAX_MERGE
                    && !psh
                    && list[j].to == to
                    && list[j].gso.is_none()
                {
                    let next = data(&list[j]);
                    let Some(s) = tcp_gro::segment(next) else {
                        break;
                    };
                    if !tcp_gro::may_follow(first, f, merged, next, &s, last)
                        || !tcp_gro::tcp_checksum_valid(next)
                    {
                        break;
                    }
                    merged += s.payload_len;
                    last = s.payload_len;
                    psh = s.psh;
                    j += 1;
                }
            }
            let mut block = [0u8; tcp_gro::MAX_HEADER_BLOCK];
            let mut parts = [std::io::IoSlice::new(&[]); MAX_MERGE + 1];
            let n = match head {
                Some(f) if j - i >= 2 => {
                    let len = tcp_gro::header_block(first, &f, merged, psh, &mut block);
                    parts[0] = std::io::IoSlice::new(&block[..len]);
                    for (k, d) in list[i..j].iter().enumerate() {
                        let p = data(d);
                        let hl = if k == 0 {
                            f.header_len
                        } else {
                            tcp_gro::segment(p).map_or(0, |s| s.header_len)
                        };
                        parts[k + 1] = std::io::IoSlice::new(&p[hl..]);
                    }
                    j - i + 1
                }
                _ => {
                    j = i + 1;
                    parts[0] = std::io::IoSlice::new(&tcp_gro::PLAIN_VNET_HDR);
                    parts[1] = std::io::IoSlice::new(first);
                    2
                }
            };
            stats.syscalls(1);
            if let Err(e) = queue.send_vectored(&parts[..n]) {
                failed += j - i;
                last_error = Some((to, e));
            }
            i = j;
        }
        if failed > 0 {
            stats.drops(DropReason::TxFull, failed);
            if let Some((to, e)) = last_error {
                let interface = snap.endpoints[to.index()].interface.clone();
                self.log_io_error("write to endpoint", &interface, &e);
            }
        }
        self.deliveries = list;
        self.deliveries.clear();
    }

    /// Decapsulates every packet waiting on the IPIP or the VXLAN socket.
    fn drain_underlay(&mut self, snap: &Snapshot, mode: Mode) {
        loop {
            let n = {
                let rx = match mode {
                    Mode::Ipip => self.io.ipip_rx.as_mut(),
                    Mode::Direct => self.io.direct_rx.as_mut(),
                    _ => self.io.vxlan_rx.as_mut(),
                };
                let Some(rx) = rx else { return };
                let bufs = self.bufs.iter_mut().take(BATCH).map(|b| &mut b[HEADROOM..]);
                match rx.recv_batch(bufs, &mut self.received) {
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => 0,
                    Err(e) => {
                        self.log_io_error("underlay receive", mode.name(), &e);
                        0
                    }
                }
            };
            self.stats().syscalls(1);
            if n == 0 {
                return;
            }
            self.stats().batch(n);
            let vnet_rx =
                mode == Mode::Direct && self.io.direct_rx.as_ref().is_some_and(|r| r.vnet());
            for i in 0..n {
                let r = self.received[i];
                if r.segment > 0 && r.len > r.segment {
                    self.decap_coalesced(snap, i, r);
                    continue;
                }
                let mut pkt = Packet::new(&mut self.bufs[i], HEADROOM, r.len);
                let mut gso = None;
                let v = match mode {
                    // A raw socket gives the whole outer packet.
                    Mode::Ipip => pipeline::ingress(&snap.tables, &mut pkt),
                    // A packet socket gives the frame (the filter let only
                    // IPv4 to local prefixes through), after a virtio
                    // header when it has them.
                    Mode::Direct => match direct_frame(&mut pkt, vnet_rx) {
                        Ok(g) => {
                            gso = g;
                            pipeline::ingress_direct(&snap.tables, &mut pkt)
                        }
                        Err(reason) => Verdict::Drop(reason),
                    },
                    // A UDP socket gives the payload; the kernel checked the rest.
                    _ => pipeline::ingress_vxlan_payload(&snap.tables, r.src, r.tos, &mut pkt),
                };
                let (s, e) = (pkt.offset(), pkt.offset() + pkt.len());
                if gso.is_some() && matches!(v, Verdict::Deliver(_)) {
                    self.stats().super_packet(SuperPacket::ReceivedWhole);
                }
                self.deliver(snap, v, i, s, e, mode, gso);
            }
            self.flush_endpoints(snap);
            if n < BATCH {
                return;
            }
        }
    }

    /// Decapsulates the datagrams `UDP_GRO` coalesced into buffer `i`.
    fn decap_coalesced(&mut self, snap: &Snapshot, i: usize, r: Received) {
        let mut at = 0;
        while at < r.len {
            let len = r.segment.min(r.len - at);
            let mut pkt = Packet::new(&mut self.bufs[i], HEADROOM + at, len);
            let v = pipeline::ingress_vxlan_payload(&snap.tables, r.src, r.tos, &mut pkt);
            let (s, e) = (pkt.offset(), pkt.offset() + pkt.len());
            self.deliver(snap, v, i, s, e, Mode::Vxlan, None);
            at += len;
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn deliver(
        &mut self,
        snap: &Snapshot,
        v: Verdict,
        i: usize,
        s: usize,
        e: usize,
        mode: Mode,
        gso: Option<Gso>,
    ) {
        match v {
            Verdict::Deliver(to) => self.write_endpoint(snap, to, false, i, s, e, mode, gso),
            other => {
                if let Some(r) = other.drop_reason() {
                    self.stats().drop(r);
                }
            }
        }
    }
}

/// Moves `pkt` from the start of a frame read from a packet socket (after
/// its `virtio_net_hdr` when `vnet`) to its IPv4 packet. A partial
/// checksum of a single packet is completed here; a TCP super-packet stays
/// whole, its checksum partial, and comes back as `Some` to be written
/// whole; another kind of super-packet cannot be delivered (`too-big`).
fn direct_frame(pkt: &mut Packet, vnet: bool) -> Result<Option<Gso>, DropReason> {
    let mut gso = None;
    if vnet {
        let hdr = VnetHdr::parse(pkt.data()).ok_or(DropReason::Malformed)?;
        if hdr.gso_type != vnet::GSO_NONE {
            gso = Some(Gso::of(&hdr).ok_or(DropReason::TooBig)?);
        } else if hdr.needs_csum() {
            let frame = pkt.data_mut().get_mut(vnet::LEN..).unwrap_or_default();
            let (start, offset) = (hdr.csum_start.into(), hdr.csum_offset.into());
            if !vnet::complete_checksum(frame, start, offset) {
                return Err(DropReason::Malformed);
            }
        }
        if !pkt.advance(vnet::LEN) {
            return Err(DropReason::Malformed);
        }
    }
    if !pkt.advance(ETH_LEN) {
        return Err(DropReason::Malformed);
    }
    Ok(gso)
}

/// The bytes of a pending packet.
fn slice<'a>(bufs: &'a [Box<[u8]>], frags: &'a [Box<[u8]>], p: &Pending) -> &'a [u8] {
    let pool = if p.frag { frags } else { bufs };
    &pool[p.buf][p.start..p.end]
}

/// The prefixes whose frames direct mode takes in: local blocks and local
/// endpoints' addresses.
pub fn local_prefixes(tables: &podwire::table::Tables) -> Vec<(Ipv4Addr, u8)> {
    tables
        .routes()
        .iter()
        .filter(|r| matches!(r.via, Via::Blackhole | Via::Endpoint(_)))
        .map(|r| (r.dst.network(), r.dst.prefix()))
        .collect()
}

/// Creates a worker's poll and the waker the daemon uses to interrupt it.
pub fn poll_with_waker() -> io::Result<(Poll, Arc<Waker>)> {
    let poll = Poll::new()?;
    let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
    Ok((poll, waker))
}
