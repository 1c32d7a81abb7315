//! IPv4 fragmentation (RFC 791 §3.2, "An Example Fragmentation Procedure")
//! of an inner packet larger than the mode's MTU that does not have DF set.
//!
//! Every fragment carries the original header with its own total length,
//! MF flag and offset; fragment data is a multiple of 8 bytes except in the
//! last fragment. Options without the "copied" flag appear only in the first
//! fragment; in the others they are overwritten with NOPs so the header
//! keeps its length, as Linux's `ip_options_fragment` does.

use super::encap::encapsulate;
use super::{DropReason, Packet, State, Target, Verdict};
use crate::table::Tables;
use crate::wire::ipv4::{self, FLAG_MF, FRAG_OFFSET_MASK, HEADER_LEN, option};

/// A packet to be sent as fragments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FragJob {
    target: Target,
    /// Largest fragment (IPv4 header included).
    mtu: u16,
    /// Data bytes per fragment except the last: a multiple of 8.
    chunk: u16,
    count: u16,
}

impl FragJob {
    /// Plans the fragmentation of a packet with header `h`; `None` when the
    /// MTU leaves no room for 8 bytes of data after the header.
    pub(crate) fn plan(h: &ipv4::Header, mtu: u16, target: Target) -> Option<FragJob> {
        let room = usize::from(mtu).checked_sub(h.header_len)?;
        let chunk = room / 8 * 8;
        if chunk == 0 {
            return None;
        }
        let data = h.total_len - h.header_len;
        Some(FragJob {
            target,
            mtu,
            chunk: chunk as u16,
            count: data.div_ceil(chunk) as u16,
        })
    }

    /// How many fragments.
    pub fn count(&self) -> usize {
        usize::from(self.count)
    }

    /// Where the fragments go.
    pub fn target(&self) -> Target {
        self.target
    }

    /// Writes fragment `index` of `original` (the packet the verdict was for,
    /// TTL already decremented) at the start of `out`'s view, encapsulated,
    /// and returns its verdict; `None` past the last fragment. `out` needs
    /// the usual headroom and room for the MTU after it.
    pub fn emit(
        &self,
        t: &Tables,
        st: &mut State,
        original: &[u8],
        index: usize,
        out: &mut Packet,
    ) -> Option<Verdict> {
        if index >= self.count() {
            return None;
        }
        let Ok(h) = ipv4::parse(original) else {
            return Some(Verdict::Drop(DropReason::Malformed));
        };
        let hl = h.header_len;
        let data = original.get(hl..h.total_len)?;
        let chunk = usize::from(self.chunk);
        let offset = index * chunk;
        let piece = data.get(offset..(offset + chunk).min(data.len()))?;
        let last = offset + piece.len() == data.len();
        let len = hl + piece.len();
        out.reset(out.offset(), len);
        if out.len() != len {
            return Some(Verdict::Drop(DropReason::TooBig));
        }
        let frag = out.data_mut();
        let (header, body) = frag.split_at_mut(hl);
        header.copy_from_slice(&original[..hl]);
        body.copy_from_slice(piece);
        if index > 0 {
            drop_uncopied_options(&mut header[HEADER_LEN..]);
        }
        let frag_offset = usize::from(h.flags_frag & FRAG_OFFSET_MASK) + offset / 8;
        if frag_offset > usize::from(FRAG_OFFSET_MASK) {
            return Some(Verdict::Drop(DropReason::Malformed));
        }
        let more = !last || h.flags_frag & FLAG_MF != 0;
        let flags_frag = (h.flags_frag & !(FLAG_MF | FRAG_OFFSET_MASK))
            | if more { FLAG_MF } else { 0 }
            | frag_offset as u16;
        header[ipv4::field::LEN..ipv4::field::LEN + 2].copy_from_slice(&(len as u16).to_be_bytes());
        header[ipv4::field::FLAGS_FRAG..ipv4::field::FLAGS_FRAG + 2]
            .copy_from_slice(&flags_frag.to_be_bytes());
        ipv4::refresh_checksum(header);
        Some(encapsulate(t, st, out, self.target))
    }
}

/// Overwrites options without the copied flag with NOPs. The options were
/// checked by `ipv4::parse`; a malformed tail is left as it is.
fn drop_uncopied_options(opts: &mut [u8]) {
    let mut i = 0;
    while let Some(&kind) = opts.get(i) {
        match kind {
            option::EOL => return,
            option::NOP => i += 1,
            _ => {
                let len = opts.get(i + 1).map_or(0, |&l| usize::from(l));
                let Some(body) = opts.get_mut(i..i + len).filter(|_| len >= 2) else {
                    return;
                };
                if kind & option::COPIED == 0 {
                    body.fill(option::NOP);
                }
                i += len;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_for_later_fragments() {
        // Record route (7, not copied), loose source route (0x83, copied), EOL.
        let mut opts = [7, 3, 4, 0x83, 3, 4, 0, 0];
        drop_uncopied_options(&mut opts);
        assert_eq!(opts, [1, 1, 1, 0x83, 3, 4, 0, 0]);
        // A malformed tail (never seen: parse rejects it) is left alone.
        let mut bad = [7, 9, 4, 0];
        drop_uncopied_options(&mut bad);
        assert_eq!(bad, [7, 9, 4, 0]);
    }
}
