//! The classic BPF programs of the packet sockets: direct mode's (frames to
//! this host, not flooded to others, IPv4, with a destination in one of the
//! local prefixes), VXLAN's (IPv4 UDP to the node's address and the
//! VXLAN port) and IPIP's (IPv4 protocol 4 to the node's address); and the
//! one that keeps everything from a socket. Built here
//! as data, so they are tested without a socket.

use std::net::Ipv4Addr;

use socket2::SockFilter;

const LD_H_ABS: u16 = 0x28; // BPF_LD | BPF_H | BPF_ABS
const LD_W_ABS: u16 = 0x20; // BPF_LD | BPF_W | BPF_ABS
const LD_B_ABS: u16 = 0x30; // BPF_LD | BPF_B | BPF_ABS
const LD_H_IND: u16 = 0x48; // BPF_LD | BPF_H | BPF_IND
const LDX_B_MSH: u16 = 0xb1; // BPF_LDX | BPF_B | BPF_MSH: X = 4 * (P[k] & 0xf)
const AND_K: u16 = 0x54; // BPF_ALU | BPF_AND | BPF_K
const JEQ_K: u16 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
const RET_K: u16 = 0x06; // BPF_RET | BPF_K
/// `SKF_AD_OFF + SKF_AD_PKTTYPE`: the packet type (PACKET_HOST, …).
const SKF_AD_PKTTYPE: u32 = 0xffff_f000 + 4;
/// Jump offsets are 8 bits: at most this many prefixes in one program.
pub const MAX_NETS: usize = 80;

/// One classic BPF instruction (`struct sock_filter`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insn {
    pub code: u16,
    pub jt: u8,
    pub jf: u8,
    pub k: u32,
}

impl Insn {
    const fn new(code: u16, jt: u8, jf: u8, k: u32) -> Insn {
        Insn { code, jt, jf, k }
    }
}

/// VXLAN's packet socket: frames to this host carrying IPv4 UDP to `ip`
/// and `port` (the UDP header found past the IPv4 options). A later
/// fragment carries no UDP header and is not taken; a first fragment is,
/// and ingress counts it (`fragmented-outer`).
pub fn vxlan_frames(ip: Ipv4Addr, port: u16) -> Vec<Insn> {
    vec![
        Insn::new(LD_W_ABS, 0, 0, SKF_AD_PKTTYPE),
        Insn::new(JEQ_K, 0, 9, libc::PACKET_HOST as u32),
        Insn::new(LD_H_ABS, 0, 0, 12),
        Insn::new(JEQ_K, 0, 7, 0x0800),
        Insn::new(LD_B_ABS, 0, 0, 14 + 9),
        Insn::new(JEQ_K, 0, 5, 17),
        Insn::new(LD_W_ABS, 0, 0, 14 + 16),
        Insn::new(JEQ_K, 0, 3, u32::from(ip)),
        Insn::new(LDX_B_MSH, 0, 0, 14),
        Insn::new(LD_H_IND, 0, 0, 14 + 2),
        Insn::new(JEQ_K, 1, 0, u32::from(port)),
        Insn::new(RET_K, 0, 0, 0),
        Insn::new(RET_K, 0, 0, ACCEPT),
    ]
}

/// IPIP's packet socket: frames to this host carrying IPv4 protocol 4 to
/// `ip`. Fragments are taken, and ingress counts them
/// (`fragmented-outer`), as it does those the raw socket brings.
pub fn ipip_frames(ip: Ipv4Addr) -> Vec<Insn> {
    vec![
        Insn::new(LD_W_ABS, 0, 0, SKF_AD_PKTTYPE),
        Insn::new(JEQ_K, 0, 7, libc::PACKET_HOST as u32),
        Insn::new(LD_H_ABS, 0, 0, 12),
        Insn::new(JEQ_K, 0, 5, 0x0800),
        Insn::new(LD_B_ABS, 0, 0, 14 + 9),
        Insn::new(JEQ_K, 0, 3, 4),
        Insn::new(LD_W_ABS, 0, 0, 14 + 16),
        Insn::new(JEQ_K, 0, 1, u32::from(ip)),
        Insn::new(RET_K, 0, 0, ACCEPT),
        Insn::new(RET_K, 0, 0, 0),
    ]
}

/// Takes nothing: for the VXLAN UDP socket (and the IPIP raw socket) while the packet socket
/// receives (the socket stays bound, so that the kernel sends no ICMP
/// port unreachable, and queues nothing).
pub const DROP_ALL: [Insn; 1] = [Insn::new(RET_K, 0, 0, 0)];

/// The program as the kernel takes it.
pub fn to_filters(prog: &[Insn]) -> Vec<SockFilter> {
    prog.iter()
        .map(|i| SockFilter::new(i.code, i.jt, i.jf, i.k))
        .collect()
}

