//! A worker: one thread that owns its buffers, one queue of every TUN
//! device, its VXLAN receive socket (`SO_REUSEPORT`), its raw send socket,
//! and (worker 0 only) the IPIP receive socket and the packet sockets. It waits with mio, and runs
//! each batch to completion against one table snapshot, loaded once per
//! batch: a reload never blocks it, and packets in flight finish on the
//! snapshot they started with.
//!
//! It only moves bytes: receive a batch, run the pipeline (framing,
//! unframing, the whole-or-cut decision and checksum completion included,
//! in `podwire::pipeline::l2`), queue what it decided ([`Tx`]), flush.
//! Counters are plain integers during a batch and published once per batch.

use std::collections::HashMap;
use std::io;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token, Waker};

use super::pool::{Pool, Slot};
use super::stats::{FlowTally, Mode, SuperPacket, Tally};
use super::tx::Tx;
use super::{EndpointIo, Shared, Snapshot};
use podwire::pipeline::{
    self, DropReason, Framed, FromTun, Gso, HEADROOM, Packet, State, UdpChecksum, Verdict, l2,
};
use podwire::table::{EndpointId, Via};
use podwire::wire::MacAddr;
use podwire_io::tap::TapQueue;
use podwire_io::tun;
use podwire_io::udp::SegmentSender;
use podwire_io::{BATCH, Received, RxBatch, TxBatch};
use podwire_wire::vnet::{self, VnetHdr};

/// Buffers for fragments of one batch.
const FRAG_BUFS: usize = 64;
/// Receive buffers: room for the segments of a few TUN reads (a 64 KB
/// super-packet is up to 122 segments at the smallest MSS).
const RX_BUFS: usize = 256;
/// Segments a TUN read may need; fewer free buffers than this flushes first.
const SEGMENTS_PER_READ: usize = 128;

pub const WAKER: Token = Token(0);
const IPIP_RX: Token = Token(1);
const VXLAN_RX: Token = Token(2);
const DIRECT_RX: Token = Token(3);
const VXLAN_FRAMES_RX: Token = Token(4);
const IPIP_FRAMES_RX: Token = Token(5);
const FIRST_ENDPOINT: usize = 6;

/// Which underlay socket a batch comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Arrival {
    /// The raw socket: whole outer IPv4 packets.
    Ipip,
    /// A UDP socket: VXLAN payloads.
    Vxlan,
    /// The packet socket for VXLAN: whole frames after a virtio header.
    VxlanFrames,
    /// The packet socket for IPIP: the same.
    IpipFrames,
    /// The packet socket of direct mode.
    Direct,
}

impl Arrival {
    fn mode(self) -> Mode {
        match self {
            Arrival::Ipip | Arrival::IpipFrames => Mode::Ipip,
            Arrival::Vxlan | Arrival::VxlanFrames => Mode::Vxlan,
            Arrival::Direct => Mode::Direct,
        }
    }
}

/// What a worker is given at start.
pub struct WorkerIo {
    pub raw_tx: Box<dyn TxBatch>,
    pub ipip_rx: Option<Box<dyn RxBatch>>,
    pub vxlan_rx: Option<Box<dyn RxBatch>>,
    /// Direct mode: frames out on the underlay device.
    pub direct_tx: Option<Box<dyn TxBatch>>,
    /// Direct mode: frames in for local endpoints (worker 0 only).
    pub direct_rx: Option<Box<dyn RxBatch>>,
    /// VXLAN frames in through a packet socket with virtio headers
    /// (worker 0 only; the UDP sockets then take nothing).
    pub vxlan_frames_rx: Option<Box<dyn RxBatch>>,
    /// IPIP frames in through a packet socket with virtio headers (worker
    /// 0 only; the raw socket then takes nothing).
    pub ipip_frames_rx: Option<Box<dyn RxBatch>>,
    /// VXLAN out through per-source-port UDP sockets with `UDP_SEGMENT`;
    /// without it, VXLAN goes out of `raw_tx` with a software checksum.
    pub vxlan_tx: Option<SegmentSender>,
    /// VXLAN super-packets whole: the tunnel TAP's MAC and this worker's
    /// queue of it.
    pub tunnel: Option<(MacAddr, TapQueue)>,
    /// IPIP super-packets whole: this worker's queue of the IPIP tunnel TUN.
    pub ipip_tun: Option<TapQueue>,
}

