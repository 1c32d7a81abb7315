//! Longest-prefix match over IPv4: one hash table per prefix length.
//!
//! Calico's tables hold few distinct prefix lengths (/32 for workloads, the
//! pools' block sizes, /26 by default), so a lookup probes one hash table per
//! length present, longest first: its cost depends on the number of distinct
//! lengths, not on the number of routes. `benches/lpm.rs` compares this with a
//! binary search over sorted ranges, whose cost grows with log(routes); the
//! README records the figures that decided the choice.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use ipnetwork::Ipv4Network;

/// A hasher for masked IPv4 prefixes: the murmur3 64-bit finaliser, which
/// spreads the low-zero bits of a masked prefix over every bit of the hash.
/// Keys come from configuration, not from packets, so no keyed hash is needed.
#[derive(Default, Clone, Copy)]
pub struct PrefixHasher(u64);

impl Hasher for PrefixHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u32(&mut self, n: u32) {
        self.0 = u64::from(n);
    }

    fn finish(&self) -> u64 {
        let mut h = self.0;
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        h ^ (h >> 33)
    }
}

type PrefixMap<V> = HashMap<u32, V, BuildHasherDefault<PrefixHasher>>;

#[derive(Debug, Clone)]
struct Level<V> {
    mask: u32,
    prefix_len: u8,
    entries: PrefixMap<V>,
}

/// A longest-prefix-match table from IPv4 prefixes to values.
#[derive(Debug, Clone)]
pub struct Lpm<V> {
    /// One level per prefix length present, longest first.
    levels: Vec<Level<V>>,
    len: usize,
}

impl<V> Default for Lpm<V> {
    fn default() -> Self {
        Lpm {
            levels: Vec::new(),
            len: 0,
        }
    }
}

fn mask(prefix_len: u8) -> u32 {
    match prefix_len {
        0 => 0,
        n => u32::MAX << (32 - u32::from(n.min(32))),
    }
}

impl<V: Copy> Lpm<V> {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Inserts a route; returns the value it replaced for the same prefix.
    pub fn insert(&mut self, net: Ipv4Network, value: V) -> Option<V> {
        let prefix_len = net.prefix();
        let pos = match self.levels.iter().position(|l| l.prefix_len <= prefix_len) {
            Some(p) if self.levels[p].prefix_len == prefix_len => p,
            Some(p) => {
                self.levels.insert(p, Level::new(prefix_len));
                p
            }
            None => {
                self.levels.push(Level::new(prefix_len));
                self.levels.len() - 1
            }
        };
        let level = &mut self.levels[pos];
        let old = level
            .entries
            .insert(u32::from(net.ip()) & level.mask, value);
        if old.is_none() {
            self.len += 1;
        }
        old
    }

    /// The value of the longest prefix that contains `addr`.
    #[inline]
    pub fn lookup(&self, addr: u32) -> Option<V> {
        self.levels
            .iter()
            .find_map(|level| level.entries.get(&(addr & level.mask)).copied())
    }

    /// The value stored for exactly this prefix.
    pub fn get(&self, net: Ipv4Network) -> Option<V> {
        let level = self.levels.iter().find(|l| l.prefix_len == net.prefix())?;
        level
            .entries
            .get(&(u32::from(net.ip()) & level.mask))
            .copied()
    }

    /// Number of prefixes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when there are no prefixes.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The distinct prefix lengths, longest first.
    pub fn prefix_lengths(&self) -> impl Iterator<Item = u8> + '_ {
        self.levels.iter().map(|l| l.prefix_len)
    }
}

impl<V> Level<V> {
    fn new(prefix_len: u8) -> Self {
        Level {
            mask: mask(prefix_len),
            prefix_len,
            entries: PrefixMap::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn net(s: &str) -> Ipv4Network {
        s.parse().unwrap()
    }

    #[test]
    fn longest_prefix_wins() {
        let mut t = Lpm::new();
        t.insert(net("10.2.0.0/16"), 16);
        t.insert(net("10.2.36.64/26"), 26);
        t.insert(net("10.2.36.68/32"), 32);
        t.insert(net("0.0.0.0/0"), 0);
        let ip = |s: &str| u32::from(s.parse::<std::net::Ipv4Addr>().unwrap());
        assert_eq!(t.lookup(ip("10.2.36.68")), Some(32));
        assert_eq!(t.lookup(ip("10.2.36.69")), Some(26));
        assert_eq!(t.lookup(ip("10.2.36.128")), Some(16));
        assert_eq!(t.lookup(ip("192.168.1.1")), Some(0));
        assert_eq!(t.len(), 4);
        assert_eq!(t.prefix_lengths().collect::<Vec<_>>(), vec![32, 26, 16, 0]);
        assert_eq!(t.insert(net("10.2.36.64/26"), 99), Some(26));
        assert_eq!(t.get(net("10.2.36.64/26")), Some(99));
        assert_eq!(t.len(), 4);
    }

    #[test]
    fn empty_and_host_bits() {
        let mut t: Lpm<u8> = Lpm::new();
        assert_eq!(t.lookup(0), None);
        assert!(t.is_empty());
        // Host bits in the inserted prefix are masked off.
        t.insert(Ipv4Network::new([10, 0, 0, 77].into(), 24).unwrap(), 1);
        assert_eq!(t.lookup(u32::from_be_bytes([10, 0, 0, 1])), Some(1));
        assert_eq!(t.lookup(u32::from_be_bytes([10, 0, 1, 1])), None);
    }

    proptest! {
        /// Agrees with a linear scan for the longest matching prefix.
        #[test]
        fn matches_linear_scan(
            routes in proptest::collection::vec((any::<u32>(), 0u8..=32), 0..40),
            probes in proptest::collection::vec(any::<u32>(), 1..40),
        ) {
            let mut t = Lpm::new();
            let mut list: Vec<(u32, u8, usize)> = Vec::new();
            for (i, (addr, len)) in routes.iter().enumerate() {
                let n = Ipv4Network::new((*addr).into(), *len).unwrap();
                t.insert(n, i);
                let key = addr & mask(*len);
                list.retain(|(a, l, _)| !(*a == key && *l == *len));
                list.push((key, *len, i));
            }
            // Probe both random addresses and addresses inside each route.
            let inside = list.iter().map(|(a, _, _)| a | 1);
            for p in probes.iter().copied().chain(inside) {
                let want = list
                    .iter()
                    .filter(|(a, l, _)| p & mask(*l) == *a)
                    .max_by_key(|(_, l, _)| *l)
                    .map(|(_, _, v)| *v);
                prop_assert_eq!(t.lookup(p), want);
            }
        }
    }
}
