//! Socket options and addresses.

use std::io;
use std::mem::size_of;
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;

use socket2::Socket;

/// A `sockaddr_in` for `addr:port`.
pub fn sockaddr_v4(addr: Ipv4Addr, port: u16) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(addr).to_be(),
        },
        sin_zero: [0; 8],
    }
}

/// Sets an `int` socket option.
pub fn set_int(
    sock: &impl AsRawFd,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    // SAFETY: a valid socket, and an int option value with its true size.
    let r = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            level,
            name,
            &value as *const libc::c_int as *const libc::c_void,
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Sets a socket buffer to `bytes` past `net.core.rmem_max`/`wmem_max`
/// (`SO_RCVBUFFORCE`/`SO_SNDBUFFORCE`, which `CAP_NET_ADMIN` allows; a
/// 64 KB super-packet takes a third of the default 208 KB), or as close as
/// the limits let the plain option go.
pub fn buffer_size(sock: &Socket, force: libc::c_int, bytes: usize) {
    if set_int(sock, libc::SOL_SOCKET, force, bytes as libc::c_int).is_ok() {
        return;
    }
    let _ = if force == libc::SO_RCVBUFFORCE {
        sock.set_recv_buffer_size(bytes)
    } else {
        sock.set_send_buffer_size(bytes)
    };
}

/// Binds an `AF_PACKET` socket to interface `ifindex` for EtherType
/// `protocol` (0: none, the socket receives nothing).
pub fn bind_packet(sock: &Socket, ifindex: u32, protocol: u16) -> io::Result<()> {
    // SAFETY: sockaddr_ll is plain data; all-zero is a valid starting value.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_protocol = protocol.to_be();
    sll.sll_ifindex = ifindex as i32;
    // SAFETY: the address is a fully initialised sockaddr_ll with its size.
    let r = unsafe {
        libc::bind(
            sock.as_raw_fd(),
            &sll as *const libc::sockaddr_ll as *const libc::sockaddr,
            size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
