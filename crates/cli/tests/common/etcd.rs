//! The lab crate's etcd members ([`podwire_lab::etcd`]), failing the test
//! instead of returning an error.

pub use podwire_lab::etcd::Member;

use super::{Lab, ok};

/// `etcdctl` in `ns` against `endpoints`; returns stdout.
pub fn ctl(lab: &Lab, ns: &str, endpoints: &str, args: &[&str]) -> String {
    ok(podwire_lab::etcd::ctl(lab, ns, endpoints, args))
}

/// Starts an etcd cluster of one member per `(namespace, ip)`.
pub fn cluster(lab: &mut Lab, members: &[(&str, &str)]) -> Vec<Member> {
    ok(podwire_lab::etcd::cluster(lab, members))
}

pub fn wait_healthy(lab: &Lab, m: &Member) {
    ok(m.wait_healthy(lab));
}

pub fn kill(lab: &mut Lab, m: &Member) {
    ok(m.kill(lab));
}

pub fn restart(lab: &mut Lab, m: &Member) {
    ok(m.restart(lab));
}

pub fn is_leader(lab: &Lab, m: &Member) -> bool {
    ok(m.is_leader(lab))
}

/// The endpoints of `members`, comma-separated.
pub fn endpoints<'a>(members: impl IntoIterator<Item = &'a Member>) -> String {
    podwire_lab::etcd::endpoints(members)
}

/// A CA and certificates for an etcd member at `ip`, in the lab's directory.
pub fn tls(lab: &Lab, ip: &str) -> podwire_lab::etcd::Tls {
    ok(podwire_lab::etcd::Tls::make(&lab.dir, ip))
}

/// Starts an etcd cluster whose clients must use TLS with certificates.
pub fn cluster_tls(
    lab: &mut Lab,
    members: &[(&str, &str)],
    tls: &podwire_lab::etcd::Tls,
) -> Vec<Member> {
    ok(podwire_lab::etcd::cluster_with(lab, members, Some(tls)))
}

/// The etcd member's address on a testbed's underlay.
pub const UNDERLAY_IP: &str = "192.168.33.250";

/// One etcd member on `t`'s switch holding nothing but a VXLAN pool
/// `10.2.0.0/16` (blocks of /26, natOutgoing): what a cluster of podwire
/// nodes needs, since each node writes itself at start.
pub fn with_only_a_pool(t: &mut super::Testbed) -> (String, Member) {
    let ens = t.lab.netns("etcd");
    t.lab
        .attach(&t.sw, "br0", &ens, "eth0", &format!("{UNDERLAY_IP}/24"));
    let m = cluster(&mut t.lab, &[(&ens, UNDERLAY_IP)]).remove(0);
    ctl(
        &t.lab,
        &ens,
        &m.url,
        &[
            "put",
            "/calico/resources/v3/projectcalico.org/ippools/default-ipv4-ippool",
            r#"{"kind":"IPPool","apiVersion":"projectcalico.org/v3","metadata":{"name":"default-ipv4-ippool"},"spec":{"cidr":"10.2.0.0/16","blockSize":26,"vxlanMode":"Always","ipipMode":"Never","natOutgoing":true}}"#,
        ],
    );
    (ens, m)
}

/// [`with_only_a_pool`], then a podwire daemon on every node of `t` on it
/// (each writes its own Node); returns the etcd member's namespace, the
/// member and the daemons' control sockets, in the order of the nodes.
pub fn pool_only_cluster(t: &mut super::Testbed) -> (String, Member, Vec<std::path::PathBuf>) {
    let (ens, m) = with_only_a_pool(t);
    let nodes = t.nodes.clone();
    let controls = nodes
        .iter()
        .zip(&super::NODES)
        .map(|(ns, host)| t.lab.podwire_etcd(ns, &m.url, host.name, &[]))
        .collect();
    (ens, m, controls)
}

/// The keys under `prefix` (`etcdctl get --keys-only --prefix`).
pub fn keys(lab: &Lab, ns: &str, endpoints: &str, prefix: &str) -> Vec<String> {
    ctl(
        lab,
        ns,
        endpoints,
        &["get", "--keys-only", "--prefix", prefix],
    )
    .lines()
    .filter(|l| !l.trim().is_empty())
    .map(str::to_string)
    .collect()
}

/// Where the WorkloadEndpoints are.
pub const ENDPOINTS: &str = "/calico/resources/v3/projectcalico.org/workloadendpoints/";
/// Where the IPAM handles are.
pub const HANDLES: &str = "/calico/ipam/v2/handle/";

/// The network configuration of `podwire-cni` with `podwire-ipam` for
/// node `node`, on the datastore at `endpoints` and the daemon at
/// `control` (the shape of examples/cni/10-podwire.conflist's plugin).
pub fn cni_conf(node: &str, endpoints: &str, control: &std::path::Path) -> serde_json::Value {
    serde_json::json!({
        "cniVersion": "1.0.0",
        "name": "k8s-pod-network",
        "type": "podwire-cni",
        "nodename": node,
        "datastore_type": "etcdv3",
        "etcd_endpoints": endpoints,
        "mtu": 0,
        "podwire_control": control,
        "ipam": { "type": "podwire-ipam" },
    })
}
