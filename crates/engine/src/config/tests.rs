//! Every validation rule, each with the message it gives.

use super::*;

/// A valid two-node VXLAN cluster; tests append or substitute documents.
const BASE: &str = r#"
apiVersion: projectcalico.org/v3
kind: IPPool
metadata:
  name: pool-a
spec:
  cidr: 10.2.0.0/16
  vxlanMode: Always
---
apiVersion: projectcalico.org/v3
kind: Node
metadata:
  name: n1
spec:
  bgp:
    ipv4Address: 192.168.33.55/24
  ipv4VXLANTunnelAddr: 10.2.36.65
---
apiVersion: projectcalico.org/v3
kind: Node
metadata:
  name: n2
spec:
  bgp:
    ipv4Address: 192.168.33.57/24
  ipv4VXLANTunnelAddr: 10.2.169.137
---
apiVersion: crd.projectcalico.org/v1
kind: IPAMBlock
metadata:
  name: b1
spec:
  cidr: 10.2.36.64/26
  affinity: host:n1
---
apiVersion: crd.projectcalico.org/v1
kind: IPAMBlock
metadata:
  name: b2
spec:
  cidr: 10.2.169.128/26
  affinity: host:n2
---
apiVersion: projectcalico.org/v3
kind: WorkloadEndpoint
metadata:
  name: w1
  namespace: default
spec:
  node: n1
  interfaceName: cali0001
  ipNetworks: [10.2.36.68/32]
"#;

fn with(extra: &str) -> String {
    format!("{BASE}---\n{extra}")
}

fn err(text: &str) -> String {
    match parse(text) {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(e) => e.to_string(),
    }
}

fn replace(from: &str, to: &str) -> String {
    assert!(BASE.contains(from), "{from}");
    BASE.replacen(from, to, 1)
}

#[test]
fn base_is_valid() {
    let r = parse(BASE).unwrap();
    assert_eq!(r.pools.len(), 1);
    assert_eq!(r.nodes.len(), 2);
    assert_eq!(r.blocks.len(), 2);
    assert_eq!(r.endpoints.len(), 1);
    let p = &r.pools[0];
    assert_eq!(p.block_size, 26, "default blockSize");
    assert_eq!(p.ipip_mode, EncapMode::Never, "absent ipipMode is Never");
    assert_eq!(p.vxlan_mode, EncapMode::Always);
    assert!(!p.nat_outgoing && !p.disabled);
    assert_eq!(r.endpoints[0].at, Loc { doc: 6, item: None });
    assert_eq!(r.nodes[0].ip(), Some(Ipv4Addr::new(192, 168, 33, 55)));
    assert_eq!(r.nodes[0].ipv4.unwrap().prefix(), 24);
}

#[test]
fn yaml_syntax_error_names_the_document() {
    let e = err(&with("kind: [unclosed"));
    assert!(e.starts_with("document 7: invalid YAML: "), "{e}");
}

#[test]
fn document_shape_errors() {
    assert_eq!(
        err(&with("- a list")),
        "document 7: expected a Calico resource (a mapping with apiVersion and kind), found a list"
    );
    assert_eq!(
        err(&with(
            "apiVersion: projectcalico.org/v3\nmetadata: {name: x}"
        )),
        "document 7: kind: missing (every resource needs apiVersion and kind)"
    );
    assert_eq!(
        err(&with("apiVersion: projectcalico.org/v3\nkind: 7")),
        "document 7: kind: expected a string, found a number"
    );
}

#[test]
fn unknown_kind_is_named() {
    assert_eq!(
        err(&with(
            "apiVersion: projectcalico.org/v3\nkind: NetworkPolicy\nmetadata: {name: deny}"
        )),
        "document 7: unknown kind \"NetworkPolicy\" (podwire reads IPPool, Node, IPAMBlock, WorkloadEndpoint, FelixConfiguration)"
    );
}

