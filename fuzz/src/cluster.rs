//! The clusters the targets run on: the shipped examples, compiled for
//! every node, with the routes decoded from the resources themselves.

use std::net::Ipv4Addr;
use std::sync::LazyLock;

use podwire::config::{EncapMode, Resources};
use podwire::table::{self, Tables, Underlay};
use podwire::wire::MacAddr;

use crate::*;

/// The underlay every fixture is compiled for.
pub fn underlay() -> Underlay {
    Underlay {
        name: "eth0".into(),
        mtu: UNDERLAY_MTU,
    }
}

// ---------------------------------------------------------------------------
// Fixtures: the example clusters, compiled once per process.

/// One example cluster: its resources and the tables of each node.
pub struct Cluster {
    pub name: &'static str,
    pub resources: Resources,
    /// (node name, tables) for every node that has an address.
    pub tables: Vec<(String, Tables)>,
}

/// How a packet leaves a node, derived from the resources (SPEC §2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Vxlan,
    Ipip,
    Direct,
}

/// Where the SPEC says a destination goes from a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// A workload on this node.
    Endpoint,
    /// A block affine to this node, no workload at the address.
    Blackhole,
    /// Outside every block affine to a node.
    NoRoute,
    /// A block of another node, reached by `mode`.
    Remote { node: Ipv4Addr, mode: Mode },
}

fn encapsulates(mode: EncapMode, same_subnet: bool) -> bool {
    match mode {
        EncapMode::Never => false,
        EncapMode::Always => true,
        EncapMode::CrossSubnet => !same_subnet,
    }
}

impl Cluster {
    fn load(name: &'static str, yaml: &str) -> Cluster {
        let resources = podwire::config::parse(yaml)
            .unwrap_or_else(|e| panic!("examples/{name}.yaml does not parse: {e}"));
        let tables = resources
            .nodes
            .iter()
            .filter(|n| n.ip().is_some())
            .map(|n| {
                let t = table::compile(&resources, &n.name, &underlay()).unwrap_or_else(|e| {
                    panic!(
                        "examples/{name}.yaml: tables of {} do not compile: {e}",
                        n.name
                    )
                });
                (n.name.clone(), t)
            })
            .collect();
        let c = Cluster {
            name,
            resources,
            tables,
        };
        c.sanity();
        c
    }

    /// The fixture facts the checkers rely on, checked once.
    fn sanity(&self) {
        for (node, t) in &self.tables {
            assert_eq!(t.vxlan().vni, VNI, "{}: {node}", self.name);
            assert_eq!(t.vxlan().port, VXLAN_PORT, "{}: {node}", self.name);
            assert_eq!(Some(t.local().ip), self.node_ip(node));
            let m = t.mtu();
            assert_eq!(
                (m.ipip, m.vxlan, m.direct),
                (1480, 1450, 1500),
                "{}: {node}: MTUs",
                self.name
            );
            assert!(!t.endpoints().is_empty() || node != LOCAL_NODE);
        }
        if self.node_vtep_mac(LOCAL_NODE).0 != NODE1_VTEP_MAC {
            panic!("{}: VTEP MAC of {LOCAL_NODE} is not the SPEC's", self.name);
        }
    }

    /// The tables of node `node`.
    pub fn tables(&self, node: &str) -> &Tables {
        self.tables
            .iter()
            .find(|(n, _)| n == node)
            .map(|(_, t)| t)
            .unwrap_or_else(|| panic!("{}: no tables for node {node}", self.name))
    }

    /// The tables of [`LOCAL_NODE`].
    pub fn local(&self) -> &Tables {
        self.tables(LOCAL_NODE)
    }

    /// The name of the node whose IP is `ip` (via `Resources::nodes`).
    pub fn node_name_by_ip(&self, ip: Ipv4Addr) -> Option<&str> {
        self.resources
            .nodes
            .iter()
            .find(|n| n.ip() == Some(ip))
            .map(|n| n.name.as_str())
    }

