//! The classic BPF program of direct mode's packet socket: frames to this
//! host (not flooded to others), IPv4, with a destination in one of the
//! local prefixes. Built here as data, so it is tested without a socket.

use std::net::Ipv4Addr;

use socket2::SockFilter;

const LD_H_ABS: u16 = 0x28; // BPF_LD | BPF_H | BPF_ABS
const LD_W_ABS: u16 = 0x20; // BPF_LD | BPF_W | BPF_ABS
const AND_K: u16 = 0x54; // BPF_ALU | BPF_AND | BPF_K
const JEQ_K: u16 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
const RET_K: u16 = 0x06; // BPF_RET | BPF_K
/// `SKF_AD_OFF + SKF_AD_PKTTYPE`: the packet type (PACKET_HOST, …).
const SKF_AD_PKTTYPE: u32 = 0xffff_f000 + 4;
/// Jump offsets are 8 bits: at most this many prefixes in one program.
pub const MAX_NETS: usize = 80;

/// The program that accepts IPv4 frames to this host whose destination is
/// in one of `nets` (address, prefix length), or `None` when there are too
/// many prefixes for one program (then every frame is taken).
pub fn ipv4_destinations(nets: &[(Ipv4Addr, u8)]) -> Option<Vec<SockFilter>> {
    if nets.len() > MAX_NETS {
        return None;
    }
    // Frames to this host's MAC only (a bridge floods frames for other
    // hosts until it learns where they are), IPv4 only, then for each net:
    // ld dst; and mask; jeq net → accept.
    let skip = (nets.len() * 3) as u8;
    let mut prog = vec![
        SockFilter::new(LD_W_ABS, 0, 0, SKF_AD_PKTTYPE),
        SockFilter::new(JEQ_K, 0, skip + 2, libc::PACKET_HOST as u32),
        SockFilter::new(LD_H_ABS, 0, 0, 12),
        // Not IPv4: jump over the 3 instructions per net to the drop.
        SockFilter::new(JEQ_K, 0, skip, 0x0800),
    ];
    for (i, (net, len)) in nets.iter().enumerate() {
        let mask = if *len == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from((*len).min(32)))
        };
        let left = nets.len() - i - 1;
        prog.push(SockFilter::new(LD_W_ABS, 0, 0, 14 + 16));
        prog.push(SockFilter::new(AND_K, 0, 0, mask));
        // Match: jump over the remaining tests and the drop to accept.
        prog.push(SockFilter::new(
            JEQ_K,
            (left * 3 + 1) as u8,
            0,
            u32::from(*net) & mask,
        ));
    }
    prog.push(SockFilter::new(RET_K, 0, 0, 0));
    prog.push(SockFilter::new(RET_K, 0, 0, 0x0004_0000));
    Some(prog)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_test_per_prefix_and_jumps_that_land_on_accept_or_drop() {
        let nets = [
            (Ipv4Addr::new(10, 2, 36, 64), 26),
            (Ipv4Addr::new(10, 2, 36, 68), 32),
        ];
        let prog = ipv4_destinations(&nets).unwrap();
        // 4 header instructions, 3 per prefix, drop, accept.
        assert_eq!(prog.len(), 4 + 3 * 2 + 2);
        assert!(ipv4_destinations(&[(Ipv4Addr::UNSPECIFIED, 0); MAX_NETS + 1]).is_none());
        assert_eq!(ipv4_destinations(&[]).unwrap().len(), 6);
    }
}
