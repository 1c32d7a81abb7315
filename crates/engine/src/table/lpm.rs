//! Longest-prefix match over IPv4: one hash table per prefix length,
//! probed shortest first, with markers.
//!
//! Calico's tables hold few distinct prefix lengths (/32 for workloads, the
//! pools' block sizes, /26 by default). Each level is a hash table from
//! masked prefix to entry. Every route also leaves a *marker* at each shorter
//! level, and every entry records whether longer prefixes lie inside it, so a
//! lookup walks the levels from the shortest and stops at the first miss or
//! at an entry with nothing more specific below it: a remote block is found
//! in one probe, a local workload in two, and a miss costs one — whatever
//! the number of routes. `benches/lpm.rs` compares this with a binary search
//! over sorted ranges and with a B-tree; docs/performance.md records the figures that
//! decided the choice. Each level is an open-addressing table of its own,
//! built once per snapshot and only read afterwards, with entries inline so a
//! probe touches one cache line. (A first version, a std `HashMap` per level
//! probed longest first, measured about 16 ns per hit among 10 routes; this
//! one about 10 ns.)

use std::collections::HashMap;

use ipnetwork::Ipv4Network;

/// A level's entry: a route (or only a marker) and whether longer prefixes
/// exist inside it.
#[derive(Debug, Clone, Copy)]
struct Entry<V> {
    value: Option<V>,
    more_specific: bool,
}

/// A slot of a level's open-addressing table. The entry is stored inline so
/// that a probe touches one cache line.
#[derive(Debug, Clone, Copy)]
struct Slot<V> {
    key: u32,
    /// False for an empty slot.
    used: bool,
    entry: Entry<V>,
}

/// One prefix length: a linear-probing hash table, at most half full, so a
/// probe sequence always ends at an empty slot. Keys are hashed by
/// Fibonacci hashing (the top bits of key × 2^64/φ), which spreads masked
/// prefixes — whose low bits are all zero — over the whole table. Keys come
/// from configuration, not from packets, so no keyed hash is needed.
#[derive(Debug, Clone)]
struct Level<V> {
    mask: u32,
    prefix_len: u8,
    shift: u32,
    slots: Box<[Slot<V>]>,
}

impl<V: Copy> Level<V> {
    fn freeze(prefix_len: u8, map: HashMap<u32, Entry<V>>) -> Self {
        let capacity = (map.len() * 2).next_power_of_two().max(2);
        let empty = Slot {
            key: 0,
            used: false,
            entry: Entry {
                value: None,
                more_specific: false,
            },
        };
        let mut level = Level {
            mask: mask(prefix_len),
            prefix_len,
            shift: 64 - capacity.trailing_zeros(),
            slots: vec![empty; capacity].into_boxed_slice(),
        };
        for (key, entry) in map {
            let mut i = level.home(key);
            while level.slots[i].used {
                i = (i + 1) & (capacity - 1);
            }
            level.slots[i] = Slot {
                key,
                used: true,
                entry,
            };
        }
        level
    }

    #[inline]
    fn home(&self, key: u32) -> usize {
        (u64::from(key).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> self.shift) as usize
    }

    #[inline]
    fn get(&self, key: u32) -> Option<&Entry<V>> {
        let wrap = self.slots.len() - 1;
        let mut i = self.home(key);
        loop {
            let slot = self.slots.get(i)?;
            if !slot.used {
                return None;
            }
            if slot.key == key {
                return Some(&slot.entry);
            }
            i = (i + 1) & wrap;
        }
    }
}