/// The program that accepts IPv4 frames to this host whose destination is
/// in one of `nets` (address, prefix length), or `None` when there are too
/// many prefixes for one program (then every frame is taken).
pub fn ipv4_destinations(nets: &[(Ipv4Addr, u8)]) -> Option<Vec<Insn>> {
    if nets.len() > MAX_NETS {
        return None;
    }
    // Frames to this host's MAC only (a bridge floods frames for other
    // hosts until it learns where they are), IPv4 only, then for each net:
    // ld dst; and mask; jeq net → accept.
    let skip = (nets.len() * 3) as u8;
    let mut prog = vec![
        Insn::new(LD_W_ABS, 0, 0, SKF_AD_PKTTYPE),
        Insn::new(JEQ_K, 0, skip + 2, libc::PACKET_HOST as u32),
        Insn::new(LD_H_ABS, 0, 0, 12),
        // Not IPv4: jump over the 3 instructions per net to the drop.
        Insn::new(JEQ_K, 0, skip, 0x0800),
    ];
    for (i, (net, len)) in nets.iter().enumerate() {
        let mask = if *len == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from((*len).min(32)))
        };
        let left = nets.len() - i - 1;
        prog.push(Insn::new(LD_W_ABS, 0, 0, 14 + 16));
        prog.push(Insn::new(AND_K, 0, 0, mask));
        // Match: jump over the remaining tests and the drop to accept.
        prog.push(Insn::new(
            JEQ_K,
            (left * 3 + 1) as u8,
            0,
            u32::from(*net) & mask,
        ));
    }
    prog.push(Insn::new(RET_K, 0, 0, 0));
    prog.push(Insn::new(RET_K, 0, 0, ACCEPT));
    Some(prog)
}

