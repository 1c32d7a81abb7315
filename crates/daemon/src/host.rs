//! The host path's side in the node's kernel (SPEC §10): the host
//! interface's link state and addresses, a route per IP pool through it,
//! its sysctls, and podwire's own nftables table for natOutgoing.
//!
//! The interface itself is a TUN device like an endpoint's (the snapshot
//! creates, adopts and deletes it); this module makes the kernel use it:
//!
//! - the node's tunnel addresses (`ipv4VXLANTunnelAddr`,
//!   `ipv4IPIPTunnelAddr`) as `/32`s on it, as a Calico node has them on
//!   `vxlan.calico` or `tunl0`;
//! - `<pool> dev podwire0 proto 252 src <tunnel address, else node IP>`
//!   for every pool, so the node's processes and what the kernel forwards
//!   (a de-NATed reply, a Service's backend, a NodePort) reach pods, and
//!   the same for every local endpoint's `/32` (which wins over its
//!   block's blackhole route, see `blackhole`);
//! - `forwarding=1` and `send_redirects=0` on it, and `net.ipv4.ip_forward=1`
//!   (as Felix sets it; the value found is restored on a clean stop);
//! - `table ip podwire`: sets `pools` (every pool) and `nat-pools`
//!   (natOutgoing, not disabled), and a postrouting chain that masquerades
//!   `ip saddr @nat-pools ip daddr != @pools ip daddr != @nodes` with fully
//!   random ports, UDP never from the VXLAN port — Calico's
//!   `cali-nat-outgoing` (`felix/rules/nat.go`) in nftables. The cluster's
//!   node addresses (`nodes`) are excluded too (Felix's
//!   `natOutgoingExclusions: IPPoolsAndHostIPs`; its default excludes the
//!   pools only): a flow that reaches a pod over the overlay from a node's
//!   address (the node itself, a Service's client translated by the
//!   kernel) never crossed this node's kernel, so its conntrack would take
//!   the pod's reply for a new flow and masquerade it, where a Calico
//!   node's kernel, which forwarded the first packet, does not.
//!
//! Everything is applied with `ip` (iproute2) and `nft`, each change as a
//! replacement (`ip … replace`, the table deleted and re-made in one nft
//! transaction), so applying twice, or after a daemon was killed, leaves
//! one copy. What is no longer wanted (an address, a pool's route) is
//! removed. The routes and addresses go with the device on a clean stop;
//! the table is deleted and `ip_forward` restored.

use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};
use std::sync::Mutex;

use ipnetwork::Ipv4Network;
use podwire::table::{Tables, Via};

/// The routing protocol number podwire's routes carry (`proto 252`), so
/// that they are told apart from anyone else's (iproute2 prints the
/// number; 252 is unassigned in `/etc/iproute2/rt_protos`).
pub const ROUTE_PROTO: u8 = 252;
/// podwire's nftables table (family `ip`).
pub const NFT_TABLE: &str = "podwire";

/// A step of applying the host path that failed.
#[derive(Debug, thiserror::Error)]
#[error("host path: {what}: {detail}")]
pub struct HostError {
    pub what: String,
    pub detail: String,
}

/// What was last applied, so that a reload that changes nothing of it runs
/// no command.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Applied {
    addrs: Vec<Ipv4Addr>,
    routes: Vec<(Ipv4Network, Ipv4Addr)>,
    nft: String,
}

/// The host path of a running daemon.
pub struct HostPath {
    interface: String,
    /// `net.ipv4.ip_forward` as found at start (to restore), when podwire
    /// changed it.
    ip_forward: Option<String>,
    applied: Mutex<Option<Applied>>,
}

