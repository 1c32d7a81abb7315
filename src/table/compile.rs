//! Resources → tables, as Felix derives the kernel's state (SPEC §2).

use std::net::Ipv4Addr;

use super::{BuildError, Endpoint, LocalNode, Mtus, Tables, TablesBuilder, Via, VxlanParams};
use crate::config::{EncapMode, IpPool, Resources};

/// The underlay device: its name (for direct routes) and MTU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Underlay {
    pub name: String,
    pub mtu: u16,
}

/// Why a node's tables could not be compiled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CompileError {
    #[error("node {node:?} is not in the configuration (nodes: {known})")]
    UnknownNode { node: String, known: String },
    #[error("node {0:?} has no spec.bgp.ipv4Address: podwire needs the node IP")]
    NoAddress(String),
    #[error(
        "the {mode} MTU would be {mtu}, below the IPv4 minimum of 68 (underlay {underlay} has MTU {underlay_mtu})"
    )]
    MtuTooSmall {
        mode: &'static str,
        mtu: u16,
        underlay: String,
        underlay_mtu: u16,
    },
    #[error(transparent)]
    Build(#[from] BuildError),
}

/// How a pool reaches a remote node.
fn via_for(pool: &IpPool, same_subnet: bool, node_ip: Ipv4Addr, tunnel: Option<Ipv4Addr>) -> Via {
    if pool.vxlan_mode.encapsulates(same_subnet) {
        if let Some(gw) = tunnel {
            return Via::Vxlan { gw };
        }
    }
    if pool.ipip_mode.encapsulates(same_subnet) {
        return Via::Ipip { gw: node_ip };
    }
    Via::Direct { gw: node_ip }
}

/// The MTU of the mode a pool uses (CrossSubnet counts as encapsulated:
/// a pod cannot know which peer it will talk to).
fn pool_mtu(pool: Option<&IpPool>, mtu: Mtus) -> u16 {
    match pool {
        Some(p) if p.vxlan_mode != EncapMode::Never => mtu.vxlan,
        Some(p) if p.ipip_mode != EncapMode::Never => mtu.ipip,
        _ => mtu.direct,
    }
}

/// Compiles the tables of node `node`.
pub fn compile(r: &Resources, node: &str, underlay: &Underlay) -> Result<Tables, CompileError> {
    let Some(me) = r.node(node) else {
        let mut names: Vec<&str> = r.nodes.iter().map(|n| n.name.as_str()).collect();
        names.sort_unstable();
        return Err(CompileError::UnknownNode {
            node: node.to_string(),
            known: if names.is_empty() {
                "none".into()
            } else {
                names.join(", ")
            },
        });
    };
    let Some(subnet) = me.ipv4 else {
        return Err(CompileError::NoAddress(node.to_string()));
    };
    let felix = r.felix_settings(node);
    let derived = Mtus::from_underlay(underlay.mtu);
    let mtu = Mtus {
        ipip: felix.ipip_mtu.unwrap_or(derived.ipip),
        vxlan: felix.vxlan_mtu.unwrap_or(derived.vxlan),
        direct: underlay.mtu,
    };
    for (mode, value) in [
        ("IPIP", mtu.ipip),
        ("VXLAN", mtu.vxlan),
        ("direct", mtu.direct),
    ] {
        if value < 68 {
            return Err(CompileError::MtuTooSmall {
                mode,
                mtu: value,
                underlay: underlay.name.clone(),
                underlay_mtu: underlay.mtu,
            });
        }
    }
    let local = LocalNode {
        name: me.name.clone(),
        ip: subnet.ip(),
        subnet,
        vtep_mac: me.vtep_mac(),
    };
    let mut b = TablesBuilder::new(local, underlay.clone());
    b.vxlan(VxlanParams {
        vni: felix.vxlan_vni,
        port: felix.vxlan_port,
    })
    .mtus(mtu);

    // Local workloads: a /32 per address to the endpoint's device.
    for w in r.endpoints.iter().filter(|w| w.node == me.name) {
        let pool = w
            .ips
            .first()
            .and_then(|ip| r.pool_of(ipnetwork::Ipv4Network::from(*ip)));
        let id = b.endpoint(Endpoint {
            interface: w.interface_name.clone(),
            name: w.name.clone(),
            ips: w.ips.clone(),
            mtu: pool_mtu(pool, mtu),
        });
        for ip in &w.ips {
            b.route((*ip).into(), Via::Endpoint(id));
        }
    }

    // Blocks: local ones are blackholes, remote ones go by their pool's mode.
    for block in &r.blocks {
        let Some(owner) = &block.node else { continue };
        if *owner == me.name {
            b.route(block.cidr, Via::Blackhole);
            continue;
        }
        let (Some(pool), Some(peer)) = (r.pool_of(block.cidr), r.node(owner)) else {
            continue; // validation makes this unreachable
        };
        let Some(peer_ip) = peer.ip() else { continue };
        let same_subnet = subnet.contains(peer_ip);
        b.route(
            block.cidr,
            via_for(pool, same_subnet, peer_ip, peer.vxlan_tunnel_addr),
        );
    }

    // VTEPs of every other node, when any pool uses VXLAN (Felix programs
    // them for all nodes, whichever route ends up using them).
    let vxlan_used = r.pools.iter().any(|p| p.vxlan_mode.enabled());
    for peer in r.nodes.iter().filter(|n| n.name != me.name) {
        let Some(peer_ip) = peer.ip() else { continue };
        b.peer(peer_ip);
        if let (true, Some(tunnel)) = (vxlan_used, peer.vxlan_tunnel_addr) {
            let mac = peer.vtep_mac();
            b.neigh(tunnel, mac).fdb(mac, peer_ip);
        }
    }
    Ok(b.build()?)
}
