//! Route lookup as the number of remote blocks grows.
//!
//! The library's longest-prefix match (`src/table/lpm.rs`) is one hash table
//! per prefix length, probed shortest first with markers, so its cost
//! depends on the number of distinct prefix lengths (here two: /32 and
//! /26), not on the number of routes. The goal: a lookup among 100 000 routes within 2× of a
//! lookup among 10.
//!
//! Each node's table here looks like a real Calico node's: `n` remote /26
//! blocks (`via <node> dev tunl0`, four blocks per remote node), scattered
//! over 10.0.0.0/8 by a fixed pseudo-random permutation of the 2^18 /26
//! blocks there (so keys are neither sequential nor clustered), plus one
//! local blackhole /26 and four local endpoint /32s inside it.
//!
//! Groups `lpm_hit/{n}` look up a cycle of 4096 precomputed addresses in
//! random existing remote blocks; groups `lpm_miss/{n}` look up 4096
//! addresses in /26 blocks of 10.0.0.0/8 that have no route. Each group
//! compares three structures holding the same routes, each checked against
//! the others on every probe before timing:
//!
//! - `tables`: [`Tables::lookup`], the library's per-prefix-length hashes;
//! - `sorted_ranges`: a binary search over sorted non-overlapping ranges
//!   (the routes flattened so that the most specific one owns each range);
//! - `btreemap`: the same ranges in a `BTreeMap`, queried for the greatest
//!   start ≤ the address.
//!
//! One iteration is one lookup (`Throughput::Elements(1)`).

use std::collections::BTreeMap;
use std::hint::black_box;
use std::net::Ipv4Addr;

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, Throughput, criterion_group, criterion_main};
use ipnetwork::Ipv4Network;
use podwire::table::{self, Endpoint, Hop, LocalNode, Route, Tables, TablesBuilder, Underlay, Via};

mod common;

/// Numbers of remote /26 blocks.
const SIZES: [u32; 4] = [10, 1_000, 5_000, 100_000];
/// Addresses cycled through per benchmark (a power of two).
const PROBES: usize = 4096;
/// 10.0.0.0/8 holds 2^18 blocks of /26.
const BLOCK_BITS: u32 = 18;
const BLOCK_PREFIX: u8 = 26;
const BLOCKS_PER_NODE: u32 = 4;
const LOCAL_ENDPOINTS: u32 = 4;

/// A fixed bijection on 0..2^18 (odd multiplications and xor-shifts, each
/// invertible modulo 2^18), so distinct indices give distinct blocks.
fn permute(i: u32) -> u32 {
    const MASK: u32 = (1 << BLOCK_BITS) - 1;
    let mut x = i & MASK;
    x = x.wrapping_mul(0x2_9a4d) & MASK;
    x ^= x >> 9;
    x = x.wrapping_mul(0x1_6b2f) & MASK;
    x ^= x >> 7;
    x.wrapping_add(0x1_2345) & MASK
}

/// The first address of the `i`-th block of the permutation.
fn block(i: u32) -> u32 {
    (10 << 24) | (permute(i) << (32 - BLOCK_PREFIX))
}

/// SplitMix64: deterministic choices of blocks and hosts.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u32 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        (z ^ (z >> 31)) as u32
    }

    fn below(&mut self, n: u32) -> u32 {
        ((u64::from(self.next()) * u64::from(n)) >> 32) as u32
    }
}

