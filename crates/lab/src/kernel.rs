//! Nodes whose kernel carries the pod traffic, as Calico sets them up
//! without podwire: the baselines of the lab and the bench, and the peers
//! of the interoperability tests.

use crate::netns::{Error, Harness, VethPod, must};

/// A node, as its peer sees it.
#[derive(Debug, Clone, Copy)]
pub struct Host<'a> {
    pub name: &'a str,
    /// The node IP, without its prefix length.
    pub ip: &'a str,
    /// Its IPAM block.
    pub block: &'a str,
    /// Its VXLAN tunnel address.
    pub tunnel: &'a str,
}

impl Host<'_> {
    /// The node IP with the underlay's prefix length (/24).
    pub fn cidr(&self) -> String {
        format!("{}/24", self.ip)
    }
}

/// The underlay's gateway, where the nodes' default routes point (proxy ARP
/// answers for 169.254.1.1 only when it is routable).
pub const GATEWAY: &str = "192.168.33.1";

/// Namespace `ns` as Felix programs node `me` in VXLAN mode towards `peer`:
/// `vxlan.calico` (VNI 4096, port 4789, `nolearning`) on `eth0` with `me`'s
/// VTEP MAC, MTU 1450 and tunnel address as a /32; the peer's block via its
/// tunnel address onlink, permanent neighbour and FDB entries for its
/// VTEP; a default route; forwarding on.
pub fn vxlan_node(w: &Harness, ns: &str, me: Host, peer: Host) -> Result<(), Error> {
    let mac = |name: &str| podwire::table::vtep_mac_for(name).to_string();
    let (my_mac, peer_mac) = (mac(me.name), mac(peer.name));
    let tunnel = format!("{}/32", me.tunnel);
    let dev = "vxlan.calico";
    for args in [
        &[
            "link",
            "add",
            dev,
            "type",
            "vxlan",
            "id",
            "4096",
            "dstport",
            "4789",
            "local",
            me.ip,
            "dev",
            "eth0",
            "nolearning",
        ][..],
        &["link", "set", dev, "address", &my_mac, "mtu", "1450", "up"],
        &["addr", "add", &tunnel, "dev", dev],
        &[
            "route",
            "add",
            peer.block,
            "via",
            peer.tunnel,
            "dev",
            dev,
            "onlink",
        ],
        &[
            "neigh",
            "add",
            peer.tunnel,
            "lladdr",
            &peer_mac,
            "dev",
            dev,
            "nud",
            "permanent",
        ],
        &[
            "route", "replace", "default", "via", GATEWAY, "dev", "eth0", "onlink",
        ],
    ] {
        w.ip(ns, args)?;
    }
    must(
        "bridge",
        &[
            "-n", ns, "fdb", "add", &peer_mac, "dev", dev, "dst", peer.ip,
        ],
    )?;
    w.sysctl(ns, "net.ipv4.ip_forward=1")
}

/// Namespace `ns` as a Calico node in BGP mode routes towards `peer` in
/// its kernel: the peer's block via its IP onlink, a default route,
/// forwarding on.
pub fn direct_node(w: &Harness, ns: &str, peer: Host) -> Result<(), Error> {
    for args in [
        [
            "route", "add", peer.block, "via", peer.ip, "dev", "eth0", "onlink",
        ],
        [
            "route", "replace", "default", "via", GATEWAY, "dev", "eth0", "onlink",
        ],
    ] {
        w.ip(ns, &args)?;
    }
    w.sysctl(ns, "net.ipv4.ip_forward=1")
}

/// k8s-node1 and k8s-node2 of the lab's underlay with the kernel's VXLAN
/// (`vxlan`) or routing, and a veth pod on each as Calico attaches pods;
/// returns the two pods.
pub(crate) fn pods(w: &mut Harness, vxlan: bool) -> Result<Vec<String>, Error> {
    pods_with_pairs(w, vxlan, 1).map(|(pods, _)| pods)
}

/// [`pods`] with `pairs - 1` more veth pods on each node (the addresses of
/// [`crate::topology::extra_pod`]) and the routes to the peer's extra
/// blocks; returns the two pods and the extra pairs (node 1's pod, node
/// 2's, node 2's address).
#[allow(clippy::type_complexity)]
pub(crate) fn pods_with_pairs(
    w: &mut Harness,
    vxlan: bool,
    pairs: usize,
) -> Result<(Vec<String>, Vec<(String, String, String)>), Error> {
    let pods = first_pods(w, vxlan)?;
    let nodes = [w.name("n1"), w.name("n2")];
    let (n1, n2) = (&crate::topology::NODES[1], &crate::topology::NODES[2]);
    // Each node routes the peer's extra blocks as it routes its first one.
    let peers = [(n2, &nodes[0], 2), (n1, &nodes[1], 1)];
    for (peer, ns, peer_index) in peers.into_iter().filter(|_| pairs > 1) {
        for block in crate::topology::extra_blocks(peer_index) {
            let route: Vec<&str> = if vxlan {
                let via = peer.host.tunnel;
                vec![
                    "route",
                    "add",
                    &block,
                    "via",
                    via,
                    "dev",
                    "vxlan.calico",
                    "onlink",
                ]
            } else {
                vec![
                    "route",
                    "add",
                    &block,
                    "via",
                    peer.host.ip,
                    "dev",
                    "eth0",
                    "onlink",
                ]
            };
            w.ip(ns, &route)?;
        }
    }
    let mut extra = Vec::new();
    for k in 1..pairs.min(crate::topology::MAX_PAIRS) {
        let mut made = Vec::new();
        for (node, ns) in [(1, &nodes[0]), (2, &nodes[1])] {
            let (_, ip) = crate::topology::extra_pod(node, k);
            let host = format!("calix{k}");
            let pod = VethPod {
                host: &host,
                ip: &ip,
                mtu: vxlan.then_some("1450"),
                prompt_arp: false,
            };
            made.push((w.veth_pod(ns, &format!("q{node}-{k}"), pod)?, ip));
        }
        extra.push((made[0].0.clone(), made[1].0.clone(), made[1].1.clone()));
    }
    Ok((pods, extra))
}

fn first_pods(w: &mut Harness, vxlan: bool) -> Result<Vec<String>, Error> {
    let (_, nodes) = crate::topology::underlay(w)?;
    let (n1, n2) = (&crate::topology::NODES[1], &crate::topology::NODES[2]);
    let mut pods = Vec::new();
    for (me, peer, ns) in [(n1, n2, &nodes[1]), (n2, n1, &nodes[2])] {
        if vxlan {
            vxlan_node(w, ns, me.host, peer.host)?;
        } else {
            direct_node(w, ns, peer.host)?;
        }
        let pod = VethPod {
            host: "cali0",
            ip: me.pods[0].1,
            mtu: vxlan.then_some("1450"),
            prompt_arp: false,
        };
        pods.push(w.veth_pod(ns, &format!("p{}", me.short), pod)?);
    }
    Ok(pods)
}