impl HostPath {
    /// The host path through `interface`; `recorded_ip_forward` is the
    /// value a killed daemon found (from its state file), which stays the
    /// one to restore.
    pub fn new(interface: &str, recorded_ip_forward: Option<String>) -> Result<Self, HostError> {
        let found = read_sysctl("net/ipv4/ip_forward")?;
        let ip_forward = match (recorded_ip_forward, found.as_str()) {
            (Some(r), _) => Some(r),
            (None, "1") => None,
            (None, other) => Some(other.to_string()),
        };
        write_sysctl("net/ipv4/ip_forward", "1")?;
        Ok(HostPath {
            interface: interface.to_string(),
            ip_forward,
            applied: Mutex::new(None),
        })
    }

    /// The value of `net.ipv4.ip_forward` to restore at stop, if podwire
    /// changed it (for the state file).
    pub fn ip_forward_to_restore(&self) -> Option<String> {
        self.ip_forward.clone()
    }

    /// The interface's name.
    pub fn interface(&self) -> &str {
        &self.interface
    }

    /// Makes the kernel's side match `t`: link up, addresses, routes,
    /// sysctls, the nftables table. Runs nothing when nothing changed.
    pub fn apply(&self, t: &Tables) -> Result<(), HostError> {
        let dev = self.interface.as_str();
        let addrs = t.host_addrs().to_vec();
        let routes = host_routes(t);
        let want = Applied {
            addrs,
            routes,
            nft: nft_script(t),
        };
        let mut applied = self.applied.lock().unwrap_or_else(|p| p.into_inner());
        if applied.as_ref() == Some(&want) {
            return Ok(());
        }
        ip(&["link", "set", "dev", dev, "up"])?;
        let conf = format!("net/ipv4/conf/{dev}");
        write_sysctl(&format!("{conf}/forwarding"), "1")?;
        write_sysctl(&format!("{conf}/send_redirects"), "0")?;
        // The underlay forwards what the kernel routes to and from pods
        // (`ip_forward` changes every device only when its value changes).
        let underlay = &t.underlay().name;
        if std::path::Path::new(&format!("/proc/sys/net/ipv4/conf/{underlay}")).exists() {
            write_sysctl(&format!("net/ipv4/conf/{underlay}/forwarding"), "1")?;
        }
        // Addresses: the wanted ones, and none other.
        for have in addresses_of(dev)? {
            if !want.addrs.contains(&have) {
                ip(&["-4", "addr", "del", &format!("{have}/32"), "dev", dev])?;
            }
        }
        for a in &want.addrs {
            ip(&["-4", "addr", "replace", &format!("{a}/32"), "dev", dev])?;
        }
        // Routes: one per pool, and none other of podwire's on the device.
        let proto = ROUTE_PROTO.to_string();
        for have in routes_of(dev)? {
            if !want.routes.iter().any(|(n, _)| *n == have) {
                ip(&[
                    "-4",
                    "route",
                    "del",
                    &have.to_string(),
                    "dev",
                    dev,
                    "proto",
                    &proto,
                ])?;
            }
        }
        for (net, src) in &want.routes {
            ip(&[
                "-4",
                "route",
                "replace",
                &net.to_string(),
                "dev",
                dev,
                "proto",
                &proto,
                "src",
                &src.to_string(),
            ])?;
        }
        nft(&want.nft)?;
        tracing::info!(
            interface = dev,
            addresses = ?want.addrs,
            routes = want.routes.len(),
            nat_pools = t.pools().iter().filter(|p| p.nat_outgoing && !p.disabled).count(),
            "host path applied"
        );
        *applied = Some(want);
        Ok(())
    }

    /// Removes what the device does not take with it: the nftables table,
    /// and `ip_forward` back to what it was.
    pub fn remove(&self) {
        if let Err(e) = nft(&format!(
            "table ip {NFT_TABLE}\ndelete table ip {NFT_TABLE}\n"
        )) {
            tracing::warn!("{e}");
        }
        if let Some(v) = &self.ip_forward {
            if let Err(e) = write_sysctl("net/ipv4/ip_forward", v) {
                tracing::warn!("{e}");
            }
        }
    }
}