/// An immutable longest-prefix-match table from IPv4 prefixes to values.
#[derive(Debug, Clone)]
pub struct Lpm<V> {
    /// One level per prefix length present, shortest first.
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
    /// Builds a table from routes; a later route for the same prefix
    /// replaces an earlier one. Host bits of a prefix are ignored.
    pub fn build(routes: impl IntoIterator<Item = (Ipv4Network, V)>) -> Self {
        let routes: Vec<(Ipv4Network, V)> = routes.into_iter().collect();
        let mut lengths: Vec<u8> = routes.iter().map(|(n, _)| n.prefix()).collect();
        lengths.sort_unstable();
        lengths.dedup();
        let mut maps: Vec<HashMap<u32, Entry<V>>> = vec![HashMap::new(); lengths.len()];
        let level_of = |len: u8| lengths.binary_search(&len).unwrap_or(0);
        for (net, value) in &routes {
            let l = level_of(net.prefix());
            let key = u32::from(net.ip()) & mask(lengths[l]);
            maps[l]
                .entry(key)
                .and_modify(|e| e.value = Some(*value))
                .or_insert(Entry {
                    value: Some(*value),
                    more_specific: false,
                });
        }
        for (net, _) in &routes {
            for (l, map) in maps.iter_mut().enumerate().take(level_of(net.prefix())) {
                let key = u32::from(net.ip()) & mask(lengths[l]);
                map.entry(key)
                    .or_insert(Entry {
                        value: None,
                        more_specific: false,
                    })
                    .more_specific = true;
            }
        }
        let len = maps
            .iter()
            .map(|m| m.values().filter(|e| e.value.is_some()).count())
            .sum();
        let levels = lengths
            .iter()
            .zip(maps)
            .map(|(&prefix_len, map)| Level::freeze(prefix_len, map))
            .collect();
        Lpm { levels, len }
    }

    /// The value of the longest prefix that contains `addr`.
    #[inline]
    pub fn lookup(&self, addr: u32) -> Option<V> {
        let mut best = None;
        for level in &self.levels {
            let Some(entry) = level.get(addr & level.mask) else {
                break;
            };
            if entry.value.is_some() {
                best = entry.value;
            }
            if !entry.more_specific {
                break;
            }
        }
        best
    }

    /// The value stored for exactly this prefix.
    pub fn get(&self, net: Ipv4Network) -> Option<V> {
        let level = self.levels.iter().find(|l| l.prefix_len == net.prefix())?;
        level.get(u32::from(net.ip()) & level.mask)?.value
    }

    /// Number of prefixes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when there are no prefixes.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The distinct prefix lengths, shortest first.
    pub fn prefix_lengths(&self) -> impl Iterator<Item = u8> + '_ {
        self.levels.iter().map(|l| l.prefix_len)
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
        let t = Lpm::build([
            (net("10.2.0.0/16"), 16),
            (net("10.2.36.64/26"), 26),
            (net("10.2.36.68/32"), 32),
            (net("0.0.0.0/0"), 0),
        ]);
        let ip = |s: &str| u32::from(s.parse::<std::net::Ipv4Addr>().unwrap());
        assert_eq!(t.lookup(ip("10.2.36.68")), Some(32));
        assert_eq!(t.lookup(ip("10.2.36.69")), Some(26));
        assert_eq!(t.lookup(ip("10.2.36.128")), Some(16));
        assert_eq!(t.lookup(ip("192.168.1.1")), Some(0));
        assert_eq!(t.len(), 4);
        assert_eq!(t.prefix_lengths().collect::<Vec<_>>(), vec![0, 16, 26, 32]);
        assert_eq!(t.get(net("10.2.36.64/26")), Some(26));
        assert_eq!(t.get(net("10.2.36.0/24")), None);
        // A later route for the same prefix wins.
        let t = Lpm::build([(net("10.2.36.64/26"), 1), (net("10.2.36.64/26"), 2)]);
        assert_eq!(t.get(net("10.2.36.64/26")), Some(2));
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn empty_and_host_bits() {
        let t: Lpm<u8> = Lpm::build([]);
        assert_eq!(t.lookup(0), None);
        assert!(t.is_empty());
        // Host bits in a prefix are masked off.
        let t = Lpm::build([(Ipv4Network::new([10, 0, 0, 77].into(), 24).unwrap(), 1)]);
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
            let mut list: Vec<(u32, u8, usize)> = Vec::new();
            let mut nets = Vec::new();
            for (i, (addr, len)) in routes.iter().enumerate() {
                nets.push((Ipv4Network::new((*addr).into(), *len).unwrap(), i));
                let key = addr & mask(*len);
                list.retain(|(a, l, _)| !(*a == key && *l == *len));
                list.push((key, *len, i));
            }
            let t = Lpm::build(nets);
            // Probe random addresses, and addresses at both ends of each route.
            let inside = list
                .iter()
                .flat_map(|(a, l, _)| [*a, a | !mask(*l), a | 1]);
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
