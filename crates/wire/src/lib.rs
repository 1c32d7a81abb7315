//! podwire-wire: the headers podwire reads and writes, byte by byte.
//!
//! Standard headers are parsed with etherparse where it helps; what it lacks
//! (VXLAN, in-place edits that keep checksums valid, a fast Internet checksum)
//! lives here. Nothing in this module allocates or can panic on any input.

#![forbid(unsafe_code)]

pub mod checksum;
pub mod ipv4;
pub mod tcp_gro;
pub mod vnet;
pub mod vxlan;

use std::fmt;
use std::str::FromStr;

/// An Ethernet MAC address.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct MacAddr(pub [u8; 6]);

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}

impl fmt::Debug for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Error for a MAC address that is not six colon-separated hex octets.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a MAC address (expected six hex octets separated by ':', like 66:8c:73:5a:90:99)")]
pub struct MacParseError;

impl FromStr for MacAddr {
    type Err = MacParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut out = [0u8; 6];
        let mut parts = s.split([':', '-']);
        for byte in &mut out {
            let part = parts.next().ok_or(MacParseError)?;
            if part.is_empty() || part.len() > 2 {
                return Err(MacParseError);
            }
            *byte = u8::from_str_radix(part, 16).map_err(|_| MacParseError)?;
        }
        if parts.next().is_some() {
            return Err(MacParseError);
        }
        Ok(MacAddr(out))
    }
}

impl MacAddr {
    /// True for a multicast (or broadcast) address: the I/G bit is set.
    pub fn is_multicast(&self) -> bool {
        self.0[0] & 1 != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_round_trip() {
        let m: MacAddr = "66:8C:73:5a:90:99".parse().unwrap();
        assert_eq!(m.0, [0x66, 0x8c, 0x73, 0x5a, 0x90, 0x99]);
        assert_eq!(m.to_string(), "66:8c:73:5a:90:99");
        for bad in [
            "",
            "66:8c:73:5a:90",
            "66:8c:73:5a:90:99:00",
            "66:8c:73:5a:90:zz",
            "668:c:73:5a:90:99",
        ] {
            assert!(bad.parse::<MacAddr>().is_err(), "{bad}");
        }
    }
}
