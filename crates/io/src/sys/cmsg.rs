//! Control messages: the outer TOS and `UDP_SEGMENT` size podwire sends,
//! the TOS and `UDP_GRO` size it receives.

use std::mem::size_of;

/// `UDP_SEGMENT` (linux/udp.h): send a buffer as datagrams of a given size.
pub const UDP_SEGMENT: libc::c_int = 103;
/// `UDP_GRO` (linux/udp.h): receive coalesced datagrams with their size.
pub const UDP_GRO: libc::c_int = 104;

/// Writes into `msg`'s control buffer an `IP_TOS` message (`tos`) and, when
/// `segment` is some, a `UDP_SEGMENT` message; returns the control length.
/// The buffer `msg_control` points at must be at least 48 bytes, 8-aligned.
pub fn write_tos_segment(msg: &mut libc::msghdr, tos: u8, segment: Option<u16>) -> usize {
    // SAFETY: CMSG_SPACE is a pure size computation.
    let space = unsafe {
        libc::CMSG_SPACE(size_of::<libc::c_int>() as u32) as usize
            + segment.map_or(0, |_| libc::CMSG_SPACE(size_of::<u16>() as u32) as usize)
    };
    msg.msg_controllen = space as _;
    // SAFETY: msg_control points at a control buffer of 64 bytes, 8-aligned,
    // which holds both messages (48 bytes); CMSG_FIRSTHDR/NXTHDR
    // walk inside the msg_controllen set above, and each value is written
    // unaligned with its declared size.
    unsafe {
        let c = libc::CMSG_FIRSTHDR(msg);
        (*c).cmsg_level = libc::IPPROTO_IP;
        (*c).cmsg_type = libc::IP_TOS;
        (*c).cmsg_len = libc::CMSG_LEN(size_of::<libc::c_int>() as u32) as _;
        std::ptr::write_unaligned(
            libc::CMSG_DATA(c) as *mut libc::c_int,
            libc::c_int::from(tos),
        );
        if let Some(size) = segment {
            let c = libc::CMSG_NXTHDR(msg, c);
            (*c).cmsg_level = libc::SOL_UDP;
            (*c).cmsg_type = UDP_SEGMENT;
            (*c).cmsg_len = libc::CMSG_LEN(size_of::<u16>() as u32) as _;
            std::ptr::write_unaligned(libc::CMSG_DATA(c) as *mut u16, size);
        }
    }
    space
}

/// The `IP_TOS` and `UDP_GRO` values of a received message (0 if absent).
pub fn read_tos_gro(msg: &libc::msghdr) -> (u8, usize) {
    let (mut tos, mut segment) = (0, 0);
    // SAFETY: msg_control/msg_controllen describe a control buffer as the
    // kernel filled it; CMSG_FIRSTHDR/NXTHDR stay within it, and each data
    // read is of the size the kernel writes for that type (a byte for
    // IP_TOS, an int for UDP_GRO), read unaligned.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(msg);
        while !c.is_null() {
            let (level, kind) = ((*c).cmsg_level, (*c).cmsg_type);
            if level == libc::IPPROTO_IP && kind == libc::IP_TOS {
                tos = *libc::CMSG_DATA(c);
            } else if level == libc::SOL_UDP && kind == UDP_GRO {
                let v = std::ptr::read_unaligned(libc::CMSG_DATA(c) as *const libc::c_int);
                segment = usize::try_from(v).unwrap_or(0);
            }
            c = libc::CMSG_NXTHDR(msg, c);
        }
    }
    (tos, segment)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What is written reads back, as the kernel's CMSG macros lay it out:
    /// an IP_TOS message then a UDP_SEGMENT one.
    #[test]
    fn written_control_messages_read_back() {
        let mut control = [0u64; 8];
        // SAFETY: msghdr is plain data; all-zero is a valid value.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_control = control.as_mut_ptr() as *mut libc::c_void;
        msg.msg_controllen = 64;
        let len = write_tos_segment(&mut msg, 0x02, Some(1450));
        // On x86_64 a cmsghdr is 16 bytes (cmsg_len is a size_t, then
        // level and type, ints) and data is aligned to 8: CMSG_SPACE(4) =
        // 16 + 8 = 24 for the int TOS, CMSG_SPACE(2) = 16 + 8 = 24 for the
        // u16 segment size: 48 in all.
        assert_eq!(len, 48);
        // The TOS is read back; UDP_SEGMENT is not UDP_GRO, so no size.
        assert_eq!(read_tos_gro(&msg), (0x02, 0));
        let len = write_tos_segment(&mut msg, 0x01, None);
        assert_eq!(len, 24);
        assert_eq!(read_tos_gro(&msg).0, 0x01);
    }
}
