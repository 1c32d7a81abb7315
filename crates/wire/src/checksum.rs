//! The Internet checksum (RFC 1071) and its incremental update (RFC 1624).
//!
//! The checksum is the ones' complement of the ones' complement sum of the
//! data taken as big-endian 16-bit words. RFC 1071 §2(B) shows the sum is
//! independent of byte order: summing the words in the machine's native order
//! gives the byte-swapped sum, so [`Sum`] adds native 32-bit words into a
//! 64-bit accumulator (no carry can be lost before 2^32 words) and swaps once
//! when it folds. Every piece fed to one [`Sum`] must start at an even offset
//! of the checksummed data, which holds for all the headers podwire sums.

/// A running ones' complement sum.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sum(u64);

impl Sum {
    /// An empty sum.
    pub const fn new() -> Self {
        Sum(0)
    }

    /// Adds `data`, padding an odd final byte with a zero byte (RFC 1071).
    #[inline]
    pub fn add_bytes(mut self, data: &[u8]) -> Self {
        self.0 = add_native(self.0, data);
        self
    }

    /// Adds one big-endian 16-bit word.
    #[inline]
    pub fn add_u16(self, word: u16) -> Self {
        self.add_bytes(&word.to_be_bytes())
    }

    /// Adds a 32-bit value as two big-endian 16-bit words (an IPv4 address).
    #[inline]
    pub fn add_u32(self, word: u32) -> Self {
        self.add_bytes(&word.to_be_bytes())
    }

    /// Folds the sum to 16 bits, as a big-endian word value.
    #[inline]
    pub fn fold(self) -> u16 {
        let mut s = self.0;
        s = (s & 0xffff_ffff) + (s >> 32);
        s = (s & 0xffff_ffff) + (s >> 32);
        s = (s & 0xffff) + (s >> 16);
        s = (s & 0xffff) + (s >> 16);
        // `s` is the sum of native-order words; convert to the big-endian word value.
        u16::from_be_bytes((s as u16).to_ne_bytes())
    }

    /// The checksum field value: the complement of the folded sum.
    #[inline]
    pub fn checksum(self) -> u16 {
        !self.fold()
    }
}

impl Sum {
    /// Adds a 20-byte IPv4 header without options: five words, no loop.
    #[inline]
    pub fn add_header(mut self, h: &[u8; 20]) -> Self {
        let w = |i: usize| u64::from(u32::from_ne_bytes([h[i], h[i + 1], h[i + 2], h[i + 3]]));
        self.0 += w(0) + w(4) + w(8) + w(12) + w(16);
        self
    }
}

/// Adds `data` as native-endian 32-bit words to `acc`.
#[inline]
fn add_native(acc: u64, data: &[u8]) -> u64 {
    // Four independent accumulators let the compiler vectorise the loop.
    let mut lanes = [0u64; 4];
    let mut blocks = data.chunks_exact(16);
    for block in &mut blocks {
        for (lane, word) in lanes.iter_mut().zip(block.chunks_exact(4)) {
            *lane += u64::from(u32::from_ne_bytes([word[0], word[1], word[2], word[3]]));
        }
    }
    let mut total = acc
        .wrapping_add(lanes[0] + lanes[1])
        .wrapping_add(lanes[2] + lanes[3]);
    // Keep the accumulator from wrapping: fold it if the top bits are in use.
    if total >> 62 != 0 {
        total = (total & 0xffff_ffff) + (total >> 32);
    }
    let rest = blocks.remainder();
    let mut words = rest.chunks_exact(4);
    for word in &mut words {
        total += u64::from(u32::from_ne_bytes([word[0], word[1], word[2], word[3]]));
    }
    let tail = words.remainder();
    if !tail.is_empty() {
        let mut last = [0u8; 4];
        last[..tail.len()].copy_from_slice(tail);
        total += u64::from(u32::from_ne_bytes(last));
    }
    total
}

/// Checksum of one contiguous piece of data (an IPv4 header, an ICMP message).
#[inline]
pub fn checksum(data: &[u8]) -> u16 {
    Sum::new().add_bytes(data).checksum()
}

/// True when `data`, checksum field included, sums to 0xffff (RFC 1071 §1).
#[inline]
pub fn verifies(data: &[u8]) -> bool {
    let sum = match data.first_chunk::<20>() {
        Some(h) if data.len() == 20 => Sum::new().add_header(h),
        _ => Sum::new().add_bytes(data),
    };
    sum.fold() == 0xffff
}