#[test]
fn api_version_is_checked() {
    assert_eq!(
        err(&replace(
            "apiVersion: projectcalico.org/v3\nkind: IPPool",
            "apiVersion: v1\nkind: IPPool"
        )),
        "document 1 (IPPool \"pool-a\"): apiVersion: \"v1\" is not supported (expected projectcalico.org/v3 or crd.projectcalico.org/v1)"
    );
    assert_eq!(
        err(&replace(
            "apiVersion: projectcalico.org/v3\nkind: IPPool",
            "kind: IPPool"
        )),
        "document 1 (IPPool \"pool-a\"): apiVersion: missing"
    );
    // The CRD form of the same resources is accepted.
    parse(&replace(
        "apiVersion: projectcalico.org/v3\nkind: IPPool",
        "apiVersion: crd.projectcalico.org/v1\nkind: IPPool",
    ))
    .unwrap();
}

#[test]
fn name_and_spec_are_required() {
    assert_eq!(
        err(&replace("metadata:\n  name: pool-a\n", "metadata: {}\n")),
        "document 1 (IPPool <unnamed>): metadata.name: missing"
    );
    assert_eq!(
        err(&with(
            "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata: {name: p2}"
        )),
        "document 7 (IPPool \"p2\"): spec: missing"
    );
}

#[test]
fn type_errors_name_the_field_path() {
    let e = err(&replace(
        "cidr: 10.2.0.0/16",
        "cidr: 10.2.0.0/16\n  blockSize: big",
    ));
    assert!(
        e.starts_with(
            "document 1 (IPPool \"pool-a\"): spec.blockSize: invalid type: string \"big\""
        ),
        "{e}"
    );
    let e = err(&replace(
        "ipNetworks: [10.2.36.68/32]",
        "ipNetworks: 10.2.36.68/32",
    ));
    assert!(
        e.starts_with(
            "document 6 (WorkloadEndpoint \"w1\"): spec.ipNetworks: invalid type: string"
        ),
        "{e}"
    );
}

#[test]
fn pool_cidr_rules() {
    let p = |cidr: &str| err(&replace("cidr: 10.2.0.0/16", &format!("cidr: {cidr}")));
    assert_eq!(
        p("10.2.0.0/33"),
        "document 1 (IPPool \"pool-a\"): spec.cidr: \"10.2.0.0/33\" is not a valid IPv4 CIDR"
    );
    assert_eq!(
        p("banana/16"),
        "document 1 (IPPool \"pool-a\"): spec.cidr: \"banana/16\" is not a valid IPv4 CIDR"
    );
    assert_eq!(
        p("10.2.0.0"),
        "document 1 (IPPool \"pool-a\"): spec.cidr: \"10.2.0.0\" has no prefix length (expected a CIDR like 10.0.0.0/16)"
    );
    assert_eq!(
        p("10.2.0.1/16"),
        "document 1 (IPPool \"pool-a\"): spec.cidr: 10.2.0.1/16 has host bits set (the network is 10.2.0.0/16)"
    );
    assert_eq!(
        p("fd00::/48"),
        "document 1 (IPPool \"pool-a\"): spec.cidr: fd00::/48 is IPv6; IPv6 is not supported yet"
    );
    assert_eq!(
        err(&replace("  cidr: 10.2.0.0/16\n", "")),
        "document 1 (IPPool \"pool-a\"): spec.cidr: missing"
    );
}

#[test]
fn pool_block_size_rules() {
    let p = |extra: &str| {
        err(&replace(
            "cidr: 10.2.0.0/16",
            &format!("cidr: 10.2.0.0/16\n  {extra}"),
        ))
    };
    assert_eq!(
        p("blockSize: 19"),
        "document 1 (IPPool \"pool-a\"): spec.blockSize: 19 is out of range (an IPv4 pool's blocks are /20 to /32)"
    );
    assert_eq!(
        p("blockSize: 33"),
        "document 1 (IPPool \"pool-a\"): spec.blockSize: 33 is out of range (an IPv4 pool's blocks are /20 to /32)"
    );
    assert_eq!(
        err(&replace("cidr: 10.2.0.0/16", "cidr: 10.2.0.0/27")),
        "document 1 (IPPool \"pool-a\"): spec.blockSize: blocks of /26 do not fit in the pool 10.2.0.0/27 (its prefix must be /26 or shorter)"
    );
}