/// The nftables script that replaces podwire's table (one transaction: the
/// `table` line makes the `delete` succeed when there is none yet).
pub fn nft_script(t: &Tables) -> String {
    let set = |nets: &mut dyn Iterator<Item = Ipv4Network>| {
        let elements: Vec<String> = nets.map(|n| n.to_string()).collect();
        if elements.is_empty() {
            String::new()
        } else {
            format!(" elements = {{ {} }};", elements.join(", "))
        }
    };
    let pools = set(&mut t.pools().iter().map(|p| p.cidr));
    let nat = set(&mut t
        .pools()
        .iter()
        .filter(|p| p.nat_outgoing && !p.disabled)
        .map(|p| p.cidr));
    let nodes = set(&mut std::iter::once(t.local().ip)
        .chain(t.peers())
        .map(Ipv4Network::from));
    // What podwire takes from the underlay itself (its packet socket sees
    // frames before the kernel's IP layer): local blocks and endpoints.
    let local = set(&mut t
        .routes()
        .iter()
        .filter(|r| matches!(r.via, Via::Blackhole | Via::Endpoint(_)))
        .map(|r| r.dst));
    let underlay = &t.underlay().name;
    let vxlan_port = t.vxlan().port;
    let mut s = String::new();
    let _ = writeln!(s, "table ip {NFT_TABLE}");
    let _ = writeln!(s, "delete table ip {NFT_TABLE}");
    let _ = writeln!(s, "table ip {NFT_TABLE} {{");
    let _ = writeln!(
        s,
        "  set pools {{ type ipv4_addr; flags interval;{pools} }}"
    );
    let _ = writeln!(
        s,
        "  set nat-pools {{ type ipv4_addr; flags interval;{nat} }}"
    );
    let _ = writeln!(
        s,
        "  set nodes {{ type ipv4_addr; flags interval;{nodes} }}"
    );
    let _ = writeln!(
        s,
        "  set local {{ type ipv4_addr; flags interval; auto-merge;{local} }}"
    );
    // Frames to local pods on the underlay are podwire's (its packet
    // socket took a copy): the kernel must not forward them too, as BIRD's
    // blackhole routes for local blocks keep a Calico node from doing. A
    // NATed flow's packets arrive to the node's address instead, and pass.
    let _ = writeln!(s, "  chain from-underlay {{");
    let _ = writeln!(
        s,
        "    type filter hook prerouting priority raw; policy accept;"
    );
    let _ = writeln!(s, "    iifname \"{underlay}\" ip daddr @local drop");
    let _ = writeln!(s, "  }}");
    let _ = writeln!(s, "  chain nat-outgoing {{");
    let _ = writeln!(
        s,
        "    type nat hook postrouting priority srcnat; policy accept;"
    );
    let m = "ip saddr @nat-pools ip daddr != @pools ip daddr != @nodes";
    let _ = writeln!(
        s,
        "    {m} meta l4proto tcp masquerade to :1024-65535 fully-random"
    );
    // UDP never from the VXLAN port: ports above it (a NAT range is one
    // interval).
    let _ = writeln!(
        s,
        "    {m} meta l4proto udp masquerade to :{}-65535 fully-random",
        vxlan_port.saturating_add(1).max(1024)
    );
    let _ = writeln!(s, "    {m} masquerade fully-random");
    let _ = writeln!(s, "  }}");
    let _ = writeln!(s, "}}");
    s
}