/// A log line at most once per interval, with the count of what it stood for.
pub(crate) struct RateLimited {
    last: Option<Instant>,
    suppressed: u64,
}

impl RateLimited {
    pub(crate) fn new() -> Self {
        RateLimited {
            last: None,
            suppressed: 0,
        }
    }

    /// True when a line may be logged now; returns how many were held back.
    pub(crate) fn allow(&mut self) -> Option<u64> {
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
    rx: Receivers,
    pool: Pool,
    /// Segment lengths of the last TUN read's split.
    sizes: Vec<usize>,
    received: Vec<Received>,
    tx: Tx,
    tally: Tally,
    state: State,
    /// The snapshot generation registrations match.
    generation: u64,
    /// Registered endpoint queues by token, and their id in `generation`.
    registered: HashMap<Token, (Arc<EndpointIo>, Option<EndpointId>)>,
    next_token: usize,
    io_errors: RateLimited,
    /// A direct-mode next hop had no MAC in this batch: wake the refresher.
    missed_next_hop: bool,
}

/// The underlay receive sockets of a worker.
struct Receivers {
    ipip: Option<Box<dyn RxBatch>>,
    vxlan: Option<Box<dyn RxBatch>>,
    vxlan_frames: Option<Box<dyn RxBatch>>,
    ipip_frames: Option<Box<dyn RxBatch>>,
    direct: Option<Box<dyn RxBatch>>,
}

impl Worker {
    pub fn new(index: usize, shared: Arc<Shared>, poll: Poll, io: WorkerIo) -> io::Result<Self> {
        let registry = poll.registry();
        for (rx, token) in [
            (&io.ipip_rx, IPIP_RX),
            (&io.vxlan_rx, VXLAN_RX),
            (&io.direct_rx, DIRECT_RX),
            (&io.vxlan_frames_rx, VXLAN_FRAMES_RX),
            (&io.ipip_frames_rx, IPIP_FRAMES_RX),
        ] {
            if let Some(rx) = rx {
                registry.register(&mut SourceFd(&rx.as_raw_fd()), token, Interest::READABLE)?;
            }
        }
        let checksum = if io.vxlan_tx.is_some() {
            UdpChecksum::Offload
        } else {
            UdpChecksum::Full
        };
        Ok(Worker {
            index,
            shared,
            poll,
            rx: Receivers {
                ipip: io.ipip_rx,
                vxlan: io.vxlan_rx,
                vxlan_frames: io.vxlan_frames_rx,
                ipip_frames: io.ipip_frames_rx,
                direct: io.direct_rx,
            },
            pool: Pool::new(RX_BUFS, FRAG_BUFS),
            sizes: vec![0; RX_BUFS],
            received: vec![Received::default(); BATCH],
            tx: Tx::new(
                index,
                io.raw_tx,
                io.direct_tx,
                io.vxlan_tx,
                io.tunnel,
                io.ipip_tun,
                RX_BUFS + FRAG_BUFS,
            ),
            tally: Tally::default(),
            state: State::new((index as u16).wrapping_mul(0x3c00)).with_udp_checksum(checksum),
            generation: u64::MAX,
            registered: HashMap::new(),
            next_token: FIRST_ENDPOINT,
            io_errors: RateLimited::new(),
            missed_next_hop: false,
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
                // The clock the kernel-NATed flows age by.
                if snap.tables.host().is_some() {
                    let secs = self.shared.started.elapsed().as_secs() as u32;
                    snap.tables.flows().set_now(secs);
                }
                match event.token() {
                    WAKER => {}
                    IPIP_RX => self.drain_underlay(&snap, Arrival::Ipip),
                    VXLAN_RX => self.drain_underlay(&snap, Arrival::Vxlan),
                    VXLAN_FRAMES_RX => self.drain_underlay(&snap, Arrival::VxlanFrames),
                    IPIP_FRAMES_RX => self.drain_underlay(&snap, Arrival::IpipFrames),
                    DIRECT_RX => self.drain_underlay(&snap, Arrival::Direct),
                    token => self.drain_endpoint(&snap, token),
                }
                self.shared.workers[self.index].publish(&mut self.tally);
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
        if let Some(rx) = &self.rx.direct {
            let nets = local_prefixes(&snap.tables);
            if let Err(e) = rx.filter_ipv4_destinations(&nets) {
                tracing::error!(worker = w, "cannot filter direct-mode frames: {e}");
            }
        }
        self.generation = snap.generation;
        self.shared.worker_generations[self.index].store(snap.generation, Ordering::Release);
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

    /// Sends and writes everything queued, and frees the fragment buffers.
    fn flush(&mut self, snap: &Snapshot) {
        self.tx.flush(snap, &mut self.pool, &mut self.tally);
        self.pool.release_frags();
        if std::mem::take(&mut self.missed_next_hop) {
            if let Some(w) = self.shared.neigh_waker.get() {
                let _ = w.wake();
            }
        }
        self.shared.workers[self.index].publish(&mut self.tally);
    }

    /// Reads every packet waiting on an endpoint's queue, batch by batch:
    /// each read may bring a super-packet, kept whole or cut into segments;
    /// a batch is processed and flushed when the buffers run low or the
    /// queue is empty.
    fn drain_endpoint(&mut self, snap: &Snapshot, token: Token) {
        let Some((ep, Some(from))) = self.registered.get(&token).cloned() else {
            return;
        };
        let Some(queue) = ep.queues.get(self.index) else {
            return;
        };
        let mut counted = FlowTally::default();
        let whole = l2::Whole {
            direct: self.tx.direct_vnet(),
            vxlan: self.tx.tunnel_mac().is_some(),
            ipip: self.tx.ipip_tun(),
        };
        let mut filled = 0;
        loop {
            // Room for the next read's segments: flush first if there is not.
            if self.pool.rx_len() - filled < SEGMENTS_PER_READ + 1 {
                self.tally.batch(filled);
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
            let read = queue.recv(&mut self.pool.buf(filled)[at..]);
            self.tally.syscalls(1);
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
                counted.add(n);
                self.egress_one(snap, from, filled, n, None);
                filled += 1;
                continue;
            }
            let buf = self.pool.buf(filled);
            let Some(hdr) = VnetHdr::parse(&buf[at..at + n]) else {
                self.tally.drop(DropReason::Malformed);
                continue;
            };
            let len = n - vnet::LEN;
            let mut pkt = Packet::new(buf, HEADROOM, len);
            match l2::from_tun(&snap.tables, &hdr, &mut pkt, whole) {
                Err(reason) => self.tally.drop(reason),
                Ok(FromTun::Packet) => {
                    counted.add(len);
                    self.egress_one(snap, from, filled, len, None);
                    filled += 1;
                }
                Ok(FromTun::Whole { gso, segment }) => {
                    self.tally.super_packet(SuperPacket::SentWhole);
                    counted.add(len);
                    self.egress_one(snap, from, filled, len, Some((gso, segment)));
                    filled += 1;
                }
                Ok(FromTun::Split) => {
                    self.tally.super_packet(SuperPacket::Split);
                    let (input, rest) = self.pool.split_at(filled);
                    let (hdr, pkt) = input[at..].split_at_mut(vnet::LEN);
                    let split = tun::split_super_packet(
                        hdr,
                        &mut pkt[..len],
                        rest,
                        &mut self.sizes[filled + 1..],
                        HEADROOM,
                    );
                    let k = match split {
                        Ok(k) => k,
                        Err(e) => {
                            self.tally.drop(DropReason::Malformed);
                            self.log_io_error(
                                "split a super-packet from endpoint",
                                &ep.interface,
                                &e,
                            );
                            continue;
                        }
                    };
                    for i in filled + 1..filled + 1 + k {
                        let len = self.sizes[i];
                        counted.add(len);
                        self.egress_one(snap, from, i, len, None);
                    }
                    filled += 1 + k;
                }
            }
        }
        if filled > 0 {
            self.tally.batch(filled);
        }
        self.flush(snap);
        counted.publish(&ep.stats[self.index].from_workload);
    }

    /// Runs egress on receive buffer `i` and queues what it decided.
    fn egress_one(
        &mut self,
        snap: &Snapshot,
        from: EndpointId,
        i: usize,
        len: usize,
        whole: Option<(Gso, usize)>,
    ) {
        let mut pkt = Packet::new(self.pool.buf(i), HEADROOM, len);
        let verdict = match whole {
            Some((_, segment)) => {
                pipeline::egress_gso(&snap.tables, &mut self.state, from, &mut pkt, segment)
            }
            None => pipeline::egress(&snap.tables, &mut self.state, from, &mut pkt),
        };
        let gso = whole.map(|w| w.0);
        match verdict {
            Verdict::Fragment(job) => {
                for k in 0..job.count() {
                    let f = match self.pool.take_frag() {
                        Some(f) => f,
                        None => {
                            self.flush(snap);
                            match self.pool.take_frag() {
                                Some(f) => f,
                                None => return,
                            }
                        }
                    };
                    let (original, out) = self.pool.pair(i, f);
                    let original = &original[HEADROOM..HEADROOM + len];
                    let mut out = Packet::new(out, HEADROOM, 0);
                    match job.emit(&snap.tables, &mut self.state, original, k, &mut out) {
                        Some(v @ Verdict::Send(_)) => {
                            let s = slot(f, &out);
                            self.queue(snap, v, s, None, Mode::Local);
                        }
                        Some(other) => {
                            if let Some(r) = other.drop_reason() {
                                self.tally.drop(r);
                            }
                            break;
                        }
                        None => break,
                    }
                }
            }
            v => {
                let s = slot(i, &pkt);
                self.queue(snap, v, s, gso, Mode::Local);
            }
        }
    }

    /// Acts on a verdict for the bytes of `s`: queues them for an endpoint
    /// or the underlay (framing direct-mode packets first), or counts the
    /// drop. `mode` is how a delivery to an endpoint arrived.
    fn queue(&mut self, snap: &Snapshot, v: Verdict, s: Slot, gso: Option<Gso>, mode: Mode) {
        match v {
            Verdict::Deliver(to) => self.deliver(snap, to, s, gso, mode),
            Verdict::Icmp { to, reason } => {
                self.tally.drop(reason);
                self.deliver(snap, to, s, None, Mode::Local);
            }
            Verdict::Send(pipeline::Target::Direct { gw }) => {
                let mut pkt = Packet::new(self.pool.buf(s.buf), s.start, s.len());
                let vnet = self.tx.direct_vnet();
                match l2::frame_direct(&snap.tables, &mut pkt, gw, gso, vnet) {
                    Ok(()) => {
                        let framed = slot(s.buf, &pkt);
                        self.tx.queue_frame(framed, gw);
                    }
                    Err(reason) => {
                        self.tally.drop(reason);
                        // The refresher is woken once per batch (at the flush).
                        self.missed_next_hop |= reason == DropReason::NoNeighbour;
                    }
                }
            }
            // Super-packets, and the TCP data of their flows, through the
            // tunnel TAP.
            Verdict::Send(pipeline::Target::Vxlan { .. })
                if gso.is_some()
                    || (self.tx.tunnel_mac().is_some()
                        && l2::carries_tcp_data(self.pool.bytes(&s))) =>
            {
                let mut pkt = Packet::new(self.pool.buf(s.buf), s.start, s.len());
                let framed = match self.tx.tunnel_mac() {
                    Some(mac) => l2::frame_tunnel(&mut pkt, mac, gso),
                    None => Err(DropReason::UnsupportedGso),
                };
                match framed {
                    Ok(hdr) => self.tx.queue_tunnel(slot(s.buf, &pkt), hdr),
                    Err(reason) => self.tally.drop(reason),
                }
            }
            // The same for IPIP, through the IPIP tunnel TUN.
            Verdict::Send(pipeline::Target::Ipip { .. })
                if gso.is_some()
                    || (self.tx.ipip_tun() && l2::carries_tcp_data(self.pool.bytes(&s))) =>
            {
                let mut pkt = Packet::new(self.pool.buf(s.buf), s.start, s.len());
                let framed = if self.tx.ipip_tun() {
                    l2::frame_ipip_tun(&mut pkt, gso)
                } else {
                    Err(DropReason::UnsupportedGso)
                };
                match framed {
                    Ok(hdr) => self.tx.queue_ipip_tun(slot(s.buf, &pkt), hdr),
                    Err(reason) => self.tally.drop(reason),
                }
            }
            Verdict::Send(target) => {
                let tos = self.pool.bytes(&s).get(1).copied().unwrap_or(0);
                self.tx.queue_send(s, target, tos);
            }
            Verdict::Fragment(_) => self.tally.drop(DropReason::TooBig),
            Verdict::Drop(reason) => self.tally.drop(reason),
        }
    }

    /// Queues the bytes of `s` for endpoint `to` (a super-packet after its
    /// virtio header); they are written, without a copy, at the flush.
    fn deliver(&mut self, snap: &Snapshot, to: EndpointId, s: Slot, gso: Option<Gso>, mode: Mode) {
        if snap.endpoints.get(to.index()).is_none() {
            self.tally.drop(DropReason::NotLocal);
            return;
        }
        let mut s = s;
        if let Some(g) = gso {
            let mut pkt = Packet::new(self.pool.buf(s.buf), s.start, s.len());
            if let Err(reason) = l2::to_tun_whole(&mut pkt, g) {
                self.tally.drop(reason);
                return;
            }
            s = slot(s.buf, &pkt);
        }
        let bytes = s.len() - if gso.is_some() { vnet::LEN } else { 0 };
        self.tally.rx(mode, bytes);
        self.tx.queue_delivery(to, s, gso.is_some(), bytes);
    }

    /// Decapsulates every packet waiting on the IPIP, VXLAN or direct socket.
    fn drain_underlay(&mut self, snap: &Snapshot, from: Arrival) {
        let mode = from.mode();
        loop {
            let n = {
                let rx = match from {
                    Arrival::Ipip => self.rx.ipip.as_mut(),
                    Arrival::Direct => self.rx.direct.as_mut(),
                    Arrival::Vxlan => self.rx.vxlan.as_mut(),
                    Arrival::VxlanFrames => self.rx.vxlan_frames.as_mut(),
                    Arrival::IpipFrames => self.rx.ipip_frames.as_mut(),
                };
                let Some(rx) = rx else { return };
                let received = rx.recv_batch(&mut self.pool.rx_bufs(BATCH), &mut self.received);
                match received {
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => 0,
                    Err(e) => {
                        self.log_io_error("underlay receive", mode.name(), &e);
                        0
                    }
                }
            };
            self.tally.syscalls(1);
            if n == 0 {
                return;
            }
            self.tally.batch(n);
            let vnet_rx = match from {
                Arrival::Direct => self.rx.direct.as_ref().is_some_and(|r| r.vnet()),
                Arrival::VxlanFrames => self.rx.vxlan_frames.as_ref().is_some_and(|r| r.vnet()),
                Arrival::IpipFrames => self.rx.ipip_frames.as_ref().is_some_and(|r| r.vnet()),
                _ => false,
            };
            for i in 0..n {
                let r = self.received[i];
                if r.segment > 0 && r.len > r.segment {
                    self.decap_datagrams(snap, i, HEADROOM, r);
                    continue;
                }
                let mut pkt = Packet::new(self.pool.buf(i), HEADROOM, r.len);
                let mut gso = None;
                let v = match from {
                    // A raw socket gives the whole outer packet.
                    Arrival::Ipip => pipeline::ingress(&snap.tables, &mut pkt),
                    // A packet socket the frame (IPv4 protocol 4 to the
                    // node), after a virtio header: a super-frame's inner
                    // packet goes whole.
                    Arrival::IpipFrames => match l2::unframe_direct(&mut pkt, vnet_rx) {
                        Ok(g) => {
                            gso = g;
                            pipeline::ingress_frame(&snap.tables, &mut pkt, g.is_some())
                        }
                        Err(reason) => Verdict::Drop(reason),
                    },
                    // A packet socket gives the frame (the filter let only
                    // IPv4 to local prefixes through), after a virtio
                    // header when it has them.
                    Arrival::Direct => match l2::unframe_direct(&mut pkt, vnet_rx) {
                        Ok(g) => {
                            gso = g;
                            pipeline::ingress_direct(&snap.tables, &mut pkt)
                        }
                        Err(reason) => Verdict::Drop(reason),
                    },
                    // The same for VXLAN's frames (IPv4 UDP to the node's
                    // VXLAN port): a super-frame's inner packet goes whole.
                    Arrival::VxlanFrames => match l2::unframe_vxlan(&mut pkt, vnet_rx) {
                        Ok(Framed::Packet) => {
                            pipeline::ingress_frame(&snap.tables, &mut pkt, false)
                        }
                        Ok(Framed::Whole(g)) => {
                            gso = Some(g);
                            pipeline::ingress_frame(&snap.tables, &mut pkt, true)
                        }
                        Ok(Framed::Datagrams(size)) => {
                            match pipeline::vxlan_datagrams(&snap.tables, &mut pkt) {
                                Ok((src, tos)) => {
                                    let (at, len) = (pkt.offset(), pkt.len());
                                    let segment = usize::from(size);
                                    let run = Received {
                                        len,
                                        src,
                                        tos,
                                        segment,
                                    };
                                    self.decap_datagrams(snap, i, at, run);
                                    continue;
                                }
                                Err(reason) => Verdict::Drop(reason),
                            }
                        }
                        Err(reason) => Verdict::Drop(reason),
                    },
                    // A UDP socket gives the payload; the kernel checked the rest.
                    Arrival::Vxlan => {
                        pipeline::ingress_vxlan_payload(&snap.tables, r.src, r.tos, &mut pkt)
                    }
                };
                let s = slot(i, &pkt);
                if gso.is_some() && matches!(v, Verdict::Deliver(_)) {
                    self.tally.super_packet(SuperPacket::ReceivedWhole);
                }
                self.decapsulated(snap, v, s, gso, mode);
            }
            self.tx.flush_endpoints(snap, &self.pool, &mut self.tally);
            self.shared.workers[self.index].publish(&mut self.tally);
            if n < BATCH {
                return;
            }
        }
    }

    /// Acts on an ingress verdict: ingress delivers or drops; anything else
    /// would be a bug, counted, not a panic.
    fn decapsulated(&mut self, snap: &Snapshot, v: Verdict, s: Slot, gso: Option<Gso>, mode: Mode) {
        match v {
            Verdict::Deliver(_) | Verdict::Drop(_) => self.queue(snap, v, s, gso, mode),
            _ => self.tally.drop(DropReason::NotLocal),
        }
    }

    /// Decapsulates the VXLAN datagrams at `start` in buffer `i`, `r.len`
    /// bytes of payloads of `r.segment` bytes each (the last may be
    /// shorter): coalesced by `UDP_GRO`, or sent as one by `UDP_SEGMENT` on
    /// this host.
    fn decap_datagrams(&mut self, snap: &Snapshot, i: usize, start: usize, r: Received) {
        // A size of zero would never move on: the whole run is one.
        let segment = if r.segment == 0 { r.len } else { r.segment };
        let mut at = 0;
        while at < r.len {
            let len = segment.min(r.len - at);
            let mut pkt = Packet::new(self.pool.buf(i), start + at, len);
            let v = pipeline::ingress_vxlan_payload(&snap.tables, r.src, r.tos, &mut pkt);
            let s = slot(i, &pkt);
            self.decapsulated(snap, v, s, None, Mode::Vxlan);
            at += len;
        }
    }
}

/// The bytes `pkt` views in buffer `buf`.
fn slot(buf: usize, pkt: &Packet) -> Slot {
    Slot {
        buf,
        start: pkt.offset(),
        end: pkt.offset() + pkt.len(),
    }
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