/// A node's tables with `n` remote blocks (indices 0..n of the
/// permutation) and one local block (index n) with a few endpoints.
fn node_tables(n: u32) -> Tables {
    let local = LocalNode {
        name: "bench-node".into(),
        ip: Ipv4Addr::new(192, 168, 0, 1),
        subnet: "192.168.0.0/16".parse().expect("subnet"),
        vtep_mac: table::vtep_mac_for("bench-node"),
    };
    let underlay = Underlay {
        name: "eth0".into(),
        mtu: 1500,
    };
    let mut b = TablesBuilder::new(local, underlay);
    for i in 0..n {
        let node = ((172 << 24) | (16 << 16)) + 2 + i / BLOCKS_PER_NODE;
        b.route(
            net(block(i), BLOCK_PREFIX),
            Via::Ipip {
                gw: Ipv4Addr::from(node),
            },
        );
        if i % BLOCKS_PER_NODE == 0 {
            b.peer(Ipv4Addr::from(node));
        }
    }
    let local_block = block(n);
    b.route(net(local_block, BLOCK_PREFIX), Via::Blackhole);
    for k in 0..LOCAL_ENDPOINTS {
        let ip = Ipv4Addr::from(local_block + 2 + k);
        let id = b.endpoint(Endpoint {
            interface: format!("calibench{k:06}"),
            name: format!("bench-pod-{k}"),
            ips: vec![ip],
            mtu: 1480,
        });
        b.route(net(u32::from(ip), 32), Via::Endpoint(id));
    }
    b.build().expect("tables build")
}

fn net(addr: u32, prefix: u8) -> Ipv4Network {
    Ipv4Network::new(Ipv4Addr::from(addr), prefix).expect("valid prefix")
}

/// What `Tables::lookup` answers for a route.
fn hop(via: Via) -> Hop {
    match via {
        Via::Endpoint(id) => Hop::Endpoint(id),
        Via::Blackhole => Hop::Blackhole,
        Via::Ipip { gw } => Hop::Ipip { node: gw },
        Via::Direct { gw } => Hop::Direct { gw },
        Via::Vxlan { .. } | Via::VxlanLink => unreachable!("no VXLAN routes in these tables"),
    }
}

/// The routes as sorted, non-overlapping ranges covering the whole address
/// space: range `i` is `starts[i]..starts[i + 1]` and is owned by the most
/// specific route containing it (`None` where no route does). Adjacent
/// ranges with the same hop are merged.
fn flatten(routes: &[Route]) -> Vec<(u32, Option<Hop>)> {
    fn push(out: &mut Vec<(u32, Option<Hop>)>, at: u64, hop: Option<Hop>) {
        let Ok(at) = u32::try_from(at) else { return };
        match out.last_mut() {
            // A range starting where the last one did replaces it.
            Some(last) if last.0 == at => last.1 = hop,
            Some(last) if last.1 == hop => {}
            _ => out.push((at, hop)),
        }
        // Replacing may have made the last two ranges equal.
        if let [.., a, b] = out.as_slice() {
            if a.1 == b.1 {
                out.pop();
            }
        }
    }
    let mut sorted: Vec<&Route> = routes.iter().collect();
    sorted.sort_by_key(|r| (u32::from(r.dst.network()), r.dst.prefix()));
    let mut out = vec![(0, None)];
    // Enclosing routes still open: (end, exclusive; hop). Prefixes are
    // either nested or disjoint, so they close in stack order.
    let mut open: Vec<(u64, Hop)> = Vec::new();
    let close_until = |out: &mut Vec<_>, open: &mut Vec<(u64, Hop)>, at: u64| {
        while let Some(&(end, _)) = open.last() {
            if end > at {
                break;
            }
            open.pop();
            push(out, end, open.last().map(|&(_, h)| h));
        }
    };
    for r in sorted {
        let start = u64::from(u32::from(r.dst.network()));
        let end = start + (1u64 << (32 - u32::from(r.dst.prefix())));
        close_until(&mut out, &mut open, start);
        push(&mut out, start, Some(hop(r.via)));
        open.push((end, hop(r.via)));
    }
    close_until(&mut out, &mut open, u64::MAX);
    out
}

/// Binary search over sorted ranges.
struct SortedRanges {
    starts: Vec<u32>,
    hops: Vec<Option<Hop>>,
}

impl SortedRanges {
    fn new(ranges: &[(u32, Option<Hop>)]) -> Self {
        SortedRanges {
            starts: ranges.iter().map(|r| r.0).collect(),
            hops: ranges.iter().map(|r| r.1).collect(),
        }
    }

