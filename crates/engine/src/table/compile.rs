//! Resources → tables, as Felix derives the kernel's state (SPEC §2).

use std::collections::{BTreeMap, HashSet};
use std::net::Ipv4Addr;

use ipnetwork::Ipv4Network;

use super::{
    BuildError, Endpoint, LocalNode, Mtus, PoolNet, Tables, TablesBuilder, Via, VxlanParams,
};
use crate::config::{EncapMode, IpPool, IpamBlock, Resources};

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

/// How a pool reaches a remote node; `None` for VXLAN to a node without a
/// tunnel address yet (Felix programs no route until its VTEP is known:
/// `felix/calc/vxlan_resolver.go`, `felix/dataplane/linux/vxlan_mgr.go`).
fn via_for(
    pool: &IpPool,
    same_subnet: bool,
    node_ip: Ipv4Addr,
    tunnel: Option<Ipv4Addr>,
) -> Option<Via> {
    if pool.vxlan_mode.encapsulates(same_subnet) {
        return tunnel.map(|gw| Via::Vxlan { gw });
    }
    if pool.ipip_mode.encapsulates(same_subnet) {
        return Some(Via::Ipip { gw: node_ip });
    }
    Some(Via::Direct { gw: node_ip })
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
    compile_with(r, node, underlay, None)
}

