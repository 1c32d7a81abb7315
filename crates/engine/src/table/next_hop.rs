//! Direct mode's link layer: the underlay device's own MAC and the MAC of
//! each next-hop node on it, as the kernel's neighbour table has them. The
//! daemon keeps them from netlink and swaps them into the snapshot beside
//! the routes; `podwire check` has none. The pipeline reads them when it
//! frames a packet for the underlay, and answers `no-neighbour` itself.

use std::net::Ipv4Addr;

use crate::wire::MacAddr;

/// The underlay's MAC and its next hops' MACs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NextHops {
    src: Option<MacAddr>,
    /// Next-hop address → MAC, sorted by address.
    macs: Vec<(u32, MacAddr)>,
}

impl NextHops {
    /// The underlay's MAC `src` and the next hops' MACs (later entries for
    /// an address win).
    pub fn new(src: MacAddr, macs: impl IntoIterator<Item = (Ipv4Addr, MacAddr)>) -> Self {
        let mut list: Vec<(u32, MacAddr)> = macs
            .into_iter()
            .map(|(ip, mac)| (u32::from(ip), mac))
            .collect();
        list.reverse();
        list.sort_by_key(|e| e.0);
        list.dedup_by_key(|e| e.0);
        NextHops {
            src: Some(src),
            macs: list,
        }
    }

    /// The underlay device's MAC: the source of every direct-mode frame
    /// (`None`: no underlay device was found).
    #[inline]
    pub fn src(&self) -> Option<MacAddr> {
        self.src
    }

    /// The MAC of next hop `gw`, if the kernel has resolved it.
    #[inline]
    pub fn mac(&self, gw: Ipv4Addr) -> Option<MacAddr> {
        let gw = u32::from(gw);
        self.macs
            .binary_search_by_key(&gw, |e| e.0)
            .ok()
            .map(|i| self.macs[i].1)
    }

    /// Every next hop with its MAC, by address.
    pub fn iter(&self) -> impl Iterator<Item = (Ipv4Addr, MacAddr)> + '_ {
        self.macs.iter().map(|&(ip, mac)| (Ipv4Addr::from(ip), mac))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_each_next_hop_and_the_last_entry_wins() {
        let a = MacAddr([2, 0, 0, 0, 0, 1]);
        let b = MacAddr([2, 0, 0, 0, 0, 2]);
        let nh = NextHops::new(
            MacAddr([2, 0, 0, 0, 0, 9]),
            [
                (Ipv4Addr::new(192, 168, 33, 57), a),
                (Ipv4Addr::new(192, 168, 33, 53), a),
                (Ipv4Addr::new(192, 168, 33, 57), b),
            ],
        );
        assert_eq!(nh.src(), Some(MacAddr([2, 0, 0, 0, 0, 9])));
        assert_eq!(nh.mac(Ipv4Addr::new(192, 168, 33, 57)), Some(b));
        assert_eq!(nh.mac(Ipv4Addr::new(192, 168, 33, 53)), Some(a));
        assert_eq!(nh.mac(Ipv4Addr::new(192, 168, 33, 55)), None);
        assert_eq!(nh.iter().count(), 2);
        assert_eq!(NextHops::default().src(), None);
    }
}
