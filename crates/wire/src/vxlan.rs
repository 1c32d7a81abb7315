//! VXLAN (RFC 7348 §5) and the headers around it, as Linux `vxlan.calico` sends them.
//!
//! ```text
//! outer IPv4 (20) | UDP (8) | VXLAN (8) | inner Ethernet (14) | inner IPv4 ...
//!
//! VXLAN header:
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |R|R|R|R|I|R|R|R|            Reserved                           |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                VXLAN Network Identifier (VNI) |   Reserved    |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//!
//! The I flag (0x08) must be set; every R bit is sent as zero and podwire, as
//! a strict receiver, drops a header with any of them set.

/// UDP header length.
pub const UDP_LEN: usize = 8;
/// VXLAN header length.
pub const VXLAN_LEN: usize = 8;
/// Ethernet header length (no VLAN tag).
pub const ETH_LEN: usize = 14;
/// EtherType of IPv4.
pub const ETHERTYPE_IPV4: u16 = 0x0800;
/// The flags byte with only the I (valid VNI) bit.
pub const FLAGS_I: u8 = 0x08;
/// Bytes VXLAN adds in front of an inner IPv4 packet: IPv4 + UDP + VXLAN + Ethernet.
pub const OVERHEAD: usize = super::ipv4::HEADER_LEN + UDP_LEN + VXLAN_LEN + ETH_LEN;
/// The minimum Ethernet frame without FCS; shorter frames are padded to it.
pub const ETH_MIN_FRAME: usize = 60;

/// A VXLAN header for `vni`: `08 00 00 00` then the VNI in 24 bits, then `00`.
#[inline]
pub fn header(vni: u32) -> [u8; VXLAN_LEN] {
    let v = vni.to_be_bytes();
    [FLAGS_I, 0, 0, 0, v[1], v[2], v[3], 0]
}

/// What is wrong with a received VXLAN header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderError {
    /// Flags other than exactly I, or a reserved bit set.
    Flags,
    /// A VNI other than the expected one.
    Vni,
}

/// Checks a received VXLAN header against the expected VNI.
#[inline]
pub fn check(h: &[u8; VXLAN_LEN], vni: u32) -> Result<(), HeaderError> {
    if h[0] != FLAGS_I || h[1] != 0 || h[2] != 0 || h[3] != 0 || h[7] != 0 {
        return Err(HeaderError::Flags);
    }
    let got = u32::from_be_bytes([0, h[4], h[5], h[6]]);
    if got != vni {
        return Err(HeaderError::Vni);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7348 §5: flags 0x08, 24 reserved bits, 24-bit VNI, 8 reserved bits.
    /// VNI 4096 = 0x001000 -> bytes 00 10 00.
    #[test]
    fn header_for_calico_default_vni() {
        assert_eq!(header(4096), [0x08, 0, 0, 0, 0x00, 0x10, 0x00, 0x00]);
        assert_eq!(header(0xabcdef), [0x08, 0, 0, 0, 0xab, 0xcd, 0xef, 0x00]);
    }

    #[test]
    fn check_rejects_flags_reserved_and_vni() {
        let good = header(4096);
        assert_eq!(check(&good, 4096), Ok(()));
        assert_eq!(check(&good, 4097), Err(HeaderError::Vni));
        for (i, bit) in [
            (0usize, 0x80u8),
            (0, 0x01),
            (1, 0x01),
            (2, 0x80),
            (3, 0x10),
            (7, 0x01),
        ] {
            let mut h = good;
            h[i] |= bit;
            assert_eq!(
                check(&h, 4096),
                Err(HeaderError::Flags),
                "byte {i} bit {bit:#x}"
            );
        }
        let mut no_i = good;
        no_i[0] = 0;
        assert_eq!(check(&no_i, 4096), Err(HeaderError::Flags));
    }
}
