//! Messages built byte by byte from the kernel's uapi layouts
//! (linux/netlink.h, linux/rtnetlink.h, linux/neighbour.h, linux/if_link.h),
//! in host byte order as the kernel sends them: this machine's is little
//! endian, hence the `cfg`.
#![cfg(target_endian = "little")]

use super::*;

const IFINDEX: u32 = 7;
const PEER: Ipv4Addr = Ipv4Addr::new(192, 168, 77, 2);
const PEER_MAC: MacAddr = MacAddr([0x02, 0x50, 0x57, 0x00, 0x00, 0x02]);

/// An `RTM_NEWNEIGH` the kernel would send for a `REACHABLE` entry
/// (`__neigh_fill_info`: `NDA_DST`, `NDA_LLADDR`, `NDA_PROBES`,
/// `NDA_CACHEINFO`).
#[rustfmt::skip]
const NEW_REACHABLE: [u8; 76] = [
    // struct nlmsghdr
    76, 0, 0, 0,            // nlmsg_len
    28, 0,                  // nlmsg_type = RTM_NEWNEIGH
    0, 0,                   // nlmsg_flags
    0, 0, 0, 0,             // nlmsg_seq
    0, 0, 0, 0,             // nlmsg_pid
    // struct ndmsg
    2,                      // ndm_family = AF_INET
    0, 0, 0,                // ndm_pad1, ndm_pad2
    7, 0, 0, 0,             // ndm_ifindex = 7
    0x02, 0,                // ndm_state = NUD_REACHABLE
    0,                      // ndm_flags
    1,                      // ndm_type = RTN_UNICAST
    // struct rtattr NDA_DST (1), 4 bytes
    8, 0, 1, 0,   192, 168, 77, 2,
    // NDA_LLADDR (2), 6 bytes and 2 of padding
    10, 0, 2, 0,  0x02, 0x50, 0x57, 0x00, 0x00, 0x02,  0, 0,
    // NDA_PROBES (4), u32
    8, 0, 4, 0,   0, 0, 0, 0,
    // NDA_CACHEINFO (3), struct nda_cacheinfo
    20, 0, 3, 0,  1, 0, 0, 0,  2, 0, 0, 0,  3, 0, 0, 0,  0, 0, 0, 0,
];

/// `NEW_REACHABLE` with fields changed: (offset, byte) pairs.
fn patched(patches: &[(usize, u8)]) -> Vec<u8> {
    let mut m = NEW_REACHABLE.to_vec();
    for &(at, byte) in patches {
        m[at] = byte;
    }
    m
}

fn events_of(datagram: &[u8]) -> Vec<NeighEvent> {
    let mut out = Vec::new();
    events(datagram, IFINDEX, &mut out);
    out
}

#[test]
fn a_reachable_entry_is_an_update_with_its_mac() {
    let want = Neighbour {
        ip: PEER,
        mac: Some(PEER_MAC),
        state: NeighState::Reachable,
    };
    assert_eq!(events_of(&NEW_REACHABLE), [NeighEvent::Update(want)]);
    assert_eq!(want.usable_mac(), Some(PEER_MAC));
}

#[test]
fn a_delete_message_is_a_delete_event() {
    // nlmsg_type = RTM_DELNEIGH (29), ndm_state = NUD_STALE.
    let got = events_of(&patched(&[(4, 29), (24, 0x04)]));
    let [NeighEvent::Delete(n)] = got[..] else {
        panic!("{got:?}")
    };
    assert_eq!((n.ip, n.state), (PEER, NeighState::Stale));
}

/// An `RTM_NEWNEIGH` for an entry being resolved: no `NDA_LLADDR` (the
/// kernel adds it only for `NUD_VALID` states).
#[rustfmt::skip]
const NEW_INCOMPLETE: [u8; 36] = [
    36, 0, 0, 0,  28, 0,  0, 0,  0, 0, 0, 0,  0, 0, 0, 0,
    2, 0, 0, 0,  7, 0, 0, 0,  0x01, 0,  0,  1,       // NUD_INCOMPLETE
    8, 0, 1, 0,  192, 168, 77, 9,
];

#[test]
fn an_entry_being_resolved_has_no_usable_mac() {
    let got = events_of(&NEW_INCOMPLETE);
    let [NeighEvent::Update(n)] = got[..] else {
        panic!("{got:?}")
    };
    assert_eq!(n.ip, Ipv4Addr::new(192, 168, 77, 9));
    assert_eq!((n.mac, n.state), (None, NeighState::Incomplete));
    assert!(!n.state.usable());
    assert_eq!(n.usable_mac(), None);
}

#[test]
fn entries_of_other_interfaces_families_and_proxies_are_skipped() {
    for patches in [
        vec![(20, 8)],    // ndm_ifindex 8
        vec![(26, 0x08)], // ndm_flags NTF_PROXY
        vec![(16, 7)],    // ndm_family AF_BRIDGE
        vec![(4, 16)],    // RTM_NEWLINK
        vec![(4, 30)],    // RTM_GETNEIGH (an ARP daemon's request)
        vec![(30, 9)],    // no NDA_DST: the first attribute is type 9
    ] {
        assert_eq!(events_of(&patched(&patches)), [], "{patches:?}");
    }
}

