//! `podwire run`: the dataplane daemon.
//!
//! The main thread loads the configuration, compiles the tables, creates the
//! endpoints' TUN devices and the underlay sockets, starts the workers, the
//! control socket and the metrics listener, then waits for signals: SIGHUP
//! reloads, SIGINT and SIGTERM stop. A reload builds a whole new snapshot
//! (tables + endpoint devices) and swaps it in atomically; workers pick it
//! up at their next batch. A configuration that does not validate or
//! compile is rejected with a log line, and the running snapshot is kept.

#![forbid(unsafe_code)]

mod attach;
mod blackhole;
pub mod control;
mod error;
pub mod host;
mod listen;
mod metrics;
mod neigh;
mod pool;
mod reload;
mod state;
pub mod stats;
mod tx;
mod worker;
#[cfg(test)]
mod worker_tests;

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use arc_swap::ArcSwap;
use mio::Waker;

use podwire::config::{self, ConfigSource, Resources};
use podwire::table::{self, NextHops, Tables, Underlay};
use podwire_io::ip_raw::{IpRawSender, IpipReceiver};
use podwire_io::packet::{PacketReceiver, PacketSender};
use podwire_io::tun::{self, TunQueue};
use podwire_io::udp::{SegmentSender, VxlanReceiver};
use podwire_io::{PacketQueue, RxBatch, TxBatch};
use stats::{EndpointStats, WorkerStats};

use error::TunError;
pub use error::{ReloadError, StartError};
pub use reload::Daemon;

/// How the daemon was asked to run.
#[derive(Debug, Clone)]
pub struct Options {
    pub node: String,
    /// `None`: the interface holding the node IP.
    pub underlay: Option<String>,
    pub underlay_mtu: Option<u16>,
    pub threads: usize,
    /// The CPUs the workers run on, worker i on `cpus[i % len]`; empty:
    /// wherever the scheduler puts them.
    pub cpus: Vec<usize>,
    pub control: PathBuf,
    pub metrics: Option<SocketAddr>,
    /// TUN offloads (`IFF_VNET_HDR`, TSO, checksum): on unless turned off.
    pub tun_offload: bool,
    /// VXLAN out through per-flow UDP sockets with `UDP_SEGMENT`: on unless
    /// turned off (then a raw socket and a software UDP checksum).
    pub udp_segment: bool,
    /// Direct mode: super-packets whole through packet sockets with
    /// `PACKET_VNET_HDR`: on unless turned off (needs `tun_offload`).
    pub packet_gso: bool,
    /// VXLAN and IPIP: TCP super-packets whole into the kernel, cut into
    /// segments there — VXLAN through the tunnel TAP ([`TUNNEL_TAP`]), IPIP
    /// through the IPIP tunnel TUN ([`IPIP_TUN`]) and its re-tag program:
    /// off unless asked for (needs `tun_offload`); each probed at start,
    /// cut up in userspace when the kernel cannot.
    pub tunnel_gso: bool,
    /// VXLAN and IPIP received through packet sockets with
    /// `PACKET_VNET_HDR` on the underlay (worker 0), the UDP and raw
    /// sockets open but taking nothing: same-host super-frames go whole to
    /// the pods, partial inner checksums are completed. Off unless asked
    /// for (needs `tun_offload`).
    pub packet_rx: bool,
    /// The host path (SPEC §10) through a TUN device of this name in the
    /// node's namespace; `None`: off.
    pub host_interface: Option<String>,
}

/// The tunnel device `interface` that `open` makes, or `None` (with a
/// warning saying why) when it cannot: `mode`'s super-packets are then cut
/// up in userspace.
fn probed<T>(
    mode: &str,
    interface: &str,
    open: impl FnOnce() -> Result<T, podwire_io::tap::TapError>,
) -> Option<T> {
    match open() {
        Ok(t) => {
            tracing::info!(
                interface,
                "{mode} super-packets go whole to the kernel through {interface}"
            );
            Some(t)
        }
        Err(e) => {
            tracing::warn!("{e}; {mode} super-packets are cut up in userspace");
            None
        }
    }
}

/// The tunnel TAP's name in the node's namespace (one podwire a namespace).
pub const TUNNEL_TAP: &str = "podwire.tx";
/// The IPIP tunnel TUN's name in the node's namespace.
pub const IPIP_TUN: &str = "podwire.ipip";