#[test]
fn pool_mode_rules() {
    assert_eq!(
        err(&replace("vxlanMode: Always", "vxlanMode: Sometimes")),
        "document 1 (IPPool \"pool-a\"): spec.vxlanMode: \"Sometimes\" is not a mode (expected Never, Always or CrossSubnet)"
    );
    assert_eq!(
        err(&replace(
            "vxlanMode: Always",
            "vxlanMode: Always\n  ipipMode: CrossSubnet"
        )),
        "document 1 (IPPool \"pool-a\"): spec.vxlanMode: Always together with ipipMode CrossSubnet: a pool uses IPIP or VXLAN, not both"
    );
    // Empty means Never.
    let r = parse(&replace(
        "vxlanMode: Always",
        "vxlanMode: \"\"\n  ipipMode: Always",
    ))
    .unwrap();
    assert_eq!(r.pools[0].vxlan_mode, EncapMode::Never);
    assert_eq!(r.pools[0].ipip_mode, EncapMode::Always);
}

#[test]
fn overlapping_pools_are_rejected() {
    let extra = "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata: {name: pool-b}\nspec: {cidr: 10.2.128.0/17}";
    assert_eq!(
        err(&with(extra)),
        "document 7 (IPPool \"pool-b\"): spec.cidr: 10.2.128.0/17 overlaps pool \"pool-a\" (10.2.0.0/16) in document 1"
    );
    let disjoint = "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata: {name: pool-b}\nspec: {cidr: 10.3.0.0/16, natOutgoing: true, disabled: true}";
    let r = parse(&with(disjoint)).unwrap();
    assert!(r.pools[1].nat_outgoing && r.pools[1].disabled);
}

/// Without `spec.bgp.ipv4Address`, a Node's address is its first IPv4
/// InternalIP, else its first IPv4 ExternalIP (Felix's `FindNodeAddress`
/// fallback in `felix/calc/l3_route_resolver.go`); the BGP address wins.
#[test]
fn node_address_falls_back_to_internal_then_external_ip() {
    let node = |spec: &str| {
        let text = format!(
            "apiVersion: projectcalico.org/v3\nkind: Node\nmetadata: {{name: n}}\nspec: {spec}"
        );
        parse(&text).unwrap().nodes[0].ipv4
    };
    let net = |s: &str| Some(s.parse().unwrap());
    let both = "addresses: [{address: 'fd00::5', type: InternalIP}, {address: 203.0.113.5, type: ExternalIP}, {address: 10.0.0.5/24, type: InternalIP}]";
    assert_eq!(node(&format!("{{{both}}}")), net("10.0.0.5/24"));
    assert_eq!(
        node("{addresses: [{address: 203.0.113.5, type: ExternalIP}]}"),
        net("203.0.113.5/32")
    );
    assert_eq!(
        node(&format!(
            "{{bgp: {{ipv4Address: 192.168.33.55/24}}, {both}}}"
        )),
        net("192.168.33.55/24")
    );
    assert_eq!(
        node("{addresses: [{address: 'fd00::5', type: InternalIP}]}"),
        None
    );
}