#[test]
fn an_lladdr_that_is_not_six_bytes_is_no_mac() {
    // NDA_LLADDR's rta_len 12: an 8-byte address (the padding included).
    let got = events_of(&patched(&[(36, 12)]));
    let [NeighEvent::Update(n)] = got[..] else {
        panic!("{got:?}")
    };
    assert_eq!((n.ip, n.mac), (PEER, None));
}

#[test]
fn a_datagram_of_several_messages_is_read_to_its_end() {
    let mut datagram = NEW_REACHABLE.to_vec();
    datagram.extend_from_slice(&NEW_INCOMPLETE);
    datagram.extend_from_slice(&NEW_REACHABLE[..40]); // truncated: skipped
    let got = events_of(&datagram);
    assert_eq!(got.len(), 2, "{got:?}");
}

#[test]
fn kernel_errors_and_acks_are_read_from_nlmsgerr() {
    // struct nlmsgerr { int error; struct nlmsghdr msg; }: -ENODEV.
    let mut payload = (-19i32).to_ne_bytes().to_vec();
    payload.extend_from_slice(&[36, 0, 0, 0, 28, 0, 0x05, 0x05, 1, 0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(error_code(&payload).unwrap(), libc::ENODEV);
    assert_eq!(error_code(&0i32.to_ne_bytes()).unwrap(), 0);
    assert!(error_code(&[0xff, 0xff]).is_err());
    assert_eq!(done_code(&(-105i32).to_ne_bytes()), libc::ENOBUFS);
    assert_eq!(done_code(&[]), 0);
    // An NLMSG_ERROR message, as messages() frames it.
    let mut m = vec![36, 0, 0, 0, 2, 0, 0x00, 0x01, 9, 0, 0, 0, 0x44, 0x33, 0, 0];
    m.extend_from_slice(&payload);
    let framed: Vec<_> = messages(&m).collect();
    assert_eq!(framed.len(), 1);
    assert_eq!((framed[0].ty, framed[0].seq), (2, 9));
    assert_eq!(error_code(framed[0].payload).unwrap(), libc::ENODEV);
}

#[test]
fn resolve_sends_rtm_newneigh_with_ntf_use() {
    #[rustfmt::skip]
    let want: [u8; 36] = [
        36, 0, 0, 0,
        28, 0,                  // RTM_NEWNEIGH
        0x05, 0x05,             // NLM_F_REQUEST|NLM_F_ACK | NLM_F_REPLACE|NLM_F_CREATE
        42, 0, 0, 0,            // nlmsg_seq
        0, 0, 0, 0,             // nlmsg_pid: the kernel fills it in
        2, 0, 0, 0,             // AF_INET
        7, 0, 0, 0,             // ndm_ifindex
        0, 0,                   // NUD_NONE
        0x01,                   // NTF_USE
        0,                      // RTN_UNSPEC
        8, 0, 1, 0,  192, 168, 77, 2,
    ];
    assert_eq!(resolve(42, IFINDEX, PEER), want);
}

#[test]
fn a_dump_asks_for_the_ipv4_table_of_one_interface() {
    #[rustfmt::skip]
    let want: [u8; 36] = [
        36, 0, 0, 0,
        30, 0,                  // RTM_GETNEIGH
        0x01, 0x03,             // NLM_F_REQUEST | NLM_F_DUMP
        3, 0, 0, 0,  0, 0, 0, 0,
        2, 0, 0, 0,  0, 0, 0, 0,  0, 0,  0,  0,
        8, 0, 8, 0,  7, 0, 0, 0, // NDA_IFINDEX (8)
    ];
    assert_eq!(dump_neighbours(3, IFINDEX), want);
}

#[test]
fn a_link_query_names_the_device() {
    #[rustfmt::skip]
    let want: [u8; 44] = [
        44, 0, 0, 0,
        18, 0,                  // RTM_GETLINK
        0x01, 0,                // NLM_F_REQUEST
        5, 0, 0, 0,  0, 0, 0, 0,
        // struct ifinfomsg, all zero: look up by name
        0, 0, 0, 0,  0, 0, 0, 0,  0, 0, 0, 0,  0, 0, 0, 0,
        // IFLA_IFNAME (3), NUL-terminated, padded
        9, 0, 3, 0,  b'e', b't', b'h', b'0', 0,  0, 0, 0,
    ];
    assert_eq!(get_link(5, "eth0"), want);
}

/// The payload of an `RTM_NEWLINK` (`rtnl_fill_ifinfo`), shortened to a
/// few attributes, among them one this code does not know.
#[rustfmt::skip]
const NEWLINK_PAYLOAD: [u8; 56] = [
    // struct ifinfomsg
    0, 0,  1, 0,            // AF_UNSPEC, pad, ifi_type = ARPHRD_ETHER
    4, 0, 0, 0,             // ifi_index
    0x43, 0x10, 1, 0,       // ifi_flags
    0, 0, 0, 0,             // ifi_change
    // IFLA_IFNAME (3)
    12, 0, 3, 0,  b'v', b'e', b't', b'h', b'0', 0, 0, 0,
    // IFLA_MTU (4)
    8, 0, 4, 0,  0xdc, 0x05, 0, 0,
    // 0x3f, unknown here
    8, 0, 0x3f, 0,  0, 0, 1, 0,
    // IFLA_ADDRESS (1)
    10, 0, 1, 0,  0x02, 0x50, 0x57, 0x00, 0x00, 0x02,  0, 0,
];

#[test]
fn a_link_answer_gives_index_mac_and_mtu() {
    let want = Link {
        ifindex: 4,
        mac: Some(PEER_MAC),
        mtu: 1500,
    };
    assert_eq!(link(&NEWLINK_PAYLOAD), Some(want));
    // A TUN device has no IFLA_ADDRESS.
    assert_eq!(
        link(&NEWLINK_PAYLOAD[..44]),
        Some(Link { mac: None, ..want })
    );
    assert_eq!(link(&NEWLINK_PAYLOAD[..20]), None, "no MTU");
    assert_eq!(link(&NEWLINK_PAYLOAD[..10]), None);
}

#[test]
fn nud_states_map_as_the_kernel_defines_them() {
    let usable = [
        (0x02, NeighState::Reachable),
        (0x04, NeighState::Stale),
        (0x08, NeighState::Delay),
        (0x10, NeighState::Probe),
        (0x40, NeighState::Noarp),
        (0x80, NeighState::Permanent),
    ];
    let unusable = [
        (0x00, NeighState::None),
        (0x01, NeighState::Incomplete),
        (0x20, NeighState::Failed),
    ];
    for (nud, state) in usable {
        assert_eq!(NeighState::from_nud(nud), state);
        assert!(state.usable(), "{state:?}");
    }
    for (nud, state) in unusable {
        assert_eq!(NeighState::from_nud(nud), state);
        assert!(!state.usable(), "{state:?}");
    }
    assert!(NeighState::from_nud(0x82).usable());
    assert!(!NeighState::from_nud(0x100).usable());
}

/// Every reader, on `bytes`: none may panic.
fn read_all(bytes: &[u8]) {
    let mut out = Vec::new();
    events(bytes, IFINDEX, &mut out);
    for m in messages(bytes) {
        let _ = (neighbour(m.payload, IFINDEX), link(m.payload));
        let _ = (error_code(m.payload), done_code(m.payload));
    }
    let _ = (neighbour(bytes, IFINDEX), link(bytes), error_code(bytes));
}

#[test]
fn no_input_makes_a_reader_panic() {
    let mut corpus: Vec<Vec<u8>> = vec![NEW_REACHABLE.to_vec(), NEW_INCOMPLETE.to_vec()];
    let mut newlink = vec![72, 0, 0, 0, 16, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    newlink.extend_from_slice(&NEWLINK_PAYLOAD);
    corpus.push(newlink);
    for base in &corpus {
        for len in 0..=base.len() {
            read_all(&base[..len]);
        }
        for at in 0..base.len() {
            for byte in [0x00, 0x01, 0x03, 0x04, 0x05, 0x07, 0x7f, 0x80, 0xfe, 0xff] {
                let mut m = base.clone();
                m[at] = byte;
                read_all(&m);
            }
        }
    }
    // Random bytes, and random bytes behind a plausible header.
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for _ in 0..20_000 {
        let len = (next() % 120) as usize;
        let mut m: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        if len >= 28 && next() % 2 == 0 {
            m[..4].copy_from_slice(&(len as u32).to_ne_bytes());
            m[4..6].copy_from_slice(&[28 + (next() % 2) as u8, 0]);
            m[16] = 2;
            m[20..24].copy_from_slice(&IFINDEX.to_ne_bytes());
        }
        read_all(&m);
    }
}

#[test]
fn a_noqueue_root_qdisc_is_rtm_newqdisc_with_tca_kind() {
    // linux/rtnetlink.h: struct tcmsg, TC_H_ROOT; TCA_KIND is attribute 1.
    #[rustfmt::skip]
    let want: [u8; 48] = [
        48, 0, 0, 0,
        36, 0,                  // RTM_NEWQDISC
        0x05, 0x05,             // NLM_F_REQUEST|NLM_F_ACK | NLM_F_REPLACE|NLM_F_CREATE
        9, 0, 0, 0,             // nlmsg_seq
        0, 0, 0, 0,             // nlmsg_pid
        0, 0, 0, 0,             // tcm_family AF_UNSPEC, padding
        7, 0, 0, 0,             // tcm_ifindex
        0, 0, 0, 0,             // tcm_handle: the kernel picks one
        0xff, 0xff, 0xff, 0xff, // tcm_parent: TC_H_ROOT
        0, 0, 0, 0,             // tcm_info
        12, 0, 1, 0,  b'n', b'o', b'q', b'u', b'e', b'u', b'e', 0,
    ];
    assert_eq!(root_noqueue(9, IFINDEX), want);
}
