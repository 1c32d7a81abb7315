//! Calico resources: the configuration podwire reads (SPEC §1).
//!
//! The input is a multi-document YAML stream in the shape `calicoctl get … -o
//! yaml` and `kubectl get … -o yaml` print: single resources, or `List` /
//! `<Kind>List` documents whose `items` are resources. [`parse`] turns it into
//! validated [`Resources`]; every rejection is a [`ConfigError`] that names the
//! document (and list item), the kind, the resource name, the field and the
//! reason. A file that fails validation yields no resources at all, so a bad
//! configuration never starts a half-configured dataplane.
//!
//! [`Resources`] says nothing about where it came from; the table compiler
//! (`crate::table::compile`) consumes it whatever the source (a file today, a
//! datastore watch later).

pub mod cluster;
mod parse;
mod source;
mod validate;

use std::fmt;
use std::net::Ipv4Addr;

use ipnetwork::Ipv4Network;

use crate::wire::MacAddr;

pub use parse::parse_documents;
pub use source::{ConfigSource, FileSource, Notify, SourceError, SourceState, SourceStatus};
pub use validate::validate;

/// Where a resource stood in the input: 1-based document index, and the
/// 1-based item index when the document was a `List`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Loc {
    pub doc: usize,
    pub item: Option<usize>,
}

impl fmt::Display for Loc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.item {
            Some(item) => write!(f, "document {} item {}", self.doc, item),
            None => write!(f, "document {}", self.doc),
        }
    }
}

/// The kinds of resource podwire reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    IpPool,
    Node,
    IpamBlock,
    WorkloadEndpoint,
    FelixConfiguration,
}

impl Kind {
    /// Every kind, in the order they are listed in messages.
    pub const ALL: [Kind; 5] = [
        Kind::IpPool,
        Kind::Node,
        Kind::IpamBlock,
        Kind::WorkloadEndpoint,
        Kind::FelixConfiguration,
    ];

    /// The `kind:` string of the resource.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::IpPool => "IPPool",
            Kind::Node => "Node",
            Kind::IpamBlock => "IPAMBlock",
            Kind::WorkloadEndpoint => "WorkloadEndpoint",
            Kind::FelixConfiguration => "FelixConfiguration",
        }
    }

    /// The kind for a `kind:` string.
    pub fn from_name(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A rejected configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// The YAML itself could not be read.
    #[error("{at}: invalid YAML: {message}")]
    Yaml { at: Loc, message: String },
    /// A document that is not a resource podwire knows.
    #[error("{at}: {message}")]
    Document { at: Loc, message: String },
    /// A resource field with a bad value, or a conflict between resources.
    #[error("{at} ({kind} {name}): {field}: {reason}")]
    Field {
        at: Loc,
        kind: Kind,
        /// The resource name, quoted, or `<unnamed>`.
        name: String,
        /// The path of the field, like `spec.cidr` or `spec.ipNetworks[1]`.
        field: String,
        reason: String,
    },
}

impl ConfigError {
    /// Where the resource the error is about stood.
    pub fn at(&self) -> Loc {
        match self {
            ConfigError::Yaml { at, .. }
            | ConfigError::Document { at, .. }
            | ConfigError::Field { at, .. } => *at,
        }
    }

    /// An error about a field of one resource.
    pub fn field(
        at: Loc,
        kind: Kind,
        name: Option<&str>,
        field: impl Into<String>,
        reason: impl Into<String>,
    ) -> Self {
        ConfigError::Field {
            at,
            kind,
            name: match name {
                Some(n) => format!("{n:?}"),
                None => "<unnamed>".to_string(),
            },
            field: field.into(),
            reason: reason.into(),
        }
    }
}

/// An encapsulation mode of an IP pool (`ipipMode`, `vxlanMode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EncapMode {
    #[default]
    Never,
    Always,
    CrossSubnet,
}

impl EncapMode {
    /// True unless `Never`.
    pub fn enabled(self) -> bool {
        self != EncapMode::Never
    }

    /// Whether traffic to a node is encapsulated: always, or only when the
    /// node is outside the local node's subnet.
    pub fn encapsulates(self, same_subnet: bool) -> bool {
        match self {
            EncapMode::Never => false,
            EncapMode::Always => true,
            EncapMode::CrossSubnet => !same_subnet,
        }
    }
}

