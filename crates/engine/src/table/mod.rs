//! The node's forwarding tables (SPEC §2): routes, neighbours, FDB, known
//! peers and local endpoints, compiled into one immutable [`Tables`] snapshot.
//!
//! [`TablesBuilder`] assembles a snapshot from routes and entries, whatever
//! produced them; [`compile`] derives them from Calico resources the way Felix
//! programs the kernel. Building resolves every VXLAN route through the
//! neighbour and FDB tables once, so the per-packet path does one route lookup.

mod compile;
pub mod lpm;
mod next_hop;
mod render;

use std::net::Ipv4Addr;
use std::sync::Arc;

use ipnetwork::Ipv4Network;

use crate::pipeline::flows::{DEFAULT_SLOTS, NatFlows};
use crate::wire::MacAddr;
pub use compile::{CompileError, Underlay, compile, compile_with};
use lpm::Lpm;
pub use next_hop::NextHops;

/// The name Calico gives the VXLAN device.
pub const VXLAN_DEV: &str = "vxlan.calico";
/// The name of the IPIP device Calico uses (the kernel's fallback tunnel).
pub const IPIP_DEV: &str = "tunl0";
/// Bytes IPIP adds: one IPv4 header.
pub const IPIP_OVERHEAD: u16 = 20;
/// Bytes VXLAN adds: IPv4, UDP, VXLAN and Ethernet headers.
pub const VXLAN_OVERHEAD: u16 = 50;

/// Felix's VTEP MAC rule (it is the configuration's: [`crate::config::vtep_mac_for`]).
pub use crate::config::vtep_mac_for;

/// Index of a local endpoint in [`Tables::endpoints`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EndpointId(pub u32);

impl EndpointId {
    /// As an index.
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// A local workload endpoint: a TUN device and the addresses behind it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// The TUN device name (`spec.interfaceName`).
    pub interface: String,
    /// The `WorkloadEndpoint` resource name.
    pub name: String,
    /// The endpoint's addresses; a packet from it must have one as source.
    pub ips: Vec<Ipv4Addr>,
    /// The MTU of the mode of the endpoint's pool.
    pub mtu: u16,
}

/// Where a route sends traffic, as `ip route` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// A local workload: `dev <tun> scope link`.
    Endpoint(EndpointId),
    /// A local block: `blackhole`.
    Blackhole,
    /// A remote block over VXLAN: `via <tunnel ip> dev vxlan.calico onlink`.
    Vxlan { gw: Ipv4Addr },
    /// A remote node's VXLAN tunnel address that no block route of that
    /// node covers: `<tunnel ip> dev vxlan.calico scope link`, its own
    /// neighbour entry the next hop.
    VxlanLink,
    /// A remote block over IPIP: `via <node ip> dev tunl0 onlink`.
    Ipip { gw: Ipv4Addr },
    /// A remote block routed directly: `via <node ip> dev <underlay> onlink`.
    Direct { gw: Ipv4Addr },
}

/// One route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    pub dst: Ipv4Network,
    pub via: Via,
}

/// A route resolved for forwarding: everything the encapsulation needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hop {
    Endpoint(EndpointId),
    Blackhole,
    /// IPIP to the node at this address.
    Ipip {
        node: Ipv4Addr,
    },
    /// VXLAN to the node at `node`, inner destination MAC `mac`.
    Vxlan {
        node: Ipv4Addr,
        mac: MacAddr,
    },
    /// A VXLAN route whose gateway has no neighbour entry.
    VxlanNoNeighbour,
    /// A VXLAN route whose gateway MAC has no FDB entry.
    VxlanNoFdb,
    /// Unencapsulated to the next-hop node.
    Direct {
        gw: Ipv4Addr,
    },
    /// One of the node's own addresses inside a pool (its VXLAN or IPIP
    /// tunnel address): the node's kernel's, through the host interface.
    Host,
}

