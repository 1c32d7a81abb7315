//! Calico clusters written by code: the one fixture that the lab, the
//! integration tests, the benches and the fuzz targets build their
//! configuration files with, instead of each writing YAML by hand.
//!
//! [`ClusterBuilder`] collects resources in the order they are added and
//! renders them as the multi-document YAML stream [`parse`](super::parse)
//! reads, in block style, one document per resource:
//!
//! ```
//! use podwire::config::EncapMode;
//! use podwire::config::cluster::{ClusterBuilder, Endpoint, Pool};
//!
//! let yaml = ClusterBuilder::new()
//!     .with(Pool::new("pool", "10.2.0.0/16").vxlan(EncapMode::Always))
//!     .calico_node("k8s-node1", "192.168.33.55/24", "10.2.36.64/26")
//!     .calico_node("k8s-node2", "192.168.33.57/24", "10.2.169.128/26")
//!     .with(Endpoint::new("k8s-node1", "cali1a", "10.2.36.68"))
//!     .yaml();
//! let r = podwire::config::parse(&yaml).unwrap();
//! assert_eq!(r.nodes[1].vxlan_tunnel_addr, Some("10.2.169.129".parse().unwrap()));
//! assert_eq!(r.blocks[0].node.as_deref(), Some("k8s-node1"));
//! ```
//!
//! Values are written as given (strings), so that a test can also write a
//! configuration podwire must reject.

use std::fmt::Write as _;

use ipnetwork::Ipv4Network;

use super::EncapMode;

/// Builder methods that set an optional field of the same name:
/// `/// doc`, then `name: Type;`, for each.
macro_rules! set {
    ($($(#[$doc:meta])* $name:ident: $t:ty;)*) => {$(
        $(#[$doc])*
        pub fn $name(mut self, value: $t) -> Self {
            self.$name = Some(value.into());
            self
        }
    )*};
}

/// An `IPPool`; fields left unset are not written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pool {
    name: String,
    cidr: String,
    block_size: Option<u8>,
    ipip: Option<EncapMode>,
    vxlan: Option<EncapMode>,
    nat_outgoing: Option<bool>,
    disabled: Option<bool>,
}

impl Pool {
    /// Pool `name` over `cidr` (like `10.2.0.0/16`).
    pub fn new(name: &str, cidr: &str) -> Pool {
        Pool {
            name: name.into(),
            cidr: cidr.into(),
            block_size: None,
            ipip: None,
            vxlan: None,
            nat_outgoing: None,
            disabled: None,
        }
    }

    set! {
        /// `spec.blockSize`.
        block_size: u8;
        /// `spec.ipipMode`.
        ipip: EncapMode;
        /// `spec.vxlanMode`.
        vxlan: EncapMode;
        /// `spec.natOutgoing`.
        nat_outgoing: bool;
        /// `spec.disabled`.
        disabled: bool;
    }

    /// Both modes for one of podwire's ways to reach another node: `ipip`
    /// (ipipMode Always, vxlanMode Never), `vxlan` (the other way round) or
    /// `direct` (both Never).
    ///
    /// # Panics
    ///
    /// On any other name.
    pub fn overlay(self, mode: &str) -> Pool {
        use EncapMode::{Always, Never};
        let (ipip, vxlan) = match mode {
            "ipip" => (Always, Never),
            "vxlan" => (Never, Always),
            "direct" => (Never, Never),
            other => panic!("no such overlay {other:?} (ipip, vxlan or direct)"),
        };
        self.ipip(ipip).vxlan(vxlan)
    }
}

/// A `Node`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    name: String,
    ipv4: Option<String>,
    vxlan_tunnel: Option<String>,
    vxlan_mac: Option<String>,
}

impl Node {
    /// Node `name` whose `spec.bgp.ipv4Address` is `ipv4` (with the
    /// subnet's prefix length, like `192.168.33.55/24`).
    pub fn new(name: &str, ipv4: &str) -> Node {
        Node {
            name: name.into(),
            ipv4: Some(ipv4.into()),
            vxlan_tunnel: None,
            vxlan_mac: None,
        }
    }