/// An `IPPool`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpPool {
    pub at: Loc,
    pub name: String,
    pub cidr: Ipv4Network,
    pub block_size: u8,
    pub ipip_mode: EncapMode,
    pub vxlan_mode: EncapMode,
    pub nat_outgoing: bool,
    pub disabled: bool,
}

/// A `Node`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub at: Loc,
    pub name: String,
    /// `spec.bgp.ipv4Address`: the node IP with its subnet's prefix length.
    pub ipv4: Option<Ipv4Network>,
    /// `spec.ipv4VXLANTunnelAddr`.
    pub vxlan_tunnel_addr: Option<Ipv4Addr>,
    /// `spec.bgp.ipv4IPIPTunnelAddr`: the address of the node's `tunl0`
    /// (podwire gives it to the host interface).
    pub ipip_tunnel_addr: Option<Ipv4Addr>,
    /// `spec.vxlanTunnelMACAddr`.
    pub vxlan_tunnel_mac: Option<MacAddr>,
}

impl Node {
    /// The node IP, without the prefix length.
    pub fn ip(&self) -> Option<Ipv4Addr> {
        self.ipv4.map(|n| n.ip())
    }

    /// The node's VTEP MAC: `spec.vxlanTunnelMACAddr`, else Felix's rule.
    pub fn vtep_mac(&self) -> MacAddr {
        self.vxlan_tunnel_mac
            .unwrap_or_else(|| vtep_mac_for(&self.name))
    }
}

/// An `IPAMBlock` that is not deleted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpamBlock {
    pub at: Loc,
    pub name: String,
    pub cidr: Ipv4Network,
    /// The node named by `spec.affinity: host:<node>`; `None` for a block
    /// with no host affinity.
    pub node: Option<String>,
    /// Addresses of this block allocated to a pod on another node than the
    /// block's (borrowed IPs), with that node: from `spec.allocations` and
    /// the `secondary.node` of their `spec.attributes`, as libcalico-go's
    /// `AllocationBlock.NonAffineAllocations` reads them
    /// (`libcalico-go/lib/backend/model/block.go`).
    pub borrowed: Vec<(Ipv4Addr, String)>,
}

/// A `WorkloadEndpoint`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkloadEndpoint {
    pub at: Loc,
    pub name: String,
    pub namespace: Option<String>,
    pub node: String,
    pub interface_name: String,
    pub ips: Vec<Ipv4Addr>,
}

/// A `FelixConfiguration` (only the fields podwire uses).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FelixConfiguration {
    pub at: Loc,
    pub name: String,
    pub vxlan_vni: Option<u32>,
    pub vxlan_port: Option<u16>,
    /// `None` when absent or 0 (derive from the underlay MTU).
    pub vxlan_mtu: Option<u16>,
    /// `None` when absent or 0 (derive from the underlay MTU).
    pub ipip_mtu: Option<u16>,
}

/// Felix's settings for one node: `default`, overridden by `node.<name>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FelixSettings {
    pub vxlan_vni: u32,
    pub vxlan_port: u16,
    pub vxlan_mtu: Option<u16>,
    pub ipip_mtu: Option<u16>,
}

/// Calico's default VXLAN VNI.
pub const DEFAULT_VXLAN_VNI: u32 = 4096;
/// Calico's default VXLAN UDP port (the IANA port).
pub const DEFAULT_VXLAN_PORT: u16 = 4789;
/// Calico's default IPv4 block size.
pub const DEFAULT_BLOCK_SIZE: u8 = 26;

/// A validated set of Calico resources.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Resources {
    pub pools: Vec<IpPool>,
    pub nodes: Vec<Node>,
    pub blocks: Vec<IpamBlock>,
    pub endpoints: Vec<WorkloadEndpoint>,
    pub felix: Vec<FelixConfiguration>,
}