#[test]
fn node_address_rules() {
    // Without a prefix length, a /32 (as Calico's validator accepts it).
    let r = parse(&replace(
        "ipv4Address: 192.168.33.55/24",
        "ipv4Address: 192.168.33.55",
    ))
    .unwrap();
    assert_eq!(r.nodes[0].ipv4, Some("192.168.33.55/32".parse().unwrap()));
    assert_eq!(
        err(&replace(
            "ipv4Address: 192.168.33.55/24",
            "ipv4Address: 192.168.33.555/24"
        )),
        "document 2 (Node \"n1\"): spec.bgp.ipv4Address: \"192.168.33.555/24\" is not a valid IPv4 CIDR"
    );
    assert_eq!(
        err(&replace(
            "ipv4VXLANTunnelAddr: 10.2.36.65",
            "ipv4VXLANTunnelAddr: 10.2.36"
        )),
        "document 2 (Node \"n1\"): spec.ipv4VXLANTunnelAddr: \"10.2.36\" is not an IPv4 address"
    );
    assert_eq!(
        err(&replace(
            "ipv4Address: 192.168.33.57/24",
            "ipv4Address: 192.168.33.55/24"
        )),
        "document 3 (Node \"n2\"): spec.bgp.ipv4Address: 192.168.33.55 is also that of node \"n1\" in document 2"
    );
    assert_eq!(
        err(&replace(
            "ipv4VXLANTunnelAddr: 10.2.169.137",
            "ipv4VXLANTunnelAddr: 10.2.36.65"
        )),
        "document 3 (Node \"n2\"): spec.ipv4VXLANTunnelAddr: 10.2.36.65 is also that of node \"n1\" in document 2"
    );
}

#[test]
fn node_vtep_mac_rules() {
    let mac = |m: &str| {
        replace(
            "ipv4VXLANTunnelAddr: 10.2.169.137",
            &format!("ipv4VXLANTunnelAddr: 10.2.169.137\n  vxlanTunnelMACAddr: {m}"),
        )
    };
    assert_eq!(
        err(&mac("66:90:43:3d:b3")),
        "document 3 (Node \"n2\"): spec.vxlanTunnelMACAddr: \"66:90:43:3d:b3\": not a MAC address (expected six hex octets separated by ':', like 66:8c:73:5a:90:99)"
    );
    assert_eq!(
        err(&mac("01:00:5e:00:00:01")),
        "document 3 (Node \"n2\"): spec.vxlanTunnelMACAddr: 01:00:5e:00:00:01 is a multicast address"
    );
    // n1 has no MAC: it gets Felix's derived one; giving n2 the same clashes.
    let derived = super::vtep_mac_for("n1");
    assert_eq!(
        err(&mac(&derived.to_string())),
        format!(
            "document 3 (Node \"n2\"): spec.vxlanTunnelMACAddr: VTEP MAC {derived} is also that of node \"n1\" in document 2"
        )
    );
    let r = parse(&mac("66:90:43:3d:b3:e7")).unwrap();
    assert_eq!(r.nodes[1].vtep_mac().to_string(), "66:90:43:3d:b3:e7");
    assert_eq!(r.nodes[0].vtep_mac(), derived);
}

#[test]
fn block_rules() {
    assert_eq!(
        err(&replace("cidr: 10.2.169.128/26", "cidr: 10.9.0.0/26")),
        "document 5 (IPAMBlock \"b2\"): spec.cidr: 10.9.0.0/26 is outside every IPPool"
    );
    assert_eq!(
        err(&replace("cidr: 10.2.169.128/26", "cidr: 10.2.169.128/27")),
        "document 5 (IPAMBlock \"b2\"): spec.cidr: 10.2.169.128/27 is a /27 block, but pool \"pool-a\" has blockSize 26"
    );
    assert_eq!(
        err(&replace("cidr: 10.2.169.128/26", "cidr: 10.2.169.129/26")),
        "document 5 (IPAMBlock \"b2\"): spec.cidr: 10.2.169.129/26 has host bits set (the network is 10.2.169.128/26)"
    );
    assert_eq!(
        err(&replace("affinity: host:n2", "affinity: host:n9")),
        "document 5 (IPAMBlock \"b2\"): spec.affinity: node \"n9\" is not defined in this configuration"
    );
    assert_eq!(
        err(&replace("affinity: host:n2", "affinity: \"host:\"")),
        "document 5 (IPAMBlock \"b2\"): spec.affinity: \"host:\" names no node"
    );
    let overlapping = "apiVersion: crd.projectcalico.org/v1\nkind: IPAMBlock\nmetadata: {name: b3}\nspec: {cidr: 10.2.36.64/26, affinity: host:n2}";
    assert_eq!(
        err(&with(overlapping)),
        "document 7 (IPAMBlock \"b3\"): spec.cidr: 10.2.36.64/26 overlaps block \"b1\" (10.2.36.64/26) in document 4"
    );
}