    /// Node `name` with nothing in its spec yet (no address).
    pub fn bare(name: &str) -> Node {
        Node {
            name: name.into(),
            ipv4: None,
            vxlan_tunnel: None,
            vxlan_mac: None,
        }
    }

    set! {
        /// `spec.ipv4VXLANTunnelAddr`.
        vxlan_tunnel: &str;
        /// `spec.vxlanTunnelMACAddr`.
        vxlan_mac: &str;
    }
}

/// An `IPAMBlock`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    name: String,
    cidr: String,
    affinity: Option<String>,
}

impl Block {
    /// Block `cidr`, named as Calico names blocks (`10-2-36-64-26`), with
    /// no affinity.
    pub fn new(cidr: &str) -> Block {
        Block {
            name: cidr.replace(['.', '/'], "-"),
            cidr: cidr.into(),
            affinity: None,
        }
    }

    /// `spec.affinity: host:<node>`.
    pub fn host(mut self, node: &str) -> Block {
        self.affinity = Some(format!("host:{node}"));
        self
    }

    /// Another `metadata.name`.
    pub fn named(mut self, name: &str) -> Block {
        self.name = name.into();
        self
    }
}

/// A `WorkloadEndpoint`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    name: String,
    namespace: Option<String>,
    node: String,
    interface: String,
    ips: Vec<String>,
}

impl Endpoint {
    /// The endpoint of device `interface` on `node` with address `ip` (a
    /// bare address is written as a /32), in Kubernetes namespace
    /// `default`, named as Calico names the `eth0` of a pod called after
    /// the interface.
    pub fn new(node: &str, interface: &str, ip: &str) -> Endpoint {
        Endpoint {
            name: super::workload_endpoint_name(node, interface, "eth0"),
            namespace: Some("default".into()),
            node: node.into(),
            interface: interface.into(),
            ips: Vec::new(),
        }
        .ip(ip)
    }

    /// One more address.
    pub fn ip(mut self, ip: &str) -> Endpoint {
        self.ips.push(if ip.contains('/') {
            ip.into()
        } else {
            format!("{ip}/32")
        });
        self
    }

    /// Another `metadata.name`.
    pub fn named(mut self, name: &str) -> Endpoint {
        self.name = name.into();
        self
    }

    /// Another `metadata.namespace`, or none.
    pub fn namespace(mut self, namespace: Option<&str>) -> Endpoint {
        self.namespace = namespace.map(str::to_string);
        self
    }

    /// The device's name.
    pub fn interface(&self) -> &str {
        &self.interface
    }
}

/// A `FelixConfiguration` (the fields podwire reads).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Felix {
    name: String,
    vni: Option<u32>,
    port: Option<u16>,
    vxlan_mtu: Option<u16>,
    ipip_mtu: Option<u16>,
}

impl Felix {
    /// `default`, or `node.<name>` for one node.
    pub fn new(name: &str) -> Felix {
        Felix {
            name: name.into(),
            ..Felix::default()
        }
    }

    set! {
        /// `spec.vxlanVNI`.
        vni: u32;
        /// `spec.vxlanPort`.
        port: u16;
        /// `spec.vxlanMTU`.
        vxlan_mtu: u16;
        /// `spec.ipipMTU`.
        ipip_mtu: u16;
    }
}

/// One resource of a cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resource {
    Pool(Pool),
    Node(Node),
    Block(Block),
    Endpoint(Endpoint),
    Felix(Felix),
}

macro_rules! resources {
    ($($kind:ident),*) => {$(
        impl From<$kind> for Resource {
            fn from(r: $kind) -> Resource {
                Resource::$kind(r)
            }
        }
    )*};
}

resources!(Pool, Node, Block, Endpoint, Felix);

/// A cluster's resources, in the order added.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterBuilder {
    comment: Option<String>,
    docs: Vec<Resource>,
}

impl ClusterBuilder {
    /// No resources.
    pub fn new() -> ClusterBuilder {
        ClusterBuilder::default()
    }