/// An IP pool, as the host path needs it (natOutgoing, and what is
/// "outside every pool").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolNet {
    pub cidr: Ipv4Network,
    /// `spec.natOutgoing`.
    pub nat_outgoing: bool,
    /// `spec.disabled`.
    pub disabled: bool,
    /// The MTU of a workload in it (its mode's).
    pub mtu: u16,
}

/// A permanent neighbour (ARP) entry on `vxlan.calico`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Neigh {
    pub ip: Ipv4Addr,
    pub mac: MacAddr,
}

/// A permanent FDB entry on `vxlan.calico`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fdb {
    pub mac: MacAddr,
    pub dst: Ipv4Addr,
}

/// The MTU of each mode: the largest inner packet sent unfragmented.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mtus {
    pub ipip: u16,
    pub vxlan: u16,
    pub direct: u16,
}

impl Mtus {
    /// Underlay MTU minus each mode's overhead (saturating at 0).
    pub fn from_underlay(mtu: u16) -> Self {
        Mtus {
            ipip: mtu.saturating_sub(IPIP_OVERHEAD),
            vxlan: mtu.saturating_sub(VXLAN_OVERHEAD),
            direct: mtu,
        }
    }
}

/// The local node as the dataplane needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalNode {
    pub name: String,
    /// The node IP: the outer source of everything podwire sends, and the
    /// source of the ICMP errors it generates.
    pub ip: Ipv4Addr,
    /// The node's subnet (from `spec.bgp.ipv4Address`).
    pub subnet: Ipv4Network,
    /// The local VTEP MAC.
    pub vtep_mac: MacAddr,
}

/// VXLAN parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VxlanParams {
    pub vni: u32,
    pub port: u16,
}

/// An inconsistency found while building tables.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BuildError {
    #[error("two routes for {0}")]
    DuplicateRoute(Ipv4Network),
    #[error("route {0} names endpoint #{1}, which does not exist")]
    NoSuchEndpoint(Ipv4Network, u32),
    #[error("two neighbour entries for {0}")]
    DuplicateNeigh(Ipv4Addr),
    #[error("two FDB entries for {0}")]
    DuplicateFdb(MacAddr),
}

/// One immutable snapshot of everything the pipeline consults.
#[derive(Debug, Clone)]
pub struct Tables {
    local: LocalNode,
    vxlan: VxlanParams,
    mtu: Mtus,
    underlay: Underlay,
    routes: Vec<Route>,
    lpm: Lpm<Hop>,
    neigh: Vec<Neigh>,
    fdb: Vec<Fdb>,
    peers: Vec<u32>,
    endpoints: Vec<Endpoint>,
    next_hops: NextHops,
    /// The host interface's endpoint, when the host path is on.
    host: Option<EndpointId>,
    /// Every pool, sorted by address.
    pools: Vec<PoolNet>,
    /// The kernel-NATed flows: not part of the snapshot's value, carried
    /// from one snapshot to the next by the daemon ([`Tables::with_flows`]).
    flows: Arc<NatFlows>,
}

