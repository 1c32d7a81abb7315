//! Preallocated `mmsghdr` arrays for `sendmmsg` and `recvmmsg`: the kernel
//! structures live here, built once, and point at the caller's buffers only
//! for the duration of one call. This is the one type whose raw pointers
//! make it `!Send` by default; it is sound to send because they dangle,
//! unused, between calls.

use std::io;
use std::mem::size_of;
use std::net::Ipv4Addr;
use std::os::fd::RawFd;

use super::sockopt::sockaddr_v4;

/// Control buffer of one message: 64 bytes, 8-byte aligned.
pub type Control = [u64; 8];

/// `n` messages, each with one iovec, an IPv4 address and a control buffer.
#[derive(Debug)]
pub struct Msgs {
    pub hdrs: Vec<libc::mmsghdr>,
    pub iovs: Vec<libc::iovec>,
    pub addrs: Vec<libc::sockaddr_in>,
    pub controls: Vec<Control>,
}

// SAFETY: the pointers inside the headers are only set, and only read by
// the kernel, during one call that borrows the data they point at; between
// calls they are dangling and never dereferenced.
unsafe impl Send for Msgs {}

/// An all-zero `mmsghdr`.
pub fn zeroed() -> libc::mmsghdr {
    // SAFETY: mmsghdr is a plain C struct of integers and pointers, for which
    // all-zero bytes (null pointers, zero lengths) is a valid value.
    unsafe { std::mem::zeroed() }
}

/// What one `sendmmsg` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sent {
    /// This many messages went.
    Some(usize),
    /// Nothing went: the call was interrupted.
    Interrupted,
    /// Nothing went: this error.
    Failed(i32),
}

impl Msgs {
    /// `n` messages and `iovs` iovecs.
    pub fn new(n: usize, iovs: usize) -> Msgs {
        Msgs {
            hdrs: (0..n).map(|_| zeroed()).collect(),
            iovs: vec![
                libc::iovec {
                    iov_base: std::ptr::null_mut(),
                    iov_len: 0
                };
                iovs
            ],
            addrs: vec![sockaddr_v4(Ipv4Addr::UNSPECIFIED, 0); n],
            controls: vec![[0u64; 8]; n],
        }
    }

    /// Points iovec `i` at `data` (read by the kernel).
    pub fn set_iov(&mut self, i: usize, data: &[u8]) {
        self.iovs[i] = libc::iovec {
            iov_base: data.as_ptr() as *mut libc::c_void,
            iov_len: data.len(),
        };
    }

    /// Points iovec `i` at `buf` (written by the kernel).
    pub fn set_iov_mut(&mut self, i: usize, buf: &mut [u8]) {
        self.iovs[i] = libc::iovec {
            iov_base: buf.as_mut_ptr() as *mut libc::c_void,
            iov_len: buf.len(),
        };
    }

    /// Makes header `i` one message of iovecs `iov..iov + count`, to or
    /// from address `i` when `addressed`, with `control` bytes of control
    /// buffer `i` (0: none).
    pub fn set_msg(&mut self, i: usize, iov: usize, count: usize, addressed: bool, control: usize) {
        let h = &mut self.hdrs[i].msg_hdr;
        if addressed {
            h.msg_name = &mut self.addrs[i] as *mut libc::sockaddr_in as *mut libc::c_void;
            h.msg_namelen = size_of::<libc::sockaddr_in>() as libc::socklen_t;
        } else {
            h.msg_name = std::ptr::null_mut();
            h.msg_namelen = 0;
        }
        h.msg_iov = self.iovs[iov..].as_mut_ptr();
        h.msg_iovlen = count as _;
        if control > 0 {
            h.msg_control = self.controls[i].as_mut_ptr() as *mut libc::c_void;
            h.msg_controllen = control as _;
        } else {
            h.msg_control = std::ptr::null_mut();
            h.msg_controllen = 0;
        }
        h.msg_flags = 0;
        self.hdrs[i].msg_len = 0;
    }

