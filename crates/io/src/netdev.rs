//! Facts about network devices in the current network namespace.
//!
//! `getifaddrs(3)` is the one libc call here: it returns a linked list the
//! C library allocated, which is read and then freed exactly once.

use std::ffi::CStr;
use std::io;
use std::net::Ipv4Addr;

/// The name of the interface that holds `ip`, if any.
pub fn interface_with_addr(ip: Ipv4Addr) -> io::Result<Option<String>> {
    let mut list: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: `list` is a valid place for getifaddrs to store the head of the
    // list it allocates; on success we free it with freeifaddrs below.
    if unsafe { libc::getifaddrs(&mut list) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let mut found = None;
    let mut cur = list;
    while !cur.is_null() {
        // SAFETY: `cur` is a non-null node of the list getifaddrs returned,
        // which stays valid until freeifaddrs.
        let ifa = unsafe { &*cur };
        cur = ifa.ifa_next;
        if ifa.ifa_addr.is_null() || ifa.ifa_name.is_null() {
            continue;
        }
        // SAFETY: a non-null ifa_addr points to a sockaddr, whose family
        // field may be read whatever the concrete type.
        let family = unsafe { (*ifa.ifa_addr).sa_family };
        if i32::from(family) != libc::AF_INET {
            continue;
        }
        // SAFETY: family AF_INET means ifa_addr points to a sockaddr_in.
        let sin = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in) };
        if Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)) == ip {
            // SAFETY: ifa_name is a non-null NUL-terminated string owned by the list.
            let name = unsafe { CStr::from_ptr(ifa.ifa_name) };
            found = Some(name.to_string_lossy().into_owned());
            break;
        }
    }
    // SAFETY: `list` came from a successful getifaddrs and is freed once;
    // no reference into it outlives this call.
    unsafe { libc::freeifaddrs(list) };
    Ok(found)
}

/// The MTU of interface `name`, from sysfs.
pub fn mtu(name: &str) -> io::Result<u16> {
    if name.is_empty() || name.contains('/') || name == "." || name == ".." {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not an interface name",
        ));
    }
    let text = std::fs::read_to_string(format!("/sys/class/net/{name}/mtu"))?;
    text.trim()
        .parse::<u32>()
        .map(|m| m.min(u32::from(u16::MAX)) as u16)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// True when the effective user is root.
pub fn running_as_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

fn sysfs(name: &str, attr: &str) -> io::Result<String> {
    if name.is_empty() || name.contains('/') || name == "." || name == ".." {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not an interface name",
        ));
    }
    Ok(
        std::fs::read_to_string(format!("/sys/class/net/{name}/{attr}"))?
            .trim()
            .to_string(),
    )
}

/// The interface index of `name`, in the calling thread's network
/// namespace (sysfs shows the namespace it was mounted in).
pub fn ifindex(name: &str) -> io::Result<u32> {
    let c = std::ffi::CString::new(name).map_err(io::Error::other)?;
    // SAFETY: `c` is a valid NUL-terminated string alive for the call.
    match unsafe { libc::if_nametoindex(c.as_ptr()) } {
        0 => Err(io::Error::last_os_error()),
        i => Ok(i),
    }
}

/// The MAC address of `name`.
pub fn mac(name: &str) -> io::Result<podwire_wire::MacAddr> {
    sysfs(name, "address")?
        .parse()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_is_found_with_its_mtu() {
        assert_eq!(
            interface_with_addr(Ipv4Addr::LOCALHOST).unwrap().as_deref(),
            Some("lo")
        );
        assert!(mtu("lo").unwrap() >= 1500);
        assert!(mtu("../etc").is_err());
        assert_eq!(
            interface_with_addr(Ipv4Addr::new(203, 0, 113, 77)).unwrap(),
            None
        );
    }
}