impl Tables {
    /// The local node.
    pub fn local(&self) -> &LocalNode {
        &self.local
    }
    /// VXLAN VNI and port.
    pub fn vxlan(&self) -> VxlanParams {
        self.vxlan
    }
    /// Per-mode MTUs.
    pub fn mtu(&self) -> Mtus {
        self.mtu
    }
    /// The underlay device.
    pub fn underlay(&self) -> &Underlay {
        &self.underlay
    }
    /// Routes, sorted by destination.
    pub fn routes(&self) -> &[Route] {
        &self.routes
    }
    /// Neighbour entries, sorted by address.
    pub fn neigh(&self) -> &[Neigh] {
        &self.neigh
    }
    /// FDB entries, sorted by MAC.
    pub fn fdb(&self) -> &[Fdb] {
        &self.fdb
    }
    /// Local endpoints, indexed by [`EndpointId`].
    pub fn endpoints(&self) -> &[Endpoint] {
        &self.endpoints
    }
    /// One endpoint.
    #[inline]
    pub fn endpoint(&self, id: EndpointId) -> Option<&Endpoint> {
        self.endpoints.get(id.index())
    }
    /// The endpoint with this interface name.
    pub fn endpoint_by_interface(&self, name: &str) -> Option<EndpointId> {
        self.endpoints
            .iter()
            .position(|e| e.interface == name)
            .map(|i| EndpointId(i as u32))
    }
    /// Known peers: every other node's IP, sorted.
    pub fn peers(&self) -> impl Iterator<Item = Ipv4Addr> + '_ {
        self.peers.iter().map(|&p| Ipv4Addr::from(p))
    }

    /// Direct mode's link layer: the underlay's MAC and its next hops'.
    #[inline]
    pub fn next_hops(&self) -> &NextHops {
        &self.next_hops
    }

    /// These tables with direct mode's link layer replaced (the routes stay).
    pub fn with_next_hops(&self, next_hops: NextHops) -> Tables {
        Tables {
            next_hops,
            ..self.clone()
        }
    }

    /// The next hops of direct-mode routes, sorted, each once: what the
    /// daemon asks the kernel to resolve.
    pub fn direct_gateways(&self) -> Vec<Ipv4Addr> {
        let mut gws: Vec<Ipv4Addr> = self
            .routes
            .iter()
            .filter_map(|r| match r.via {
                Via::Direct { gw } => Some(gw),
                _ => None,
            })
            .collect();
        gws.sort_unstable();
        gws.dedup();
        gws
    }

    /// Longest-prefix match of `dst`, resolved for forwarding.
    #[inline]
    pub fn lookup(&self, dst: u32) -> Option<Hop> {
        self.lpm.lookup(dst)
    }

    /// True when `src` is another node of the cluster.
    #[inline]
    pub fn is_peer(&self, src: u32) -> bool {
        self.peers.binary_search(&src).is_ok()
    }

    /// The kernel-NATed flows' table.
    #[inline]
    pub fn flows(&self) -> &NatFlows {
        &self.flows
    }

    /// The flow table, to hand to the next snapshot.
    pub fn flows_handle(&self) -> Arc<NatFlows> {
        Arc::clone(&self.flows)
    }

    /// These tables with `flows` as their flow table (the one the previous
    /// snapshot had, so that no flow is forgotten by a reload).
    pub fn with_flows(mut self, flows: Arc<NatFlows>) -> Tables {
        self.flows = flows;
        self
    }

    /// The host interface's endpoint, when the host path is on.
    #[inline]
    pub fn host(&self) -> Option<EndpointId> {
        self.host
    }

    /// True for the host interface's endpoint.
    #[inline]
    pub fn is_host(&self, id: EndpointId) -> bool {
        self.host == Some(id)
    }

    /// The node's own addresses inside pools (given to the host interface).
    pub fn host_addrs(&self) -> &[Ipv4Addr] {
        match self.host.and_then(|h| self.endpoint(h)) {
            Some(e) => &e.ips,
            None => &[],
        }
    }

    /// Every IP pool, sorted by address.
    pub fn pools(&self) -> &[PoolNet] {
        &self.pools
    }

    /// True when `addr` is inside an IP pool.
    #[inline]
    pub fn in_pool(&self, addr: u32) -> bool {
        self.pool_of(addr).is_some()
    }

    /// The pool `addr` is in.
    #[inline]
    pub fn pool_of(&self, addr: u32) -> Option<&PoolNet> {
        // Pools do not overlap (validation): the last one starting at or
        // before `addr` is the only candidate.
        let i = self
            .pools
            .partition_point(|p| u32::from(p.cidr.network()) <= addr);
        let p = self.pools.get(i.checked_sub(1)?)?;
        p.cidr.contains(Ipv4Addr::from(addr)).then_some(p)
    }

    /// Where a packet to `dst` goes when it comes from a workload: its
    /// route, or — outside every pool, with the host path on — the host
    /// interface (`None`: no route).
    #[inline]
    pub fn lookup_from_workload(&self, dst: u32) -> Option<Hop> {
        match self.lpm.lookup(dst) {
            None if self.host.is_some() && !self.in_pool(dst) => Some(Hop::Host),
            hop => hop,
        }
    }
}