/// A local endpoint's device: one queue per worker, and counters.
pub struct EndpointIo {
    pub interface: String,
    pub workload: String,
    pub mtu: u16,
    pub queues: Vec<Box<dyn PacketQueue>>,
    pub stats: Vec<EndpointStats>,
}

impl Drop for EndpointIo {
    /// The endpoint is going away (removed by a reload, or the daemon
    /// stops): the device stops being persistent, so that closing the
    /// queues deletes it.
    fn drop(&mut self) {
        if let Some(q) = self.queues.first() {
            if let Err(e) = q.set_persist(false) {
                tracing::warn!(interface = %self.interface, "cannot make the device non-persistent ({e}); it may outlive its endpoint");
            }
        }
    }
}

/// Everything a batch runs against, swapped whole on reload.
pub struct Snapshot {
    pub generation: u64,
    pub tables: Tables,
    /// Indexed by `EndpointId` of `tables`.
    pub endpoints: Vec<Arc<EndpointIo>>,
}

/// State shared by the daemon's threads.
pub struct Shared {
    pub snapshot: ArcSwap<Snapshot>,
    pub workers: Vec<WorkerStats>,
    pub stop: AtomicBool,
    pub started: Instant,
    pub reloads: AtomicU64,
    pub reloads_rejected: AtomicU64,
    /// Direct mode: the underlay device (its next hops' MACs are in the
    /// snapshot's tables).
    pub underlay: Option<neigh::UnderlayDev>,
    /// Held by whoever replaces the snapshot (a reload, a neighbour
    /// change), so that one never undoes the other; workers never take it.
    pub swap: std::sync::Mutex<()>,
    /// The neighbour refresher's waker, which a worker uses when it misses
    /// a next hop.
    pub neigh_waker: std::sync::OnceLock<Arc<Waker>>,
    /// The state file's tracker, which a reload wakes.
    pub state_thread: std::sync::OnceLock<std::thread::Thread>,
    /// The snapshot generation each worker has moved to (and let go of
    /// every older snapshot and removed endpoint).
    pub worker_generations: Vec<AtomicU64>,
    pub offloads: stats::Offloads,
    /// The datastore's state, for a source that has one.
    pub source_status: Option<Arc<config::SourceStatus>>,
    /// The host path, when it is on.
    pub host: Option<host::HostPath>,
    /// The local blocks' blackhole routes in the node's kernel.
    pub blackholes: blackhole::Blackholes,
    /// Devices a CNI ADD made (`attach`), by interface, until the
    /// snapshot with their endpoint takes them.
    pub pending: std::sync::Mutex<HashMap<String, Vec<TunQueue>>>,
}

impl Shared {
    /// The counters, summed, with endpoint totals.
    pub fn totals(&self) -> stats::Totals {
        let mut t = stats::sum(&self.workers);
        t.offloads = self.offloads;
        t.uptime_seconds = self.started.elapsed().as_secs();
        t.reloads = self.reloads.load(Ordering::Relaxed);
        t.reloads_rejected = self.reloads_rejected.load(Ordering::Relaxed);
        t.datastore = self.source_status.as_ref().map(|s| s.state());
        let snap = self.snapshot.load();
        for (ep, info) in snap.endpoints.iter().zip(snap.tables.endpoints()) {
            let (from, to) = stats::endpoint_totals(&ep.stats);
            t.endpoints.push(stats::EndpointTotals {
                interface: ep.interface.clone(),
                workload: ep.workload.clone(),
                addresses: info.ips.iter().map(|ip| ip.to_string()).collect(),
                mtu: ep.mtu,
                from_workload: from,
                to_workload: to,
            });
        }
        t
    }
}

/// Finds the underlay device and its MTU.
pub fn underlay(name: Option<&str>, mtu: Option<u16>, node_ip: Option<Ipv4Addr>) -> Underlay {
    let name = match name {
        Some(name) => name.to_string(),
        None => node_ip
            .and_then(|ip| podwire_io::netdev::interface_with_addr(ip).ok().flatten())
            .unwrap_or_else(|| "eth0".to_string()),
    };
    let mtu = match mtu {
        Some(mtu) => mtu,
        None => match podwire_io::netdev::mtu(&name) {
            Ok(mtu) => mtu,
            Err(e) => {
                tracing::warn!("cannot read the MTU of {name} ({e}); assuming 1500");
                1500
            }
        },
    };
    Underlay { name, mtu }
}