#[test]
fn block_owner_must_be_routable() {
    assert_eq!(
        err(&replace("  bgp:\n    ipv4Address: 192.168.33.57/24\n", "")),
        "document 5 (IPAMBlock \"b2\"): spec.affinity: node \"n2\" has no spec.bgp.ipv4Address, so its block cannot be routed"
    );
    // A node of a VXLAN pool without a tunnel address yet (just joined) is
    // no error: it is not routed until it has one (see the compiler's tests).
    let r = parse(&replace("  ipv4VXLANTunnelAddr: 10.2.169.137\n", "")).unwrap();
    assert_eq!(r.node("n2").unwrap().vxlan_tunnel_addr, None);
}

#[test]
fn deleted_and_unaffine_blocks() {
    // A deleted block is ignored entirely, even with a bad CIDR.
    let deleted = "apiVersion: crd.projectcalico.org/v1\nkind: IPAMBlock\nmetadata: {name: gone}\nspec: {cidr: not-a-cidr, deleted: true}";
    assert_eq!(parse(&with(deleted)).unwrap().blocks.len(), 2);
    // A block with no host affinity is kept but belongs to no node.
    let loose = "apiVersion: crd.projectcalico.org/v1\nkind: IPAMBlock\nmetadata: {name: loose}\nspec: {cidr: 10.2.1.0/26, affinity: \"virtual:x\"}";
    let r = parse(&with(loose)).unwrap();
    assert_eq!(r.blocks[2].node, None);
}

#[test]
fn workload_field_rules() {
    let w = |from: &str, to: &str| err(&replace(from, to));
    assert_eq!(
        w("  node: n1\n  interfaceName", "  interfaceName"),
        "document 6 (WorkloadEndpoint \"w1\"): spec.node: missing"
    );
    assert_eq!(
        w("  interfaceName: cali0001\n", ""),
        "document 6 (WorkloadEndpoint \"w1\"): spec.interfaceName: missing"
    );
    assert_eq!(
        w("interfaceName: cali0001", "interfaceName: cali0123456789ab"),
        "document 6 (WorkloadEndpoint \"w1\"): spec.interfaceName: \"cali0123456789ab\" is 16 bytes long; Linux interface names have at most 15"
    );
    assert_eq!(
        w("interfaceName: cali0001", "interfaceName: \"cali/01\""),
        "document 6 (WorkloadEndpoint \"w1\"): spec.interfaceName: \"cali/01\" contains '/', which Linux does not allow in an interface name"
    );
    assert_eq!(
        w("interfaceName: cali0001", "interfaceName: \"cali 01\""),
        "document 6 (WorkloadEndpoint \"w1\"): spec.interfaceName: \"cali 01\" contains ' ', which Linux does not allow in an interface name"
    );
    assert_eq!(
        w("interfaceName: cali0001", "interfaceName: \"..\""),
        "document 6 (WorkloadEndpoint \"w1\"): spec.interfaceName: \"..\" is not a valid interface name"
    );
    assert_eq!(
        w("interfaceName: cali0001", "interfaceName: \"\""),
        "document 6 (WorkloadEndpoint \"w1\"): spec.interfaceName: is empty"
    );
    // 15 bytes is the limit, and is accepted.
    parse(&replace(
        "interfaceName: cali0001",
        "interfaceName: cali0123456789a",
    ))
    .unwrap();
}