/// Assembles a [`Tables`] snapshot from routes and entries.
#[derive(Debug, Clone)]
pub struct TablesBuilder {
    local: LocalNode,
    vxlan: VxlanParams,
    mtu: Mtus,
    underlay: Underlay,
    routes: Vec<Route>,
    neigh: Vec<Neigh>,
    fdb: Vec<Fdb>,
    peers: Vec<u32>,
    endpoints: Vec<Endpoint>,
    host: Option<EndpointId>,
    pools: Vec<PoolNet>,
}

impl TablesBuilder {
    /// A builder with Calico's default VNI and port and MTUs from the underlay.
    pub fn new(local: LocalNode, underlay: Underlay) -> Self {
        TablesBuilder {
            local,
            vxlan: VxlanParams {
                vni: crate::config::DEFAULT_VXLAN_VNI,
                port: crate::config::DEFAULT_VXLAN_PORT,
            },
            mtu: Mtus::from_underlay(underlay.mtu),
            underlay,
            routes: Vec::new(),
            neigh: Vec::new(),
            fdb: Vec::new(),
            peers: Vec::new(),
            endpoints: Vec::new(),
            host: None,
            pools: Vec::new(),
        }
    }

    /// Adds an IP pool.
    pub fn pool(&mut self, pool: PoolNet) -> &mut Self {
        self.pools.push(pool);
        self
    }

    /// Turns the host path on: the host interface `interface` (an endpoint
    /// of its own, after the workloads) with the node's own addresses
    /// inside pools, `addrs`, which packets from pods and from the underlay
    /// reach through it.
    pub fn host(&mut self, interface: &str, mtu: u16, addrs: Vec<Ipv4Addr>) -> EndpointId {
        let id = self.endpoint(Endpoint {
            interface: interface.to_string(),
            name: "host".to_string(),
            ips: addrs,
            mtu,
        });
        self.host = Some(id);
        id
    }

    /// Sets the VXLAN VNI and port.
    pub fn vxlan(&mut self, params: VxlanParams) -> &mut Self {
        self.vxlan = params;
        self
    }

    /// Sets the per-mode MTUs.
    pub fn mtus(&mut self, mtu: Mtus) -> &mut Self {
        self.mtu = mtu;
        self
    }

    /// Adds a local endpoint.
    pub fn endpoint(&mut self, endpoint: Endpoint) -> EndpointId {
        self.endpoints.push(endpoint);
        EndpointId(self.endpoints.len() as u32 - 1)
    }

    /// Adds a route.
    pub fn route(&mut self, dst: Ipv4Network, via: Via) -> &mut Self {
        let dst = Ipv4Network::new(dst.network(), dst.prefix()).unwrap_or(dst);
        self.routes.push(Route { dst, via });
        self
    }

    /// Adds a permanent neighbour entry.
    pub fn neigh(&mut self, ip: Ipv4Addr, mac: MacAddr) -> &mut Self {
        self.neigh.push(Neigh { ip, mac });
        self
    }

    /// Adds a permanent FDB entry.
    pub fn fdb(&mut self, mac: MacAddr, dst: Ipv4Addr) -> &mut Self {
        self.fdb.push(Fdb { mac, dst });
        self
    }

    /// Adds a known peer.
    pub fn peer(&mut self, ip: Ipv4Addr) -> &mut Self {
        self.peers.push(u32::from(ip));
        self
    }