/// Compiles the tables of node `node`, with the host path on through the
/// interface `host` when it is given: packets from pods to anything
/// outside every pool, and to the node's own tunnel addresses, go to it,
/// and what the node's kernel sends through it reaches the pods
/// (SPEC §10).
pub fn compile_with(
    r: &Resources,
    node: &str,
    underlay: &Underlay,
    host: Option<&str>,
) -> Result<Tables, CompileError> {
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

    // Every other route, by destination; a later rule replaces an earlier
    // one for the same destination, as the trie of Felix's route resolver
    // lets a more specific owner win (`felix/calc/l3_route_resolver.go`).
    let local_ips: HashSet<Ipv4Addr> = r
        .endpoints
        .iter()
        .filter(|w| w.node == me.name)
        .flat_map(|w| w.ips.iter().copied())
        .collect();
    let mut routes: BTreeMap<Ipv4Network, (Via, &str)> = BTreeMap::new();
    let route_to = |node: &str, pool: &IpPool| -> Option<Via> {
        let peer = r.node(node)?;
        let peer_ip = peer.ip()?;
        via_for(
            pool,
            subnet.contains(peer_ip),
            peer_ip,
            peer.vxlan_tunnel_addr,
        )
    };

    // Blocks: local ones are blackholes — but for a /32 block, which
    // Felix's route manager never blackholes (`routeIsLocalBlock` in
    // `felix/dataplane/linux/route_mgr.go`: it would hide the workload's own
    // /32) — and remote ones go by their pool's mode.
    for block in &r.blocks {
        let Some(owner) = &block.node else { continue };
        if *owner == me.name {
            if block.cidr.prefix() != 32 {
                routes.insert(block.cidr, (Via::Blackhole, owner));
            }
            continue;
        }
        let Some(pool) = r.pool_of(block.cidr) else {
            continue; // validation makes this unreachable
        };
        if let Some(via) = route_to(owner, pool) {
            routes.insert(block.cidr, (via, owner));
        }
    }

    // Borrowed addresses: a /32 to the node holding an address of another
    // node's block — from the block's allocations (`routesFromBlock`, over
    // libcalico-go's `NonAffineAllocations`), then from the workloads
    // themselves, which win (a workload's ref is the most specific entry).
    // A local workload's address has its endpoint route; a /32 block's own
    // route wins over an allocation inside it, as in `routesFromBlock`.
    let mut blocks: Vec<(u32, u32, &IpamBlock)> = r
        .blocks
        .iter()
        .map(|b| {
            let start = u32::from(b.cidr.network());
            (start, start | !u32::from(b.cidr.mask()), b)
        })
        .collect();
    blocks.sort_unstable_by_key(|b| b.0);
    let block_of = |ip: Ipv4Addr| {
        let ip = u32::from(ip);
        let i = blocks.partition_point(|b| b.0 <= ip);
        i.checked_sub(1)
            .map(|i| blocks[i])
            .filter(|b| ip <= b.1)
            .map(|b| b.2)
    };
    let mut borrowed: BTreeMap<Ipv4Addr, &str> = BTreeMap::new();
    for block in &r.blocks {
        for (ip, node) in &block.borrowed {
            borrowed.insert(*ip, node);
        }
    }
    for w in r.endpoints.iter().filter(|w| w.node != me.name) {
        for ip in &w.ips {
            if block_of(*ip).is_none_or(|b| b.node.as_deref() != Some(w.node.as_str())) {
                borrowed.insert(*ip, &w.node);
            }
        }
    }
    for (ip, node) in borrowed {
        let dst = Ipv4Network::from(ip);
        if node == me.name || local_ips.contains(&ip) || block_of(ip).is_some_and(|b| b.cidr == dst)
        {
            continue;
        }
        let Some(pool) = r.pool_of(dst) else { continue };
        if let Some(via) = route_to(node, pool) {
            routes.insert(dst, (via, node));
        }
    }

    // A remote node's VXLAN tunnel address that no wider route of its own
    // covers (a tunnel pool of /32 blocks, or an address borrowed from
    // another node's block) is a directly connected route on the VXLAN
    // device (`isRemoteTunnelRoute` in `felix/dataplane/linux/route_mgr.go`).
    let vxlan_used = r.pools.iter().any(|p| p.vxlan_mode.enabled());
    for peer in r.nodes.iter().filter(|n| n.name != me.name) {
        let (Some(tunnel), Some(_)) = (peer.vxlan_tunnel_addr, peer.ip()) else {
            continue;
        };
        if !vxlan_used
            || !r
                .pool_of(Ipv4Network::from(tunnel))
                .is_some_and(|p| p.vxlan_mode.enabled())
        {
            continue;
        }
        let covered = block_of(tunnel).is_some_and(|b| {
            b.cidr.prefix() < 32
                && routes
                    .get(&b.cidr)
                    .is_some_and(|(_, owner)| *owner == peer.name)
        });
        if !covered {
            routes.insert(Ipv4Network::from(tunnel), (Via::VxlanLink, &peer.name));
        }
    }
    // A local workload's own /32 wins over anything else for it.
    for (dst, (via, _)) in routes {
        if dst.prefix() == 32 && local_ips.contains(&dst.ip()) {
            continue;
        }
        b.route(dst, via);
    }

    // VTEPs of every other node, when any pool uses VXLAN (Felix programs
    // them for all nodes, whichever route ends up using them).
    for peer in r.nodes.iter().filter(|n| n.name != me.name) {
        let Some(peer_ip) = peer.ip() else { continue };
        b.peer(peer_ip);
        if let (true, Some(tunnel)) = (vxlan_used, peer.vxlan_tunnel_addr) {
            let mac = peer.vtep_mac();
            b.neigh(tunnel, mac).fdb(mac, peer_ip);
        }
    }
    for p in &r.pools {
        b.pool(PoolNet {
            cidr: p.cidr,
            nat_outgoing: p.nat_outgoing,
            disabled: p.disabled,
            mtu: pool_mtu(Some(p), mtu),
        });
    }
    if let Some(interface) = host {
        // The addresses a Calico node gives `vxlan.calico` and `tunl0`.
        let mut addrs: Vec<Ipv4Addr> = [me.vxlan_tunnel_addr, me.ipip_tunnel_addr]
            .into_iter()
            .flatten()
            .filter(|ip| r.pool_of(Ipv4Network::from(*ip)).is_some())
            .collect();
        addrs.dedup();
        // Small enough for every mode in use, so that the kernel, not
        // podwire, fragments or answers "fragmentation needed" for what it
        // sends to pods.
        let host_mtu = r
            .pools
            .iter()
            .filter(|p| !p.disabled)
            .map(|p| pool_mtu(Some(p), mtu))
            .min()
            .unwrap_or(mtu.direct);
        b.host(interface, host_mtu, addrs);
    }
    Ok(b.build()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::EncapMode::{Always, CrossSubnet, Never};
    use crate::config::cluster::{Block, ClusterBuilder, Endpoint, Felix, Node, Pool};
    use crate::config::parse;
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
    /// A /32 block is never blackholed (`routeIsLocalBlock` in Felix's
    /// route manager): the one with a workload is its route, the free one
    /// has none.
    fn slash_32_blocks_are_never_blackholed() {
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
        assert_eq!(t.routes_text(), "10.2.36.68 dev cali1 scope link\n");
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

    /// An `IPAMBlock` as Calico's IPAM writes it: every address of the block
    /// in `allocations` (the index of its attributes, or null), the free
    /// ones in `unallocated`, and per allocation a handle and the owner's
    /// `secondary` attributes.
    fn ipam_block(cidr: &str, host: &str, owners: &[(usize, &str, &str)]) -> String {
        let net: Ipv4Network = cidr.parse().unwrap();
        let size = 1usize << (32 - net.prefix());
        let mut allocations = vec!["null".to_string(); size];
        let mut attributes = String::new();
        for (k, (ordinal, node, handle)) in owners.iter().enumerate() {
            allocations[*ordinal] = k.to_string();
            attributes += &format!(
                "  - handle_id: {handle}\n    secondary: {{namespace: default, node: \"{node}\", pod: p{k}, timestamp: \"2026-11-30 10:00:0{k}.1 +0000 UTC\"}}\n"
            );
        }
        let unallocated: Vec<String> = (0..size)
            .filter(|i| !owners.iter().any(|o| o.0 == *i))
            .map(|i| i.to_string())
            .collect();
        format!(
            "apiVersion: crd.projectcalico.org/v1\nkind: IPAMBlock\nmetadata: {{name: {}}}\nspec:\n  cidr: {cidr}\n  affinity: host:{host}\n  strictAffinity: false\n  allocations: [{}]\n  unallocated: [{}]\n  attributes:\n{attributes}  deleted: false\n",
            cidr.replace(['.', '/'], "-"),
            allocations.join(", "),
            unallocated.join(", ")
        )
    }

    /// The data model of real clusters, from k8s-node n1's side (SPEC §2):
    /// - borrowed addresses from the blocks' allocations (10.2.2.5 of n2's
    ///   block, on n3) and from a workload (10.2.1.40 of n1's own block, on
    ///   n3) get a /32 to the node holding them, as Felix's route resolver
    ///   gives them (`routesFromBlock` and the workload refs in
    ///   `felix/calc/l3_route_resolver.go`); an address of n2's block held
    ///   by a workload of n1 (10.2.2.6) is that workload's route; an
    ///   allocation of a block to its own node, or to no node, adds nothing;
    /// - n4 has no VXLAN tunnel address yet: no route for its block, and no
    ///   VTEP, but it is a known peer;
    /// - n5's `ipv4Address` has no prefix length (a /32), and its tunnel
    ///   address comes from a pool of /32 blocks: a directly connected
    ///   route on the VXLAN device, not one via itself
    ///   (`isRemoteTunnelRoute` in `felix/dataplane/linux/route_mgr.go`).
    #[test]
    fn borrowed_addresses_joining_nodes_and_tunnel_pools() {
        let mut text = ClusterBuilder::new()
            .with(Pool::new("p", "10.2.0.0/16").vxlan(Always))
            .with(
                Pool::new("tunnels", "10.9.0.0/24")
                    .vxlan(Always)
                    .block_size(32),
            )
            .with(Node::new("n1", "192.168.33.55/24").vxlan_tunnel("10.2.1.1"))
            .with(Node::new("n2", "192.168.33.57/24").vxlan_tunnel("10.2.2.1"))
            .with(Node::new("n3", "192.168.33.59/24").vxlan_tunnel("10.2.3.1"))
            .with(Node::new("n4", "192.168.33.61/24"))
            .with(Node::new("n5", "192.168.34.5").vxlan_tunnel("10.9.0.5"))
            .with(Block::new("10.2.3.0/26").host("n3"))
            .with(Block::new("10.2.4.0/26").host("n4"))
            .with(Block::new("10.9.0.5/32").host("n5"))
            .with(Endpoint::new("n1", "cali1", "10.2.2.6").namespace(None))
            .with(Endpoint::new("n3", "cali3", "10.2.1.40").namespace(None))
            .yaml();
        text += "---\n";
        text += &ipam_block(
            "10.2.1.0/26",
            "n1",
            &[
                (1, "n1", "vxlan-tunnel-addr-n1"),
                (4, "n1", "k8s-pod-network.a1"),
            ],
        );
        text += "---\n";
        text += &ipam_block(
            "10.2.2.0/26",
            "n2",
            &[
                (1, "n2", "vxlan-tunnel-addr-n2"),
                (5, "n3", "k8s-pod-network.b5"),
                (6, "n1", "k8s-pod-network.b6"),
                (7, "", "k8s-pod-network.b7"),
            ],
        );
        let r = parse(&text).unwrap();
        assert_eq!(r.blocks.iter().map(|b| b.borrowed.len()).sum::<usize>(), 2);
        let t = compile(&r, "n1", &eth0(1500)).unwrap();
        assert_eq!(
            t.routes_text(),
            "blackhole 10.2.1.0/26\n\
             10.2.1.40 via 10.2.3.1 dev vxlan.calico onlink\n\
             10.2.2.0/26 via 10.2.2.1 dev vxlan.calico onlink\n\
             10.2.2.5 via 10.2.3.1 dev vxlan.calico onlink\n\
             10.2.2.6 dev cali1 scope link\n\
             10.2.3.0/26 via 10.2.3.1 dev vxlan.calico onlink\n\
             10.9.0.5 dev vxlan.calico scope link\n"
        );
        // No VTEP for n4; n5's is reached through its own neighbour entry.
        assert_eq!(
            t.neigh()
                .iter()
                .map(|n| n.ip.to_string())
                .collect::<Vec<_>>(),
            ["10.2.2.1", "10.2.3.1", "10.9.0.5"]
        );
        assert!(t.is_peer(u32::from(Ipv4Addr::new(192, 168, 33, 61))));
        assert_eq!(hop(&t, [10, 2, 4, 9]), None);
        assert_eq!(
            hop(&t, [10, 9, 0, 5]),
            Some(Hop::Vxlan {
                node: Ipv4Addr::new(192, 168, 34, 5),
                mac: crate::config::vtep_mac_for("n5"),
            })
        );
        assert_eq!(
            hop(&t, [10, 2, 2, 5]),
            Some(Hop::Vxlan {
                node: Ipv4Addr::new(192, 168, 33, 59),
                mac: crate::config::vtep_mac_for("n3"),
            })
        );
        // From n3's side, the address it holds in n2's block is its own
        // workload's only if it has one: here it has none, so n2's block
        // route covers it; and n1's borrowed 10.2.2.6 goes to n1.
        let t3 = compile(&r, "n3", &eth0(1500)).unwrap();
        let routes = t3.routes_text();
        assert!(!routes.contains("10.2.2.5"), "{routes}");
        assert!(
            routes.contains("10.2.2.6 via 10.2.1.1 dev vxlan.calico onlink\n"),
            "{routes}"
        );
        assert!(
            routes.contains("10.2.1.40 dev cali3 scope link\n"),
            "{routes}"
        );
    }
}