#[test]
fn workload_address_rules() {
    let ips = |list: &str| {
        err(&replace(
            "ipNetworks: [10.2.36.68/32]",
            &format!("ipNetworks: [{list}]"),
        ))
    };
    assert_eq!(
        ips("10.2.36.68/32, 10.2.36.64/30"),
        "document 6 (WorkloadEndpoint \"w1\"): spec.ipNetworks[1]: 10.2.36.64/30 is not a /32 (a workload has single addresses)"
    );
    assert_eq!(
        ips("\"fd00::1/128\""),
        "document 6 (WorkloadEndpoint \"w1\"): spec.ipNetworks[0]: fd00::1/128 is IPv6; IPv6 is not supported yet"
    );
    // Addresses outside the workload's node's blocks are borrowed, not
    // errors (SPEC §1): one in no block, one in n2's block.
    for ip in ["10.2.1.1/32", "10.2.169.130/32"] {
        let text = replace(
            "ipNetworks: [10.2.36.68/32]",
            &format!("ipNetworks: [{ip}]"),
        );
        assert!(parse(&text).is_ok(), "{ip}");
    }
}

#[test]
fn workload_cross_rules() {
    let second = |iface: &str, ip: &str, node: &str| {
        format!(
            "apiVersion: projectcalico.org/v3\nkind: WorkloadEndpoint\nmetadata: {{name: w2, namespace: default}}\nspec: {{node: {node}, interfaceName: {iface}, ipNetworks: [{ip}]}}"
        )
    };
    assert_eq!(
        err(&with(&second("cali0002", "10.2.36.68/32", "n1"))),
        "document 7 (WorkloadEndpoint \"w2\"): spec.ipNetworks[0]: 10.2.36.68/32 is also an address of workload \"w1\" (document 6)"
    );
    assert_eq!(
        err(&with(&second("cali0001", "10.2.36.69/32", "n1"))),
        "document 7 (WorkloadEndpoint \"w2\"): spec.interfaceName: \"cali0001\" is also the interface of workload \"w1\" (document 6) on node \"n1\""
    );
    assert_eq!(
        err(&with(&second("cali0002", "10.2.36.69/32", "n7"))),
        "document 7 (WorkloadEndpoint \"w2\"): spec.node: node \"n7\" is not defined in this configuration"
    );
    // The same interface name on another node is fine.
    parse(&with(&second("cali0001", "10.2.169.130/32", "n2"))).unwrap();
}

#[test]
fn duplicate_names_are_rejected() {
    let dup = "apiVersion: projectcalico.org/v3\nkind: Node\nmetadata: {name: n2}\nspec: {}";
    assert_eq!(
        err(&with(dup)),
        "document 7 (Node \"n2\"): metadata.name: a Node of this name is already defined in document 3"
    );
    // Workload names are per namespace.
    let other_ns = "apiVersion: projectcalico.org/v3\nkind: WorkloadEndpoint\nmetadata: {name: w1, namespace: other}\nspec: {node: n1, interfaceName: cali0002, ipNetworks: [10.2.36.69/32]}";
    parse(&with(other_ns)).unwrap();
    let same_ns = other_ns.replace("namespace: other", "namespace: default");
    assert_eq!(
        err(&with(&same_ns)),
        "document 7 (WorkloadEndpoint \"w1\"): metadata.name: a WorkloadEndpoint of this name is already defined in document 6"
    );
}

#[test]
fn felix_configuration_rules() {
    let fc = |spec: &str| {
        with(&format!(
            "apiVersion: projectcalico.org/v3\nkind: FelixConfiguration\nmetadata: {{name: default}}\nspec: {{{spec}}}"
        ))
    };
    assert_eq!(
        err(&fc("vxlanVNI: 16777216")),
        "document 7 (FelixConfiguration \"default\"): spec.vxlanVNI: 16777216 is out of range (a VNI has 24 bits: 1 to 16777215)"
    );
    assert_eq!(
        err(&fc("vxlanVNI: 0")),
        "document 7 (FelixConfiguration \"default\"): spec.vxlanVNI: 0 is out of range (a VNI has 24 bits: 1 to 16777215)"
    );
    assert_eq!(
        err(&fc("vxlanPort: 65536")),
        "document 7 (FelixConfiguration \"default\"): spec.vxlanPort: 65536 is not a UDP port (1 to 65535)"
    );
    assert_eq!(
        err(&fc("vxlanMTU: 67")),
        "document 7 (FelixConfiguration \"default\"): spec.vxlanMTU: 67 is out of range (0 for automatic, or 68 to 65535)"
    );
    assert_eq!(
        err(&fc("ipipMTU: -1")),
        "document 7 (FelixConfiguration \"default\"): spec.ipipMTU: -1 is out of range (0 for automatic, or 68 to 65535)"
    );
    let r = parse(&fc(
        "vxlanVNI: 7, vxlanPort: 8472, vxlanMTU: 0, ipipMTU: 1400, unknownField: x",
    ))
    .unwrap();
    let s = r.felix_settings("n1");
    assert_eq!(
        s,
        FelixSettings {
            vxlan_vni: 7,
            vxlan_port: 8472,
            vxlan_mtu: None,
            ipip_mtu: Some(1400)
        }
    );
}

