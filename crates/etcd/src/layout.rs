//! The etcdv3 key layout of Calico's datastore, as libcalico-go writes it:
//!
//! | what | key |
//! |---|---|
//! | a v3 resource (IPPool, Node, FelixConfiguration, …) | `/calico/resources/v3/projectcalico.org/<plural>/<name>` (`model/resource.go`) |
//! | a namespaced one (WorkloadEndpoint) | `/calico/resources/v3/projectcalico.org/<plural>/<namespace>/<name>` |
//! | an IPAM block | `/calico/ipam/v2/assignment/ipv4/block/<a.b.c.d>-<len>` (`model/block.go`) |
//! | a block affinity | `/calico/ipam/v2/<type>/<host>/ipv4/block/<a.b.c.d>-<len>`, type `host` (`model/block_affinity.go`) |
//! | an IPAM handle | `/calico/ipam/v2/handle/<handle id>` (`model/ipam_handle.go`) |
//!
//! and the name of a Kubernetes WorkloadEndpoint,
//! `<node>-k8s-<pod>-<endpoint>` with every `-` inside a part doubled
//! (`names/workloadendpoint.go`, `CalculateWorkloadEndpointName`).
//! Anything else, IPv6 included, is [`Key::Other`]: a real datastore holds
//! many keys podwire does not read.

use std::net::Ipv4Addr;

use ipnetwork::Ipv4Network;

/// The prefix of every v3 resource key.
pub const RESOURCES: &str = "/calico/resources/v3/projectcalico.org/";
/// The prefix of every IPAM key.
pub const IPAM: &str = "/calico/ipam/v2/";

/// What a key names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key<'a> {
    /// A v3 resource of kind `plural` (`ippools`, `nodes`, …).
    Resource {
        plural: &'a str,
        namespace: Option<&'a str>,
        name: &'a str,
    },
    /// An IPv4 IPAM block.
    Block(Ipv4Network),
    /// The affinity of an IPv4 block to a host.
    Affinity { host: &'a str, cidr: Ipv4Network },
    /// An IPAM handle.
    Handle(&'a str),
    /// A key podwire does not read.
    Other,
}

/// The plural of a kind whose resources live in a namespace.
const NAMESPACED: [&str; 3] = ["workloadendpoints", "networkpolicies", "networksets"];

/// `a.b.c.d-len`, as block keys write a CIDR (the network address).
fn block_cidr(s: &str) -> Option<Ipv4Network> {
    let (ip, len_text) = s.split_once('-')?;
    let ip: Ipv4Addr = ip.parse().ok()?;
    let len: u8 = len_text.parse().ok()?;
    // As Go's netip.ParsePrefix: no sign, no leading zero.
    if len.to_string() != len_text {
        return None;
    }
    let net = Ipv4Network::new(ip, len).ok()?;
    (net.network() == ip).then_some(net)
}

/// A non-empty path segment without `/`.
fn segment(s: &str) -> Option<&str> {
    (!s.is_empty() && !s.contains('/')).then_some(s)
}

/// What `key` names.
pub fn parse_key(key: &str) -> Key<'_> {
    parse(key).unwrap_or(Key::Other)
}

fn parse(key: &str) -> Option<Key<'_>> {
    if let Some(rest) = key.strip_prefix(RESOURCES) {
        let (plural, rest) = rest.split_once('/')?;
        let plural = segment(plural)?;
        if NAMESPACED.contains(&plural) {
            let (namespace, name) = rest.split_once('/')?;
            return Some(Key::Resource {
                plural,
                namespace: Some(segment(namespace)?),
                name: segment(name)?,
            });
        }
        return Some(Key::Resource {
            plural,
            namespace: None,
            name: segment(rest)?,
        });
    }
    let rest = key.strip_prefix(IPAM)?;
    if let Some(cidr) = rest.strip_prefix("assignment/ipv4/block/") {
        return block_cidr(segment(cidr)?).map(Key::Block);
    }
    if let Some(id) = rest.strip_prefix("handle/") {
        return Some(Key::Handle(segment(id)?));
    }
    let rest = rest.strip_prefix("host/")?;
    let (host, rest) = rest.split_once('/')?;
    let cidr = rest.strip_prefix("ipv4/block/")?;
    Some(Key::Affinity {
        host: segment(host)?,
        cidr: block_cidr(segment(cidr)?)?,
    })
}

/// The key of a v3 resource.
pub fn resource_key(plural: &str, namespace: Option<&str>, name: &str) -> String {
    match namespace {
        Some(ns) => format!("{RESOURCES}{plural}/{ns}/{name}"),
        None => format!("{RESOURCES}{plural}/{name}"),
    }
}

/// `a.b.c.d-len` of a block.
fn cidr_segment(cidr: Ipv4Network) -> String {
    format!("{}-{}", cidr.network(), cidr.prefix())
}

/// The key of an IPv4 IPAM block.
pub fn block_key(cidr: Ipv4Network) -> String {
    format!("{IPAM}assignment/ipv4/block/{}", cidr_segment(cidr))
}

/// The key of a block's affinity to `host`.
pub fn affinity_key(host: &str, cidr: Ipv4Network) -> String {
    format!("{IPAM}host/{host}/ipv4/block/{}", cidr_segment(cidr))
}

/// The key of an IPAM handle.
pub fn handle_key(id: &str) -> String {
    format!("{IPAM}handle/{id}")
}

/// A name part with every `-` doubled (`escapeDashes`).
pub fn escape(part: &str) -> String {
    part.replace('-', "--")
}

