//! A read of Calico's etcd datastore gives the tables the file gives: the
//! keys and values of `examples/vxlan.yaml` as Calico's etcdv3 backend
//! writes them (`tests/fixtures/vxlan.etcd`, derived by hand from
//! libcalico-go's struct tags: v3 resources with their metadata,
//! `model.AllocationBlock`s with all their allocations, affinities,
//! handles), beside keys podwire does not read and bad values.

use podwire::config::parse;
use podwire::table::{Underlay, compile};
use podwire_etcd::decode::{DecodeError, snapshot};

fn fixture() -> Vec<(String, Vec<u8>)> {
    include_str!("fixtures/vxlan.etcd")
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| {
            let (k, v) = l.split_once(' ').unwrap();
            (k.to_string(), v.as_bytes().to_vec())
        })
        .collect()
}

fn underlay() -> Underlay {
    Underlay {
        name: "eth0".into(),
        mtu: 1500,
    }
}

#[test]
fn every_node_compiles_the_tables_of_the_file() {
    let file = parse(include_str!("../../../examples/vxlan.yaml")).unwrap();
    let kvs = fixture();
    for node in ["k8s-master", "k8s-node1", "k8s-node2"] {
        let s = snapshot(kvs.iter().map(|(k, v)| (k.as_str(), v.as_slice())), node);
        assert!(s.skipped.is_empty(), "{node}: {:?}", s.skipped);
        let r = parse(&s.text).unwrap_or_else(|e| panic!("{node}: {e}\n{}", s.text));
        // Only this node's workloads were read.
        assert!(r.endpoints.iter().all(|w| w.node == node), "{node}");
        assert_eq!(
            compile(&r, node, &underlay()).unwrap().report(),
            compile(&file, node, &underlay()).unwrap().report(),
            "{node}"
        );
    }
}

#[test]
fn a_bad_value_is_left_out_with_its_key() {
    let mut kvs = fixture();
    let bad = [
        (
            "/calico/resources/v3/projectcalico.org/ippools/broken",
            b"{not json".to_vec(),
            "not JSON",
        ),
        (
            "/calico/resources/v3/projectcalico.org/nodes/k8s-node3",
            br#"{"kind":"IPPool","apiVersion":"projectcalico.org/v3","metadata":{"name":"k8s-node3"},"spec":{}}"#.to_vec(),
            "key is for a Node",
        ),
        (
            "/calico/ipam/v2/assignment/ipv4/block/10.2.9.0-26",
            br#"{"cidr":"10.2.9.0/266","affinity":"host:k8s-node3"}"#.to_vec(),
            "spec.cidr",
        ),
        (
            "/calico/resources/v3/projectcalico.org/felixconfigurations/node.k8s-node1",
            b"[1, 2]".to_vec(),
            "not a JSON object",
        ),
        (
            "/calico/resources/v3/projectcalico.org/workloadendpoints/default/k8s--node1-k8s-x-eth0",
            vec![0xff, 0xfe],
            "not UTF-8",
        ),
    ];
    for (k, v, _) in &bad {
        kvs.push((k.to_string(), v.clone()));
    }
    // Another node's endpoint is dropped by its key: its value is never read.
    kvs.push((
        "/calico/resources/v3/projectcalico.org/workloadendpoints/default/k8s--node2-k8s-y-eth0"
            .into(),
        b"garbage".to_vec(),
    ));
    let s = snapshot(
        kvs.iter().map(|(k, v)| (k.as_str(), v.as_slice())),
        "k8s-node1",
    );
    assert_eq!(s.skipped.len(), bad.len(), "{:?}", s.skipped);
    for ((key, err), (k, _, why)) in s.skipped.iter().zip(&bad) {
        assert_eq!(key, k);
        assert!(err.to_string().contains(why), "{key}: {err}");
    }
    assert!(matches!(s.skipped[1].1, DecodeError::WrongKind { .. }));
    // The rest still compiles to the file's tables.
    let file = parse(include_str!("../../../examples/vxlan.yaml")).unwrap();
    let r = parse(&s.text).unwrap();
    assert_eq!(
        compile(&r, "k8s-node1", &underlay()).unwrap().report(),
        compile(&file, "k8s-node1", &underlay()).unwrap().report()
    );
}