#[test]
fn felix_defaults_and_per_node_override() {
    let r = parse(BASE).unwrap();
    assert_eq!(
        r.felix_settings("n1"),
        FelixSettings {
            vxlan_vni: 4096,
            vxlan_port: 4789,
            vxlan_mtu: None,
            ipip_mtu: None
        }
    );
    let text = with(
        "apiVersion: projectcalico.org/v3\nkind: FelixConfiguration\nmetadata: {name: default}\nspec: {vxlanVNI: 5000, vxlanMTU: 1400}\n---\napiVersion: projectcalico.org/v3\nkind: FelixConfiguration\nmetadata: {name: node.n2}\nspec: {vxlanMTU: 1300}",
    );
    let r = parse(&text).unwrap();
    assert_eq!(r.felix_settings("n1").vxlan_mtu, Some(1400));
    assert_eq!(r.felix_settings("n2").vxlan_mtu, Some(1300));
    assert_eq!(r.felix_settings("n2").vxlan_vni, 5000);
}

#[test]
fn lists_are_expanded_and_items_located() {
    let list = "apiVersion: projectcalico.org/v3\nkind: WorkloadEndpointList\nitems:\n- apiVersion: projectcalico.org/v3\n  kind: WorkloadEndpoint\n  metadata: {name: w2}\n  spec: {node: n1, interfaceName: cali0002, ipNetworks: [10.2.36.69/32]}\n- apiVersion: projectcalico.org/v3\n  kind: WorkloadEndpoint\n  metadata: {name: w3}\n  spec: {node: n1, interfaceName: cali0003, ipNetworks: [10.2.36.999/32]}";
    assert_eq!(
        err(&with(list)),
        "document 7 item 2 (WorkloadEndpoint \"w3\"): spec.ipNetworks[0]: \"10.2.36.999/32\" is not a valid IPv4 CIDR"
    );
    let good = list.replace("10.2.36.999", "10.2.36.70");
    assert_eq!(parse(&with(&good)).unwrap().endpoints.len(), 3);
    // kubectl's generic List works the same; empty items are fine.
    let kubectl = good.replace("kind: WorkloadEndpointList", "kind: List");
    assert_eq!(parse(&with(&kubectl)).unwrap().endpoints.len(), 3);
    assert!(parse(&with("apiVersion: v1\nkind: List\nitems: []")).is_ok());
    assert_eq!(
        err(&with("apiVersion: v1\nkind: List\nitems: 3")),
        "document 7: items: expected a list, found a number"
    );
}

#[test]
fn empty_documents_and_unknown_fields_are_ignored() {
    let text = format!(
        "---\n---\n{}\n---\n",
        BASE.replace("kind: Node\n", "kind: Node\nstatus: {podCIDRs: []}\n")
    );
    assert_eq!(parse(&text).unwrap().nodes.len(), 2);
    assert_eq!(parse("").unwrap(), Resources::default());
}

#[test]
fn a_bad_file_yields_nothing() {
    // The error is for the last document; nothing of the valid first ones escapes.
    let r = parse(&with("apiVersion: projectcalico.org/v3\nkind: Mystery"));
    assert!(r.is_err());
}

#[test]
fn load_reports_unreadable_files() {
    let e = load(std::path::Path::new("/nonexistent/podwire.yaml")).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("cannot read /nonexistent/podwire.yaml: "),
        "{e}"
    );
}