impl Resources {
    /// Adds `other`'s resources, as if they stood in document `doc` (a
    /// datastore source assembles its snapshot from one parsed value per
    /// key, and names the key of a document an error is about).
    pub fn append(&mut self, other: &Resources, doc: usize) {
        let at = |mut l: Loc| {
            l.doc = doc;
            l
        };
        self.pools.extend(other.pools.iter().map(|r| IpPool {
            at: at(r.at),
            ..r.clone()
        }));
        self.nodes.extend(other.nodes.iter().map(|r| Node {
            at: at(r.at),
            ..r.clone()
        }));
        self.blocks.extend(other.blocks.iter().map(|r| IpamBlock {
            at: at(r.at),
            ..r.clone()
        }));
        self.endpoints
            .extend(other.endpoints.iter().map(|r| WorkloadEndpoint {
                at: at(r.at),
                ..r.clone()
            }));
        self.felix
            .extend(other.felix.iter().map(|r| FelixConfiguration {
                at: at(r.at),
                ..r.clone()
            }));
    }

    /// How many resources there are.
    pub fn len(&self) -> usize {
        self.pools.len()
            + self.nodes.len()
            + self.blocks.len()
            + self.endpoints.len()
            + self.felix.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The node named `name`.
    pub fn node(&self, name: &str) -> Option<&Node> {
        self.nodes.iter().find(|n| n.name == name)
    }

    /// The pool that contains `net`.
    pub fn pool_of(&self, net: Ipv4Network) -> Option<&IpPool> {
        self.pools
            .iter()
            .find(|p| p.cidr.contains(net.network()) && p.cidr.prefix() <= net.prefix())
    }

    /// Felix's settings as they apply to node `node`.
    pub fn felix_settings(&self, node: &str) -> FelixSettings {
        let mut s = FelixSettings {
            vxlan_vni: DEFAULT_VXLAN_VNI,
            vxlan_port: DEFAULT_VXLAN_PORT,
            vxlan_mtu: None,
            ipip_mtu: None,
        };
        let node_name = format!("node.{node}");
        let layers = ["default", node_name.as_str()];
        for layer in layers {
            if let Some(fc) = self.felix.iter().find(|f| f.name == layer) {
                s.vxlan_vni = fc.vxlan_vni.unwrap_or(s.vxlan_vni);
                s.vxlan_port = fc.vxlan_port.unwrap_or(s.vxlan_port);
                s.vxlan_mtu = fc.vxlan_mtu.or(s.vxlan_mtu);
                s.ipip_mtu = fc.ipip_mtu.or(s.ipip_mtu);
            }
        }
        s
    }
}

/// Parses and validates a configuration file's text.
pub fn parse(text: &str) -> Result<Resources, ConfigError> {
    let resources = parse_documents(text)?;
    validate::validate(&resources)?;
    Ok(resources)
}

/// Reads, parses and validates a configuration file.
pub fn load(path: &std::path::Path) -> Result<Resources, LoadError> {
    let text = std::fs::read_to_string(path).map_err(|source| LoadError::Read {
        path: path.display().to_string(),
        source,
    })?;
    parse(&text).map_err(|source| LoadError::Invalid {
        path: path.display().to_string(),
        source: Box::new(source),
    })
}

/// A configuration file that could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    /// The file was read but is not a valid configuration.
    #[error("{path}: {source}")]
    Invalid {
        path: String,
        source: Box<ConfigError>,
    },
}

#[cfg(test)]
mod tests;

/// The name Calico gives the WorkloadEndpoint of Kubernetes pod `pod` on
/// `node` for interface `endpoint` (usually `eth0`):
/// `<node>-k8s-<pod>-<endpoint>` with every `-` inside a part doubled
/// (libcalico-go's `names/workloadendpoint.go`).
pub fn workload_endpoint_name(node: &str, pod: &str, endpoint: &str) -> String {
    let escape = |part: &str| part.replace('-', "--");
    format!("{}-k8s-{}-{}", escape(node), escape(pod), escape(endpoint))
}

/// Felix's VTEP MAC rule: `0x66` (ASCII 'f') then the first five bytes of the
/// SHA-1 of the node name.
pub fn vtep_mac_for(node_name: &str) -> MacAddr {
    use sha1::{Digest, Sha1};
    let digest = Sha1::digest(node_name.as_bytes());
    MacAddr([0x66, digest[0], digest[1], digest[2], digest[3], digest[4]])
}