/// The name Calico gives a Kubernetes pod's WorkloadEndpoint.
pub use podwire::config::workload_endpoint_name;

/// True when WorkloadEndpoint `name` belongs to `node`: it starts with the
/// node's escaped name and then a single `-` (an escaped part has only
/// doubled dashes, so a longer node name cannot match).
pub fn endpoint_is_on(name: &str, node: &str) -> bool {
    let escaped = escape(node);
    name.strip_prefix(escaped.as_str())
        .and_then(|rest| rest.strip_prefix('-'))
        .is_some_and(|rest| !rest.is_empty() && !rest.starts_with('-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Ipv4Network {
        s.parse().unwrap()
    }

    /// The keys as libcalico-go's `defaultPath` functions build them.
    #[test]
    fn keys_of_each_kind_parse_and_build_back() {
        let cases = [
            (
                "/calico/resources/v3/projectcalico.org/ippools/default-ipv4-ippool",
                Key::Resource {
                    plural: "ippools",
                    namespace: None,
                    name: "default-ipv4-ippool",
                },
            ),
            (
                "/calico/resources/v3/projectcalico.org/felixconfigurations/node.k8s-node1",
                Key::Resource {
                    plural: "felixconfigurations",
                    namespace: None,
                    name: "node.k8s-node1",
                },
            ),
            (
                "/calico/resources/v3/projectcalico.org/workloadendpoints/default/k8s--node1-k8s-web--1-eth0",
                Key::Resource {
                    plural: "workloadendpoints",
                    namespace: Some("default"),
                    name: "k8s--node1-k8s-web--1-eth0",
                },
            ),
            (
                "/calico/ipam/v2/assignment/ipv4/block/10.2.36.64-26",
                Key::Block(net("10.2.36.64/26")),
            ),
            (
                "/calico/ipam/v2/host/k8s-node1/ipv4/block/10.2.36.64-26",
                Key::Affinity {
                    host: "k8s-node1",
                    cidr: net("10.2.36.64/26"),
                },
            ),
            (
                "/calico/ipam/v2/handle/k8s-pod-network.0123abcd",
                Key::Handle("k8s-pod-network.0123abcd"),
            ),
        ];
        for (key, want) in cases {
            assert_eq!(parse_key(key), want, "{key}");
        }
        assert_eq!(
            resource_key("ippools", None, "default-ipv4-ippool"),
            cases[0].0
        );
        assert_eq!(
            resource_key(
                "workloadendpoints",
                Some("default"),
                "k8s--node1-k8s-web--1-eth0"
            ),
            cases[2].0
        );
        assert_eq!(block_key(net("10.2.36.64/26")), cases[3].0);
        assert_eq!(affinity_key("k8s-node1", net("10.2.36.64/26")), cases[4].0);
        assert_eq!(handle_key("k8s-pod-network.0123abcd"), cases[5].0);
    }

    /// What podwire does not read, and junk, is `Other`, never a panic
    /// (some of libcalico-go's own `interestingPaths` among them).
    #[test]
    fn everything_else_is_other() {
        for key in [
            "/calico/ipam/v2/assignment/ipv6/block/fd00::-122",
            "/calico/ipam/v2/assignment/ipv4/block/10.2.36.65-26",
            "/calico/ipam/v2/assignment/ipv4/block/10.2.36.64-33",
            "/calico/ipam/v2/assignment/ipv4/block/10.2.36.64-026",
            "/calico/ipam/v2/assignment/ipv4/block/10.2.36.64-+26",
            "/calico/ipam/v2/assignment/ipv4/1.2.3.4-26",
            "/calico/ipam/v2/handle/foobar/baz",
            "/calico/ipam/v2/host/foobar/ipv4/block/1.2.3.4-5",
            "/calico/ipam/v2/host//ipv4/block/10.2.36.64-26",
            "calico/ipam/v2/host/0/ipv0/block/0",
            "/calico/resources/v3/projectcalico.org/networkpolicies",
            "/calico/resources/v3/projectcalico.org/workloadendpoints/default",
            "/calico/resources/v3/projectcalico.org/ippools/a/b",
            "/calico/resources/v3/projectcalico.org//x",
            "/calico/v1/host/foobar/endpoint",
            "/calico/felix/v2/region-Europe/host/h1/status",
            "",
            "/",
        ] {
            assert_eq!(parse_key(key), Key::Other, "{key}");
        }
    }

    /// `CalculateWorkloadEndpointName` for orchestrator k8s: node, "k8s",
    /// pod, endpoint, each with its dashes doubled, joined by single dashes.
    #[test]
    fn workload_endpoint_names_and_their_node() {
        let name = workload_endpoint_name("k8s-node1", "web-7c5b4d6f8-klmno", "eth0");
        assert_eq!(name, "k8s--node1-k8s-web--7c5b4d6f8--klmno-eth0");
        assert!(endpoint_is_on(&name, "k8s-node1"));
        assert!(!endpoint_is_on(&name, "k8s-node"));
        assert!(!endpoint_is_on(&name, "k8s"));
        // A node whose name extends ours: its escaped name goes on with "--".
        let other = workload_endpoint_name("k8s-node1-b", "web", "eth0");
        assert_eq!(other, "k8s--node1--b-k8s-web-eth0");
        assert!(!endpoint_is_on(&other, "k8s-node1"));
        assert!(endpoint_is_on(&other, "k8s-node1-b"));
        assert!(!endpoint_is_on("k8s--node1-", "k8s-node1"));
    }
}