    #[inline]
    fn lookup(&self, addr: u32) -> Option<Hop> {
        // starts[0] == 0, so at least one range starts at or before addr.
        let i = self.starts.partition_point(|&s| s <= addr);
        self.hops.get(i.wrapping_sub(1)).copied().flatten()
    }
}

/// The same ranges in a B-tree, queried for the greatest start ≤ addr.
struct BTreeRanges(BTreeMap<u32, Option<Hop>>);

impl BTreeRanges {
    fn new(ranges: &[(u32, Option<Hop>)]) -> Self {
        BTreeRanges(ranges.iter().copied().collect())
    }

    #[inline]
    fn lookup(&self, addr: u32) -> Option<Hop> {
        self.0.range(..=addr).next_back().and_then(|(_, h)| *h)
    }
}

/// Addresses inside random blocks among those with indices `from..to`.
fn probes(rng: &mut Rng, from: u32, to: u32) -> Vec<u32> {
    (0..PROBES)
        .map(|_| block(from + rng.below(to - from)) + rng.below(1 << (32 - BLOCK_PREFIX)))
        .collect()
}

/// Adds one structure's lookup to `g`, one lookup per iteration, cycling
/// through `addrs`.
fn bench_lookup(
    g: &mut BenchmarkGroup<'_, WallTime>,
    name: &str,
    addrs: &[u32],
    lookup: impl Fn(u32) -> Option<Hop>,
) {
    assert!(addrs.len().is_power_of_two());
    let mask = addrs.len() - 1;
    g.bench_function(name, |b| {
        let mut i = 0usize;
        b.iter(|| {
            let addr = addrs[i & mask];
            i = i.wrapping_add(1);
            lookup(black_box(addr))
        })
    });
}

fn benches(c: &mut Criterion) {
    for n in SIZES {
        let tables = node_tables(n);
        assert_eq!(tables.routes().len(), (n + 1 + LOCAL_ENDPOINTS) as usize);
        let ranges = flatten(tables.routes());
        let sorted = SortedRanges::new(&ranges);
        let btree = BTreeRanges::new(&ranges);

        let mut rng = Rng(u64::from(n));
        let hits = probes(&mut rng, 0, n);
        // Blocks n + 1.. have no route (n is the local block).
        let misses = probes(&mut rng, n + 1, n + 1 + PROBES as u32);
        // Every structure gives the same answer, and the answer expected.
        let local = block(n);
        let local_probes: Vec<u32> = (local.wrapping_sub(1)..=local + 64).collect();
        for (&addr, expect_hit) in hits
            .iter()
            .map(|a| (a, Some(true)))
            .chain(misses.iter().map(|a| (a, Some(false))))
            .chain(local_probes.iter().map(|a| (a, None)))
        {
            let want = tables.lookup(addr);
            assert_eq!(sorted.lookup(addr), want, "sorted ranges, {addr:#x}");
            assert_eq!(btree.lookup(addr), want, "btreemap, {addr:#x}");
            match expect_hit {
                Some(true) => assert!(matches!(want, Some(Hop::Ipip { .. })), "{addr:#x}"),
                Some(false) => assert_eq!(want, None, "{addr:#x}"),
                None => {}
            }
        }
        assert_eq!(tables.lookup(local), Some(Hop::Blackhole));
        assert!(matches!(tables.lookup(local + 2), Some(Hop::Endpoint(_))));

        for (kind, addrs) in [("hit", &hits), ("miss", &misses)] {
            let mut g = c.benchmark_group(format!("lpm_{kind}/{n}"));
            g.throughput(Throughput::Elements(1));
            bench_lookup(&mut g, "tables", addrs, |a| tables.lookup(a));
            bench_lookup(&mut g, "sorted_ranges", addrs, |a| sorted.lookup(a));
            bench_lookup(&mut g, "btreemap", addrs, |a| btree.lookup(a));
            g.finish();
        }
    }
}

criterion_group! {
    name = lpm_benches;
    config = common::config();
    targets = benches
}
criterion_main!(lpm_benches);