    /// The IP of node `node`.
    pub fn node_ip(&self, node: &str) -> Option<Ipv4Addr> {
        self.resources.node(node)?.ip()
    }

    /// The VTEP MAC of node `node`.
    pub fn node_vtep_mac(&self, node: &str) -> MacAddr {
        self.resources
            .node(node)
            .unwrap_or_else(|| panic!("{}: no node {node}", self.name))
            .vtep_mac()
    }

    /// True when `src` is the IP of a node other than `node`.
    pub fn is_peer_of(&self, node: &str, src: Ipv4Addr) -> bool {
        self.resources
            .nodes
            .iter()
            .any(|n| n.name != node && n.ip() == Some(src))
    }

    /// True when `ip` is an address of a workload on `node`.
    pub fn is_workload_on(&self, node: &str, ip: Ipv4Addr) -> bool {
        self.resources
            .endpoints
            .iter()
            .any(|w| w.node == node && w.ips.contains(&ip))
    }

    /// Where `dst` goes from `node`, per SPEC §2, from the resources.
    pub fn route(&self, node: &str, dst: Ipv4Addr) -> Route {
        let r = &self.resources;
        if self.is_workload_on(node, dst) {
            return Route::Endpoint;
        }
        let Some(block) = r.blocks.iter().find(|b| b.cidr.contains(dst)) else {
            return Route::NoRoute;
        };
        let Some(owner) = &block.node else {
            return Route::NoRoute;
        };
        if owner == node {
            return Route::Blackhole;
        }
        let pool = r
            .pools
            .iter()
            .find(|p| p.cidr.contains(block.cidr.network()))
            .expect("validated: every block is in a pool");
        let me = r
            .node(node)
            .and_then(|n| n.ipv4)
            .expect("node with address");
        let peer = r.node(owner).expect("validated: block owner exists");
        let peer_ip = peer.ip().expect("validated: block owner has an address");
        let same_subnet = me.contains(peer_ip);
        let mode = if encapsulates(pool.vxlan_mode, same_subnet) && peer.vxlan_tunnel_addr.is_some()
        {
            Mode::Vxlan
        } else if encapsulates(pool.ipip_mode, same_subnet) {
            Mode::Ipip
        } else {
            Mode::Direct
        };
        Route::Remote {
            node: peer_ip,
            mode,
        }
    }

    /// Addresses worth sending to: every workload, one free address in
    /// every block, and one address outside every block.
    pub fn interesting_destinations(&self) -> Vec<Ipv4Addr> {
        let r = &self.resources;
        let mut v: Vec<Ipv4Addr> = r.endpoints.iter().flat_map(|w| w.ips.clone()).collect();
        for b in &r.blocks {
            let base = u32::from(b.cidr.network());
            let free = (1..b.cidr.size())
                .map(|i| Ipv4Addr::from(base + i))
                .find(|ip| !v.contains(ip));
            v.extend(free);
        }
        v.push(Ipv4Addr::new(8, 8, 8, 8));
        v
    }
}

pub static VXLAN: LazyLock<Cluster> =
    LazyLock::new(|| Cluster::load("vxlan", include_str!("../../examples/vxlan.yaml")));
pub static IPIP: LazyLock<Cluster> =
    LazyLock::new(|| Cluster::load("ipip", include_str!("../../examples/ipip.yaml")));
pub static DIRECT: LazyLock<Cluster> =
    LazyLock::new(|| Cluster::load("direct", include_str!("../../examples/direct.yaml")));
pub static CROSSSUBNET: LazyLock<Cluster> = LazyLock::new(|| {
    Cluster::load(
        "crosssubnet",
        include_str!("../../examples/crosssubnet.yaml"),
    )
});

/// The example clusters by index (modulo 4): vxlan, ipip, direct, crosssubnet.
pub fn cluster(i: u8) -> &'static Cluster {
    match i % 4 {
        0 => &VXLAN,
        1 => &IPIP,
        2 => &DIRECT,
        _ => &CROSSSUBNET,
    }
}

// ---------------------------------------------------------------------------
// Independent wire decoding.
