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