/// Compiles the node's tables from `resources`.
fn compile_for(opts: &Options, resources: &Resources) -> Result<Tables, table::CompileError> {
    let node_ip = resources.node(&opts.node).and_then(|n| n.ip());
    let u = underlay(opts.underlay.as_deref(), opts.underlay_mtu, node_ip);
    table::compile_with(resources, &opts.node, &u, opts.host_interface.as_deref())
}

/// Builds a snapshot for `tables`, reusing the devices of `old` endpoints
/// that are still there, then the devices a previous daemon left
/// (`adopted`, taken out of the map), and creating the others. Every
/// device is made persistent.
fn snapshot(
    tables: Tables,
    generation: u64,
    workers: usize,
    offload: bool,
    old: Option<&Snapshot>,
    adopted: &mut HashMap<String, Vec<TunQueue>>,
) -> Result<Snapshot, TunError> {
    let existing: HashMap<&str, &Arc<EndpointIo>> = old
        .map(|s| {
            s.endpoints
                .iter()
                .map(|e| (e.interface.as_str(), e))
                .collect()
        })
        .unwrap_or_default();
    // The kernel-NATed flows outlive any one snapshot.
    let tables = match old {
        Some(old) => tables.with_flows(old.tables.flows_handle()),
        None => tables,
    };
    let mut endpoints = Vec::with_capacity(tables.endpoints().len());
    for ep in tables.endpoints() {
        if let Some(io) = existing.get(ep.interface.as_str()) {
            if io.mtu != ep.mtu {
                tracing::warn!(
                    interface = %ep.interface,
                    "MTU changed from {} to {}; the device keeps {} until the endpoint is re-created",
                    io.mtu,
                    ep.mtu,
                    io.mtu
                );
            }
            endpoints.push(Arc::clone(io));
            continue;
        }
        let queues = match adopted.remove(&ep.interface) {
            Some(queues) => {
                tracing::info!(interface = %ep.interface, queues = queues.len(), "endpoint re-attached to the device a previous daemon left");
                queues
            }
            None => {
                let queues =
                    tun::create(&ep.interface, ep.mtu, workers, offload).map_err(|source| {
                        TunError {
                            interface: ep.interface.clone(),
                            source,
                        }
                    })?;
                tracing::info!(interface = %ep.interface, mtu = ep.mtu, queues = queues.len(), "endpoint created");
                queues
            }
        };
        if let Err(e) = queues[0].set_persist(true) {
            tracing::warn!(interface = %ep.interface, "cannot make the device persistent ({e}): a crash will delete it");
        }
        endpoints.push(Arc::new(EndpointIo {
            interface: ep.interface.clone(),
            workload: ep.name.clone(),
            mtu: ep.mtu,
            queues: queues
                .into_iter()
                .map(|q| Box::new(q) as Box<dyn PacketQueue>)
                .collect(),
            stats: (0..workers).map(|_| EndpointStats::default()).collect(),
        }));
    }
    if let Some(old) = old {
        for gone in old.endpoints.iter().filter(|e| {
            !tables
                .endpoints()
                .iter()
                .any(|n| n.interface == e.interface)
        }) {
            tracing::info!(interface = %gone.interface, "endpoint removed");
        }
    }
    Ok(Snapshot {
        generation,
        tables,
        endpoints,
    })
}