    /// Sorts, checks and resolves everything into a snapshot.
    pub fn build(mut self) -> Result<Tables, BuildError> {
        self.routes
            .sort_by_key(|r| (u32::from(r.dst.network()), r.dst.prefix()));
        if let Some(w) = self.routes.windows(2).find(|w| w[0].dst == w[1].dst) {
            return Err(BuildError::DuplicateRoute(w[0].dst));
        }
        self.neigh.sort_by_key(|n| n.ip);
        if let Some(w) = self.neigh.windows(2).find(|w| w[0].ip == w[1].ip) {
            return Err(BuildError::DuplicateNeigh(w[0].ip));
        }
        self.fdb.sort_by_key(|f| f.mac);
        if let Some(w) = self.fdb.windows(2).find(|w| w[0].mac == w[1].mac) {
            return Err(BuildError::DuplicateFdb(w[0].mac));
        }
        self.peers.sort_unstable();
        self.peers.dedup();
        let mut hops = Vec::with_capacity(self.routes.len());
        for r in &self.routes {
            let hop = match r.via {
                Via::Endpoint(id) => {
                    if id.index() >= self.endpoints.len() {
                        return Err(BuildError::NoSuchEndpoint(r.dst, id.0));
                    }
                    Hop::Endpoint(id)
                }
                Via::Blackhole => Hop::Blackhole,
                Via::Ipip { gw } => Hop::Ipip { node: gw },
                Via::Direct { gw } => Hop::Direct { gw },
                Via::Vxlan { gw } => self.resolve_vxlan(gw),
                Via::VxlanLink => self.resolve_vxlan(r.dst.ip()),
            };
            hops.push((r.dst, hop));
        }
        // The node's own addresses, unless a route of their own says
        // otherwise (a workload holding one).
        if let Some(h) = self.host {
            for ip in &self.endpoints[h.index()].ips {
                let dst = Ipv4Network::from(*ip);
                if self
                    .routes
                    .binary_search_by_key(&(u32::from(*ip), 32), |r| {
                        (u32::from(r.dst.network()), r.dst.prefix())
                    })
                    .is_err()
                {
                    hops.push((dst, Hop::Host));
                }
            }
        }
        self.pools.sort_by_key(|p| u32::from(p.cidr.network()));
        let lpm = Lpm::build(hops);
        Ok(Tables {
            local: self.local,
            vxlan: self.vxlan,
            mtu: self.mtu,
            underlay: self.underlay,
            routes: self.routes,
            lpm,
            neigh: self.neigh,
            fdb: self.fdb,
            peers: self.peers,
            endpoints: self.endpoints,
            next_hops: NextHops::default(),
            host: self.host,
            pools: self.pools,
            flows: Arc::new(NatFlows::new(if self.host.is_some() {
                DEFAULT_SLOTS
            } else {
                1
            })),
        })
    }

