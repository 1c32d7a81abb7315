//! Reading the lab's captures without a dissector.

/// The frames of a pcap file: after the 24-byte file header, records of
/// a 16-byte header whose third word is the captured length (in the file's
/// byte order). A truncated last record is left out.
fn records(b: &[u8]) -> impl Iterator<Item = &[u8]> {
    let little = b.get(..4) == Some(&[0xd4, 0xc3, 0xb2, 0xa1]);
    let mut at = 24;
    std::iter::from_fn(move || {
        let h = b.get(at..at + 16)?;
        let w = [h[8], h[9], h[10], h[11]];
        let len = if little {
            u32::from_le_bytes(w)
        } else {
            u32::from_be_bytes(w)
        } as usize;
        let frame = b.get(at + 16..at + 16 + len)?;
        at += 16 + len;
        Some(frame)
    })
}

/// The number of records in a pcap file.
pub(crate) fn pcap_records(b: &[u8]) -> usize {
    records(b).count()
}

/// The IPv4 source addresses of the frames of an Ethernet pcap file, in
/// order (frames that are not IPv4, or cut before the address, skipped).
pub(crate) fn ipv4_sources(b: &[u8]) -> Vec<std::net::Ipv4Addr> {
    records(b)
        .filter_map(|frame| match (frame.get(12..14), frame.get(26..30)) {
            (Some([0x08, 0x00]), Some(src)) => {
                Some(std::net::Ipv4Addr::new(src[0], src[1], src[2], src[3]))
            }
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_sources_are_read_from_ethernet_frames() {
        let mut f = vec![0xd4, 0xc3, 0xb2, 0xa1];
        f.resize(24, 0);
        let frame = |ethertype: [u8; 2], src: [u8; 4]| {
            let mut e = vec![0u8; 12];
            e.extend_from_slice(&ethertype);
            // IPv4 header: version/IHL .. checksum, then the source.
            e.extend_from_slice(&[0x45, 0, 0, 20, 0, 0, 0, 0, 64, 1, 0, 0]);
            e.extend_from_slice(&src);
            e.extend_from_slice(&[203, 0, 113, 10]);
            e
        };
        for fr in [
            frame([0x08, 0x00], [192, 168, 33, 55]),
            frame([0x86, 0xdd], [1, 2, 3, 4]),
            frame([0x08, 0x00], [10, 3, 1, 5]),
        ] {
            let len = fr.len() as u32;
            f.extend_from_slice(&[0; 8]);
            f.extend_from_slice(&len.to_le_bytes());
            f.extend_from_slice(&len.to_le_bytes());
            f.extend_from_slice(&fr);
        }
        assert_eq!(
            ipv4_sources(&f),
            [
                std::net::Ipv4Addr::new(192, 168, 33, 55),
                std::net::Ipv4Addr::new(10, 3, 1, 5)
            ]
        );
        assert!(ipv4_sources(&f[..40]).is_empty());
    }

    #[test]
    fn pcap_records_are_counted() {
        let mut f = vec![0xd4, 0xc3, 0xb2, 0xa1];
        f.resize(24, 0);
        for len in [3u32, 0, 5] {
            f.extend_from_slice(&[0; 8]);
            f.extend_from_slice(&len.to_le_bytes());
            f.extend_from_slice(&len.to_le_bytes());
            f.extend(std::iter::repeat_n(0xab, len as usize));
        }
        assert_eq!(pcap_records(&f), 3);
        assert_eq!(
            pcap_records(&f[..f.len() - 1]),
            2,
            "a truncated last record"
        );
        assert_eq!(pcap_records(&[]), 0);
    }
}