    set! {
        /// A comment line on top of the file.
        comment: &str;
    }

    /// One more resource (a [`Pool`], [`Node`], [`Block`], [`Endpoint`]
    /// or [`Felix`]), after the others.
    pub fn with(mut self, resource: impl Into<Resource>) -> ClusterBuilder {
        self.docs.push(resource.into());
        self
    }

    /// A node as Calico sets one up for VXLAN: `name` at `ipv4` (with its
    /// prefix length), `block` affine to it, and the block's first address
    /// as the node's VXLAN tunnel address.
    ///
    /// # Panics
    ///
    /// If `block` is not an IPv4 CIDR.
    pub fn calico_node(self, name: &str, ipv4: &str, block: &str) -> ClusterBuilder {
        let net: Ipv4Network = block
            .parse()
            .unwrap_or_else(|e| panic!("block {block:?}: {e}"));
        let tunnel = std::net::Ipv4Addr::from(u32::from(net.network()) + 1).to_string();
        self.with(Node::new(name, ipv4).vxlan_tunnel(&tunnel))
            .with(Block::new(block).host(name))
    }

    /// The same without the endpoint whose device is `interface`.
    pub fn without_endpoint(mut self, interface: &str) -> ClusterBuilder {
        self.docs
            .retain(|d| !matches!(d, Resource::Endpoint(e) if e.interface == interface));
        self
    }

    /// The endpoints, in order.
    pub fn endpoints(&self) -> impl Iterator<Item = &Endpoint> {
        self.docs.iter().filter_map(|d| match d {
            Resource::Endpoint(e) => Some(e),
            _ => None,
        })
    }

    /// The configuration file.
    pub fn yaml(&self) -> String {
        let mut y = String::new();
        if let Some(c) = &self.comment {
            let _ = writeln!(y, "# {c}");
        }
        for (i, d) in self.docs.iter().enumerate() {
            if i > 0 {
                y.push_str("---\n");
            }
            render(&mut y, d);
        }
        y
    }

    /// The resources, parsed and validated as podwire reads them.
    pub fn resources(&self) -> Result<super::Resources, super::ConfigError> {
        super::parse(&self.yaml())
    }
}

fn mode_name(m: EncapMode) -> &'static str {
    match m {
        EncapMode::Never => "Never",
        EncapMode::Always => "Always",
        EncapMode::CrossSubnet => "CrossSubnet",
    }
}

/// `apiVersion`, `kind` and `metadata` of one document.
fn head(y: &mut String, api: &str, kind: &str, name: &str, namespace: Option<&str>) {
    let _ = write!(
        y,
        "apiVersion: {api}\nkind: {kind}\nmetadata:\n  name: {name}\n"
    );
    if let Some(ns) = namespace {
        let _ = writeln!(y, "  namespace: {ns}");
    }
    y.push_str("spec:\n");
}

/// `  key: value` for each field that is set.
fn fields(y: &mut String, fields: &[(&str, Option<String>)]) {
    for (key, value) in fields {
        if let Some(v) = value {
            let _ = writeln!(y, "  {key}: {v}");
        }
    }
}

const V3: &str = "projectcalico.org/v3";

