//! Blackhole routes for the node's local blocks (SPEC §10), as BIRD (or
//! Felix's route manager, without BIRD) installs them on a Calico node:
//! `blackhole <block> proto 252`.
//!
//! podwire's packet socket takes direct-mode frames for local pods before
//! the kernel's IP layer sees them; the kernel, which forwards for the
//! node (`ip_forward=1` on a Kubernetes node), must not forward them too.
//! Turning forwarding off on the underlay would stop it forwarding
//! everything else; a blackhole route for each local block stops exactly
//! the pod traffic, silently (no ICMP), and leaves every other route as it
//! was. A local endpoint outside every local block (a borrowed `/32`)
//! gets a `/32` blackhole of its own — unless the host path is on, which
//! routes each local endpoint's `/32` through its interface instead (the
//! route a Calico node has to the pod's veth) and drops, in its nftables
//! table, what the underlay brings for them.
//!
//! The routes are reconciled on every snapshot: podwire's blackholes
//! (`type blackhole proto 252`) that are not wanted any more are deleted,
//! the wanted ones replaced, so a daemon restarted after a SIGKILL keeps
//! one copy. A clean stop deletes them all.

use std::sync::Mutex;

use ipnetwork::Ipv4Network;
use podwire::table::{Tables, Via};

use crate::host::{HostError, ROUTE_PROTO, ip, route_dst};

/// The blackhole routes of a running daemon.
pub struct Blackholes {
    applied: Mutex<Option<Vec<Ipv4Network>>>,
}

impl Default for Blackholes {
    fn default() -> Self {
        Self::new()
    }
}

impl Blackholes {
    pub fn new() -> Self {
        Blackholes {
            applied: Mutex::new(None),
        }
    }

    /// Makes podwire's blackhole routes the ones `t` wants; runs nothing
    /// when they did not change.
    pub fn apply(&self, t: &Tables) -> Result<(), HostError> {
        let want = wanted(t);
        let mut applied = self.applied.lock().unwrap_or_else(|p| p.into_inner());
        if applied.as_ref() == Some(&want) {
            return Ok(());
        }
        reconcile(&want)?;
        tracing::info!(
            routes = want.len(),
            "blackhole routes for the local blocks in place (the kernel does not forward pod traffic; the rest it forwards as before)"
        );
        *applied = Some(want);
        Ok(())
    }

    /// Deletes every blackhole route of podwire's.
    pub fn remove(&self) {
        if let Err(e) = reconcile(&[]) {
            tracing::warn!("{e}");
        }
    }
}

/// The blackholes `t` wants: every local block, and without the host path
/// every local endpoint's route outside them.
pub fn wanted(t: &Tables) -> Vec<Ipv4Network> {
    let blocks: Vec<Ipv4Network> = t
        .routes()
        .iter()
        .filter(|r| r.via == Via::Blackhole)
        .map(|r| r.dst)
        .collect();
    let mut want = blocks.clone();
    if t.host().is_none() {
        want.extend(
            t.routes()
                .iter()
                .filter(|r| matches!(r.via, Via::Endpoint(_)))
                .filter(|r| !blocks.iter().any(|b| b.contains(r.dst.network())))
                .map(|r| r.dst),
        );
    }
    want.sort_by_key(|n| (u32::from(n.network()), n.prefix()));
    want.dedup();
    want
}

fn reconcile(want: &[Ipv4Network]) -> Result<(), HostError> {
    let proto = ROUTE_PROTO.to_string();
    for have in installed()? {
        if !want.contains(&have) {
            ip(&[
                "-4",
                "route",
                "del",
                "blackhole",
                &have.to_string(),
                "proto",
                &proto,
            ])?;
        }
    }
    for net in want {
        ip(&[
            "-4",
            "route",
            "replace",
            "blackhole",
            &net.to_string(),
            "proto",
            &proto,
        ])?;
    }
    Ok(())
}

/// podwire's blackhole routes in the main table.
fn installed() -> Result<Vec<Ipv4Network>, HostError> {
    let proto = ROUTE_PROTO.to_string();
    let out = ip(&["-4", "route", "show", "type", "blackhole", "proto", &proto])?;
    Ok(out.lines().filter_map(route_dst).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use podwire::config::EncapMode;
    use podwire::config::cluster::{ClusterBuilder, Endpoint, Pool};
    use podwire::table::{Underlay, compile_with};

    #[test]
    fn local_blocks_and_endpoints_outside_them_are_blackholed() {
        let r = ClusterBuilder::new()
            .with(Pool::new("a", "10.2.0.0/16").vxlan(EncapMode::Always))
            .calico_node("n1", "192.168.33.55/24", "10.2.36.64/26")
            .calico_node("n2", "192.168.33.57/24", "10.2.169.128/26")
            .with(Endpoint::new("n1", "cali1", "10.2.36.68"))
            // Borrowed from n2's block: no local block covers it.
            .with(Endpoint::new("n1", "cali2", "10.2.169.140"))
            .with(Endpoint::new("n2", "cali3", "10.2.169.138"))
            .resources()
            .unwrap();
        let u = Underlay {
            name: "eth0".into(),
            mtu: 1500,
        };
        let net = |s: &str| s.parse::<Ipv4Network>().unwrap();
        let t = compile_with(&r, "n1", &u, None).unwrap();
        assert_eq!(wanted(&t), [net("10.2.36.64/26"), net("10.2.169.140/32")]);
        // With the host path, the endpoints' /32s go through its
        // interface: only the block is blackholed.
        let t = compile_with(&r, "n1", &u, Some("podwire0")).unwrap();
        assert_eq!(wanted(&t), [net("10.2.36.64/26")]);
        // n2's: its own block.
        let t = compile_with(&r, "n2", &u, Some("podwire0")).unwrap();
        assert_eq!(wanted(&t), [net("10.2.169.128/26")]);
    }
}
