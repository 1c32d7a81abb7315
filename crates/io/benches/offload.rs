//! Segmentation and coalescing per 64 KB super-packet, beside one plain
//! copy of 64 KB.
//!
//! With TUN offloads, a pod hands podwire TCP super-packets of up to 64 KB,
//! which are split into MSS-sized segments with complete checksums before
//! encapsulation (`gso_split`, tun-rs's port of wireguard-go's: a copy and
//! a checksum pass); on the way back, segments of one flow are merged into
//! one gathered TUN write (`merge_64k`: podwire's `wire::tcp_gro`, checks
//! and a checksum pass, no copy; `tun_rs_gro_64k` is tun-rs's GRO, which
//! podwire first used, for comparison). `offload/copy_64k` is one copy.

use std::hint::black_box;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use podwire_wire::checksum::Sum;
use podwire_wire::tcp_gro;
use tun_rs::{GROTable, VIRTIO_NET_HDR_GSO_TCPV4, VIRTIO_NET_HDR_LEN, VirtioNetHdr};

#[path = "../../engine/benches/common/mod.rs"]
mod common;

const MSS: usize = 1448;
const SEGMENTS: usize = 45;
const OFFSET: usize = 64;

/// An IPv4/TCP header pair for 10.2.36.68:40000 → 10.2.169.138:5201 with
/// `payload` bytes and sequence number `seq`, checksums left to fill.
fn tcp_packet(payload: usize, seq: u32) -> Vec<u8> {
    let total = 40 + payload;
    let mut p = vec![0u8; total];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    p[6] = 0x40;
    p[8] = 64;
    p[9] = 6;
    p[12..16].copy_from_slice(&[10, 2, 36, 68]);
    p[16..20].copy_from_slice(&[10, 2, 169, 138]);
    podwire_wire::ipv4::refresh_checksum(&mut p[..20]);
    p[20..22].copy_from_slice(&40000u16.to_be_bytes());
    p[22..24].copy_from_slice(&5201u16.to_be_bytes());
    p[24..28].copy_from_slice(&seq.to_be_bytes());
    p[32] = 0x50; // data offset 5
    p[33] = 0x10; // ACK
    p[34..36].copy_from_slice(&512u16.to_be_bytes());
    for (i, b) in p[40..].iter_mut().enumerate() {
        *b = (i * 13) as u8;
    }
    p
}

fn bench(c: &mut Criterion) {
    let payload = MSS * SEGMENTS;
    let mut g = c.benchmark_group("offload");
    g.throughput(Throughput::Bytes(payload as u64));

    // Split: one super-packet with a partial TCP checksum, as the TUN gives it.
    let super_packet = tcp_packet(payload, 1);
    let hdr = VirtioNetHdr {
        flags: 1, // NEEDS_CSUM
        gso_type: VIRTIO_NET_HDR_GSO_TCPV4,
        hdr_len: 40,
        gso_size: MSS as u16,
        csum_start: 20,
        csum_offset: 16,
    };
    let mut bufs = vec![vec![0u8; OFFSET + 1500]; 128];
    let mut sizes = vec![0usize; 128];
    let mut input = super_packet.clone();
    g.bench_function("gso_split_64k", |b| {
        b.iter(|| {
            input[..40].copy_from_slice(&super_packet[..40]);
            let n =
                tun_rs::gso_split(&mut input, hdr, &mut bufs, &mut sizes, OFFSET, false).unwrap();
            black_box(n)
        })
    });
    let n = tun_rs::gso_split(
        &mut super_packet.clone(),
        hdr,
        &mut bufs,
        &mut sizes,
        OFFSET,
        false,
    )
    .unwrap();
    assert_eq!(n, SEGMENTS);

    // Coalesce: the segments of one flow back into one super-packet.
    let segments: Vec<Vec<u8>> = (0..SEGMENTS)
        .map(|k| {
            let mut v = vec![0u8; OFFSET];
            let mut p = tcp_packet(MSS, 1 + (k * MSS) as u32);
            // A complete TCP checksum, as a segment arriving from the wire has.
            let sum = Sum::new()
                .add_bytes(&pseudo(&p))
                .add_bytes(&p[20..])
                .checksum();
            p[36..38].copy_from_slice(&sum.to_be_bytes());
            v.extend_from_slice(&p);
            v
        })
        .collect();
    // podwire's merge (`wire::tcp_gro`): check every segment (its TCP
    // checksum included, one read of the payload) and build the header
    // block; the payloads themselves go to the kernel in one gathered write,
    // never copied here.
    let pkts: Vec<&[u8]> = segments.iter().map(|v| &v[OFFSET..]).collect();
    g.bench_function("merge_64k", |b| {
        b.iter(|| {
            let first = pkts[0];
            let f = tcp_gro::segment(first).unwrap();
            assert!(tcp_gro::tcp_checksum_valid(first));
            let (mut merged, mut last) = (f.payload_len, f.payload_len);
            for next in &pkts[1..] {
                let s = tcp_gro::segment(next).unwrap();
                assert!(tcp_gro::may_follow(first, &f, merged, next, &s, last));
                assert!(tcp_gro::tcp_checksum_valid(next));
                merged += s.payload_len;
                last = s.payload_len;
            }
            let mut block = [0u8; tcp_gro::MAX_HEADER_BLOCK];
            black_box(tcp_gro::header_block(first, &f, merged, false, &mut block))
        })
    });
    // tun-rs's GRO, for comparison: it copies each segment (twice).
    let mut gro = GROTable::new();
    g.bench_function("tun_rs_gro_64k", |b| {
        b.iter_batched_ref(
            || with_room(&segments),
            |bufs| {
                gro.apply_gro(bufs, OFFSET, false).unwrap();
                black_box(&bufs[0]);
            },
            BatchSize::SmallInput,
        )
    });
    let mut check = with_room(&segments);
    gro.apply_gro(&mut check, OFFSET, false).unwrap();
    assert!(
        check[0].len() > OFFSET + payload,
        "coalesced into the first buffer"
    );

    let src = vec![7u8; payload];
    let mut dst = vec![0u8; payload];
    g.bench_function("copy_64k", |b| {
        b.iter(|| {
            dst.copy_from_slice(black_box(&src));
            black_box(&mut dst);
        })
    });
    g.finish();
}

/// Copies of `segments` with room to grow (GRO appends into the first
/// buffer of a flow, and only within its capacity; a plain clone has none).
fn with_room(segments: &[Vec<u8>]) -> Vec<Vec<u8>> {
    segments
        .iter()
        .map(|s| {
            let mut v = Vec::with_capacity(OFFSET + VIRTIO_NET_HDR_LEN + 65535);
            v.extend_from_slice(s);
            v
        })
        .collect()
}

/// The TCP pseudo header of IPv4 packet `p`.
fn pseudo(p: &[u8]) -> Vec<u8> {
    let mut v = p[12..20].to_vec();
    v.extend_from_slice(&[0, 6]);
    v.extend_from_slice(&((p.len() - 20) as u16).to_be_bytes());
    v
}

criterion_group! {
    name = offload_benches;
    config = common::config();
    targets = bench
}
criterion_main!(offload_benches);
