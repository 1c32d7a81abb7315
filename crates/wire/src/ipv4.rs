//! IPv4 header (RFC 791): validation of received headers and in-place edits.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |Version|  IHL  |  DSCP     |ECN|          Total Length         |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |         Identification        |Flags|      Fragment Offset    |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |  Time to Live |    Protocol   |         Header Checksum       |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                       Source Address                          |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                    Destination Address                        |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                    Options                    |    Padding    |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//!
//! Parsing and edits work on the fixed 20-byte part as a `[u8; 20]`, so no
//! index can be out of bounds.

use super::checksum;

/// Length of an IPv4 header without options.
pub const HEADER_LEN: usize = 20;
/// Largest IPv4 total length.
pub const MAX_LEN: usize = 65_535;

/// Byte offsets of the fixed header fields.
pub mod field {
    pub const VER_IHL: usize = 0;
    pub const TOS: usize = 1;
    pub const LEN: usize = 2;
    pub const ID: usize = 4;
    pub const FLAGS_FRAG: usize = 6;
    pub const TTL: usize = 8;
    pub const PROTO: usize = 9;
    pub const CSUM: usize = 10;
    pub const SRC: usize = 12;
    pub const DST: usize = 16;
}

/// IP protocol numbers podwire looks at.
pub mod proto {
    pub const ICMP: u8 = 1;
    pub const IPIP: u8 = 4;
    pub const TCP: u8 = 6;
    pub const UDP: u8 = 17;
    pub const SCTP: u8 = 132;
    pub const UDPLITE: u8 = 136;
}

/// The DF bit in the flags/fragment-offset word.
pub const FLAG_DF: u16 = 0x4000;
/// The MF bit in the flags/fragment-offset word.
pub const FLAG_MF: u16 = 0x2000;
/// The fragment offset (in 8-byte units) in the flags/fragment-offset word.
pub const FRAG_OFFSET_MASK: u16 = 0x1fff;

/// ECN codepoints (RFC 3168), the low two bits of the TOS byte.
pub mod ecn {
    pub const MASK: u8 = 0b11;
    pub const NOT_ECT: u8 = 0b00;
    pub const ECT1: u8 = 0b01;
    pub const ECT0: u8 = 0b10;
    pub const CE: u8 = 0b11;
}

/// Why a header was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// The version field is not 4 (IPv6 and anything else).
    NotIpv4,
    /// Too short, IHL < 5, or a total length that does not fit what was read.
    Malformed,
    /// The header checksum does not verify.
    BadChecksum,
}

/// The fields of a validated IPv4 header that the pipeline uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Header length in bytes (IHL × 4), 20..=60.
    pub header_len: usize,
    /// Total length in bytes; `header_len <= total_len <= bytes read`.
    pub total_len: usize,
    pub tos: u8,
    pub ident: u16,
    /// The flags/fragment-offset word.
    pub flags_frag: u16,
    pub ttl: u8,
    pub proto: u8,
    pub src: u32,
    pub dst: u32,
}

impl Header {
    /// True when DF is set.
    pub fn dont_fragment(&self) -> bool {
        self.flags_frag & FLAG_DF != 0
    }
    /// True for any fragment (MF set or a non-zero offset).
    pub fn is_fragment(&self) -> bool {
        self.flags_frag & (FLAG_MF | FRAG_OFFSET_MASK) != 0
    }
    /// True for a fragment other than the first (its L4 header is elsewhere).
    pub fn is_later_fragment(&self) -> bool {
        self.flags_frag & FRAG_OFFSET_MASK != 0
    }
    /// The ECN codepoint.
    pub fn ecn(&self) -> u8 {
        self.tos & ecn::MASK
    }
}

