//! Endpoints a CNI plugin asks for (SPEC §11): the control socket's write
//! requests, which only its owner can make (the socket is mode 0600).
//!
//! - `attach <interface> <netns> <ifname> <ip>`: creates the endpoint's TUN
//!   device inside the pod's network namespace (`netns`, the path the
//!   runtime gave as `CNI_NETNS`) as `ifname`, with the MTU of `ip`'s pool
//!   and Calico's pod addressing — `ip/32` on it, `169.254.1.1` on link, the
//!   default route through it — and holds it until the WorkloadEndpoint
//!   whose `interfaceName` is `interface` arrives from the datastore; the
//!   snapshot that has it takes the device (as it takes one a killed daemon
//!   left) instead of creating one.
//! - `detach <interface>`: lets go of a device held and not yet taken (an
//!   ADD that failed after it, or a DEL before the endpoint arrived);
//!   nothing to do is not an error. A taken device goes when its endpoint
//!   leaves the datastore.

use std::net::Ipv4Addr;
use std::path::Path;
use std::process::Command;

use podwire_io::tun;

use super::Daemon;

/// The answer to `line` when it is a write request, else None.
pub fn answer(daemon: &Daemon, line: &str) -> Option<String> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let result = match words.as_slice() {
        ["attach", interface, netns, ifname, ip] => attach(daemon, interface, netns, ifname, ip),
        ["detach", interface] => Ok(detach(daemon, interface)),
        ["attach", ..] => Err("usage: attach <interface> <netns> <ifname> <ip>".into()),
        ["detach", ..] => Err("usage: detach <interface>".into()),
        _ => return None,
    };
    Some(match result {
        Ok(s) => format!("ok {s}\n"),
        Err(e) => format!("error: {e}\n"),
    })
}

/// A device name the kernel takes (at most 15 bytes, no `/`, `:` or space).
fn valid_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 15
        && n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

fn attach(
    daemon: &Daemon,
    interface: &str,
    netns: &str,
    ifname: &str,
    ip: &str,
) -> Result<String, String> {
    if !valid_name(interface) || !valid_name(ifname) {
        return Err(format!(
            "bad device name {interface:?} or {ifname:?} (1-15 of [A-Za-z0-9._-])"
        ));
    }
    let ip: Ipv4Addr = ip
        .trim_end_matches("/32")
        .parse()
        .map_err(|e| format!("bad address {ip:?}: {e}"))?;
    let path = Path::new(netns);
    if !path.is_absolute() || !path.exists() {
        return Err(format!("no network namespace at {netns:?}"));
    }
    let shared = daemon.shared();
    let snap = shared.snapshot.load();
    let mtu = snap
        .tables
        .pool_of(u32::from(ip))
        .map(|p| p.mtu)
        .ok_or_else(|| format!("{ip} is in no IP pool"))?;
    if snap.endpoints.iter().any(|e| e.interface == interface) {
        return Err(format!("endpoint {interface} exists already"));
    }
    let mut pending = shared.pending.lock().unwrap_or_else(|p| p.into_inner());
    if pending.contains_key(interface) {
        return Err(format!("a device for {interface} is held already"));
    }
    let queues = tun::create_in(
        path,
        ifname,
        mtu,
        shared.workers.len(),
        daemon.opts.tun_offload,
    )
    .map_err(|e| format!("cannot create {ifname} in {netns}: {e}"))?;
    let addr = format!("{ip}/32");
    let steps: [&[&str]; 3] = [
        &["addr", "add", &addr, "dev", ifname],
        &[
            "route",
            "add",
            "169.254.1.1",
            "dev",
            ifname,
            "scope",
            "link",
        ],
        &[
            "route",
            "add",
            "default",
            "via",
            "169.254.1.1",
            "dev",
            ifname,
        ],
    ];
    for args in steps {
        let out = Command::new("nsenter")
            .arg(format!("--net={netns}"))
            .arg("ip")
            .args(args)
            .output()
            .map_err(|e| format!("cannot run nsenter: {e}"))?;
        if !out.status.success() {
            // The queues close here: the device goes with them.
            return Err(format!(
                "ip {} in {netns}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
    }
    if let Err(e) = queues[0].set_persist(true) {
        tracing::warn!(%interface, "cannot make the device persistent ({e}): a crash will delete it");
    }
    tracing::info!(%interface, %netns, %ifname, %ip, mtu, "endpoint device made for a CNI ADD; waiting for its WorkloadEndpoint");
    pending.insert(interface.to_string(), queues);
    Ok(format!("{ifname} mtu {mtu}"))
}

fn detach(daemon: &Daemon, interface: &str) -> String {
    let mut pending = daemon
        .shared()
        .pending
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    match pending.remove(interface) {
        Some(queues) => {
            let _ = queues[0].set_persist(false);
            tracing::info!(%interface, "held endpoint device let go");
            "released".into()
        }
        None => "nothing held".into(),
    }
}
