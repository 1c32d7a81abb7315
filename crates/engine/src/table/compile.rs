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
    // A /32 block that is a local workload's address is that workload's
    // route (a pool with blockSize 32).
    let local_ips: std::collections::HashSet<Ipv4Addr> = r
        .endpoints
        .iter()
        .filter(|w| w.node == me.name)
        .flat_map(|w| w.ips.iter().copied())
        .collect();
    for block in &r.blocks {
        let Some(owner) = &block.node else { continue };
        if *owner == me.name {
            if block.cidr.prefix() != 32 || !local_ips.contains(&block.cidr.ip()) {
                b.route(block.cidr, Via::Blackhole);
            }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::EncapMode::{Always, CrossSubnet, Never};
    use crate::config::cluster::{Block, ClusterBuilder, Endpoint, Felix, Node, Pool};
    use crate::table::Hop;

    fn eth0(mtu: u16) -> Underlay {
        Underlay {
            name: "eth0".into(),
            mtu,
        }
    }

    /// Pool `p` (10.2.0.0/16) with `modes`; n1 and n2 on 192.168.33.0/24,
    /// n3 in another subnet, n4 with nothing in its spec; blocks of n1–n3
    /// and one without affinity; a workload with two addresses on n1.
    fn cluster(modes: impl FnOnce(Pool) -> Pool, felix: Option<Felix>) -> Resources {
        let mut c = ClusterBuilder::new()
            .with(modes(Pool::new("p", "10.2.0.0/16")))
            .with(Node::new("n1", "192.168.33.55/24").vxlan_tunnel("10.2.1.1"))
            .with(Node::new("n2", "192.168.33.57/24").vxlan_tunnel("10.2.2.1"))
            .with(Node::new("n3", "192.168.34.53/24").vxlan_tunnel("10.2.3.1"))
            .with(Node::bare("n4"))
            .with(Block::new("10.2.1.0/26").host("n1").named("b1"))
            .with(Block::new("10.2.2.0/26").host("n2").named("b2"))
            .with(Block::new("10.2.3.0/26").host("n3").named("b3"))
            .with(Block::new("10.2.4.0/26").named("b4"))
            .with(
                Endpoint::new("n1", "cali1", "10.2.1.5")
                    .ip("10.2.1.6")
                    .named("w1")
                    .namespace(None),
            );
        if let Some(f) = felix {
            c = c.with(f);
        }
        c.resources().unwrap()
    }

    fn hop(t: &Tables, ip: [u8; 4]) -> Option<Hop> {
        t.lookup(u32::from_be_bytes(ip))
    }

    #[test]
    fn crosssubnet_vxlan_is_direct_within_the_subnet() {
        let r = cluster(|p| p.vxlan(CrossSubnet), None);
        let t = compile(&r, "n1", &eth0(1500)).unwrap();
        assert_eq!(
            hop(&t, [10, 2, 2, 9]),
            Some(Hop::Direct {
                gw: [192, 168, 33, 57].into()
            })
        );
        let mac3 = crate::table::vtep_mac_for("n3");
        assert_eq!(
            hop(&t, [10, 2, 3, 9]),
            Some(Hop::Vxlan {
                node: [192, 168, 34, 53].into(),
                mac: mac3
            })
        );
        // VTEPs of every other node with a tunnel address, same subnet or not.
        assert_eq!(t.neigh().len(), 2);
        assert_eq!(t.fdb().len(), 2);
        // Blocks without affinity route nowhere; local addresses go to the endpoint.
        assert_eq!(hop(&t, [10, 2, 4, 1]), None);
        assert_eq!(
            hop(&t, [10, 2, 1, 6]),
            Some(Hop::Endpoint(crate::table::EndpointId(0)))
        );
        assert_eq!(hop(&t, [10, 2, 1, 7]), Some(Hop::Blackhole));
    }

    #[test]
    fn crosssubnet_ipip_and_always_and_never() {
        let r = cluster(|p| p.ipip(CrossSubnet), None);
        let t = compile(&r, "n1", &eth0(1500)).unwrap();
        assert_eq!(
            hop(&t, [10, 2, 2, 9]),
            Some(Hop::Direct {
                gw: [192, 168, 33, 57].into()
            })
        );
        assert_eq!(
            hop(&t, [10, 2, 3, 9]),
            Some(Hop::Ipip {
                node: [192, 168, 34, 53].into()
            })
        );
        assert!(
            t.neigh().is_empty() && t.fdb().is_empty(),
            "no VXLAN pool, no VTEPs"
        );
        let t = compile(&cluster(|p| p.ipip(Always), None), "n1", &eth0(1500)).unwrap();
        assert_eq!(
            hop(&t, [10, 2, 2, 9]),
            Some(Hop::Ipip {
                node: [192, 168, 33, 57].into()
            })
        );
        let t = compile(&cluster(|p| p.ipip(Never), None), "n1", &eth0(1500)).unwrap();
        assert_eq!(
            hop(&t, [10, 2, 3, 9]),
            Some(Hop::Direct {
                gw: [192, 168, 34, 53].into()
            })
        );
    }

    #[test]
    fn disabled_pools_are_still_routed() {
        // `disabled` stops new allocations; existing blocks keep their routes.
        let t = compile(
            &cluster(|p| p.ipip(Always).disabled(true), None),
            "n1",
            &eth0(1500),
        )
        .unwrap();
        assert_eq!(
            hop(&t, [10, 2, 2, 9]),
            Some(Hop::Ipip {
                node: [192, 168, 33, 57].into()
            })
        );
    }

    #[test]
    fn peers_mtus_and_endpoints() {
        let t = compile(&cluster(|p| p.vxlan(Always), None), "n1", &eth0(9000)).unwrap();
        let peers: Vec<_> = t.peers().map(|p| p.to_string()).collect();
        assert_eq!(
            peers,
            ["192.168.33.57", "192.168.34.53"],
            "n4 has no IP; n1 is local"
        );
        assert_eq!(
            t.mtu(),
            Mtus {
                ipip: 8980,
                vxlan: 8950,
                direct: 9000
            }
        );
        assert_eq!(t.endpoints()[0].mtu, 8950, "VXLAN pool: VXLAN MTU");
        assert_eq!(t.endpoints()[0].interface, "cali1");
        assert_eq!(
            t.endpoint_by_interface("cali1"),
            Some(crate::table::EndpointId(0))
        );
        assert_eq!(t.local().ip, std::net::Ipv4Addr::new(192, 168, 33, 55));
        assert_eq!(t.local().vtep_mac, crate::table::vtep_mac_for("n1"));
        assert_eq!(
            t.vxlan(),
            VxlanParams {
                vni: 4096,
                port: 4789
            }
        );
        let t = compile(&cluster(|p| p.ipip(Always), None), "n1", &eth0(1500)).unwrap();
        assert_eq!(t.endpoints()[0].mtu, 1480, "IPIP pool: IPIP MTU");
    }

    #[test]
    fn felix_configuration_sets_vni_port_and_mtus() {
        let felix = Felix::new("default")
            .vni(77)
            .port(8472)
            .vxlan_mtu(1400)
            .ipip_mtu(1410);
        let t = compile(
            &cluster(|p| p.vxlan(Always), Some(felix)),
            "n1",
            &eth0(1500),
        )
        .unwrap();
        assert_eq!(
            t.vxlan(),
            VxlanParams {
                vni: 77,
                port: 8472
            }
        );
        assert_eq!(
            t.mtu(),
            Mtus {
                ipip: 1410,
                vxlan: 1400,
                direct: 1500
            }
        );
    }

    #[test]
    fn a_slash_32_block_is_its_workload_route() {
        let r = ClusterBuilder::new()
            .with(Pool::new("p", "10.2.0.0/16").block_size(32))
            .with(Node::new("n1", "192.168.33.55/24"))
            .with(Block::new("10.2.36.68/32").host("n1").named("b1"))
            .with(Block::new("10.2.36.69/32").host("n1").named("b2"))
            .with(
                Endpoint::new("n1", "cali1", "10.2.36.68")
                    .named("w1")
                    .namespace(None),
            )
            .resources()
            .unwrap();
        let t = compile(&r, "n1", &eth0(1500)).unwrap();
        assert_eq!(
            t.routes_text(),
            "10.2.36.68 dev cali1 scope link\nblackhole 10.2.36.69\n"
        );
    }

    #[test]
    fn compile_errors() {
        let r = cluster(|p| p.vxlan(Always), None);
        assert_eq!(
            compile(&r, "n9", &eth0(1500)).unwrap_err().to_string(),
            "node \"n9\" is not in the configuration (nodes: n1, n2, n3, n4)"
        );
        assert_eq!(
            compile(&r, "n4", &eth0(1500)).unwrap_err().to_string(),
            "node \"n4\" has no spec.bgp.ipv4Address: podwire needs the node IP"
        );
        assert_eq!(
            compile(&r, "n1", &eth0(100)).unwrap_err().to_string(),
            "the VXLAN MTU would be 50, below the IPv4 minimum of 68 (underlay eth0 has MTU 100)"
        );
        assert_eq!(
            compile(&Resources::default(), "n1", &eth0(1500))
                .unwrap_err()
                .to_string(),
            "node \"n1\" is not in the configuration (nodes: none)"
        );
    }
}
