//! The host path (SPEC §10): what goes to the node's kernel through the host
//! interface, what comes from it, and the replies of kernel-NATed flows.

use super::*;
use crate::table::compile_with;

const HOST: &str = "podwire0";

/// k8s-node1's tables with the host path on (node1's VXLAN tunnel address
/// is 10.2.36.65, inside its block 10.2.36.64/26).
fn host_tables() -> Tables {
    let r = cluster(EncapMode::Always).resources().unwrap();
    compile_with(
        &r,
        "k8s-node1",
        &Underlay {
            name: "eth0".into(),
            mtu: 1500,
        },
        Some(HOST),
    )
    .unwrap()
}

/// An IPv4 packet `src` → `dst` with TTL 64, protocol `proto` and `l4`
/// after the header (valid header checksum).
fn ip(src: [u8; 4], dst: [u8; 4], proto: u8, l4: &[u8]) -> Vec<u8> {
    let len = (20 + l4.len()) as u16;
    let mut p = vec![0x45, 0, 0, 0, 0x12, 0x34, 0x40, 0, 64, proto, 0, 0];
    p[2..4].copy_from_slice(&len.to_be_bytes());
    p.extend_from_slice(&src);
    p.extend_from_slice(&dst);
    p.extend_from_slice(l4);
    fix_ip_csum(&mut p, 0);
    p
}

/// A UDP header and 4 bytes of payload (checksum 0: none).
fn udp(sport: u16, dport: u16) -> Vec<u8> {
    let mut u = Vec::new();
    u.extend_from_slice(&sport.to_be_bytes());
    u.extend_from_slice(&dport.to_be_bytes());
    u.extend_from_slice(&[0, 12, 0, 0, 1, 2, 3, 4]);
    u
}

/// `inner` as VXLAN from k8s-node2 to k8s-node1 (VNI 4096, UDP checksum
/// 0, inner destination node1's VTEP MAC).
fn from_node2(inner: &[u8]) -> Vec<u8> {
    let mut payload = udp(40_000, 4789)[..8].to_vec();
    let udp_len = (8 + 8 + 14 + inner.len()) as u16;
    payload[4..6].copy_from_slice(&udp_len.to_be_bytes());
    payload.extend(hex(VXLAN_4096));
    payload.extend(hex("66 8c 73 5a 90 99 66 90 43 3d b3 e7 08 00"));
    payload.extend_from_slice(inner);
    ip([192, 168, 33, 57], [192, 168, 33, 55], 17, &payload)
}

fn host(t: &Tables) -> EndpointId {
    t.host().unwrap()
}

#[test]
fn the_host_interface_is_an_endpoint_after_the_workloads() {
    let t = host_tables();
    let h = host(&t);
    assert_eq!(h.index(), t.endpoints().len() - 1);
    assert_eq!(t.endpoint(h).unwrap().interface, HOST);
    assert_eq!(t.host_addrs(), &[Ipv4Addr::new(10, 2, 36, 65)]);
    // The smallest MTU of the pools' modes: VXLAN's 1450 (IPIP's is 1480).
    assert_eq!(t.endpoint(h).unwrap().mtu, 1450);
    // The routes `show routes` prints are a Calico node's, unchanged.
    assert_eq!(t.routes_text(), tables("k8s-node1").routes_text());
    assert!(tables("k8s-node1").host().is_none());
}

#[test]
fn pods_reach_outside_every_pool_and_the_nodes_own_address_through_the_kernel() {
    let t = host_tables();
    for dst in [[8, 8, 8, 8], [192, 168, 33, 55], [10, 96, 0, 10]] {
        let p = ip([10, 2, 36, 68], dst, 17, &udp(5353, 53));
        let (v, out) = run_egress(&t, "cali1", &p);
        assert_eq!(v, Verdict::Deliver(host(&t)), "to {dst:?}");
        // The kernel is the router: podwire leaves the TTL to it.
        assert_eq!(out, p, "unchanged, TTL 64");
    }
    // The node's VXLAN tunnel address is inside its own block (a
    // blackhole otherwise): it is the kernel's.
    let p = ip([10, 2, 36, 68], [10, 2, 36, 65], 1, &hex(ICMP_ECHO));
    assert_eq!(run_egress(&t, "cali1", &p).0, Verdict::Deliver(host(&t)));
    // Inside a pool but on no route: still no route (never the kernel).
    let p = ip([10, 2, 36, 68], [10, 2, 200, 1], 17, &udp(1, 2));
    assert_eq!(
        run_egress(&t, "cali1", &p).0,
        Verdict::Drop(DropReason::NoRoute)
    );
    // Without the host path, outside every pool is no route.
    let p = ip([10, 2, 36, 68], [8, 8, 8, 8], 17, &udp(5353, 53));
    assert_eq!(
        run_egress(&tables("k8s-node1"), "cali1", &p).0,
        Verdict::Drop(DropReason::NoRoute)
    );
    // Anti-spoofing holds on the way to the kernel.
    let p = ip([10, 2, 36, 99], [8, 8, 8, 8], 17, &udp(5353, 53));
    assert_eq!(
        run_egress(&t, "cali1", &p).0,
        Verdict::Drop(DropReason::SpoofedSource)
    );
}