/// Validates the IPv4 header at the start of `data`: version 4, IHL ≥ 5,
/// IHL × 4 ≤ total length ≤ `data.len()`, a valid header checksum, a
/// well-formed options list, and no fragment reaching past 65535 bytes.
/// Bytes after the total length are the caller's to judge.
///
/// One pass over the fixed 20 bytes as an array (no index can fail): this
/// replaced etherparse's `Ipv4HeaderSlice` followed by separate checks,
/// which cost about twice the instructions per packet (callgrind); etherparse
/// stays the independent decoder of the tests and fuzz targets.
#[inline]
pub fn parse(data: &[u8]) -> Result<Header, Error> {
    let Some(h) = data.first_chunk::<HEADER_LEN>() else {
        return Err(match data.first() {
            Some(b) if b >> 4 != 4 => Error::NotIpv4,
            _ => Error::Malformed,
        });
    };
    if h[field::VER_IHL] >> 4 != 4 {
        return Err(Error::NotIpv4);
    }
    let header_len = usize::from(h[field::VER_IHL] & 0xf) * 4;
    let total_len = usize::from(word(h, field::LEN));
    if header_len < HEADER_LEN || total_len < header_len || total_len > data.len() {
        return Err(Error::Malformed);
    }
    let sum = if header_len == HEADER_LEN {
        checksum::Sum::new().add_header(h)
    } else {
        checksum::Sum::new().add_bytes(&data[..header_len])
    };
    if sum.fold() != 0xffff {
        return Err(Error::BadChecksum);
    }
    if header_len > HEADER_LEN && !options_well_formed(&data[HEADER_LEN..header_len]) {
        return Err(Error::Malformed);
    }
    let flags_frag = word(h, field::FLAGS_FRAG);
    // A fragment may not reach past the largest datagram (RFC 791: 65535).
    let frag_end = usize::from(flags_frag & FRAG_OFFSET_MASK) * 8 + (total_len - header_len);
    if frag_end > MAX_LEN {
        return Err(Error::Malformed);
    }
    let addr = |at: usize| u32::from_be_bytes([h[at], h[at + 1], h[at + 2], h[at + 3]]);
    Ok(Header {
        header_len,
        total_len,
        tos: h[field::TOS],
        ident: word(h, field::ID),
        flags_frag,
        ttl: h[field::TTL],
        proto: h[field::PROTO],
        src: addr(field::SRC),
        dst: addr(field::DST),
    })
}

/// Option types (RFC 791 §3.1) with a structure of their own.
pub mod option {
    /// End of option list.
    pub const EOL: u8 = 0;
    /// No operation.
    pub const NOP: u8 = 1;
    /// The "copied" flag: the option goes into every fragment.
    pub const COPIED: u8 = 0x80;
}

/// Walks the options as RFC 791 lays them out: EOL ends the list, NOP is one
/// byte, any other option has a length byte of at least 2 that stays inside
/// the options area. (Linux's `ip_options_compile` checks the same, plus the
/// pointers inside record-route and timestamp options.)
pub fn options_well_formed(opts: &[u8]) -> bool {
    let mut i = 0;
    while let Some(&kind) = opts.get(i) {
        match kind {
            option::EOL => return true,
            option::NOP => i += 1,
            _ => match opts.get(i + 1) {
                Some(&len) if len >= 2 && i + usize::from(len) <= opts.len() => {
                    i += usize::from(len);
                }
                _ => return false,
            },
        }
    }
    true
}

/// Reads a big-endian u16 at a constant offset of the fixed header.
#[inline]
fn word(h: &[u8; HEADER_LEN], at: usize) -> u16 {
    u16::from_be_bytes([h[at], h[at + 1]])
}

/// Replaces the 16-bit word at `at` and updates the checksum incrementally.
#[inline]
fn set_word(h: &mut [u8; HEADER_LEN], at: usize, new: u16) {
    let old = word(h, at);
    let csum = checksum::update_word(word(h, field::CSUM), old, new);
    h[at..at + 2].copy_from_slice(&new.to_be_bytes());
    h[field::CSUM..field::CSUM + 2].copy_from_slice(&csum.to_be_bytes());
}

/// Decrements the TTL by one, keeping the checksum valid (RFC 1624).
/// The caller has checked TTL > 1.
#[inline]
pub fn decrement_ttl(h: &mut [u8; HEADER_LEN]) {
    h[field::TTL] = h[field::TTL].wrapping_sub(1);
    // The TTL/protocol word fell by 0x0100, so by RFC 1624 eqn. 3 the
    // checksum rises by 0x0100 in ones' complement arithmetic.
    let sum = u32::from(word(h, field::CSUM)) + 0x0100;
    let csum = (sum + (sum >> 16)) as u16;
    h[field::CSUM..field::CSUM + 2].copy_from_slice(&csum.to_be_bytes());
}

/// Sets the ECN field to CE, keeping the checksum valid.
#[inline]
pub fn set_ce(h: &mut [u8; HEADER_LEN]) {
    let w = word(h, field::VER_IHL);
    set_word(h, field::VER_IHL, w | u16::from(ecn::CE));
}

