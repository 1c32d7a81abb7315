//! podwire on Calico's etcdv3 datastore (SPEC §9), as root, with real etcd
//! servers (Debian's etcd 3.4) started by the tests in their namespaces on
//! the underlay, their data in the tests' directories, stopped by PID:
//! the tables equal the file's; nodes, blocks and endpoints added and
//! removed live; forwarding through an etcd SIGKILL, a restart and a
//! partition during which the revision is compacted (a relist, counted);
//! a three-member cluster losing its leader.

mod common;

use std::time::{Duration, Instant};

use common::etcd::{self, Member, ctl};
use common::{NODES, PODWIRE, Testbed, cluster, ping, root_or_skip, testbed};
use podwire::config::cluster::Endpoint;

/// The etcd member's address on the underlay (beside the nodes' /24).
const ETCD_IP: &str = "192.168.33.250";

/// A testbed of `nodes` (namespaces n1, n2…) with `pods`, and one etcd
/// member attached to its switch, holding the testbed's cluster (imported
/// with `podwire datastore import`).
fn etcd_testbed(mode: &str, pods: &[&str], nodes: &[&str]) -> (Testbed, Member) {
    let mut t = testbed(mode, pods, nodes);
    let ens = t.lab.netns("etcd");
    t.lab
        .attach(&t.sw, "br0", &ens, "eth0", &format!("{ETCD_IP}/24"));
    let m = etcd::cluster(&mut t.lab, &[(&ens, ETCD_IP)]).remove(0);
    let config = t.config.display().to_string();
    let out = t.lab.must_exec(
        &ens,
        &[
            PODWIRE,
            "datastore",
            "import",
            &config,
            "--etcd-endpoints",
            &m.url,
        ],
    );
    assert!(
        out.starts_with("wrote ") && out.contains(" key(s) to etcdv3 "),
        "{out}"
    );
    (t, m)
}

/// Imports `yaml` into the datastore (from the member's namespace).
fn import(t: &Testbed, m: &Member, name: &str, yaml: &str) {
    let file = t.lab.file(name, yaml).display().to_string();
    t.lab.must_exec(
        &m.ns,
        &[
            PODWIRE,
            "datastore",
            "import",
            &file,
            "--etcd-endpoints",
            &m.url,
        ],
    );
}