#[test]
fn the_kernel_reaches_local_and_remote_pods_and_nothing_else() {
    let t = host_tables();
    // The node (its tunnel address) to a local pod: delivered as sent.
    let p = ip([10, 2, 36, 65], [10, 2, 36, 68], 1, &hex(ICMP_ECHO));
    let (v, out) = run_egress(&t, HOST, &p);
    assert_eq!(v, Verdict::Deliver(ep(&t, "cali1")));
    assert_eq!(out, p, "TTL left at 64: the kernel delivered it locally");
    // A source outside every pool is fine from the kernel (a de-NATed
    // reply from the internet).
    let p = ip([8, 8, 8, 8], [10, 2, 36, 69], 17, &udp(53, 5353));
    assert_eq!(
        run_egress(&t, HOST, &p).0,
        Verdict::Deliver(ep(&t, "cali2"))
    );
    // To a remote pod: VXLAN to node2, inner TTL 64 (node2 decrements it
    // as it delivers, as the kernel path does).
    let p = ip([10, 2, 36, 65], [10, 2, 169, 138], 1, &hex(ICMP_ECHO));
    let (v, out) = run_egress(&t, HOST, &p);
    assert!(matches!(v, Verdict::Send(Target::Vxlan { node, .. }) if node == NODE2));
    assert_eq!(&out[50..], &p[..]);
    // Outside every pool, the node's own address, a local block's hole,
    // and encapsulated traffic: dropped and counted, never looped.
    for (dst, proto, l4, reason) in [
        ([8, 8, 8, 8], 17, udp(1, 2), DropReason::NoRoute),
        ([10, 2, 36, 65], 17, udp(1, 2), DropReason::NoRoute),
        ([10, 2, 36, 70], 17, udp(1, 2), DropReason::Blackhole),
        (
            [10, 2, 169, 138],
            17,
            udp(1, 4789),
            DropReason::EncapFromWorkload,
        ),
        (
            [10, 2, 169, 138],
            4,
            hex(INNER_VXLAN_TTL64),
            DropReason::EncapFromWorkload,
        ),
    ] {
        let p = ip([192, 168, 33, 55], dst, proto, &l4);
        assert_eq!(run_egress(&t, HOST, &p).0, Verdict::Drop(reason), "{dst:?}");
    }
}

#[test]
fn from_the_underlay_only_the_nodes_tunnel_address_reaches_the_kernel() {
    let t = host_tables();
    let inner = ip([10, 2, 169, 138], [10, 2, 36, 65], 1, &hex(ICMP_ECHO));
    let (v, out) = run_ingress(&t, &from_node2(&inner));
    assert_eq!(v, Verdict::Deliver(host(&t)));
    assert_eq!(out, inner, "taken as the kernel's own: TTL unchanged");
    for dst in [[8, 8, 8, 8], [192, 168, 33, 55]] {
        let inner = ip([10, 2, 169, 138], dst, 1, &hex(ICMP_ECHO));
        assert_eq!(
            run_ingress(&t, &from_node2(&inner)).0,
            Verdict::Drop(DropReason::NotLocal),
            "{dst:?}"
        );
    }
    // Without the host path, the tunnel address is in a blackholed block.
    assert_eq!(
        run_ingress(&tables("k8s-node1"), &from_node2(&inner)).0,
        Verdict::Drop(DropReason::NotLocal)
    );
}

#[test]
fn replies_of_kernel_natted_flows_go_back_through_the_kernel() {
    let t = host_tables();
    t.flows().set_now(1000);
    // cali1 (10.2.36.68:40001) → ClusterIP 10.96.0.10:53, DNATed by the
    // kernel to the pod 10.2.169.138:5353 on node2, comes back from the
    // host interface and goes to node2.
    let dnat = ip([10, 2, 36, 68], [10, 2, 169, 138], 17, &udp(40_001, 5353));
    assert!(matches!(
        run_egress(&t, HOST, &dnat).0,
        Verdict::Send(Target::Vxlan { .. })
    ));
    assert_eq!(t.flows().counts().recorded, 1);
    // The backend's reply arrives from node2: to the kernel, TTL as sent
    // (the kernel decrements it as it un-NATs and forwards it).
    let reply = ip([10, 2, 169, 138], [10, 2, 36, 68], 17, &udp(5353, 40_001));
    let (v, out) = run_ingress(&t, &from_node2(&reply));
    assert_eq!(v, Verdict::Deliver(host(&t)));
    assert_eq!(out, reply);
    // Another flow between the same pods goes straight to the pod.
    let other = ip([10, 2, 169, 138], [10, 2, 36, 68], 17, &udp(5353, 40_002));
    let (v, out) = run_ingress(&t, &from_node2(&other));
    assert_eq!(v, Verdict::Deliver(ep(&t, "cali1")));
    assert_eq!(out[8], 63, "forwarded by podwire: TTL decremented");

    // A backend on the same node: cali1 → ClusterIP → cali2 (10.2.36.69).
    let dnat = ip([10, 2, 36, 68], [10, 2, 36, 69], 6, &udp(40_003, 80));
    assert_eq!(
        run_egress(&t, HOST, &dnat).0,
        Verdict::Deliver(ep(&t, "cali2"))
    );
    let reply = ip([10, 2, 36, 69], [10, 2, 36, 68], 6, &udp(80, 40_003));
    let (v, out) = run_egress(&t, "cali2", &reply);
    assert_eq!(v, Verdict::Deliver(host(&t)));
    assert_eq!(out, reply);
    // The kernel's own traffic to pods (its source outside the pools'
    // flows: the node IP) records nothing.
    let before = t.flows().counts().recorded;
    let p = ip([192, 168, 33, 55], [10, 2, 36, 69], 6, &udp(40_004, 80));
    run_egress(&t, HOST, &p);
    assert_eq!(t.flows().counts().recorded, before);
}
