//! The flows the node's kernel forwarded to pods, so that their replies go
//! back through it.
//!
//! A pod that reaches a Service sends to a ClusterIP; podwire hands that to
//! the node's kernel (it is outside every pool), kube-proxy's rules
//! translate the destination to a backend pod, and the kernel routes the
//! packet back to podwire's host interface. The backend's replies carry the
//! backend's address as their source: delivered straight to the client pod,
//! they would never meet the conntrack entry that turns that source back
//! into the ClusterIP, and the client would drop them. So every packet the
//! host interface brings to a pod address *from* a pool address is recorded
//! here by its reply's 5-tuple, and a packet between pods that matches one
//! goes to the node's kernel instead of straight to its destination.
//!
//! The table is bounded (a fixed number of slots, allocated once), shared by
//! every worker without a lock (each slot one atomic word), and aged: an
//! entry not seen for [`TIMEOUT_TCP`] (TCP) or [`TIMEOUT_OTHER`] seconds is
//! free again, and a full bucket gives up its oldest entry (counted as an
//! eviction). A slot holds a 44-bit fingerprint of the 5-tuple and the time
//! in seconds it was last seen: two flows whose fingerprints collide make
//! the second one's packets take the kernel's path too, which forwards them
//! back unchanged — slower, never wrong.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use crate::wire::ipv4;

/// Slots in each bucket (one bucket is 32 bytes: half a cache line).
const WAYS: usize = 4;
/// Bits of a slot that hold the time (seconds, wrapping).
const TIME_BITS: u32 = 20;
const TIME_MASK: u64 = (1 << TIME_BITS) - 1;
/// Seconds an idle TCP flow stays (the kernel's conntrack keeps an
/// established one five days: this is one, so that the wrapping clock of
/// [`TIME_BITS`] bits stays unambiguous).
pub const TIMEOUT_TCP: u32 = 86_400;
/// Seconds an idle UDP or ICMP flow stays (the kernel's conntrack: 120 s
/// for a UDP stream, 30 s for ICMP).
pub const TIMEOUT_OTHER: u32 = 180;
/// Slots of [`NatFlows::new`]'s default table.
pub const DEFAULT_SLOTS: usize = 65_536;

/// The 5-tuple of a packet, as the flow table keys it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowKey {
    pub proto: u8,
    pub src: u32,
    pub dst: u32,
    /// TCP and UDP: the ports; ICMP echo: the identifier (both); else 0.
    pub sport: u16,
    pub dport: u16,
}

impl FlowKey {
    /// The key of `data`'s packet (`h` its parsed header): ports for TCP
    /// and UDP first fragments, the identifier for ICMP echo requests and
    /// replies, nothing else for the rest.
    pub fn of(h: &ipv4::Header, data: &[u8]) -> FlowKey {
        let l4 = data.get(h.header_len..).unwrap_or_default();
        let (sport, dport) = match h.proto {
            _ if h.is_later_fragment() => (0, 0),
            ipv4::proto::TCP | ipv4::proto::UDP => match l4.first_chunk::<4>() {
                Some(p) => (
                    u16::from_be_bytes([p[0], p[1]]),
                    u16::from_be_bytes([p[2], p[3]]),
                ),
                None => (0, 0),
            },
            ipv4::proto::ICMP => match l4.first_chunk::<6>() {
                // Echo reply (0) and echo request (8): the identifier.
                Some(p) if p[0] == 0 || p[0] == 8 => {
                    let id = u16::from_be_bytes([p[4], p[5]]);
                    (id, id)
                }
                _ => (0, 0),
            },
            _ => (0, 0),
        };
        FlowKey {
            proto: h.proto,
            src: h.src,
            dst: h.dst,
            sport,
            dport,
        }
    }

    /// The key of this flow's replies.
    pub fn reversed(self) -> FlowKey {
        FlowKey {
            proto: self.proto,
            src: self.dst,
            dst: self.src,
            sport: self.dport,
            dport: self.sport,
        }
    }

    fn hash(&self) -> u64 {
        // Two rounds of a multiply-xorshift mixer (splitmix64's finaliser)
        // over the packed tuple: cheap, and every input bit reaches every
        // output bit.
        let a = (u64::from(self.src) << 32) | u64::from(self.dst);
        let b =
            (u64::from(self.sport) << 32) | (u64::from(self.dport) << 8) | u64::from(self.proto);
        mix(mix(a) ^ b)
    }

    fn timeout(&self) -> u32 {
        if self.proto == ipv4::proto::TCP {
            TIMEOUT_TCP
        } else {
            TIMEOUT_OTHER
        }
    }
}

fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Counters of the table, for `show stats` and the metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct FlowCounts {
    /// Slots in the table.
    pub capacity: u64,
    /// Flows recorded (a new entry, not a refresh).
    pub recorded: u64,
    /// Entries given up for a newer flow while still live.
    pub evicted: u64,
}

/// The reply flows of what the kernel forwarded to pods: see the module.
#[derive(Debug)]
pub struct NatFlows {
    slots: Box<[AtomicU64]>,
    /// Buckets minus one (a power of two minus one).
    mask: usize,
    recorded: AtomicU64,
    evicted: AtomicU64,
    /// True once anything was recorded: until then a lookup costs a load.
    used: std::sync::atomic::AtomicBool,
    /// The clock entries age by, in seconds, set by the caller.
    clock: AtomicU32,
}

impl Default for NatFlows {
    fn default() -> Self {
        NatFlows::new(DEFAULT_SLOTS)
    }
}

impl NatFlows {
    /// A table of at least `slots` slots (rounded up to whole buckets, a
    /// power of two of them), all free.
    pub fn new(slots: usize) -> Self {
        let buckets = slots.div_ceil(WAYS).max(1).next_power_of_two();
        NatFlows {
            slots: (0..buckets * WAYS).map(|_| AtomicU64::new(0)).collect(),
            mask: buckets - 1,
            recorded: AtomicU64::new(0),
            evicted: AtomicU64::new(0),
            used: std::sync::atomic::AtomicBool::new(false),
            clock: AtomicU32::new(0),
        }
    }

    /// Sets the clock (seconds since any fixed start) the entries age by;
    /// the daemon's workers set it once per batch.
    #[inline]
    pub fn set_now(&self, seconds: u32) {
        if self.clock.load(Ordering::Relaxed) != seconds {
            self.clock.store(seconds, Ordering::Relaxed);
        }
    }

    /// The clock.
    #[inline]
    pub fn now(&self) -> u32 {
        self.clock.load(Ordering::Relaxed)
    }

    /// The table's counters.
    pub fn counts(&self) -> FlowCounts {
        FlowCounts {
            capacity: self.slots.len() as u64,
            recorded: self.recorded.load(Ordering::Relaxed),
            evicted: self.evicted.load(Ordering::Relaxed),
        }
    }

    /// Live entries at time `now` (a walk over every slot: for the stats).
    pub fn live(&self, now: u32) -> usize {
        self.slots
            .iter()
            .filter(|s| {
                let v = s.load(Ordering::Relaxed);
                v != 0 && age(v, now) <= TIMEOUT_TCP
            })
            .count()
    }

    fn bucket(&self, hash: u64) -> &[AtomicU64] {
        let b = (hash as usize) & self.mask;
        &self.slots[b * WAYS..(b + 1) * WAYS]
    }

    /// Records `key` as seen at `now` (seconds): a refresh when it is
    /// there, else a free or expired slot of its bucket, else the oldest.
    pub fn record(&self, key: FlowKey, now: u32) {
        let hash = key.hash();
        let tag = tag_of(hash);
        let entry = (tag << TIME_BITS) | (u64::from(now) & TIME_MASK);
        let bucket = self.bucket(hash);
        let mut free = None;
        let mut oldest = (0, 0u32);
        for (i, slot) in bucket.iter().enumerate() {
            let v = slot.load(Ordering::Relaxed);
            if v >> TIME_BITS == tag {
                if v != entry {
                    slot.store(entry, Ordering::Relaxed);
                }
                return;
            }
            let a = age(v, now);
            if v == 0 || a > key.timeout() {
                free.get_or_insert(i);
            } else if a >= oldest.1 {
                oldest = (i, a);
            }
        }
        let i = match free {
            Some(i) => i,
            None => {
                self.evicted.fetch_add(1, Ordering::Relaxed);
                oldest.0
            }
        };
        bucket[i].store(entry, Ordering::Relaxed);
        self.recorded.fetch_add(1, Ordering::Relaxed);
        if !self.used.load(Ordering::Relaxed) {
            self.used.store(true, Ordering::Relaxed);
        }
    }

    /// True when `key` is a live entry at `now`; seeing it refreshes it
    /// (a reply keeps its flow alive as the kernel's conntrack does).
    #[inline]
    pub fn contains(&self, key: FlowKey, now: u32) -> bool {
        if !self.used.load(Ordering::Relaxed) {
            return false;
        }
        let hash = key.hash();
        let tag = tag_of(hash);
        for slot in self.bucket(hash) {
            let v = slot.load(Ordering::Relaxed);
            if v >> TIME_BITS == tag {
                if age(v, now) > key.timeout() {
                    return false;
                }
                let entry = (tag << TIME_BITS) | (u64::from(now) & TIME_MASK);
                if v != entry {
                    slot.store(entry, Ordering::Relaxed);
                }
                return true;
            }
        }
        false
    }
}