/// What the host path has the kernel do, as `podwire show host` prints
/// it: the interface, its addresses and routes (as `ip` prints them), the
/// natOutgoing pools, and the kernel-NATed flows.
pub fn report_text(t: &Tables) -> String {
    let Some(id) = t.host() else {
        return "host path off (podwire run --host-interface NAME turns it on)\n".to_string();
    };
    let dev = t.endpoint(id).map_or("?", |e| e.interface.as_str());
    let mtu = t.endpoint(id).map_or(0, |e| e.mtu);
    let mut s = String::new();
    let _ = writeln!(s, "# interface\n{dev} mtu {mtu}");
    let _ = writeln!(s, "# addresses");
    for a in t.host_addrs() {
        let _ = writeln!(s, "inet {a}/32 dev {dev}");
    }
    let _ = writeln!(s, "# routes");
    for (net, src) in host_routes(t) {
        let _ = writeln!(
            s,
            "{net} dev {dev} proto {ROUTE_PROTO} scope link src {src}"
        );
    }
    let _ = writeln!(s, "# nftables: table ip {NFT_TABLE}");
    for p in t.pools() {
        let nat = if p.nat_outgoing && !p.disabled {
            "masqueraded to outside every pool and node"
        } else {
            "not masqueraded"
        };
        let _ = writeln!(s, "pool {}: {nat}", p.cidr);
    }
    let c = t.flows().counts();
    let _ = writeln!(
        s,
        "# kernel-NATed flows\n{} live of {} slots, {} recorded, {} evicted",
        t.flows().live(t.flows().now()),
        c.capacity,
        c.recorded,
        c.evicted
    );
    s
}

/// [`report_text`] as JSON.
pub fn report_json(t: &Tables) -> serde_json::Value {
    let Some(id) = t.host() else {
        return serde_json::json!({ "enabled": false });
    };
    let c = t.flows().counts();
    serde_json::json!({
        "enabled": true,
        "interface": t.endpoint(id).map(|e| e.interface.clone()),
        "mtu": t.endpoint(id).map(|e| e.mtu),
        "addresses": t.host_addrs().iter().map(|a| a.to_string()).collect::<Vec<_>>(),
        "routes": host_routes(t).iter().map(|(n, src)| serde_json::json!({
            "dst": n.to_string(), "protocol": ROUTE_PROTO, "prefsrc": src.to_string(),
        })).collect::<Vec<_>>(),
        "nft_table": format!("ip {NFT_TABLE}"),
        "nat_outgoing_pools": t.pools().iter().filter(|p| p.nat_outgoing && !p.disabled)
            .map(|p| p.cidr.to_string()).collect::<Vec<_>>(),
        "flows": {
            "live": t.flows().live(t.flows().now()),
            "capacity": c.capacity,
            "recorded": c.recorded,
            "evicted": c.evicted,
        },
    })
}

/// The routes the host path wants: every pool through the interface, and
/// every local endpoint's `/32` (more specific than its block's blackhole
/// route, as a Calico node's route to a pod's veth is), from the node's
/// tunnel address (else its IP).
fn host_routes(t: &Tables) -> Vec<(Ipv4Network, Ipv4Addr)> {
    let src = t.host_addrs().first().copied().unwrap_or(t.local().ip);
    let endpoints = t
        .routes()
        .iter()
        .filter(|r| matches!(r.via, Via::Endpoint(id) if Some(id) != t.host()))
        .map(|r| r.dst);
    t.pools()
        .iter()
        .map(|p| p.cidr)
        .chain(endpoints)
        .map(|n| (n, src))
        .collect()
}

