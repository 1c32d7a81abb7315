//! ICMP errors podwire sends back to a local workload (RFC 792, RFC 1191),
//! built in place over the packet that caused them, as Linux's `icmp_send`
//! builds them:
//!
//! ```text
//! IPv4 (20): TOS 0xc0 | (original TOS & 0x1e), DF clear, TTL 64, proto 1,
//!            source = local node IP, destination = original source
//! ICMP (8):  type, code, checksum, 4 bytes (unused, or 0 + next-hop MTU)
//! quote:     the original packet from its IPv4 header, up to 576 bytes in all
//! ```
//!
//! No error is sent about an ICMP error, a non-first fragment, or a packet
//! to or from a multicast, broadcast or unspecified address (RFC 1122 §3.2.2).

use super::{Packet, State};
use crate::table::Tables;
use crate::wire::checksum;
use crate::wire::ipv4::{self, HEADER_LEN};

/// ICMP header length.
pub const ICMP_HEADER_LEN: usize = 8;
/// The most an ICMP error may take (RFC 1812 §4.3.2.3; Linux's limit).
pub const MAX_ERROR_LEN: usize = 576;
/// `IPTOS_PREC_INTERNETCONTROL`.
const TOS_INTERNETCONTROL: u8 = 0xc0;
/// `IPTOS_TOS_MASK`.
const TOS_MASK: u8 = 0x1e;
/// TTL of generated packets: the kernel's default `ip_default_ttl`.
const TTL: u8 = 64;

/// The error to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Type 11 code 0: TTL exceeded in transit.
    TimeExceeded,
    /// Type 3 code 4: fragmentation needed and DF set, with the next-hop MTU.
    FragNeeded { mtu: u16 },
}

/// ICMP types that are errors, about which no error is sent.
fn is_error_type(icmp_type: u8) -> bool {
    // Destination unreachable, source quench, redirect, time exceeded,
    // parameter problem; unknown types (> 18) are treated alike, as Linux does.
    matches!(icmp_type, 3 | 4 | 5 | 11 | 12) || icmp_type > 18
}

/// Rewrites `pkt` (the original, unmodified packet with validated header
/// `h`) into an ICMP error for its sender. Returns false, leaving the
/// packet as it was, when no error may be sent about it.
pub fn error_in_place(
    t: &Tables,
    st: &mut State,
    pkt: &mut Packet,
    h: &ipv4::Header,
    kind: Kind,
) -> bool {
    if h.is_later_fragment() || ipv4::is_special(h.src) || ipv4::is_special(h.dst) {
        return false;
    }
    if h.proto == ipv4::proto::ICMP {
        match pkt.data().get(h.header_len) {
            Some(&icmp_type) if !is_error_type(icmp_type) => {}
            _ => return false,
        }
    }
    if pkt.headroom() < HEADER_LEN + ICMP_HEADER_LEN {
        return false;
    }
    let quote_len = h
        .total_len
        .min(MAX_ERROR_LEN - HEADER_LEN - ICMP_HEADER_LEN);
    pkt.truncate(quote_len);
    let (icmp_type, code, rest) = match kind {
        Kind::TimeExceeded => (11u8, 0u8, [0u8; 4]),
        Kind::FragNeeded { mtu } => {
            let m = mtu.to_be_bytes();
            (3, 4, [0, 0, m[0], m[1]])
        }
    };
    let mut icmp = [icmp_type, code, 0, 0, rest[0], rest[1], rest[2], rest[3]];
    let csum = checksum::Sum::new()
        .add_bytes(&icmp)
        .add_bytes(pkt.data())
        .checksum();
    icmp[2..4].copy_from_slice(&csum.to_be_bytes());
    let mut ip = [0u8; HEADER_LEN];
    ipv4::emit(
        &mut ip,
        &ipv4::Emit {
            tos: TOS_INTERNETCONTROL | (h.tos & TOS_MASK),
            total_len: (HEADER_LEN + ICMP_HEADER_LEN + quote_len) as u16,
            ident: st.next_ip_id(),
            flags_frag: 0,
            ttl: TTL,
            proto: ipv4::proto::ICMP,
            src: u32::from(t.local().ip),
            dst: h.src,
        },
    );
    if let Some(front) = pkt.prepend(HEADER_LEN + ICMP_HEADER_LEN) {
        front[..HEADER_LEN].copy_from_slice(&ip);
        front[HEADER_LEN..].copy_from_slice(&icmp);
    }
    true
}