/// What the program returns to keep a frame: its first 256 KiB.
const ACCEPT: u32 = 0x0004_0000;

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `prog` as the kernel's classic BPF interpreter would on an
    /// Ethernet frame of packet type `pkttype`, for the instructions the
    /// program uses (BPF(4), filter.txt): returns what `ret` returns.
    fn run(prog: &[Insn], frame: &[u8], pkttype: u32) -> u32 {
        let (mut a, mut x, mut pc) = (0u32, 0u32, 0usize);
        while let Some(i) = prog.get(pc) {
            pc += 1;
            match i.code {
                LD_W_ABS if i.k == SKF_AD_PKTTYPE => a = pkttype,
                LD_W_ABS => {
                    let k = i.k as usize;
                    let Some(b) = frame.get(k..k + 4) else {
                        return 0;
                    };
                    a = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
                }
                LD_H_ABS => {
                    let k = i.k as usize;
                    let Some(b) = frame.get(k..k + 2) else {
                        return 0;
                    };
                    a = u32::from(u16::from_be_bytes([b[0], b[1]]));
                }
                LD_B_ABS => match frame.get(i.k as usize) {
                    Some(b) => a = u32::from(*b),
                    None => return 0,
                },
                LDX_B_MSH => match frame.get(i.k as usize) {
                    Some(b) => x = 4 * u32::from(b & 0x0f),
                    None => return 0,
                },
                LD_H_IND => {
                    let k = (x + i.k) as usize;
                    let Some(b) = frame.get(k..k + 2) else {
                        return 0;
                    };
                    a = u32::from(u16::from_be_bytes([b[0], b[1]]));
                }
                AND_K => a &= i.k,
                JEQ_K => pc += usize::from(if a == i.k { i.jt } else { i.jf }),
                RET_K => return i.k,
                other => panic!("instruction {other:#x} the interpreter does not know"),
            }
        }
        panic!("fell off the end of the program")
    }

    /// An Ethernet frame (EtherType `ethertype`) carrying an IPv4 header
    /// to `dst`: the destination is at bytes 30..34 (14 + 16).
    fn frame(ethertype: u16, dst: [u8; 4]) -> Vec<u8> {
        let mut f = vec![0u8; 14 + 20];
        f[12..14].copy_from_slice(&ethertype.to_be_bytes());
        f[14] = 0x45;
        f[30..34].copy_from_slice(&dst);
        f
    }

    const HOST: u32 = libc::PACKET_HOST as u32;
    const OTHERHOST: u32 = libc::PACKET_OTHERHOST as u32;

    #[test]
    fn takes_ipv4_frames_to_this_host_for_local_prefixes_only() {
        let nets = [
            (Ipv4Addr::new(10, 2, 36, 64), 26),
            (Ipv4Addr::new(10, 2, 99, 7), 32),
        ];
        let prog = ipv4_destinations(&nets).unwrap();
        // 4 header instructions, 3 per prefix, drop, accept.
        assert_eq!(prog.len(), 4 + 3 * 2 + 2);
        for (dst, want) in [
            ([10, 2, 36, 64], ACCEPT),
            ([10, 2, 36, 127], ACCEPT),
            ([10, 2, 99, 7], ACCEPT),
            ([10, 2, 36, 128], 0),
            ([10, 2, 99, 8], 0),
            ([192, 168, 33, 55], 0),
        ] {
            assert_eq!(run(&prog, &frame(0x0800, dst), HOST), want, "{dst:?}");
        }
        // Another host's frame (flooded by a bridge), ARP, IPv6: never.
        assert_eq!(run(&prog, &frame(0x0800, [10, 2, 36, 70]), OTHERHOST), 0);
        assert_eq!(run(&prog, &frame(0x0806, [10, 2, 36, 70]), HOST), 0);
        assert_eq!(run(&prog, &frame(0x86dd, [10, 2, 36, 70]), HOST), 0);
        // No prefixes: nothing; too many for 8-bit jumps: no program.
        let none = ipv4_destinations(&[]).unwrap();
        assert_eq!(run(&none, &frame(0x0800, [10, 2, 36, 70]), HOST), 0);
        assert!(ipv4_destinations(&[(Ipv4Addr::UNSPECIFIED, 0); MAX_NETS + 1]).is_none());
        // The largest program's jumps still land inside it.
        let many: Vec<(Ipv4Addr, u8)> = (0..MAX_NETS as u8)
            .map(|i| (Ipv4Addr::new(10, 3, i, 0), 24))
            .collect();
        let prog = ipv4_destinations(&many).unwrap();
        assert_eq!(run(&prog, &frame(0x0800, [10, 3, 0, 1]), HOST), ACCEPT);
        assert_eq!(run(&prog, &frame(0x0800, [10, 3, 79, 1]), HOST), ACCEPT);
        assert_eq!(run(&prog, &frame(0x0800, [10, 3, 80, 1]), HOST), 0);
    }

    #[test]
    fn takes_vxlan_to_this_node_only() {
        let prog = vxlan_frames(Ipv4Addr::new(192, 168, 33, 55), 4789);
        let vxlan = |proto: u8, dst: [u8; 4], ihl: u8, port: u16| {
            let mut f = frame(0x0800, dst);
            f[14] = 0x40 | ihl;
            f[23] = proto;
            let at = 14 + usize::from(ihl) * 4;
            f.resize(at + 8, 0);
            f[at + 2..at + 4].copy_from_slice(&port.to_be_bytes());
            f
        };
        let node = [192, 168, 33, 55];
        assert_eq!(run(&prog, &vxlan(17, node, 5, 4789), HOST), ACCEPT);
        // Past IPv4 options (a header of 24 bytes).
        assert_eq!(run(&prog, &vxlan(17, node, 6, 4789), HOST), ACCEPT);
        let mut opts = vxlan(17, node, 6, 4789);
        opts[34 + 2..34 + 4].copy_from_slice(&4789u16.to_be_bytes());
        opts[38 + 2..38 + 4].copy_from_slice(&53u16.to_be_bytes());
        assert_eq!(run(&prog, &opts, HOST), 0, "port read past the options");
        // Another port, protocol, address, EtherType or host: never.
        assert_eq!(run(&prog, &vxlan(17, node, 5, 4790), HOST), 0);
        assert_eq!(run(&prog, &vxlan(6, node, 5, 4789), HOST), 0);
        assert_eq!(run(&prog, &vxlan(17, [192, 168, 33, 57], 5, 4789), HOST), 0);
        assert_eq!(run(&prog, &vxlan(17, node, 5, 4789), OTHERHOST), 0);
        let mut arp = vxlan(17, node, 5, 4789);
        arp[12..14].copy_from_slice(&[0x08, 0x06]);
        assert_eq!(run(&prog, &arp, HOST), 0);
        // Cut short before the UDP header: not taken.
        assert_eq!(run(&prog, &vxlan(17, node, 5, 4789)[..35], HOST), 0);
        assert_eq!(run(&DROP_ALL, &vxlan(17, node, 5, 4789), HOST), 0);
    }

    #[test]
    fn takes_ipip_to_this_node_only() {
        let prog = ipip_frames(Ipv4Addr::new(192, 168, 33, 55));
        let ipip = |proto: u8, dst: [u8; 4]| {
            let mut f = frame(0x0800, dst);
            f[23] = proto;
            f
        };
        let node = [192, 168, 33, 55];
        assert_eq!(run(&prog, &ipip(4, node), HOST), ACCEPT);
        // Another protocol, address, EtherType or host: never.
        assert_eq!(run(&prog, &ipip(17, node), HOST), 0);
        assert_eq!(run(&prog, &ipip(41, node), HOST), 0);
        assert_eq!(run(&prog, &ipip(4, [192, 168, 33, 57]), HOST), 0);
        assert_eq!(run(&prog, &ipip(4, node), OTHERHOST), 0);
        let mut arp = ipip(4, node);
        arp[12..14].copy_from_slice(&[0x08, 0x06]);
        assert_eq!(run(&prog, &arp, HOST), 0);
        // Cut short before the destination: not taken.
        assert_eq!(run(&prog, &ipip(4, node)[..32], HOST), 0);
        assert_eq!(run(&DROP_ALL, &ipip(4, node), HOST), 0);
    }
}