/// Polls `podwire show topic` until `ok` holds; returns how long it took.
fn until(
    t: &Testbed,
    control: &std::path::Path,
    topic: &str,
    what: &str,
    ok: impl Fn(&str) -> bool,
) -> Duration {
    let start = Instant::now();
    loop {
        let text = t.lab.show(control, topic, false);
        if ok(&text) {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{what}: not seen in 30 s; {topic}:\n{text}\nstats:\n{}",
            t.lab.show(control, "stats", false)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The datastore's state in `podwire show stats --json`.
fn datastore(t: &Testbed, control: &std::path::Path) -> serde_json::Value {
    t.lab.stats(control)["datastore"].clone()
}

/// Node 2's block as Calico's IPAM writes it (`model.AllocationBlock`'s
/// JSON tags): its tunnel address at ordinal 1, and ordinal `lent`, if
/// any, allocated to a pod of k8s-node1.
fn node2_block(lent: Option<usize>) -> String {
    let mut allocations = vec![serde_json::Value::Null; 64];
    allocations[1] = 0.into();
    let mut attributes = vec![serde_json::json!({
        "handle_id": "vxlan-tunnel-addr-k8s-node2",
        "secondary": {"node": "k8s-node2", "type": "vxlanTunnelAddress"},
    })];
    if let Some(o) = lent {
        allocations[o] = 1.into();
        attributes.push(serde_json::json!({
            "handle_id": "k8s-pod-network.4be1e8a5b3c1",
            "secondary": {
                "namespace": "default",
                "node": "k8s-node1",
                "pod": "cali1b",
                "timestamp": "2026-12-02 10:00:00.000000001 +0000 UTC",
            },
        }));
    }
    let unallocated: Vec<usize> = (0..64).filter(|i| allocations[*i].is_null()).collect();
    serde_json::json!({
        "cidr": "10.2.169.128/26",
        "affinity": "host:k8s-node2",
        "strictAffinity": false,
        "allocations": allocations,
        "unallocated": unallocated,
        "attributes": attributes,
        "deleted": false,
        "sequenceNumber": 3,
        "sequenceNumberForAllocation": {"1": 1},
    })
    .to_string()
}

const NODE3_BLOCK: &str = "10.2.235.192/26 via 10.2.235.193 dev vxlan.calico onlink";

#[test]
fn etcd_gives_the_files_tables_and_applies_changes_live() {
    if !root_or_skip("etcd_gives_the_files_tables_and_applies_changes_live") {
        return;
    }
    let (mut t, m) = etcd_testbed("vxlan", &["cali1a", "cali2a"], &["n1", "n2"]);
    // `check` on the datastore prints what it prints for the file.
    let config = t.config.display().to_string();
    let check_file = |ns: &str, file: &str, node: &str| {
        t.lab
            .must_exec(ns, &[PODWIRE, "check", "--config", file, "--node", node])
    };
    let mut from_files = Vec::new();
    for (ns, node) in t.nodes.iter().zip(&NODES) {
        let from_file = check_file(ns, &config, node.name);
        from_files.push(from_file.clone());
        let from_etcd = t.lab.must_exec(
            ns,
            &[
                PODWIRE,
                "check",
                "--datastore",
                "etcdv3",
                "--etcd-endpoints",
                &m.url,
                "--node",
                node.name,
            ],
        );
        assert_eq!(from_etcd, from_file, "{}", node.name);
    }
    // And calicoctl's environment variables do the same.
    let env = t.lab.must_exec(
        &t.nodes[0],
        &[
            "env",
            "DATASTORE_TYPE=etcdv3",
            &format!("ETCD_ENDPOINTS={}", m.url),
            PODWIRE,
            "check",
            "--node",
            NODES[0].name,
        ],
    );
    assert!(env.contains("10.2.169.128/26 via 10.2.169.129"), "{env}");

    // Export prints the datastore back as a file giving the same tables.
    let exported = t.lab.must_exec(
        &m.ns,
        &[PODWIRE, "datastore", "export", "--etcd-endpoints", &m.url],
    );
    assert!(exported.contains("kind: IPAMBlock"), "{exported}");
    let exported = t.lab.file("exported.yaml", &exported).display().to_string();
    for ((ns, node), from_file) in t.nodes.iter().zip(&NODES).zip(&from_files) {
        let b = check_file(ns, &exported, node.name);
        assert_eq!(*from_file, b, "{}", node.name);
    }

    let (n1, n2) = (t.nodes[0].clone(), t.nodes[1].clone());
    let c1 = t.lab.podwire_etcd(&n1, &m.url, NODES[0].name, &[]);
    let c2 = t.lab.podwire_etcd(&n2, &m.url, NODES[1].name, &[]);
    let p1 = t.lab.pod("p1", &n1, "cali1a", "10.2.36.68");
    let p2 = t.lab.pod("p2", &n2, "cali2a", "10.2.169.138");
    ping(&t.lab, &p1, "10.2.169.138", 3);
    let ds = datastore(&t, &c1);
    assert_eq!(ds["connected"], true, "{ds}");
    assert_eq!(ds["in_sync"], true, "{ds}");
    assert!(ds["revision"].as_i64().unwrap() > 1, "{ds}");

    // A node joins: its Node and block appear on the other nodes within a
    // second, without a restart or a signal.
    import(
        &t,
        &m,
        "three.yaml",
        &cluster("vxlan", 3, &["cali1a", "cali2a"]).yaml(),
    );
    let took = until(&t, &c1, "routes", "node 3's block", |r| {
        r.contains(NODE3_BLOCK)
    });
    assert!(
        took < Duration::from_secs(1),
        "node 3 applied after {took:?}"
    );
    until(&t, &c2, "routes", "node 3's block on node 2", |r| {
        r.contains(NODE3_BLOCK)
    });
    assert!(t.lab.show(&c1, "fdb", false).contains("dst 192.168.33.59"));
    // Its block is released: the route goes.
    ctl(
        &t.lab,
        &m.ns,
        &m.url,
        &[
            "del",
            "/calico/ipam/v2/assignment/ipv4/block/10.2.235.192-26",
        ],
    );
    let took = until(&t, &c1, "routes", "node 3's block removed", |r| {
        !r.contains("10.2.235.192/26")
    });
    assert!(
        took < Duration::from_secs(1),
        "removal applied after {took:?}"
    );

    // An endpoint of node 1 created live: its TUN device appears; deleted:
    // it goes. The pods' traffic is not touched.
    import(
        &t,
        &m,
        "more.yaml",
        &cluster("vxlan", 2, &["cali1a", "cali1b", "cali2a"]).yaml(),
    );
    until(&t, &c1, "endpoints", "cali1b created", |e| {
        e.contains("cali1b")
    });
    assert!(
        t.lab
            .ip(&n1, &["link", "show", "cali1b"])
            .contains("cali1b")
    );
    let key = ctl(
        &t.lab,
        &m.ns,
        &m.url,
        &[
            "get",
            "--prefix",
            "--keys-only",
            "/calico/resources/v3/projectcalico.org/workloadendpoints/",
        ],
    );
    let key = key
        .lines()
        .find(|k| k.contains("cali1b"))
        .unwrap_or_else(|| panic!("no endpoint key for cali1b in {key}"))
        .to_string();
    ctl(&t.lab, &m.ns, &m.url, &["del", &key]);
    until(&t, &c1, "endpoints", "cali1b removed", |e| {
        !e.contains("cali1b")
    });
    ping(&t.lab, &p1, "10.2.169.138", 3);
    ping(&t.lab, &p2, "10.2.36.68", 3);

    // A borrowed address: node 1's new pod holds 10.2.169.150 of node 2's
    // block. Node 2 never reads node 1's endpoints; it learns where the
    // address lives from its own block's allocation, as Felix does, and
    // routes it to node 1, whose pod answers.
    let borrowed = cluster("vxlan", 2, &["cali1a", "cali2a"]).with(Endpoint::new(
        NODES[0].name,
        "cali1b",
        "10.2.169.150",
    ));
    import(&t, &m, "borrowed.yaml", &borrowed.yaml());
    let block_key = "/calico/ipam/v2/assignment/ipv4/block/10.2.169.128-26";
    ctl(
        &t.lab,
        &m.ns,
        &m.url,
        &["put", block_key, &node2_block(Some(22))],
    );
    let route = "10.2.169.150 via 10.2.36.65 dev vxlan.calico onlink";
    until(&t, &c2, "routes", "the borrowed address on node 2", |r| {
        r.contains(route)
    });
    until(
        &t,
        &c1,
        "endpoints",
        "cali1b with a borrowed address",
        |e| e.contains("10.2.169.150"),
    );
    t.lab.pod("p1b", &n1, "cali1b", "10.2.169.150");
    ping(&t.lab, &p2, "10.2.169.150", 3);
    // Released: the /32 goes, node 2's block route covers the address again.
    ctl(
        &t.lab,
        &m.ns,
        &m.url,
        &["put", block_key, &node2_block(None)],
    );
    until(&t, &c2, "routes", "the borrowed address released", |r| {
        !r.contains("10.2.169.150")
    });

    // A bad value is logged with its key and left out; the rest stays.
    ctl(
        &t.lab,
        &m.ns,
        &m.url,
        &[
            "put",
            "/calico/resources/v3/projectcalico.org/ippools/broken",
            "{not json",
        ],
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while datastore(&t, &c1)["values_rejected"].as_u64() < Some(1) {
        assert!(Instant::now() < deadline, "{}", datastore(&t, &c1));
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        t.lab
            .log(NODES[0].name)
            .contains("ippools/broken: left out: the value is not JSON")
    );
    ping(&t.lab, &p1, "10.2.169.138", 2);
    // An idle watch stays up: nothing changes for 12 s, and the session is
    // the first one still (etcd closes a connection whose client pings more
    // often than its --grpc-keepalive-min-time, 5 s).
    std::thread::sleep(Duration::from_secs(12));
    let ds = datastore(&t, &c1);
    assert!(ds["events"].as_u64().unwrap() >= 4, "{ds}");
    assert_eq!(ds["relists"], 0, "{ds}");
    assert_eq!(ds["connect_failures"], 0, "{ds}");
    assert_eq!(ds["last_error"], serde_json::Value::Null, "{ds}");
    // The metrics show it too.
    let stats = t.lab.show(&c1, "stats", false);
    assert!(
        stats.contains(&format!("datastore etcdv3 {}: connected, in sync", m.url)),
        "{stats}"
    );
    t.lab.stop(NODES[0].name);
    t.lab.stop(NODES[1].name);
}

#[test]
fn forwarding_goes_on_through_an_etcd_kill_and_a_compacting_partition() {
    if !root_or_skip("forwarding_goes_on_through_an_etcd_kill_and_a_compacting_partition") {
        return;
    }
    let (mut t, m) = etcd_testbed("vxlan", &["cali1a", "cali2a"], &["n1", "n2"]);
    let (n1, n2) = (t.nodes[0].clone(), t.nodes[1].clone());
    let c1 = t.lab.podwire_etcd(&n1, &m.url, NODES[0].name, &[]);
    t.lab.podwire_etcd(&n2, &m.url, NODES[1].name, &[]);
    let p1 = t.lab.pod("p1", &n1, "cali1a", "10.2.36.68");
    t.lab.pod("p2", &n2, "cali2a", "10.2.169.138");
    ping(&t.lab, &p1, "10.2.169.138", 2);

    // etcd SIGKILLed: the daemon says so and keeps forwarding.
    etcd::kill(&mut t.lab, &m);
    let deadline = Instant::now() + Duration::from_secs(15);
    while datastore(&t, &c1)["connected"] != false {
        assert!(Instant::now() < deadline, "{}", datastore(&t, &c1));
        std::thread::sleep(Duration::from_millis(100));
    }
    let ds = datastore(&t, &c1);
    assert_eq!(ds["in_sync"], false, "{ds}");
    assert!(
        ds["last_error"]
            .as_str()
            .is_some_and(|e| e.contains(&m.url)),
        "{ds}"
    );
    ping(&t.lab, &p1, "10.2.169.138", 5);
    // Restarted: the daemon reads again (a relist) and follows changes.
    etcd::restart(&mut t.lab, &m);
    etcd::wait_healthy(&t.lab, &m);
    import(
        &t,
        &m,
        "three.yaml",
        &cluster("vxlan", 3, &["cali1a", "cali2a"]).yaml(),
    );
    until(&t, &c1, "routes", "node 3 after the restart", |r| {
        r.contains(NODE3_BLOCK)
    });
    let ds = datastore(&t, &c1);
    assert!(ds["relists"].as_u64().unwrap() >= 1, "{ds}");
    assert!(ds["connect_failures"].as_u64().unwrap() >= 1, "{ds}");
    let relists = ds["relists"].as_u64().unwrap();

    // A partition: etcd's link down. Meanwhile node 3 leaves and the
    // history is compacted past every revision the daemon saw.
    t.lab.ip(&m.ns, &["link", "set", "eth0", "down"]);
    let deadline = Instant::now() + Duration::from_secs(20);
    while datastore(&t, &c1)["connected"] != false {
        assert!(
            Instant::now() < deadline,
            "partition not noticed: {}",
            datastore(&t, &c1)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let local = "http://127.0.0.1:2379";
    ctl(
        &t.lab,
        &m.ns,
        local,
        &[
            "del",
            "/calico/resources/v3/projectcalico.org/nodes/k8s-node3",
        ],
    );
    ctl(
        &t.lab,
        &m.ns,
        local,
        &[
            "del",
            "/calico/ipam/v2/assignment/ipv4/block/10.2.235.192-26",
        ],
    );
    let status = ctl(&t.lab, &m.ns, local, &["endpoint", "status", "-w", "json"]);
    let v: serde_json::Value = serde_json::from_str(&status).unwrap();
    let rev = v[0]["Status"]["header"]["revision"]
        .as_i64()
        .unwrap()
        .to_string();
    ctl(&t.lab, &m.ns, local, &["compact", &rev]);
    // Node 3's route stays while the datastore cannot be read…
    assert!(t.lab.show(&c1, "routes", false).contains(NODE3_BLOCK));
    ping(&t.lab, &p1, "10.2.169.138", 3);
    // …and goes once it can.
    t.lab.ip(&m.ns, &["link", "set", "eth0", "up"]);
    until(&t, &c1, "routes", "node 3 gone after the partition", |r| {
        !r.contains("10.2.235.192/26")
    });
    let ds = datastore(&t, &c1);
    assert!(ds["relists"].as_u64().unwrap() > relists, "{ds}");
    assert_eq!(ds["in_sync"], true, "{ds}");
    assert!(
        ds["revision"].as_i64().unwrap() >= rev.parse::<i64>().unwrap(),
        "{ds}"
    );
    ping(&t.lab, &p1, "10.2.169.138", 3);
    t.lab.stop(NODES[0].name);
    t.lab.stop(NODES[1].name);
}

#[test]
fn a_three_member_etcd_cluster_loses_its_leader() {
    if !root_or_skip("a_three_member_etcd_cluster_loses_its_leader") {
        return;
    }
    let mut t = testbed("vxlan", &["cali1a", "cali2a"], &["n1", "n2"]);
    let ips = ["192.168.33.241", "192.168.33.242", "192.168.33.243"];
    let mut nss = Vec::new();
    for (i, ip) in ips.iter().enumerate() {
        let ns = t.lab.netns(&format!("e{i}"));
        t.lab.attach(&t.sw, "br0", &ns, "eth0", &format!("{ip}/24"));
        nss.push(ns);
    }
    let members: Vec<(&str, &str)> = nss.iter().map(String::as_str).zip(ips).collect();
    let ms = etcd::cluster(&mut t.lab, &members);
    let all = etcd::endpoints(&ms);
    let config = t.config.display().to_string();
    t.lab.must_exec(
        &ms[0].ns,
        &[
            PODWIRE,
            "datastore",
            "import",
            &config,
            "--etcd-endpoints",
            &all,
        ],
    );
    // The daemon talks to the leader first.
    let leader = ms
        .iter()
        .position(|m| etcd::is_leader(&t.lab, m))
        .expect("a leader");
    let mut order: Vec<&Member> = vec![&ms[leader]];
    order.extend(
        ms.iter()
            .enumerate()
            .filter(|(i, _)| *i != leader)
            .map(|(_, m)| m),
    );
    let ordered = etcd::endpoints(order.iter().copied());
    let (n1, n2) = (t.nodes[0].clone(), t.nodes[1].clone());
    let c1 = t.lab.podwire_etcd(&n1, &ordered, NODES[0].name, &[]);
    t.lab.podwire_etcd(&n2, &ordered, NODES[1].name, &[]);
    let p1 = t.lab.pod("p1", &n1, "cali1a", "10.2.36.68");
    t.lab.pod("p2", &n2, "cali2a", "10.2.169.138");
    ping(&t.lab, &p1, "10.2.169.138", 2);
    assert_eq!(datastore(&t, &c1)["endpoint"], ms[leader].url);

    // The leader dies; the others elect one, and a change written through
    // them reaches the daemon, which moved to another member.
    etcd::kill(&mut t.lab, &ms[leader]);
    let rest: Vec<Member> = ms
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != leader)
        .map(|(_, m)| m.clone())
        .collect();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !rest.iter().any(|m| etcd::is_leader(&t.lab, m)) {
        assert!(Instant::now() < deadline, "no new leader");
        std::thread::sleep(Duration::from_millis(100));
    }
    let file = t
        .lab
        .file(
            "three.yaml",
            &cluster("vxlan", 3, &["cali1a", "cali2a"]).yaml(),
        )
        .display()
        .to_string();
    t.lab.must_exec(
        &rest[0].ns,
        &[
            PODWIRE,
            "datastore",
            "import",
            &file,
            "--etcd-endpoints",
            &etcd::endpoints(&rest),
        ],
    );
    until(&t, &c1, "routes", "node 3 after the leader's death", |r| {
        r.contains(NODE3_BLOCK)
    });
    let ds = datastore(&t, &c1);
    assert_ne!(ds["endpoint"], ms[leader].url, "{ds}");
    assert_eq!(ds["in_sync"], true, "{ds}");
    ping(&t.lab, &p1, "10.2.169.138", 3);
    t.lab.stop(NODES[0].name);
    t.lab.stop(NODES[1].name);
}

/// TLS with client certificates (etcd started with `--client-cert-auth`),
/// and username and password (etcd's auth enabled): import, check and run
/// over each, from the flags and from calicoctl's variables; what etcd
/// refuses is an error that names the endpoint, not a hang.
#[test]
fn tls_client_certificates_and_username_password() {
    if !root_or_skip("tls_client_certificates_and_username_password") {
        return;
    }
    let mut t = testbed("vxlan", &["cali1a", "cali2a"], &["n1", "n2"]);
    let config = t.config.display().to_string();
    let n1 = t.nodes[0].clone();
    let from_file = t.lab.must_exec(
        &n1,
        &[
            PODWIRE,
            "check",
            "--config",
            &config,
            "--node",
            NODES[0].name,
        ],
    );

    // TLS.
    let ip = "192.168.33.251";
    let ens = t.lab.netns("etls");
    t.lab
        .attach(&t.sw, "br0", &ens, "eth0", &format!("{ip}/24"));
    let tls = etcd::tls(&t.lab, ip);
    let m = etcd::cluster_tls(&mut t.lab, &[(&ens, ip)], &tls).remove(0);
    assert!(m.url.starts_with("https://"), "{}", m.url);
    let (ca, cert, key) = (
        tls.ca.display().to_string(),
        tls.client_cert.display().to_string(),
        tls.client_key.display().to_string(),
    );
    let flags = [
        "--etcd-endpoints",
        m.url.as_str(),
        "--etcd-ca-cert-file",
        &ca,
        "--etcd-cert-file",
        &cert,
        "--etcd-key-file",
        &key,
    ];
    let mut import = vec![PODWIRE, "datastore", "import", &config];
    import.extend(flags);
    let out = t.lab.must_exec(&ens, &import);
    assert!(out.starts_with("wrote "), "{out}");
    let mut check = vec![
        PODWIRE,
        "check",
        "--datastore",
        "etcdv3",
        "--node",
        NODES[0].name,
    ];
    check.extend(flags);
    assert_eq!(t.lab.must_exec(&n1, &check), from_file);
    // From calicoctl's variables.
    let vars = [
        "DATASTORE_TYPE=etcdv3".to_string(),
        format!("ETCD_ENDPOINTS={}", m.url),
        format!("ETCD_CA_CERT_FILE={ca}"),
        format!("ETCD_CERT_FILE={cert}"),
        format!("ETCD_KEY_FILE={key}"),
    ];
    let mut env = vec!["env"];
    env.extend(vars.iter().map(String::as_str));
    env.extend([PODWIRE, "check", "--node", NODES[0].name]);
    assert_eq!(t.lab.must_exec(&n1, &env), from_file);
    // Without the client certificate, etcd refuses the handshake.
    let out = t.lab.exec(
        &n1,
        &[
            PODWIRE,
            "check",
            "--datastore",
            "etcdv3",
            "--etcd-endpoints",
            &m.url,
            "--etcd-ca-cert-file",
            &ca,
            "--node",
            NODES[0].name,
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains(&m.url), "{stderr}");
    // A daemon over TLS.
    let mut extra = vec!["--etcd-ca-cert-file", ca.as_str()];
    extra.extend(["--etcd-cert-file", &cert, "--etcd-key-file", &key]);
    let c1 = t.lab.podwire_etcd(&n1, &m.url, NODES[0].name, &extra);
    let ds = datastore(&t, &c1);
    assert_eq!(ds["connected"], true, "{ds}");
    assert_eq!(t.lab.show(&c1, "routes", false), routes_of(&from_file));
    t.lab.stop(NODES[0].name);

    // Username and password.
    let ip = "192.168.33.252";
    let ans = t.lab.netns("eauth");
    t.lab
        .attach(&t.sw, "br0", &ans, "eth0", &format!("{ip}/24"));
    let m = etcd::cluster(&mut t.lab, &[(&ans, ip)]).remove(0);
    ctl(&t.lab, &ans, &m.url, &["user", "add", "root:s3cret"]);
    ctl(
        &t.lab,
        &ans,
        &m.url,
        &["user", "grant-role", "root", "root"],
    );
    ctl(&t.lab, &ans, &m.url, &["auth", "enable"]);
    let user = [
        "--etcd-endpoints",
        m.url.as_str(),
        "--etcd-username",
        "root",
    ];
    let mut import = vec![PODWIRE, "datastore", "import", &config];
    import.extend(user);
    import.extend(["--etcd-password", "s3cret"]);
    t.lab.must_exec(&ans, &import);
    let mut check = vec![
        PODWIRE,
        "check",
        "--datastore",
        "etcdv3",
        "--node",
        NODES[0].name,
    ];
    check.extend(user);
    let mut good = check.clone();
    good.extend(["--etcd-password", "s3cret"]);
    assert_eq!(t.lab.must_exec(&n1, &good), from_file);
    let mut bad = check.clone();
    bad.extend(["--etcd-password", "wrong"]);
    let out = t.lab.exec(&n1, &bad);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("authentication failed"), "{stderr}");
}

/// The `# routes` section of a `podwire check` report.
fn routes_of(report: &str) -> String {
    report
        .split("# neigh")
        .next()
        .unwrap_or_default()
        .trim_start_matches("# routes\n")
        .to_string()
}

/// calico-node's start-up, done by podwire (SPEC §11): a datastore that
/// holds nothing but a VXLAN pool; two nodes start podwire on it. Each
/// writes its own Node — its address autodetected from its underlay, a
/// VXLAN tunnel address from IPAM (handle `vxlan-tunnel-addr-<node>`, in a
/// block it claimed), its VTEP MAC — and each routes to the other's block
/// through the other's tunnel address, from its watch. A restart changes
/// nothing (the Node is right already).
#[test]
fn a_cluster_of_podwire_nodes_needs_only_its_pools() {
    if !root_or_skip("a_cluster_of_podwire_nodes_needs_only_its_pools") {
        return;
    }
    let mut t = testbed("vxlan", &[], &["n1", "n2"]);
    let (ens, m, mut controls) = etcd::pool_only_cluster(&mut t);
    let nodes = t.nodes.clone();
    let node = |lab: &common::Lab, name: &str| -> serde_json::Value {
        let v = ctl(
            lab,
            &ens,
            &m.url,
            &[
                "get",
                "--print-value-only",
                &format!("/calico/resources/v3/projectcalico.org/nodes/{name}"),
            ],
        );
        serde_json::from_str(v.trim()).unwrap_or_else(|e| panic!("{name}: {e}: {v:?}"))
    };
    let mut tunnels = Vec::new();
    for host in &NODES[..2] {
        let v = node(&t.lab, host.name);
        assert_eq!(
            v["spec"]["bgp"]["ipv4Address"],
            format!("{}/24", host.ip),
            "{v}"
        );
        assert_eq!(
            v["spec"]["vxlanTunnelMACAddr"],
            podwire::table::vtep_mac_for(host.name).to_string(),
            "{v}"
        );
        let tunnel: std::net::Ipv4Addr = v["spec"]["ipv4VXLANTunnelAddr"]
            .as_str()
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("{v}"));
        // Its handle, as calico-node names it.
        let h = ctl(
            &t.lab,
            &ens,
            &m.url,
            &[
                "get",
                "--print-value-only",
                &format!("/calico/ipam/v2/handle/vxlan-tunnel-addr-{}", host.name),
            ],
        );
        assert!(h.contains("\"handleID\""), "{h}");
        tunnels.push(tunnel);
    }
    assert_ne!(tunnels[0], tunnels[1]);
    // Each routes to the other's block through the other's tunnel address
    // (the tunnel address is the first of the block the node claimed).
    for (i, control) in controls.iter().enumerate() {
        let other = tunnels[1 - i];
        let want = format!("/26 via {other} dev vxlan.calico onlink");
        until(&t, control, "routes", "the other node's block", |r| {
            r.contains(&want)
        });
    }
    // A restart: the Node is as it should be, nothing is written.
    let before = node(&t.lab, "k8s-node1");
    assert!(t.lab.stop("k8s-node1").success());
    controls[0] = t.lab.podwire_etcd(&nodes[0], &m.url, "k8s-node1", &[]);
    assert_eq!(node(&t.lab, "k8s-node1"), before);
    let log = t.lab.log("k8s-node1");
    assert!(!log.contains("updated this node's Node resource"), "{log}");
}