    /// Gateway → MAC (neighbour table) → node IP (FDB), as the kernel does.
    fn resolve_vxlan(&self, gw: Ipv4Addr) -> Hop {
        let Ok(n) = self.neigh.binary_search_by_key(&gw, |n| n.ip) else {
            return Hop::VxlanNoNeighbour;
        };
        let mac = self.neigh[n].mac;
        match self.fdb.binary_search_by_key(&mac, |f| f.mac) {
            Ok(f) => Hop::Vxlan {
                node: self.fdb[f].dst,
                mac,
            },
            Err(_) => Hop::VxlanNoFdb,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SPEC §2: for node `k8s-node1` the VTEP MAC is 66:8c:73:5a:90:99.
    /// (SHA-1("k8s-node1") starts 8c 73 5a 90 99, checked with `sha1sum`.)
    #[test]
    fn vtep_mac_rule_matches_spec_example() {
        assert_eq!(vtep_mac_for("k8s-node1").to_string(), "66:8c:73:5a:90:99");
    }

    fn local() -> LocalNode {
        LocalNode {
            name: "n1".into(),
            ip: Ipv4Addr::new(192, 168, 33, 55),
            subnet: "192.168.33.0/24".parse().unwrap(),
            vtep_mac: vtep_mac_for("n1"),
        }
    }

    fn underlay() -> Underlay {
        Underlay {
            name: "eth0".into(),
            mtu: 1500,
        }
    }

    #[test]
    fn builder_resolves_vxlan_and_reports_gaps() {
        let mac: MacAddr = "66:90:43:3d:b3:e7".parse().unwrap();
        let mut b = TablesBuilder::new(local(), underlay());
        b.route(
            "10.2.169.128/26".parse().unwrap(),
            Via::Vxlan {
                gw: [10, 2, 169, 137].into(),
            },
        )
        .route(
            "10.2.1.0/26".parse().unwrap(),
            Via::Vxlan {
                gw: [10, 2, 1, 1].into(),
            },
        )
        .route(
            "10.2.2.0/26".parse().unwrap(),
            Via::Vxlan {
                gw: [10, 2, 2, 1].into(),
            },
        )
        .neigh([10, 2, 169, 137].into(), mac)
        .fdb(mac, [192, 168, 33, 57].into())
        .neigh([10, 2, 2, 1].into(), "66:00:00:00:00:01".parse().unwrap());
        let t = b.build().unwrap();
        assert_eq!(
            t.lookup(u32::from_be_bytes([10, 2, 169, 130])),
            Some(Hop::Vxlan {
                node: [192, 168, 33, 57].into(),
                mac
            })
        );
        assert_eq!(
            t.lookup(u32::from_be_bytes([10, 2, 1, 9])),
            Some(Hop::VxlanNoNeighbour)
        );
        assert_eq!(
            t.lookup(u32::from_be_bytes([10, 2, 2, 9])),
            Some(Hop::VxlanNoFdb)
        );
        assert_eq!(t.lookup(u32::from_be_bytes([10, 3, 0, 0])), None);
    }

    #[test]
    fn builder_rejects_duplicates_and_bad_endpoint() {
        let mut b = TablesBuilder::new(local(), underlay());
        b.route("10.0.0.0/26".parse().unwrap(), Via::Blackhole)
            .route("10.0.0.0/26".parse().unwrap(), Via::Blackhole);
        assert_eq!(
            b.build().unwrap_err(),
            BuildError::DuplicateRoute("10.0.0.0/26".parse().unwrap())
        );
        let mut b = TablesBuilder::new(local(), underlay());
        b.route("10.0.0.1/32".parse().unwrap(), Via::Endpoint(EndpointId(0)));
        assert!(matches!(b.build(), Err(BuildError::NoSuchEndpoint(..))));
    }

    #[test]
    fn lines_in_iproute2_format() {
        let mac: MacAddr = "66:90:43:3d:b3:e7".parse().unwrap();
        let mut b = TablesBuilder::new(local(), underlay());
        let ep = b.endpoint(Endpoint {
            interface: "calif5eaaa317d1".into(),
            name: "wep".into(),
            ips: vec![[10, 2, 36, 68].into()],
            mtu: 1450,
        });
        b.route("10.2.36.68/32".parse().unwrap(), Via::Endpoint(ep))
            .route("10.2.36.64/26".parse().unwrap(), Via::Blackhole)
            .route(
                "10.2.235.192/26".parse().unwrap(),
                Via::Ipip {
                    gw: [192, 168, 33, 53].into(),
                },
            )
            .route(
                "10.2.169.128/26".parse().unwrap(),
                Via::Vxlan {
                    gw: [10, 2, 169, 137].into(),
                },
            )
            .route(
                "10.2.9.0/26".parse().unwrap(),
                Via::Direct {
                    gw: [192, 168, 33, 60].into(),
                },
            )
            .neigh([10, 2, 169, 137].into(), mac)
            .fdb(mac, [192, 168, 33, 57].into());
        let t = b.build().unwrap();
        assert_eq!(
            t.report(),
            "# routes\n\
             10.2.9.0/26 via 192.168.33.60 dev eth0 onlink\n\
             blackhole 10.2.36.64/26\n\
             10.2.36.68 dev calif5eaaa317d1 scope link\n\
             10.2.169.128/26 via 10.2.169.137 dev vxlan.calico onlink\n\
             10.2.235.192/26 via 192.168.33.53 dev tunl0 onlink\n\
             # neigh\n\
             10.2.169.137 dev vxlan.calico lladdr 66:90:43:3d:b3:e7 PERMANENT\n\
             # fdb\n\
             66:90:43:3d:b3:e7 dev vxlan.calico dst 192.168.33.57 self permanent\n"
        );
    }
}
