//! Netlink messages: the requests [`super::NeighWatch`] sends, and the
//! reading of what the kernel sends back. Every reader takes arbitrary
//! bytes: what does not parse is skipped, nothing panics.

use std::io;
use std::net::Ipv4Addr;

use netlink_packet_core::{
    NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_REPLACE, NLM_F_REQUEST, NetlinkBuffer,
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NlasIterator, Parseable,
};
use netlink_packet_route::link::{LinkAttribute, LinkHeader, LinkMessage};
use netlink_packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState,
};
use netlink_packet_route::tc::{TcAttribute, TcHandle, TcMessage};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use podwire_wire::MacAddr;

use super::{Link, NeighEvent, NeighState, Neighbour};

/// `sizeof(struct ifinfomsg)` (linux/rtnetlink.h), which starts the
/// payload of a link message.
const IFINFOMSG_LEN: usize = 16;

/// One netlink message of a datagram.
#[derive(Debug, Clone, Copy)]
pub(super) struct Message<'a> {
    pub ty: u16,
    pub flags: u16,
    pub seq: u32,
    /// What follows the `nlmsghdr`, up to its `nlmsg_len`.
    pub payload: &'a [u8],
}

/// The messages of one datagram, in order; stops at the first whose header
/// is truncated or whose length does not fit.
pub(super) fn messages(datagram: &[u8]) -> impl Iterator<Item = Message<'_>> {
    let mut rest = datagram;
    std::iter::from_fn(move || {
        let buf = NetlinkBuffer::new_checked(rest).ok()?;
        let m = Message {
            ty: buf.message_type(),
            flags: buf.flags(),
            seq: buf.sequence_number(),
            payload: buf.payload(),
        };
        // NLMSG_ALIGN: the next message starts on a 4-byte boundary.
        let next = (buf.length() as usize).saturating_add(3) & !3;
        rest = rest.get(next..).unwrap_or(&[]);
        Some(m)
    })
}

/// The errno of an `NLMSG_ERROR` payload (`struct nlmsgerr`: a negative
/// errno, or 0 for an ACK), as a positive value.
pub(super) fn error_code(payload: &[u8]) -> io::Result<i32> {
    let code = payload
        .first_chunk::<4>()
        .map(|b| i32::from_ne_bytes(*b))
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "truncated NLMSG_ERROR"))?;
    Ok(code.saturating_neg().max(0))
}

/// The errno an `NLMSG_DONE` payload carries (a dump that failed part way),
/// as a positive value; 0 for a dump that ended well or an empty payload.
pub(super) fn done_code(payload: &[u8]) -> i32 {
    payload
        .first_chunk::<4>()
        .map_or(0, |b| i32::from_ne_bytes(*b).saturating_neg().max(0))
}

/// Appends the neighbour events of interface `ifindex` in `datagram`.
pub(super) fn events(datagram: &[u8], ifindex: u32, out: &mut Vec<NeighEvent>) {
    for m in messages(datagram) {
        let event = match m.ty {
            libc::RTM_NEWNEIGH => NeighEvent::Update,
            libc::RTM_DELNEIGH => NeighEvent::Delete,
            _ => continue,
        };
        out.extend(neighbour(m.payload, ifindex).map(event));
    }
}

/// The entry an `RTM_NEWNEIGH`/`RTM_DELNEIGH` payload (`struct ndmsg`, then
/// `NDA_*` attributes) describes, if it is an IPv4 neighbour (not a proxy
/// entry) of interface `ifindex` with a destination address.
pub(super) fn neighbour(payload: &[u8], ifindex: u32) -> Option<Neighbour> {
    let m = <NeighbourMessage as Parseable<[u8]>>::parse(payload).ok()?;
    if m.header.family != AddressFamily::Inet
        || m.header.ifindex != ifindex
        || m.header.flags.contains(NeighbourFlags::Proxy)
    {
        return None;
    }
    let mut ip = None;
    let mut mac = None;
    for attribute in &m.attributes {
        match attribute {
            NeighbourAttribute::Destination(NeighbourAddress::Inet(a)) => ip = Some(*a),
            NeighbourAttribute::LinkLayerAddress(bytes) => {
                mac = <[u8; 6]>::try_from(bytes.as_slice()).ok().map(MacAddr);
            }
            _ => {}
        }
    }
    Some(Neighbour {
        ip: ip?,
        mac,
        state: NeighState::from_nud(u16::from(m.header.state)),
    })
}

