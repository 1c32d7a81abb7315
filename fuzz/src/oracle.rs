//! An IPv4 oracle of its own (etherparse and a separate checksum), and
//! the checks on forwarded packets and drop reasons that use it.

use std::net::Ipv4Addr;

use etherparse::Ipv4HeaderSlice;
use podwire::pipeline::DropReason;

/// RFC 1071 one's complement sum of `data` (odd length padded with zero).
pub fn ones_sum(data: &[u8]) -> u16 {
    let mut s: u32 = 0;
    for c in data.chunks(2) {
        let w = match c {
            [a, b] => u16::from_be_bytes([*a, *b]),
            [a] => u16::from_be_bytes([*a, 0]),
            _ => 0,
        };
        s += u32::from(w);
        s = (s & 0xffff) + (s >> 16);
    }
    s as u16
}

/// True when the Internet checksum over `data` verifies.
pub fn checksum_ok(data: &[u8]) -> bool {
    ones_sum(data) == 0xffff
}

/// RFC 1071 checksum to put in a field that is zero in `data`.
pub fn checksum(data: &[u8]) -> u16 {
    !ones_sum(data)
}

/// A decoded IPv4 header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ip {
    pub header_len: usize,
    pub total_len: usize,
    pub tos: u8,
    pub ident: u16,
    pub df: bool,
    pub mf: bool,
    /// Fragment offset in 8-byte units.
    pub frag_off: u16,
    pub ttl: u8,
    pub proto: u8,
    pub checksum: u16,
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
}

impl Ip {
    pub fn ecn(&self) -> u8 {
        self.tos & 3
    }
    pub fn is_fragment(&self) -> bool {
        self.mf || self.frag_off != 0
    }
}

/// Decodes and validates the IPv4 header at the start of `data` with
/// etherparse and an independent checksum, in the order of SPEC §3 step 1:
/// version, header length, total length against the bytes, checksum. The
/// error is the drop reason the SPEC gives for the first failed rule.
pub fn ipv4(data: &[u8]) -> Result<Ip, DropReason> {
    let Some(&first) = data.first() else {
        return Err(DropReason::Malformed);
    };
    if first >> 4 != 4 {
        return Err(DropReason::NotIpv4);
    }
    let s = Ipv4HeaderSlice::from_slice(data).map_err(|_| DropReason::Malformed)?;
    let header_len = usize::from(s.ihl()) * 4;
    let total_len = usize::from(s.total_len());
    if header_len < 20 || total_len < header_len || total_len > data.len() {
        return Err(DropReason::Malformed);
    }
    // Two independent checksum verifications: etherparse's, and ours.
    let ours = checksum_ok(&data[..header_len]);
    // (Over the raw bytes: `Ipv4Header` has no field for the reserved flag
    // bit, so a header rebuilt from it may not have the same checksum.)
    let theirs = etherparse::checksum::Sum16BitWords::new()
        .add_slice(&data[..header_len])
        .ones_complement()
        == 0;
    assert_eq!(
        ours,
        theirs,
        "checksum verifiers disagree on {:02x?}",
        &data[..header_len]
    );
    if !ours {
        return Err(DropReason::BadChecksum);
    }
    // RFC 791: options form a well-formed list, and no fragment reaches
    // past the largest datagram (65535 bytes).
    if !options_well_formed(&data[20..header_len]) {
        return Err(DropReason::Malformed);
    }
    if usize::from(s.fragments_offset().value()) * 8 + (total_len - header_len) > 65535 {
        return Err(DropReason::Malformed);
    }
    Ok(Ip {
        header_len,
        total_len,
        tos: data[1],
        ident: s.identification(),
        df: s.dont_fragment(),
        mf: s.more_fragments(),
        frag_off: s.fragments_offset().value(),
        ttl: s.ttl(),
        proto: s.protocol().0,
        checksum: s.header_checksum(),
        src: s.source_addr(),
        dst: s.destination_addr(),
    })
}

/// `ipv4` that must succeed.
#[track_caller]
pub fn must_ipv4(what: &str, data: &[u8]) -> Ip {
    ipv4(data).unwrap_or_else(|r| panic!("{what} is not valid IPv4 ({r}): {:02x?}", data))
}

/// True when the options are a well-formed list (EOL, NOP, or kind, length
/// ≥ 2, within the header), as Linux's `ip_options_compile` requires at the
/// least.
pub fn options_well_formed(opts: &[u8]) -> bool {
    later_fragment_options(opts).is_some()
}

/// The options of a later fragment: the original's with every option that
/// lacks the "copied" flag overwritten by NOPs; `None` for a malformed list.
pub fn later_fragment_options(opts: &[u8]) -> Option<Vec<u8>> {
    let mut out = opts.to_vec();
    let mut i = 0;
    while i < opts.len() {
        match opts[i] {
            0 => return Some(out),
            1 => i += 1,
            kind => {
                let len = usize::from(*opts.get(i + 1)?);
                if len < 2 || i + len > opts.len() {
                    return None;
                }
                if kind & 0x80 == 0 {
                    out[i..i + len].fill(1);
                }
                i += len;
            }
        }
    }
    Some(out)
}

/// Multicast, limited broadcast or unspecified (RFC 1122 §3.2.2).
pub fn is_special(a: Ipv4Addr) -> bool {
    a.is_multicast() || a.is_broadcast() || a.is_unspecified()
}

/// RFC 6040 §4.1 normal mode: outer ECN copies the inner, CE becomes ECT(0).
pub fn encap_ecn(inner: u8) -> u8 {
    match inner & 3 {
        3 => 2,
        e => e,
    }
}

/// Asserts that `got` is `want` with the TTL lowered by `dec` and a valid
/// (recomputed) header checksum, and, when `set_ce`, ECN set to CE; every
/// other byte equal.
#[track_caller]
pub fn assert_forwarded(what: &str, want: &[u8], got: &[u8], dec: u8, set_ce: bool) {
    assert_eq!(want.len(), got.len(), "{what}: length changed");
    let w = must_ipv4(what, want);
    let g = must_ipv4(what, got);
    assert!(w.ttl > dec, "{what}: TTL {} forwarded {dec} times", w.ttl);
    assert_eq!(g.ttl, w.ttl - dec, "{what}: TTL");
    let want_ecn = if set_ce { 3 } else { w.ecn() };
    assert_eq!(g.tos, (w.tos & !3) | want_ecn, "{what}: TOS");
    for (i, (a, b)) in want.iter().zip(got).enumerate() {
        if !matches!(i, 1 | 8 | 10 | 11) {
            assert_eq!(a, b, "{what}: byte {i} changed");
        }
    }
}

/// Drop reasons are a closed set whose names round-trip.
#[track_caller]
pub fn check_drop(r: DropReason) {
    assert_eq!(DropReason::from_name(r.name()), Some(r), "{r:?}");
    assert_eq!(r.to_string(), r.name());
    assert!(!r.description().is_empty());
    assert!(DropReason::ALL.contains(&r));
}

// ---------------------------------------------------------------------------
// Ingress.