fn run(program: &str, args: &[&str], stdin: Option<&str>) -> Result<String, HostError> {
    let what = format!("{program} {}", args.join(" "));
    let mut child = Command::new(program)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| HostError {
            what: what.clone(),
            detail: format!("cannot run {program}: {e} (is it installed and on PATH?)"),
        })?;
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        use std::io::Write as _;
        let _ = pipe.write_all(input.as_bytes());
    }
    let out = child.wait_with_output().map_err(|e| HostError {
        what: what.clone(),
        detail: e.to_string(),
    })?;
    if !out.status.success() {
        return Err(HostError {
            what,
            detail: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

pub(crate) fn ip(args: &[&str]) -> Result<String, HostError> {
    run("ip", args, None)
}

fn nft(script: &str) -> Result<(), HostError> {
    run("nft", &["-f", "-"], Some(script)).map(|_| ())
}

/// The IPv4 addresses on `dev` (`ip -4 -o addr show`).
fn addresses_of(dev: &str) -> Result<Vec<Ipv4Addr>, HostError> {
    let out = ip(&["-4", "-o", "addr", "show", "dev", dev])?;
    Ok(out
        .lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            w.find(|&x| x == "inet")?;
            w.next()?.split('/').next()?.parse().ok()
        })
        .collect())
}

/// podwire's routes on `dev`.
fn routes_of(dev: &str) -> Result<Vec<Ipv4Network>, HostError> {
    let proto = ROUTE_PROTO.to_string();
    let out = ip(&["-4", "route", "show", "dev", dev, "proto", &proto])?;
    Ok(out.lines().filter_map(route_dst).collect())
}

/// The destination of a line of `ip route show` (a bare address is a
/// `/32`; a leading route type such as `blackhole` is skipped).
pub(crate) fn route_dst(line: &str) -> Option<Ipv4Network> {
    let mut w = line
        .split_whitespace()
        .skip_while(|&x| matches!(x, "blackhole" | "unreachable" | "prohibit"));
    let dst = w.next()?;
    if dst.contains('/') {
        dst.parse().ok()
    } else {
        format!("{dst}/32").parse().ok()
    }
}

fn read_sysctl(name: &str) -> Result<String, HostError> {
    std::fs::read_to_string(format!("/proc/sys/{name}"))
        .map(|s| s.trim().to_string())
        .map_err(|e| HostError {
            what: format!("read {name}"),
            detail: e.to_string(),
        })
}

fn write_sysctl(name: &str, value: &str) -> Result<(), HostError> {
    std::fs::write(format!("/proc/sys/{name}"), value).map_err(|e| HostError {
        what: format!("set {name} = {value}"),
        detail: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use podwire::config::EncapMode;
    use podwire::config::cluster::{ClusterBuilder, Node, Pool};
    use podwire::table::{Underlay, compile_with};

    #[test]
    fn the_nft_table_masquerades_nat_pools_to_outside_every_pool() {
        let r = ClusterBuilder::new()
            .with(
                Pool::new("a", "10.2.0.0/16")
                    .vxlan(EncapMode::Always)
                    .nat_outgoing(true),
            )
            .with(Pool::new("b", "10.3.0.0/16").vxlan(EncapMode::Always))
            .with(Node::new("n1", "192.168.33.55/24").vxlan_tunnel("10.2.0.1"))
            .resources()
            .unwrap();
        let u = Underlay {
            name: "eth0".into(),
            mtu: 1500,
        };
        let t = compile_with(&r, "n1", &u, Some("podwire0")).unwrap();
        let s = nft_script(&t);
        assert!(
            s.starts_with("table ip podwire\ndelete table ip podwire\n"),
            "{s}"
        );
        assert!(s.contains("set pools { type ipv4_addr; flags interval; elements = { 10.2.0.0/16, 10.3.0.0/16 }; }"), "{s}");
        assert!(
            s.contains(
                "set nat-pools { type ipv4_addr; flags interval; elements = { 10.2.0.0/16 }; }"
            ),
            "{s}"
        );
        assert!(
            s.contains("meta l4proto udp masquerade to :4790-65535 fully-random"),
            "{s}"
        );
        assert!(
            s.contains("type nat hook postrouting priority srcnat"),
            "{s}"
        );
        assert!(
            s.contains(
                "set nodes { type ipv4_addr; flags interval; elements = { 192.168.33.55/32 }; }"
            ),
            "{s}"
        );
        assert!(
            s.contains(
                "ip saddr @nat-pools ip daddr != @pools ip daddr != @nodes masquerade fully-random"
            ),
            "{s}"
        );
    }
}