/// A fingerprint of 44 bits, never 0 (0 is a free slot).
fn tag_of(hash: u64) -> u64 {
    (hash >> TIME_BITS) | 1
}

/// Seconds since the slot's value `v` was seen, at `now` (wrapping).
fn age(v: u64, now: u32) -> u32 {
    ((u64::from(now).wrapping_sub(v & TIME_MASK)) & TIME_MASK) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(i: u32) -> FlowKey {
        FlowKey {
            proto: ipv4::proto::TCP,
            src: 0x0a02_0000 | i,
            dst: 0x0a03_0001,
            sport: 80,
            dport: 40_000 + (i % 20_000) as u16,
        }
    }

    #[test]
    fn records_refreshes_and_ages() {
        let t = NatFlows::new(64);
        let k = key(1);
        assert!(!t.contains(k, 10));
        t.record(k, 10);
        assert!(t.contains(k, 10));
        assert!(!t.contains(k.reversed(), 10), "direction matters");
        assert!(t.contains(k, 10 + TIMEOUT_TCP), "still live at the timeout");
        // That lookup refreshed it: a timeout later it is still there.
        assert!(t.contains(k, 10 + 2 * TIMEOUT_TCP));
        assert!(!t.contains(k, 11 + 3 * TIMEOUT_TCP + 1), "expired");
        let udp = FlowKey {
            proto: ipv4::proto::UDP,
            ..k
        };
        t.record(udp, 100);
        assert!(t.contains(udp, 100 + TIMEOUT_OTHER));
        assert!(!t.contains(udp, 100 + 3 * TIMEOUT_OTHER));
        assert_eq!(t.counts().recorded, 2);
    }

    #[test]
    fn the_clock_wraps_without_losing_entries() {
        let t = NatFlows::new(64);
        let k = key(7);
        let near_wrap = (1 << TIME_BITS) - 5;
        t.record(k, near_wrap);
        assert!(t.contains(k, near_wrap + 10));
    }

    #[test]
    fn bounded_and_evicting_the_oldest() {
        let t = NatFlows::new(1024);
        assert_eq!(t.counts().capacity, 1024);
        for i in 0..4096 {
            t.record(key(i), i);
        }
        let c = t.counts();
        assert_eq!(c.recorded, 4096);
        assert!(c.evicted >= 4096 - 1024, "{c:?}");
        assert!(t.live(4096) <= 1024);
        // The newest flows are the ones kept.
        let kept = (4096 - 64..4096)
            .filter(|&i| t.contains(key(i), 4096))
            .count();
        assert!(kept >= 60, "{kept} of the 64 newest kept");
        let old = (0..64).filter(|&i| t.contains(key(i), 4096)).count();
        assert!(old <= 4, "{old} of the 64 oldest kept");
    }

    #[test]
    fn keys_from_packets() {
        // UDP 10.2.1.5:5353 -> 10.96.0.10:53.
        let mut p = vec![
            0x45, 0, 0, 36, 0, 1, 0, 0, 64, 17, 0, 0, 10, 2, 1, 5, 10, 96, 0, 10,
        ];
        p.extend_from_slice(&[0x14, 0xe9, 0, 53, 0, 16, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8]);
        let c = crate::wire::checksum::Sum::new().add_bytes(&p[..20]).fold();
        p[10..12].copy_from_slice(&(!c).to_be_bytes());
        let h = ipv4::parse(&p).unwrap();
        let k = FlowKey::of(&h, &p);
        assert_eq!((k.proto, k.sport, k.dport), (17, 5353, 53));
        assert_eq!(k.reversed().src, 0x0a60_000a);
        assert_eq!(k.reversed().dport, 5353);
        // ICMP echo request id 0x1234: the identifier on both sides.
        let mut e = p.clone();
        e[9] = 1;
        e[20..28].copy_from_slice(&[8, 0, 0, 0, 0x12, 0x34, 0, 1]);
        e[10..12].copy_from_slice(&[0, 0]);
        let c = crate::wire::checksum::Sum::new().add_bytes(&e[..20]).fold();
        e[10..12].copy_from_slice(&(!c).to_be_bytes());
        let h = ipv4::parse(&e).unwrap();
        let k = FlowKey::of(&h, &e);
        assert_eq!((k.sport, k.dport), (0x1234, 0x1234));
    }
}
