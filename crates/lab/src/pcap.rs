//! Reading the lab's captures without a dissector.

/// The number of records in a pcap file (24-byte file header, then records
/// of a 16-byte header whose third word is the captured length).
pub(crate) fn pcap_records(b: &[u8]) -> usize {
    let little = b.get(..4) == Some(&[0xd4, 0xc3, 0xb2, 0xa1]);
    let mut at = 24;
    let mut n = 0;
    while let Some(h) = b.get(at..at + 16) {
        let w = [h[8], h[9], h[10], h[11]];
        let len = if little {
            u32::from_le_bytes(w)
        } else {
            u32::from_be_bytes(w)
        } as usize;
        at += 16 + len;
        if at > b.len() {
            break;
        }
        n += 1;
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

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