fn render(y: &mut String, d: &Resource) {
    match d {
        Resource::Pool(p) => {
            head(y, V3, "IPPool", &p.name, None);
            fields(
                y,
                &[
                    ("cidr", Some(p.cidr.clone())),
                    ("blockSize", p.block_size.map(|b| b.to_string())),
                    ("ipipMode", p.ipip.map(|m| mode_name(m).into())),
                    ("vxlanMode", p.vxlan.map(|m| mode_name(m).into())),
                    ("natOutgoing", p.nat_outgoing.map(|b| b.to_string())),
                    ("disabled", p.disabled.map(|b| b.to_string())),
                ],
            );
        }
        Resource::Node(n)
            if n.ipv4.is_none() && n.vxlan_tunnel.is_none() && n.vxlan_mac.is_none() =>
        {
            head(y, V3, "Node", &n.name, None);
            // An empty spec, not a null one.
            y.truncate(y.len() - 1);
            y.push_str(" {}\n");
        }
        Resource::Node(n) => {
            head(y, V3, "Node", &n.name, None);
            if let Some(ip) = &n.ipv4 {
                let _ = writeln!(y, "  bgp:\n    ipv4Address: {ip}");
            }
            fields(
                y,
                &[
                    ("ipv4VXLANTunnelAddr", n.vxlan_tunnel.clone()),
                    ("vxlanTunnelMACAddr", n.vxlan_mac.clone()),
                ],
            );
        }
        Resource::Block(b) => {
            head(y, "crd.projectcalico.org/v1", "IPAMBlock", &b.name, None);
            fields(
                y,
                &[
                    ("cidr", Some(b.cidr.clone())),
                    ("affinity", b.affinity.clone()),
                ],
            );
        }
        Resource::Endpoint(e) => {
            head(y, V3, "WorkloadEndpoint", &e.name, e.namespace.as_deref());
            fields(
                y,
                &[
                    ("node", Some(e.node.clone())),
                    ("interfaceName", Some(e.interface.clone())),
                ],
            );
            y.push_str("  ipNetworks:\n");
            for ip in &e.ips {
                let _ = writeln!(y, "  - {ip}");
            }
        }
        Resource::Felix(f) => {
            head(y, V3, "FelixConfiguration", &f.name, None);
            fields(
                y,
                &[
                    ("vxlanVNI", f.vni.map(|v| v.to_string())),
                    ("vxlanPort", f.port.map(|v| v.to_string())),
                    ("vxlanMTU", f.vxlan_mtu.map(|v| v.to_string())),
                    ("ipipMTU", f.ipip_mtu.map(|v| v.to_string())),
                ],
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Loc, Resources, parse};

    /// The resources without where they stood in the file.
    fn placeless(mut r: Resources) -> Resources {
        let none = Loc::default();
        r.pools.iter_mut().for_each(|x| x.at = none);
        r.nodes.iter_mut().for_each(|x| x.at = none);
        r.blocks.iter_mut().for_each(|x| x.at = none);
        r.endpoints.iter_mut().for_each(|x| x.at = none);
        r.felix.iter_mut().for_each(|x| x.at = none);
        r
    }

    /// The shipped examples' three nodes, blocks and workloads, in `mode`.
    fn example(mode: &str) -> ClusterBuilder {
        let vxlan = mode == "vxlan";
        let tunnel = |n: Node, addr: &str, mac: Option<&str>| {
            let n = if vxlan { n.vxlan_tunnel(addr) } else { n };
            match (vxlan, mac) {
                (true, Some(m)) => n.vxlan_mac(m),
                _ => n,
            }
        };
        let ep = |node: &str, iface: &str, ip: &str, name: &str, ns: &str| {
            Endpoint::new(node, iface, ip)
                .named(name)
                .namespace(Some(ns))
        };
        let mut c = ClusterBuilder::new()
            .with(
                Pool::new("default-ipv4-ippool", "10.2.0.0/16")
                    .block_size(26)
                    .overlay(mode)
                    .nat_outgoing(true),
            )
            .with(tunnel(
                Node::new("k8s-master", "192.168.33.53/24"),
                "10.2.235.192",
                Some("66:d5:cf:d3:6b:7e"),
            ))
            .with(tunnel(
                Node::new("k8s-node1", "192.168.33.55/24"),
                "10.2.36.65",
                None,
            ))
            .with(tunnel(
                Node::new("k8s-node2", "192.168.33.57/24"),
                "10.2.169.137",
                Some("66:90:43:3d:b3:e7"),
            ))
            .with(Block::new("10.2.235.192/26").host("k8s-master"))
            .with(Block::new("10.2.36.64/26").host("k8s-node1"))
            .with(Block::new("10.2.169.128/26").host("k8s-node2"))
            .with(ep(
                "k8s-master",
                "calia1b2c3d4e5f",
                "10.2.235.194",
                "k8s--master-k8s-coredns--5d78c9869d--x2x4k-eth0",
                "kube-system",
            ))
            .with(ep(
                "k8s-node1",
                "calif5eaaa317d1",
                "10.2.36.68",
                "k8s--node1-k8s-web--7c5b4d6f8--abcde-eth0",
                "default",
            ))
            .with(ep(
                "k8s-node1",
                "cali2b6e4f8a3c0",
                "10.2.36.69",
                "k8s--node1-k8s-db--6f9c8d7b5--fghij-eth0",
                "default",
            ))
            .with(ep(
                "k8s-node2",
                "cali7c1d2e3f4a5",
                "10.2.169.138",
                "k8s--node2-k8s-web--7c5b4d6f8--klmno-eth0",
                "default",
            ));
        if vxlan {
            c = c.with(Felix::new("default").port(4789).vni(4096));
        }
        c
    }

    #[test]
    fn the_builder_reproduces_the_examples() {
        for (mode, text) in [
            ("ipip", include_str!("../../../../examples/ipip.yaml")),
            ("vxlan", include_str!("../../../../examples/vxlan.yaml")),
            ("direct", include_str!("../../../../examples/direct.yaml")),
        ] {
            let built = example(mode).resources().unwrap();
            assert_eq!(placeless(built), placeless(parse(text).unwrap()), "{mode}");
        }
    }

    #[test]
    fn documents_in_block_style_in_the_order_added() {
        let c = ClusterBuilder::new()
            .comment("two nodes")
            .with(Pool::new("pool", "10.2.0.0/16").overlay("ipip"))
            .calico_node("k8s-node1", "192.168.33.55/24", "10.2.36.64/26")
            .with(Endpoint::new("k8s-node1", "cali1a", "10.2.36.68").ip("10.2.36.70"))
            .with(Felix::new("default").vxlan_mtu(1400).ipip_mtu(1440));
        assert_eq!(
            c.yaml(),
            "# two nodes\n\
             apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata:\n  name: pool\nspec:\n  cidr: 10.2.0.0/16\n  ipipMode: Always\n  vxlanMode: Never\n\
             ---\napiVersion: projectcalico.org/v3\nkind: Node\nmetadata:\n  name: k8s-node1\nspec:\n  bgp:\n    ipv4Address: 192.168.33.55/24\n  ipv4VXLANTunnelAddr: 10.2.36.65\n\
             ---\napiVersion: crd.projectcalico.org/v1\nkind: IPAMBlock\nmetadata:\n  name: 10-2-36-64-26\nspec:\n  cidr: 10.2.36.64/26\n  affinity: host:k8s-node1\n\
             ---\napiVersion: projectcalico.org/v3\nkind: WorkloadEndpoint\nmetadata:\n  name: k8s--node1-k8s-cali1a-eth0\n  namespace: default\nspec:\n  node: k8s-node1\n  interfaceName: cali1a\n  ipNetworks:\n  - 10.2.36.68/32\n  - 10.2.36.70/32\n\
             ---\napiVersion: projectcalico.org/v3\nkind: FelixConfiguration\nmetadata:\n  name: default\nspec:\n  vxlanMTU: 1400\n  ipipMTU: 1440\n"
        );
        let r = c.resources().unwrap();
        assert_eq!(r.felix_settings("k8s-node1").ipip_mtu, Some(1440));
        assert_eq!(r.endpoints[0].ips.len(), 2);
        let c = c.without_endpoint("cali1a");
        assert_eq!(c.endpoints().count(), 0);
        assert!(c.resources().unwrap().endpoints.is_empty());
    }

    #[test]
    fn values_are_written_as_given() {
        let bad = ClusterBuilder::new()
            .with(Pool::new("x", "nonsense"))
            .yaml();
        let e = parse(&bad).unwrap_err().to_string();
        assert!(
            e.contains("spec.cidr: \"nonsense\" has no prefix length"),
            "{e}"
        );
    }
}