/// ECN of an outer header per RFC 6040 §4.1 (normal mode), as Linux's
/// `INET_ECN_encapsulate`: copy the inner codepoint, but CE becomes ECT(0).
#[inline]
pub fn encap_ecn(inner_tos: u8) -> u8 {
    match inner_tos & ecn::MASK {
        ecn::CE => ecn::ECT0,
        other => other,
    }
}

/// Fields of a header podwire writes.
#[derive(Debug, Clone, Copy)]
pub struct Emit {
    pub tos: u8,
    pub total_len: u16,
    pub ident: u16,
    pub flags_frag: u16,
    pub ttl: u8,
    pub proto: u8,
    pub src: u32,
    pub dst: u32,
}

/// Writes a 20-byte header without options, with its checksum.
#[inline]
pub fn emit(h: &mut [u8; HEADER_LEN], e: &Emit) {
    // The checksum from the field values (RFC 1071), without re-reading them.
    let sum = (0x4500 | u32::from(e.tos))
        + u32::from(e.total_len)
        + u32::from(e.ident)
        + u32::from(e.flags_frag)
        + (u32::from(e.ttl) << 8 | u32::from(e.proto))
        + (e.src >> 16)
        + (e.src & 0xffff)
        + (e.dst >> 16)
        + (e.dst & 0xffff);
    let sum = (sum & 0xffff) + (sum >> 16);
    let csum = !((sum & 0xffff) + (sum >> 16)) as u16;
    h[field::VER_IHL] = 0x45;
    h[field::TOS] = e.tos;
    h[field::LEN..field::LEN + 2].copy_from_slice(&e.total_len.to_be_bytes());
    h[field::ID..field::ID + 2].copy_from_slice(&e.ident.to_be_bytes());
    h[field::FLAGS_FRAG..field::FLAGS_FRAG + 2].copy_from_slice(&e.flags_frag.to_be_bytes());
    h[field::TTL] = e.ttl;
    h[field::PROTO] = e.proto;
    h[field::CSUM..field::CSUM + 2].copy_from_slice(&csum.to_be_bytes());
    h[field::SRC..field::SRC + 4].copy_from_slice(&e.src.to_be_bytes());
    h[field::DST..field::DST + 4].copy_from_slice(&e.dst.to_be_bytes());
}

/// Recomputes the checksum of a header (options included) in place.
pub fn refresh_checksum(header: &mut [u8]) {
    if let Some(c) = header.get_mut(field::CSUM..field::CSUM + 2) {
        c.copy_from_slice(&[0, 0]);
    } else {
        return;
    }
    let csum = checksum::checksum(header);
    header[field::CSUM..field::CSUM + 2].copy_from_slice(&csum.to_be_bytes());
}

