//! Switches, hosts, pods and podwire daemons.

use std::path::Path;
use std::time::{Duration, Instant};

use super::{Error, Harness, Io, err, must};

/// A pod attached to a kernel-routed node as Calico attaches pods: a veth
/// whose node side (`host`) has the MAC ee:ee:ee:ee:ee:ee and proxy ARP,
/// and a /32 route to the pod's address.
#[derive(Debug, Clone, Copy)]
pub struct VethPod<'a> {
    /// The node side's name (`cali…`).
    pub host: &'a str,
    /// The pod's address.
    pub ip: &'a str,
    /// The MTU of both sides, if not the default.
    pub mtu: Option<&'a str>,
    /// Proxy ARP answers at once (`proxy_delay` 0) instead of after a
    /// random delay.
    pub prompt_arp: bool,
}

/// How to start a podwire daemon: `wrapper… exe run [--config config]
/// --node node --control control extra…`, its standard error into `log`
/// (without a file, `extra` names the datastore).
#[derive(Debug, Clone, Copy)]
pub struct Daemon<'a> {
    pub exe: &'a str,
    pub config: Option<&'a Path>,
    pub node: &'a str,
    pub control: &'a Path,
    pub log: &'a Path,
    /// A command in front of podwire (like `setpriv …`), or nothing.
    pub wrapper: &'a [&'a str],
    /// More arguments of `podwire run`.
    pub extra: &'a [&'a str],
    pub env: &'a [(&'a str, &'a str)],
}

impl Harness {
    /// A bridge `br`, up, in namespace `ns` (an underlay segment).
    pub fn bridge(&self, ns: &str, br: &str) -> Result<(), Error> {
        self.ip(ns, &["link", "add", br, "type", "bridge"])?;
        self.ip(ns, &["link", "set", br, "up"])?;
        Ok(())
    }

    /// Connects namespace `host` to bridge `br` in namespace `switch` with
    /// a veth whose host end is `ifname`, addressed `addr` (with its
    /// prefix length), and whose switch end is named after the host.
    pub fn attach(
        &self,
        switch: &str,
        br: &str,
        host: &str,
        ifname: &str,
        addr: &str,
    ) -> Result<(), Error> {
        let short = host.strip_prefix(&self.prefix).unwrap_or(host);
        let port = self.link_name(&format!("p{short}"))?;
        must(
            "ip",
            &[
                "link", "add", ifname, "netns", host, "type", "veth", "peer", "name", &port,
                "netns", switch,
            ],
        )?;
        self.ip(switch, &["link", "set", &port, "master", br])?;
        self.ip(switch, &["link", "set", &port, "up"])?;
        self.ip(host, &["addr", "add", addr, "dev", ifname])?;
        self.ip(host, &["link", "set", ifname, "up"])?;
        Ok(())
    }