/// The index, MAC and MTU of an `RTM_NEWLINK` payload (`struct ifinfomsg`,
/// then `IFLA_*` attributes). Only the two attributes needed are read,
/// which keeps the many others (statistics, per-kind data) out of the way.
pub(super) fn link(payload: &[u8]) -> Option<Link> {
    let header = LinkHeader::parse(payload).ok()?;
    let mut mac = None;
    let mut mtu = None;
    for attribute in NlasIterator::new(payload.get(IFINFOMSG_LEN..)?) {
        let Ok(attribute) = attribute else { break };
        let value = attribute.value();
        match attribute.kind() {
            libc::IFLA_ADDRESS => mac = <[u8; 6]>::try_from(value).ok().map(MacAddr),
            libc::IFLA_MTU => mtu = value.first_chunk::<4>().map(|b| u32::from_ne_bytes(*b)),
            _ => {}
        }
    }
    Some(Link {
        ifindex: header.index,
        mac,
        mtu: mtu?,
    })
}

/// `RTM_GETNEIGH` dump of the IPv4 table, filtered to `ifindex` by the
/// kernel (`NDA_IFINDEX`, since Linux 4.18; older kernels ignore it and
/// [`neighbour`] filters anyway).
pub(super) fn dump_neighbours(seq: u32, ifindex: u32) -> Vec<u8> {
    let mut m = NeighbourMessage::default();
    m.header.family = AddressFamily::Inet;
    m.attributes.push(NeighbourAttribute::IfIndex(ifindex));
    encode(
        seq,
        NLM_F_REQUEST | NLM_F_DUMP,
        RouteNetlinkMessage::GetNeighbour(m),
    )
}

/// `RTM_NEWNEIGH` with `NTF_USE` for `ip` on `ifindex`, acknowledged.
/// `NLM_F_CREATE` makes the kernel create a missing entry (without it,
/// `ENOENT`); `NLM_F_REPLACE` is what `ip neigh replace` sends (it only
/// matters without `NTF_USE`). The state is `NUD_NONE`: the kernel ignores
/// the state of an `NTF_USE` request, except that `NUD_PERMANENT` (which
/// `ip neigh ... use` sends) would exempt the new entry from garbage
/// collection.
pub(super) fn resolve(seq: u32, ifindex: u32, ip: Ipv4Addr) -> Vec<u8> {
    let mut m = NeighbourMessage::default();
    m.header.family = AddressFamily::Inet;
    m.header.ifindex = ifindex;
    m.header.state = NeighbourState::None;
    m.header.flags = NeighbourFlags::Use;
    m.attributes
        .push(NeighbourAttribute::Destination(NeighbourAddress::Inet(ip)));
    encode(
        seq,
        NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE,
        RouteNetlinkMessage::NewNeighbour(m),
    )
}

/// `RTM_NEWQDISC` making `noqueue` the root qdisc of `ifindex`
/// (`tc qdisc replace dev X root noqueue`), acknowledged.
pub(super) fn root_noqueue(seq: u32, ifindex: u32) -> Vec<u8> {
    let mut m = TcMessage::default();
    m.header.index = ifindex as i32;
    m.header.handle = TcHandle::UNSPEC;
    m.header.parent = TcHandle::ROOT;
    m.attributes.push(TcAttribute::Kind("noqueue".into()));
    encode(
        seq,
        NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE,
        RouteNetlinkMessage::NewQueueDiscipline(m),
    )
}

/// `RTM_GETLINK` for the device named `name` (`IFLA_IFNAME`).
pub(super) fn get_link(seq: u32, name: &str) -> Vec<u8> {
    let mut m = LinkMessage::default();
    m.attributes.push(LinkAttribute::IfName(name.to_string()));
    encode(seq, NLM_F_REQUEST, RouteNetlinkMessage::GetLink(m))
}

fn encode(seq: u32, flags: u16, payload: RouteNetlinkMessage) -> Vec<u8> {
    let mut header = NetlinkHeader::default();
    header.flags = flags;
    header.sequence_number = seq;
    let mut m = NetlinkMessage::new(header, NetlinkPayload::from(payload));
    m.finalize();
    let mut buf = vec![0; m.buffer_len()];
    m.serialize(&mut buf);
    buf
}

#[cfg(test)]
#[path = "msg_tests.rs"]
mod tests;
