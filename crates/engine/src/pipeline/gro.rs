//! Coalescing on the way into a pod (userspace GRO): consecutive TCP
//! segments of one flow queued for one endpoint go into the pod's TUN device
//! as one super-packet, in one gathered write of a header block
//! ([`tcp_gro::header_block`]) followed by each segment's payload. This is
//! the merge policy; `wire::tcp_gro` has the header rules.

use crate::wire::tcp_gro::{self, MAX_HEADER_BLOCK};

/// The most segments merged into one TUN write.
pub const MAX_MERGE: usize = 64;

/// How the next TUN write is made from the segments queued for one endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Merge {
    /// How many queued packets, the first included, the write carries.
    pub count: usize,
    /// The length of the header block written into the caller's buffer;
    /// 0 when the write is the first packet alone, after
    /// [`tcp_gro::PLAIN_VNET_HDR`].
    pub block_len: usize,
}

/// Plans the write that starts with `first`, followed by the packets of
/// `rest` (those queued next for the same endpoint, in order) as far as they
/// continue its flow: same addresses, ports and IP fields, sequence numbers
/// in a row, no short segment or PSH before the last, every TCP checksum
/// valid, at most [`MAX_MERGE`] segments and 64 KB. Writes the header block
/// into `block` when two or more merge.
pub fn plan<'a>(
    first: &[u8],
    rest: impl Iterator<Item = &'a [u8]>,
    block: &mut [u8; MAX_HEADER_BLOCK],
) -> Merge {
    let alone = Merge {
        count: 1,
        block_len: 0,
    };
    let Some(f) = tcp_gro::segment(first).filter(|_| tcp_gro::tcp_checksum_valid(first)) else {
        return alone;
    };
    let (mut count, mut merged, mut last, mut psh) = (1, f.payload_len, f.payload_len, f.psh);
    for next in rest {
        if count == MAX_MERGE || psh {
            break;
        }
        let Some(s) = tcp_gro::segment(next) else {
            break;
        };
        if !tcp_gro::may_follow(first, &f, merged, next, &s, last)
            || !tcp_gro::tcp_checksum_valid(next)
        {
            break;
        }
        merged += s.payload_len;
        last = s.payload_len;
        psh = s.psh;
        count += 1;
    }
    if count < 2 {
        return alone;
    }
    Merge {
        count,
        block_len: tcp_gro::header_block(first, &f, merged, psh, block),
    }
}

/// The bytes of a merged segment that follow the header block: its payload.
pub fn payload(segment: &[u8]) -> &[u8] {
    let hl = tcp_gro::segment(segment).map_or(0, |s| s.header_len);
    segment.get(hl..).unwrap_or_default()
}