    /// Waits until link `iface` shows in namespace `ns`.
    pub fn wait_link(&self, ns: &str, iface: &str, timeout: Duration) -> Result<(), Error> {
        let deadline = Instant::now() + timeout;
        while !super::run("ip", &["-n", ns, "link", "show", iface])?
            .status
            .success()
        {
            self.check()?;
            if Instant::now() > deadline {
                return Err(err(format!("endpoint {iface} never appeared in {ns}")));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// Moves endpoint `iface` (a TUN device podwire made) from namespace
    /// `node` into a new pod namespace `short`, and shapes it as Calico
    /// shapes a pod: `eth0`, the address as a /32, 169.254.1.1 on link,
    /// the default route through it. Returns the pod's namespace.
    pub fn pod(&mut self, short: &str, node: &str, iface: &str, ip: &str) -> Result<String, Error> {
        self.pod_with(short, node, iface, ip, true)
    }

    /// As [`Harness::pod`], with IPv6 off in the pod before its `eth0`
    /// arrives, so that its kernel sends no router solicitations or MLD
    /// reports.
    pub fn pod_without_ipv6(
        &mut self,
        short: &str,
        node: &str,
        iface: &str,
        ip: &str,
    ) -> Result<String, Error> {
        self.pod_with(short, node, iface, ip, false)
    }

    fn pod_with(
        &mut self,
        short: &str,
        node: &str,
        iface: &str,
        ip: &str,
        ipv6: bool,
    ) -> Result<String, Error> {
        let pod = self.netns(short)?;
        if !ipv6 {
            for key in ["all", "default"] {
                self.sysctl(&pod, &format!("net.ipv6.conf.{key}.disable_ipv6=1"))?;
            }
        }
        self.wait_link(node, iface, Duration::from_secs(5))?;
        self.ip(node, &["link", "set", iface, "netns", &pod])?;
        self.ip(&pod, &["link", "set", iface, "name", "eth0"])?;
        self.pod_routes(&pod, ip)?;
        Ok(pod)
    }

    /// Calico's pod network shape on `eth0` of `pod`: the address as a /32,
    /// the link up, 169.254.1.1 on link, the default route through it.
    pub fn pod_routes(&self, pod: &str, ip: &str) -> Result<(), Error> {
        self.ip(pod, &["addr", "add", &format!("{ip}/32"), "dev", "eth0"])?;
        self.ip(pod, &["link", "set", "eth0", "up"])?;
        for route in [
            &["169.254.1.1", "dev", "eth0", "scope", "link"][..],
            &["default", "via", "169.254.1.1", "dev", "eth0"],
        ] {
            self.ip(pod, &[&["route", "add"][..], route].concat())?;
        }
        Ok(())
    }

    /// A new pod namespace `short` attached to kernel-routed node `node`
    /// as `p` says; returns the pod's namespace.
    pub fn veth_pod(&mut self, node: &str, short: &str, p: VethPod) -> Result<String, Error> {
        let pod = self.netns(short)?;
        self.ip(
            node,
            &[
                "link", "add", p.host, "type", "veth", "peer", "name", "eth0", "netns", &pod,
            ],
        )?;
        let mut host = vec!["link", "set", p.host, "address", "ee:ee:ee:ee:ee:ee"];
        if let Some(mtu) = p.mtu {
            host.extend(["mtu", mtu]);
            self.ip(&pod, &["link", "set", "eth0", "mtu", mtu])?;
        }
        host.push("up");
        self.ip(node, &host)?;
        self.sysctl(node, &format!("net.ipv4.conf.{}.proxy_arp=1", p.host))?;
        if p.prompt_arp {
            self.sysctl(node, &format!("net.ipv4.neigh.{}.proxy_delay=0", p.host))?;
        }
        self.ip(
            node,
            &["route", "add", p.ip, "dev", p.host, "scope", "link"],
        )?;
        self.pod_routes(&pod, p.ip)?;
        Ok(pod)
    }

    /// Starts podwire in namespace `ns` as `d` says, tagged `tag`; returns
    /// its PID. [`Harness::wait_podwire`] waits until it answers.
    pub fn start_podwire(&mut self, tag: &str, ns: &str, d: &Daemon) -> Result<u32, Error> {
        let (config, control) = (
            d.config.map(|c| c.display().to_string()),
            d.control.display().to_string(),
        );
        let mut cmd = d.wrapper.to_vec();
        cmd.extend([d.exe, "run"]);
        if let Some(c) = &config {
            cmd.extend(["--config", c.as_str()]);
        }
        cmd.extend(["--node", d.node, "--control", &control]);
        cmd.extend_from_slice(d.extra);
        self.spawn_env(tag, ns, &cmd, Io::Log(d.log.to_path_buf()), d.env)
    }

    /// Waits until the daemon tagged `tag` answers on `control`; fails if
    /// it exits first or does not answer within `timeout`.
    pub fn wait_podwire(
        &mut self,
        tag: &str,
        control: &Path,
        timeout: Duration,
    ) -> Result<(), Error> {
        let deadline = Instant::now() + timeout;
        while podwire_daemon::control::request(control, "stats", false).is_err() {
            self.check()?;
            if let Some(status) = self.exited(tag)? {
                return Err(err(format!("podwire for {tag} exited with {status}")));
            }
            if Instant::now() > deadline {
                return Err(err(format!("podwire for {tag} did not come up")));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }
}