/// Runs the daemon on the resources `source` gives until SIGINT or
/// SIGTERM. Forwarding starts once the source's first snapshot compiled.
pub fn run(opts: Options, mut source: Box<dyn ConfigSource>) -> Result<(), StartError> {
    let threads = opts.threads.max(1);
    // Before touching anything another daemon may own.
    if control::in_use(&opts.control) {
        return Err(StartError::Control {
            path: opts.control.display().to_string(),
            source: std::io::Error::new(
                std::io::ErrorKind::AddrInUse,
                "another daemon answers on it",
            ),
        });
    }
    let state_path = state::path_for(&opts.control);
    let previous = state::load(&state_path).unwrap_or_default();
    let resources = source
        .poll(true)?
        .ok_or_else(|| config::SourceError::Nothing(source.describe()))?;
    let tables = compile_for(&opts, &resources)?;
    let node_ip = tables.local().ip;
    let port = tables.vxlan().port;
    tracing::info!(
        node = %opts.node,
        ip = %node_ip,
        underlay = %tables.underlay().name,
        routes = tables.routes().len(),
        endpoints = tables.endpoints().len(),
        threads,
        "starting"
    );
    // Direct mode frames the inner packet for the underlay device itself.
    let underlay = match neigh::UnderlayDev::open(&tables.underlay().name) {
        Ok(u) => Some(u),
        Err(e) => {
            tracing::warn!(
                underlay = %tables.underlay().name,
                "direct mode is unavailable: cannot read the underlay device: {e}"
            );
            None
        }
    };
    // VXLAN super-packets whole through the tunnel TAP, when the kernel
    // takes them; IPIP's through the IPIP tunnel TUN, when the re-tag
    // program loads.
    let whole = opts.tunnel_gso && opts.tun_offload;
    let tunnel = whole
        .then(|| {
            probed("VXLAN", TUNNEL_TAP, || {
                podwire_io::tap::open(TUNNEL_TAP, threads)
            })
        })
        .flatten();
    let mut ipip_tun = whole
        .then(|| {
            probed("IPIP", IPIP_TUN, || {
                podwire_io::tap::open_ipip(IPIP_TUN, threads)
            })
        })
        .flatten();
    let tunnel_mac = tunnel.as_ref().map(|t| t.mac);
    let mut tunnel_queues = tunnel.map(|t| t.queues).unwrap_or_default().into_iter();
    let mut ipip_queues = match &mut ipip_tun {
        Some(t) => std::mem::take(&mut t.queues).into_iter(),
        None => Vec::new().into_iter(),
    };
    let frames = opts.packet_rx && opts.tun_offload && underlay.is_some();
    if opts.packet_rx && !frames {
        tracing::warn!(
            "VXLAN and IPIP through packet sockets need the TUN offloads and the underlay device; receiving them through UDP and raw sockets"
        );
    }
    // Sockets first: without them there is no point creating devices.
    let mut ios = Vec::with_capacity(threads);
    for i in 0..threads {
        let raw_tx = IpRawSender::new().map_err(|source| StartError::Socket {
            what: "raw send",
            source,
        })?;
        let ipip_rx = if i == 0 {
            Some(IpipReceiver::new().map_err(|source| StartError::Socket {
                what: "IPIP receive",
                source,
            })?)
        } else {
            None
        };
        let mut ipip_frames_rx = None;
        if let (true, Some(u), Some(raw)) = (frames, &underlay, &ipip_rx) {
            let ipip_socket = |what| move |source| StartError::Socket { what, source };
            let rx = PacketReceiver::ipip(u.ifindex, node_ip, true)
                .map_err(ipip_socket("IPIP packet receive"))?;
            raw.drop_all().map_err(ipip_socket("IPIP receive filter"))?;
            ipip_frames_rx = Some(Box::new(rx) as Box<dyn RxBatch>);
        }
        let vxlan_socket = |what| move |source| StartError::Socket { what, source };
        let udp = VxlanReceiver::new(SocketAddrV4::new(node_ip, port), !frames)
            .map_err(vxlan_socket("VXLAN receive"))?;
        let mut vxlan_frames_rx = None;
        if let (true, Some(u), 0) = (frames, &underlay, i) {
            let rx = PacketReceiver::vxlan(u.ifindex, node_ip, port, true)
                .map_err(vxlan_socket("VXLAN packet receive"))?;
            vxlan_frames_rx = Some(Box::new(rx) as Box<dyn RxBatch>);
        }
        if frames {
            udp.drop_all()
                .map_err(vxlan_socket("VXLAN receive filter"))?;
        }
        let vxlan_rx = Some(udp);
        let (mut direct_tx, mut direct_rx) = (None, None);
        if let Some(u) = &underlay {
            direct_tx = Some(
                PacketSender::new(u.ifindex, opts.packet_gso).map_err(|source| {
                    StartError::Socket {
                        what: "direct-mode packet send",
                        source,
                    }
                })?,
            );
            if i == 0 {
                let nets = worker::local_prefixes(&tables);
                let rx =
                    PacketReceiver::new(u.ifindex, &nets, opts.packet_gso).map_err(|source| {
                        StartError::Socket {
                            what: "direct-mode packet receive",
                            source,
                        }
                    })?;
                direct_rx = Some(rx);
            }
        }
        let vxlan_tx = opts.udp_segment.then(|| SegmentSender::new(node_ip));
        ios.push(worker::WorkerIo {
            raw_tx: Box::new(raw_tx),
            ipip_rx: ipip_rx.map(|r| Box::new(r) as Box<dyn RxBatch>),
            vxlan_rx: vxlan_rx.map(|r| Box::new(r) as Box<dyn RxBatch>),
            direct_tx: direct_tx.map(|t| Box::new(t) as Box<dyn TxBatch>),
            direct_rx: direct_rx.map(|r| Box::new(r) as Box<dyn RxBatch>),
            vxlan_tx,
            tunnel: tunnel_mac.zip(tunnel_queues.next()),
            ipip_tun: ipip_queues.next(),
            vxlan_frames_rx,
            ipip_frames_rx,
        });
    }
    // A podwire before blackhole routes turned forwarding off on the
    // underlay in direct mode, and a killed one left it so: put back the
    // value it recorded. The kernel is kept from forwarding pod traffic by
    // blackhole routes for the local blocks instead (see `blackhole`).
    if let (Some(u), Some(f)) = (&underlay, &previous.forwarding) {
        if f.device == u.name {
            u.restore_forwarding(&f.original);
            tracing::info!(device = %u.name, value = %f.original, "restored the underlay's forwarding setting a previous podwire turned off");
        }
    }
    let offloads = stats::Offloads {
        tun: opts.tun_offload,
        udp_segment: opts.udp_segment,
        udp_gro: ios
            .iter()
            .all(|io| io.vxlan_rx.as_ref().is_some_and(|r| r.gro())),
        tunnel_gso: ios.iter().all(|io| io.tunnel.is_some()),
        vxlan_packet_rx: ios.iter().any(|io| io.vxlan_frames_rx.is_some()),
        ipip_gso: ios.iter().all(|io| io.ipip_tun.is_some()),
        ipip_packet_rx: ios.iter().any(|io| io.ipip_frames_rx.is_some()),
        packet_gso: ios.iter().all(|io| {
            io.direct_tx.as_ref().is_some_and(|t| t.vnet())
                && io.direct_rx.as_ref().is_none_or(|r| r.vnet())
        }),
    };
    // The devices a killed daemon left: re-attached if still configured,
    // deleted if not.
    let mut adopted: HashMap<String, Vec<TunQueue>> = HashMap::new();
    for (interface, queues, r) in state::reattach(
        &previous.endpoints,
        |i| {
            tables
                .endpoints()
                .iter()
                .find(|e| e.interface == i)
                .map_or(1500, |e| e.mtu)
        },
        threads,
        opts.tun_offload,
    ) {
        if tables.endpoints().iter().any(|e| e.interface == interface) {
            adopted.insert(interface, queues);
        } else {
            let _ = queues[0].set_persist(false);
            tracing::info!(%interface, name = %r.name, netns = %r.netns, "deleted the device of an endpoint that is no longer configured");
        }
    }
    // Direct mode frames from the underlay's MAC; its next hops' MACs come
    // from the kernel's neighbour table, kept by the refresher.
    let tables = match &underlay {
        Some(u) => tables.with_next_hops(NextHops::new(u.mac, [])),
        None => tables,
    };
    let snap = snapshot(tables, 0, threads, opts.tun_offload, None, &mut adopted)?;
    // The host path, once its device exists.
    let host = match &opts.host_interface {
        Some(name) => {
            let h = host::HostPath::new(name, previous.ip_forward.clone())?;
            h.apply(&snap.tables)?;
            Some(h)
        }
        None => None,
    };
    let blackholes = blackhole::Blackholes::new();
    if let Err(e) = blackholes.apply(&snap.tables) {
        tracing::warn!("{e}: the kernel may forward direct-mode pod traffic too");
    }
    let shared = Arc::new(Shared {
        snapshot: ArcSwap::from_pointee(snap),
        workers: (0..threads).map(|_| WorkerStats::default()).collect(),
        worker_generations: (0..threads).map(|_| AtomicU64::new(0)).collect(),
        stop: AtomicBool::new(false),
        started: Instant::now(),
        reloads: AtomicU64::new(0),
        reloads_rejected: AtomicU64::new(0),
        underlay,
        swap: std::sync::Mutex::new(()),
        neigh_waker: std::sync::OnceLock::new(),
        state_thread: std::sync::OnceLock::new(),
        offloads,
        source_status: source.status(),
        host,
        blackholes,
        pending: std::sync::Mutex::new(HashMap::new()),
    });
    let refresher = neigh::start_refresher(Arc::clone(&shared))
        .map_err(StartError::thread("neighbour refresher"))?;
    let (refresher, neigh_waker) = refresher;
    let _ = shared.neigh_waker.set(Arc::clone(&neigh_waker));
    let tracker = state::start_tracker(Arc::clone(&shared), state_path.clone())
        .map_err(StartError::thread("state tracker"))?;
    let _ = shared.state_thread.set(tracker.thread().clone());
    let mut wakers = Vec::with_capacity(threads);
    let mut handles = Vec::with_capacity(threads);
    for (i, io) in ios.into_iter().enumerate() {
        let (poll, waker) =
            worker::poll_with_waker().map_err(StartError::thread(format!("poll of worker {i}")))?;
        wakers.push(waker);
        let w = worker::Worker::new(i, Arc::clone(&shared), poll, io)
            .map_err(StartError::thread(format!("worker {i}")))?;
        // Worker i on CPU `cpus[i]` (round robin), when asked.
        let cpu = (!opts.cpus.is_empty()).then(|| opts.cpus[i % opts.cpus.len()]);
        let h = std::thread::Builder::new()
            .name(format!("podwire-w{i}"))
            .spawn(move || {
                if let Some(cpu) = cpu {
                    match podwire_io::sys::affinity::pin_current_thread(cpu) {
                        Ok(()) => tracing::info!(worker = i, cpu, "worker pinned"),
                        Err(e) => tracing::warn!(worker = i, cpu, "cannot pin the worker: {e}"),
                    }
                }
                w.run()
            })
            .map_err(StartError::thread(format!("thread of worker {i}")))?;
        handles.push(h);
    }
    let described = source.describe();
    let daemon = Arc::new(Daemon {
        opts: opts.clone(),
        shared: Arc::clone(&shared),
        wakers,
        source: std::sync::Mutex::new(source),
        hup: AtomicBool::new(false),
    });
    let watcher = reload::start_watcher(Arc::clone(&daemon))
        .map_err(StartError::thread("configuration watcher"))?;
    let control = control::Server::start(&opts.control, Arc::clone(&daemon)).map_err(|source| {
        StartError::Control {
            path: opts.control.display().to_string(),
            source,
        }
    })?;
    let metrics = match opts.metrics {
        Some(addr) => Some(
            metrics::start(addr, Arc::clone(&shared))
                .map_err(|source| StartError::Metrics { addr, source })?,
        ),
        None => None,
    };
    tracing::info!(control = %opts.control.display(), "running");

    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGHUP,
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
    ])
    .map_err(StartError::Signals)?;
    for signal in signals.forever() {
        match signal {
            signal_hook::consts::SIGHUP => {
                tracing::info!("SIGHUP: reloading {described}");
                daemon.hup.store(true, Ordering::Relaxed);
                watcher.thread().unpark();
            }
            _ => {
                tracing::info!("signal {signal}: stopping");
                break;
            }
        }
    }
    shared.stop.store(true, Ordering::Relaxed);
    daemon.wake();
    watcher.thread().unpark();
    let _ = watcher.join();
    for h in handles {
        let _ = h.join();
    }
    let _ = neigh_waker.wake();
    let _ = refresher.join();
    tracker.thread().unpark();
    let _ = tracker.join();
    shared.blackholes.remove();
    control.stop();
    if let Some(m) = metrics {
        m.stop();
    }
    if let Some(h) = &shared.host {
        h.remove();
    }
    // Dropping the last snapshot closes every queue, non-persistent by
    // then: the kernel removes the TUN devices.
    shared.snapshot.store(Arc::new(Snapshot {
        generation: u64::MAX,
        tables: shared.snapshot.load().tables.clone(),
        endpoints: Vec::new(),
    }));
    if let Err(e) = std::fs::remove_file(&state_path) {
        tracing::warn!(path = %state_path.display(), "cannot remove the state file: {e}");
    }
    tracing::info!("stopped");
    Ok(())
}
