//! The host path in the lab (SPEC §10): what a pod of a real node needs
//! besides other pods. Each mode's section shows the node probing its pods
//! (as kubelet does), a pod reaching the internet masqueraded to its node's
//! address (natOutgoing), and a ClusterIP in kube-proxy's nftables shape
//! reached from a pod and from the node. The bench's Service path uses the
//! same rules.

use std::time::Duration;

use crate::netns::{Error, Harness, Io, err};
use crate::pcap::ipv4_sources;
use crate::topology::{INTERNET, NODES, Pod};

/// The lab's Service address (in the Kubernetes default service range).
pub(crate) const CLUSTER_IP: &str = "10.96.0.10";
/// Its port, and the backend's.
pub(crate) const SERVICE_PORT: &str = "80";
pub(crate) const BACKEND_PORT: &str = "8080";

/// kube-proxy's nftables mode reduced to one Service in node `ns`: each
/// [`CLUSTER_IP`]`:port` of `ports` DNATed to `backend`:its backend port
/// (TCP and UDP), in prerouting (pods, through the host interface) and
/// output (the node itself).
pub(crate) fn kube_proxy(
    w: &Harness,
    ns: &str,
    ports: &[(&str, &str)],
    backend: &str,
) -> Result<(), Error> {
    let rules: String = ports
        .iter()
        .map(|(port, to)| {
            format!(
                " ip daddr {CLUSTER_IP} meta l4proto {{ tcp, udp }} th dport {port} dnat to {backend}:{to};"
            )
        })
        .collect();
    let script = format!(
        "table ip kube-proxy {{\n\
         chain services {{{rules} }}\n\
         chain nat-prerouting {{ type nat hook prerouting priority dstnat; policy accept; jump services; }}\n\
         chain nat-output {{ type nat hook output priority -100; policy accept; jump services; }}\n\
         }}\n"
    );
    let file = w.file(&format!("kube-proxy-{ns}.nft"), &script)?;
    w.exec_ok(ns, &["nft", "-f", &file.to_string_lossy()])
        .map(drop)
}

/// Asks a one-connection TCP server in `server` (started here, answering
/// `hello from <server_ip>`) through `to`:`port` from `from`; returns the
/// answer (empty when none came).
fn ask(
    w: &mut Harness,
    from: &str,
    to: &str,
    port: &str,
    server: &str,
    server_ip: &str,
) -> Result<String, Error> {
    let hello = w.file(
        &format!("hello-{server_ip}"),
        &format!("hello from {server_ip}\n"),
    )?;
    let serve = format!("exec nc -l -N {BACKEND_PORT} < {}", hello.to_string_lossy());
    w.spawn("backend", server, &["sh", "-c", &serve], Io::Null)?;
    let mut answer = String::new();
    for _ in 0..30 {
        let out = w.exec(from, &["nc", "-w", "3", to, port])?;
        answer = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if !answer.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    if answer.is_empty() {
        let _ = w.stop("backend", "TERM", Duration::from_secs(2));
    } else {
        w.wait("backend", Duration::from_secs(5))?;
    }
    Ok(answer)
}

/// Runs the section on k8s-node1 (`nodes` and `pods` as the lab made them:
/// pods m-a, m-b, 1-a, 1-b, 2-a, 2-b); prints a line per check; returns
/// (checks passed, checks).
pub(crate) fn run(
    w: &mut Harness,
    nodes: &[String],
    pods: &[Pod],
    say: &mut dyn FnMut(String),
) -> Result<(usize, usize), Error> {
    let (node1, n1) = (&nodes[1], NODES[1].host.name);
    let (pod, pod_ip) = (&pods[2].0, pods[2].1);
    let (backend, backend_ip) = (&pods[5].0, pods[5].1);
    let (mut ok, mut total) = (0, 0);
    let mut check = |passed: bool, line: String, say: &mut dyn FnMut(String)| {
        ok += usize::from(passed);
        total += 1;
        say(format!("{} {line}", if passed { "ok  " } else { "FAIL" }));
    };
    say("the host path (podwire run --host-interface podwire0 on every node):".into());

    let p = w.ping(node1, pod_ip, 3)?;
    check(
        p.received == 3,
        format!(
            "ping {n1} -> {pod_ip} (the node probes its own pod, as kubelet does): {}/3 answered, average rtt {} ms",
            p.received,
            p.rtt_avg.as_deref().unwrap_or("-")
        ),
        say,
    );
    let answer = ask(w, node1, backend_ip, BACKEND_PORT, backend, backend_ip)?;
    check(
        answer == format!("hello from {backend_ip}"),
        format!("tcp {n1} -> {backend_ip}:{BACKEND_PORT} (a pod on another node): {answer:?}"),
        say,
    );

    // natOutgoing: what the internet host sees.
    let inet = w.name("inet");
    let pcap = w.dir.join(format!("{}-internet.pcap", w.prefix()));
    w.capture(
        "tcpdump-inet",
        &inet,
        "eth0",
        &pcap,
        &["icmp[icmptype] == icmp-echo"],
    )?;
    let p = w.ping(pod, INTERNET, 3)?;
    w.stop_capture("tcpdump-inet")?;
    let seen = std::fs::read(&pcap)
        .map(|b| ipv4_sources(&b))
        .unwrap_or_default();
    let _ = std::fs::remove_file(&pcap);
    let node_ip: std::net::Ipv4Addr = NODES[1].host.ip.parse().map_err(|e| err(format!("{e}")))?;
    let masqueraded = seen.len() == 3 && seen.iter().all(|s| *s == node_ip);
    let mut sources: Vec<String> = seen.iter().map(|s| s.to_string()).collect();
    sources.dedup();
    check(
        p.received == 3 && masqueraded,
        format!(
            "ping {pod_ip} -> {INTERNET} (the internet, beyond the router): {}/3 answered, {} echo request(s) seen there, from {} (natOutgoing masquerades to the node's address)",
            p.received,
            seen.len(),
            if sources.is_empty() {
                "nothing".to_string()
            } else {
                sources.join(", ")
            }
        ),
        say,
    );

    // A ClusterIP whose backend is on another node.
    kube_proxy(w, node1, &[(SERVICE_PORT, BACKEND_PORT)], backend_ip)?;
    let via = format!(
        "kube-proxy's nftables rules on {n1}, backend {backend_ip}:{BACKEND_PORT} on {}",
        NODES[2].host.name
    );
    for (from, who) in [(pod, pod_ip), (node1, n1)] {
        let answer = ask(w, from, CLUSTER_IP, SERVICE_PORT, backend, backend_ip)?;
        check(
            answer == format!("hello from {backend_ip}"),
            format!("tcp {who} -> ClusterIP {CLUSTER_IP}:{SERVICE_PORT} ({via}): {answer:?}"),
            say,
        );
    }
    w.exec_ok(node1, &["nft", "delete", "table", "ip", "kube-proxy"])?;
    Ok((ok, total))
}
