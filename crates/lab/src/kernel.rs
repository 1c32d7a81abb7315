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