    /// `sendmmsg` of headers `from..to`, which must have been set with
    /// [`Msgs::set_msg`] over data borrowed for this call.
    pub fn send(&mut self, fd: RawFd, from: usize, to: usize) -> Sent {
        // SAFETY: hdrs[from..to] point at iovecs, addresses and control
        // buffers in this struct, and the iovecs at data the caller borrows
        // for this whole call; the kernel reads at most to - from headers.
        let r = unsafe {
            libc::sendmmsg(
                fd,
                self.hdrs[from..].as_mut_ptr(),
                (to - from) as libc::c_uint,
                0,
            )
        };
        if r > 0 {
            return Sent::Some(r as usize);
        }
        let err = io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::EINTR) => Sent::Interrupted,
            code => Sent::Failed(code.unwrap_or(libc::EIO)),
        }
    }

    /// `recvmmsg` (non-blocking) into the first `n` headers, set with
    /// [`Msgs::set_msg`] over buffers borrowed for this call; retries when
    /// interrupted. Returns how many messages arrived.
    pub fn recv(&mut self, fd: RawFd, n: usize) -> io::Result<usize> {
        loop {
            // SAFETY: hdrs[..n] point at iovecs over buffers the caller
            // borrows for this call, and at address and control buffers
            // owned by self, with their true lengths; the kernel writes at
            // most n messages.
            let r = unsafe {
                libc::recvmmsg(
                    fd,
                    self.hdrs.as_mut_ptr(),
                    n as libc::c_uint,
                    libc::MSG_DONTWAIT,
                    std::ptr::null_mut(),
                )
            };
            if r >= 0 {
                return Ok(r as usize);
            }
            let err = io::Error::last_os_error();
            if err.kind() != io::ErrorKind::Interrupted {
                return Err(err);
            }
        }
    }

    /// The source address of received message `i`.
    pub fn source(&self, i: usize) -> Ipv4Addr {
        Ipv4Addr::from(u32::from_be(self.addrs[i].sin_addr.s_addr))
    }
}

/// Sends each `(packet, destination)` through `fd` with as few `sendmmsg`
/// calls as the kernel allows, [`BATCH`](crate::batch::BATCH) at a time,
/// addressing each when `addressed` (IP sockets; a bound packet socket is
/// not). A full buffer ends the batch; a refused packet is skipped.
pub fn send_all(
    fd: RawFd,
    msgs: &mut Msgs,
    packets: &mut dyn Iterator<Item = (&[u8], Ipv4Addr)>,
    addressed: bool,
) -> crate::batch::SendReport {
    let mut report = crate::batch::SendReport::default();
    let batch = msgs.hdrs.len();
    let mut packets = packets.peekable();
    while packets.peek().is_some() {
        let mut n = 0;
        for (data, dst) in packets.by_ref().take(batch) {
            msgs.set_iov(n, data);
            msgs.addrs[n] = sockaddr_v4(dst, 0);
            n += 1;
        }
        for i in 0..n {
            msgs.set_msg(i, i, 1, addressed, 0);
        }
        let mut done = 0;
        while done < n {
            report.syscalls += 1;
            match msgs.send(fd, done, n) {
                Sent::Some(k) => {
                    done += k;
                    report.sent += k;
                }
                Sent::Interrupted => {}
                Sent::Failed(libc::EAGAIN) | Sent::Failed(libc::ENOBUFS) => {
                    report.full += n - done;
                    done = n;
                }
                Sent::Failed(code) => {
                    // The first remaining packet was refused: skip it.
                    report.failed += 1;
                    report.last_error = Some(code);
                    done += 1;
                }
            }
        }
    }
    report
}

/// Receives into `bufs` (at most as many as there are headers and `out`
/// slots) through `fd`; fills `out` and returns how many arrived, with the
/// TOS and `UDP_GRO` size when `control`. `WouldBlock` when none waits.
pub fn recv_all(
    fd: RawFd,
    msgs: &mut Msgs,
    bufs: &mut dyn Iterator<Item = &mut [u8]>,
    out: &mut [crate::batch::Received],
    control: bool,
) -> io::Result<usize> {
    let mut n = 0;
    for buf in bufs.take(msgs.hdrs.len().min(out.len())) {
        msgs.set_iov_mut(n, buf);
        n += 1;
    }
    if n == 0 {
        return Ok(0);
    }
    let space = if control { size_of::<Control>() } else { 0 };
    for i in 0..n {
        msgs.set_msg(i, i, 1, true, space);
    }
    let r = msgs.recv(fd, n)?;
    for (i, slot) in out.iter_mut().enumerate().take(r) {
        let (tos, segment) = if control {
            super::cmsg::read_tos_gro(&msgs.hdrs[i].msg_hdr)
        } else {
            (0, 0)
        };
        *slot = crate::batch::Received {
            len: msgs.hdrs[i].msg_len as usize,
            src: msgs.source(i),
            tos,
            segment,
        };
    }
    Ok(r)
}
