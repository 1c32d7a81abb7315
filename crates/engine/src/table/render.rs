//! The tables as operators already read them: the text of `ip route`,
//! `ip neigh` and `bridge fdb` (what `podwire check` and `podwire show`
//! print), and the JSON of `ip -j route`, `ip -j neigh` and `bridge -j fdb`
//! (`podwire show --json`). One place for both, so the two never disagree.

use std::fmt::{self, Write as _};

use serde_json::{Value, json};

use super::{Fdb, IPIP_DEV, Neigh, Route, Tables, VXLAN_DEV, Via};

/// A route's destination as `ip route` prints it: a `/32` without its length.
fn destination(r: &Route) -> String {
    if r.dst.prefix() == 32 {
        r.dst.ip().to_string()
    } else {
        format!("{}/{}", r.dst.network(), r.dst.prefix())
    }
}

impl Tables {
    /// Formats one route as `ip route` prints it.
    pub fn route_line(&self, r: &Route) -> String {
        let dst = destination(r);
        match r.via {
            Via::Blackhole => format!("blackhole {dst}"),
            Via::Endpoint(id) => {
                let dev = self.endpoint(id).map_or("?", |e| e.interface.as_str());
                format!("{dst} dev {dev} scope link")
            }
            Via::Vxlan { gw } => format!("{dst} via {gw} dev {VXLAN_DEV} onlink"),
            Via::VxlanLink => format!("{dst} dev {VXLAN_DEV} scope link"),
            Via::Ipip { gw } => format!("{dst} via {gw} dev {IPIP_DEV} onlink"),
            Via::Direct { gw } => format!("{dst} via {gw} dev {} onlink", self.underlay.name),
        }
    }

    /// The routes as `ip route` prints them, one per line.
    pub fn routes_text(&self) -> String {
        self.routes.iter().fold(String::new(), |mut s, r| {
            let _ = writeln!(s, "{}", self.route_line(r));
            s
        })
    }

    /// The neighbour table as `ip neigh` prints it.
    pub fn neigh_text(&self) -> String {
        self.neigh.iter().fold(String::new(), |mut s, n| {
            let _ = writeln!(s, "{n}");
            s
        })
    }

    /// The FDB as `bridge fdb` prints it.
    pub fn fdb_text(&self) -> String {
        self.fdb.iter().fold(String::new(), |mut s, f| {
            let _ = writeln!(s, "{f}");
            s
        })
    }

    /// The three sections `podwire check` prints.
    pub fn report(&self) -> String {
        format!(
            "# routes\n{}# neigh\n{}# fdb\n{}",
            self.routes_text(),
            self.neigh_text(),
            self.fdb_text()
        )
    }

    /// Routes in the shape `ip -j route` prints them.
    pub fn routes_json(&self) -> Value {
        Value::Array(
            self.routes
                .iter()
                .map(|r| {
                    let dst = destination(r);
                    match r.via {
                        Via::Blackhole => json!({"type": "blackhole", "dst": dst, "flags": []}),
                        Via::Endpoint(id) => json!({
                            "dst": dst,
                            "dev": self.endpoint(id).map(|e| e.interface.as_str()).unwrap_or("?"),
                            "scope": "link",
                            "flags": [],
                        }),
                        Via::VxlanLink => {
                            json!({"dst": dst, "dev": VXLAN_DEV, "scope": "link", "flags": []})
                        }
                        Via::Vxlan { gw } => {
                            json!({"dst": dst, "gateway": gw.to_string(), "dev": VXLAN_DEV, "flags": ["onlink"]})
                        }
                        Via::Ipip { gw } => {
                            json!({"dst": dst, "gateway": gw.to_string(), "dev": IPIP_DEV, "flags": ["onlink"]})
                        }
                        Via::Direct { gw } => json!({
                            "dst": dst,
                            "gateway": gw.to_string(),
                            "dev": self.underlay.name,
                            "flags": ["onlink"],
                        }),
                    }
                })
                .collect(),
        )
    }

    /// Neighbours in the shape `ip -j neigh` prints them.
    pub fn neigh_json(&self) -> Value {
        Value::Array(
            self.neigh
                .iter()
                .map(|n| {
                    json!({"dst": n.ip.to_string(), "dev": VXLAN_DEV, "lladdr": n.mac.to_string(), "state": ["PERMANENT"]})
                })
                .collect(),
        )
    }

    /// FDB entries in the shape `bridge -j fdb` prints them.
    pub fn fdb_json(&self) -> Value {
        Value::Array(
            self.fdb
                .iter()
                .map(|f| {
                    json!({"mac": f.mac.to_string(), "ifname": VXLAN_DEV, "dst": f.dst.to_string(), "flags": ["self"], "state": "permanent"})
                })
                .collect(),
        )
    }
}

impl fmt::Display for Neigh {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} dev {VXLAN_DEV} lladdr {} PERMANENT",
            self.ip, self.mac
        )
    }
}

impl fmt::Display for Fdb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} dev {VXLAN_DEV} dst {} self permanent",
            self.mac, self.dst
        )
    }
}