/// Updates a checksum after one 16-bit word changed from `old` to `new`
/// (RFC 1624 eqn. 3: HC' = ~(~HC + ~m + m')).
#[inline]
pub fn update_word(csum: u16, old: u16, new: u16) -> u16 {
    let sum = u32::from(!csum) + u32::from(!old) + u32::from(new);
    let sum = (sum & 0xffff) + (sum >> 16);
    let sum = (sum & 0xffff) + (sum >> 16);
    !(sum as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 1071 §3 worked example: bytes 00 01 f2 03 f4 f5 f6 f7 sum to ddf2.
    #[test]
    fn rfc1071_example_sum() {
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(Sum::new().add_bytes(&data).fold(), 0xddf2);
        assert_eq!(checksum(&data), !0xddf2);
    }

    /// The classic IPv4 header example (Wikipedia / RFC 791 style):
    /// 4500 0073 0000 4000 4011 [b861] c0a8 0001 c0a8 00c7.
    /// Sum without the checksum: 4500+0073+0000+4000+4011+c0a8+0001+c0a8+00c7
    /// = 0x2479c -> fold 0x479e -> complement 0xb861.
    #[test]
    fn ipv4_header_example() {
        let mut hdr = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        assert_eq!(checksum(&hdr), 0xb861);
        hdr[10] = 0xb8;
        hdr[11] = 0x61;
        assert!(verifies(&hdr));
        hdr[8] = 0x3f;
        assert!(!verifies(&hdr));
    }

    #[test]
    fn odd_length_pads_with_zero() {
        // 0x0102 + 0x0300 = 0x0402
        assert_eq!(Sum::new().add_bytes(&[1, 2, 3]).fold(), 0x0402);
    }

    /// Reference: the RFC 1071 definition, word by word, in u32 with end-around carry.
    fn reference(data: &[u8]) -> u16 {
        let mut s: u32 = 0;
        for pair in data.chunks(2) {
            let w = u32::from(pair[0]) << 8 | u32::from(*pair.get(1).unwrap_or(&0));
            s += w;
            s = (s & 0xffff) + (s >> 16);
        }
        s as u16
    }

    #[test]
    fn matches_reference_on_all_lengths() {
        let data: Vec<u8> = (0..2000u32)
            .map(|i| (i * 7919 % 251) as u8 ^ 0xa5)
            .collect();
        for len in 0..data.len() {
            assert_eq!(
                Sum::new().add_bytes(&data[..len]).fold(),
                reference(&data[..len]),
                "len {len}"
            );
        }
        let ones = vec![0xffu8; 70_000];
        assert_eq!(Sum::new().add_bytes(&ones).fold(), reference(&ones));
    }

    #[test]
    fn header_fast_path_matches_reference() {
        for seed in 0..200u32 {
            let h: [u8; 20] = std::array::from_fn(|i| {
                (seed.wrapping_mul(2654435761) >> (i % 24)) as u8 ^ i as u8
            });
            assert_eq!(Sum::new().add_header(&h).fold(), reference(&h));
        }
    }

    #[test]
    fn split_sums_match_whole() {
        let data: Vec<u8> = (0..1500u32).map(|i| (i * 31) as u8).collect();
        let whole = Sum::new().add_bytes(&data).fold();
        for cut in (0..data.len()).step_by(2) {
            let s = Sum::new()
                .add_bytes(&data[..cut])
                .add_bytes(&data[cut..])
                .fold();
            assert_eq!(s, whole, "cut {cut}");
        }
    }

    /// RFC 1624 §4 example: HC = 0xdd2f, m = 0x5555 -> m' = 0x3285 gives HC' = 0x0000.
    #[test]
    fn rfc1624_example() {
        assert_eq!(update_word(0xdd2f, 0x5555, 0x3285), 0x0000);
    }

    #[test]
    fn incremental_matches_recompute() {
        let mut hdr = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xb8, 0x61, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        for ttl in (1..=0x40u8).rev() {
            let old = u16::from_be_bytes([hdr[8], hdr[9]]);
            hdr[8] = ttl - 1;
            let new = u16::from_be_bytes([hdr[8], hdr[9]]);
            let c = update_word(u16::from_be_bytes([hdr[10], hdr[11]]), old, new);
            hdr[10..12].copy_from_slice(&c.to_be_bytes());
            assert!(verifies(&hdr), "ttl {ttl}");
        }
    }
}