/// Multicast (224.0.0.0/4), limited broadcast, or the unspecified address:
/// addresses to or from which no ICMP error is sent (RFC 1122 §3.2.2).
pub fn is_special(addr: u32) -> bool {
    addr >> 28 == 0xe || addr == u32::MAX || addr == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 4500 001c 1c46 4000 4001 [csum] 0a02 2444 0a02 a982, then 8 bytes of ICMP echo.
    /// Sum of words without checksum: 4500+001c+1c46+4000+4001+0a02+2444+0a02+a982
    /// = 0x1c32d -> fold 0xc32e -> checksum !0xc32e = 0x3cd1.
    fn sample() -> Vec<u8> {
        let mut p = vec![
            0x45, 0x00, 0x00, 0x1c, 0x1c, 0x46, 0x40, 0x00, 0x40, 0x01, 0x3c, 0xd1, 0x0a, 0x02,
            0x24, 0x44, 0x0a, 0x02, 0xa9, 0x82,
        ];
        p.extend_from_slice(&[8, 0, 0xf7, 0xff, 0, 0, 0, 0]);
        p
    }

    #[test]
    fn parses_valid_header() {
        let p = sample();
        let h = parse(&p).unwrap();
        assert_eq!(h.header_len, 20);
        assert_eq!(h.total_len, 28);
        assert_eq!(h.ttl, 64);
        assert_eq!(h.proto, proto::ICMP);
        assert_eq!(h.src, 0x0a02_2444);
        assert_eq!(h.dst, 0x0a02_a982);
        assert!(h.dont_fragment());
        assert!(!h.is_fragment());
    }

    #[test]
    fn rejects_each_malformation() {
        let p = sample();
        assert_eq!(parse(&[]), Err(Error::Malformed));
        assert_eq!(parse(&p[..19]), Err(Error::Malformed));
        let mut v6 = p.clone();
        v6[0] = 0x60;
        assert_eq!(parse(&v6), Err(Error::NotIpv4));
        let mut ihl4 = p.clone();
        ihl4[0] = 0x44;
        assert_eq!(parse(&ihl4), Err(Error::Malformed));
        let mut long = p.clone();
        long[3] = 0x1d; // total length 29 > 28 bytes read
        assert_eq!(parse(&long), Err(Error::Malformed));
        let mut short = p.clone();
        short[3] = 0x13; // total length 19 < header
        assert_eq!(parse(&short), Err(Error::Malformed));
        let mut opts = p.clone();
        opts[0] = 0x46; // IHL 6 but checksum unchanged
        assert!(parse(&opts).is_err());
        let mut bad = p.clone();
        bad[11] ^= 1;
        assert_eq!(parse(&bad), Err(Error::BadChecksum));
    }

    #[test]
    fn options_must_be_well_formed() {
        assert!(options_well_formed(&[]));
        assert!(
            options_well_formed(&[1, 1, 0, 0xff]),
            "anything after EOL is padding"
        );
        assert!(options_well_formed(&[7, 3, 4, 0x83, 3, 4, 0, 0]));
        assert!(
            !options_well_formed(&[7, 40, 4, 0]),
            "length past the options area"
        );
        assert!(!options_well_formed(&[7, 1, 4, 0]), "length below 2");
        assert!(!options_well_formed(&[1, 1, 1, 7]), "length byte missing");
        // In a header: IHL 6 with record route claiming 40 bytes.
        let mut p = sample();
        p.splice(20..20, [7, 40, 4, 0]);
        p[0] = 0x46;
        p[3] = 32;
        refresh_checksum(&mut p[..24]);
        assert_eq!(parse(&p), Err(Error::Malformed));
        p[21] = 4;
        refresh_checksum(&mut p[..24]);
        assert!(parse(&p).is_ok());
    }

    #[test]
    fn fragments_may_not_pass_65535_bytes() {
        let mut p = sample();
        // MF, offset 0x1fff × 8 = 65528, plus 8 data bytes = 65536.
        p[6] = 0x3f;
        p[7] = 0xff;
        refresh_checksum(&mut p[..20]);
        assert_eq!(parse(&p), Err(Error::Malformed));
        p[7] = 0xfe; // offset 65520 + 8 = 65528: fine
        refresh_checksum(&mut p[..20]);
        assert!(parse(&p).is_ok());
    }

    #[test]
    fn ttl_and_ce_edits_keep_checksum() {
        let mut p = sample();
        let h: &mut [u8; 20] = p.first_chunk_mut().unwrap();
        decrement_ttl(h);
        assert_eq!(h[field::TTL], 63);
        set_ce(h);
        assert_eq!(h[field::TOS] & ecn::MASK, ecn::CE);
        assert!(checksum::verifies(h));
    }

    #[test]
    fn emit_writes_a_valid_header() {
        // The sample header, rebuilt field by field, has checksum 0x3cd1.
        let mut h = [0u8; HEADER_LEN];
        emit(
            &mut h,
            &Emit {
                tos: 0,
                total_len: 28,
                ident: 0x1c46,
                flags_frag: FLAG_DF,
                ttl: 64,
                proto: proto::ICMP,
                src: 0x0a02_2444,
                dst: 0x0a02_a982,
            },
        );
        assert_eq!(h[..], sample()[..20]);
        // Carries in the sum: all-ones fields still give a verifying header.
        emit(
            &mut h,
            &Emit {
                tos: 0xff,
                total_len: 0xffff,
                ident: 0xffff,
                flags_frag: 0xffff,
                ttl: 0xff,
                proto: 0xff,
                src: u32::MAX,
                dst: u32::MAX,
            },
        );
        assert!(checksum::verifies(&h));
    }

    #[test]
    fn ecn_encapsulation_rfc6040() {
        assert_eq!(encap_ecn(0b1011_1000), ecn::NOT_ECT);
        assert_eq!(encap_ecn(0b1011_1001), ecn::ECT1);
        assert_eq!(encap_ecn(0b1011_1010), ecn::ECT0);
        assert_eq!(encap_ecn(0b1011_1011), ecn::ECT0);
    }
}
