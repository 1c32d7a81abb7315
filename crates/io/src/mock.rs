//! Backends for tests that need no root: every [`RxBatch`], [`TxBatch`] and
//! [`PacketQueue`] here is one end of a Unix datagram socket pair, so a
//! worker polls it with mio like a real socket, and the test holds the other
//! end ([`Wire`]) to put packets in and take them out.
//!
//! A datagram between the ends carries an address and a TOS in front of the
//! packet: `[IPv4 address: 4][TOS: 1][packet]` — the source of what a
//! [`MockRx`] receives, the destination of what a [`MockTx`] sends (TOS 0).
//! A [`MockQueue`] (an endpoint device without offloads) carries bare
//! packets.

use std::io::{self, IoSlice};
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixDatagram;
use std::time::Duration;

use crate::batch::{Received, RxBatch, SendReport, TxBatch};
use crate::tun::Location;

/// The test's end of a mock backend.
#[derive(Debug)]
pub struct Wire(UnixDatagram);

/// Bytes of the address and TOS in front of a packet.
const META: usize = 5;

fn pair() -> io::Result<(UnixDatagram, UnixDatagram)> {
    let (a, b) = UnixDatagram::pair()?;
    a.set_nonblocking(true)?;
    Ok((a, b))
}

impl Wire {
    /// Puts `packet` in for a [`MockRx`], from `src` with outer TOS `tos`.
    pub fn put(&self, src: Ipv4Addr, tos: u8, packet: &[u8]) -> io::Result<()> {
        let mut d = Vec::with_capacity(META + packet.len());
        d.extend_from_slice(&src.octets());
        d.push(tos);
        d.extend_from_slice(packet);
        self.0.send(&d).map(|_| ())
    }

    /// Puts a bare packet in (for a [`MockQueue`]).
    pub fn put_packet(&self, packet: &[u8]) -> io::Result<()> {
        self.0.send(packet).map(|_| ())
    }

    /// Takes the next datagram out, waiting up to `timeout`.
    pub fn take(&self, timeout: Duration) -> Option<Vec<u8>> {
        self.0.set_read_timeout(Some(timeout)).ok()?;
        let mut buf = vec![0u8; 70_000];
        let n = self.0.recv(&mut buf).ok()?;
        buf.truncate(n);
        Some(buf)
    }

    /// Takes the next packet a [`MockTx`] sent, with its destination.
    pub fn take_sent(&self, timeout: Duration) -> Option<(Ipv4Addr, Vec<u8>)> {
        let d = self.take(timeout)?;
        let dst = Ipv4Addr::new(d[0], d[1], d[2], d[3]);
        Some((dst, d.get(META..)?.to_vec()))
    }
}

/// Receives what the test [`Wire::put`]s, a datagram at a time.
#[derive(Debug)]
pub struct MockRx {
    sock: UnixDatagram,
    buf: Vec<u8>,
}

/// A receiving mock and the test's end.
pub fn rx() -> io::Result<(MockRx, Wire)> {
    let (ours, theirs) = pair()?;
    Ok((
        MockRx {
            sock: ours,
            buf: vec![0u8; 70_000],
        },
        Wire(theirs),
    ))
}

impl RxBatch for MockRx {
    fn recv_batch(
        &mut self,
        bufs: &mut dyn Iterator<Item = &mut [u8]>,
        out: &mut [Received],
    ) -> io::Result<usize> {
        let mut n = 0;
        for (buf, slot) in bufs.zip(out.iter_mut()) {
            let len = match self.sock.recv(&mut self.buf) {
                Ok(len) => len,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock && n > 0 => break,
                Err(e) => return Err(e),
            };
            let Some(packet) = self.buf.get(META..len) else {
                continue;
            };
            let k = packet.len().min(buf.len());
            buf[..k].copy_from_slice(&packet[..k]);
            *slot = Received {
                len: k,
                src: Ipv4Addr::new(self.buf[0], self.buf[1], self.buf[2], self.buf[3]),
                tos: self.buf[4],
                segment: 0,
            };
            n += 1;
        }
        Ok(n)
    }
}

impl AsRawFd for MockRx {
    fn as_raw_fd(&self) -> RawFd {
        self.sock.as_raw_fd()
    }
}

/// Sends to the test's end, each packet after its destination.
#[derive(Debug)]
pub struct MockTx {
    sock: UnixDatagram,
    buf: Vec<u8>,
}

/// A sending mock and the test's end.
pub fn tx() -> io::Result<(MockTx, Wire)> {
    let (ours, theirs) = pair()?;
    Ok((
        MockTx {
            sock: ours,
            buf: Vec::with_capacity(70_000),
        },
        Wire(theirs),
    ))
}

impl TxBatch for MockTx {
    fn send_batch(&mut self, packets: &mut dyn Iterator<Item = (&[u8], Ipv4Addr)>) -> SendReport {
        let mut report = SendReport::default();
        for (p, dst) in packets {
            self.buf.clear();
            self.buf.extend_from_slice(&dst.octets());
            self.buf.push(0);
            self.buf.extend_from_slice(p);
            report.syscalls += 1;
            match self.sock.send(&self.buf) {
                Ok(_) => report.sent += 1,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => report.full += 1,
                Err(e) => {
                    report.failed += 1;
                    report.last_error = e.raw_os_error();
                }
            }
        }
        report
    }
}

/// An endpoint device's queue without offloads: bare packets both ways.
#[derive(Debug)]
pub struct MockQueue {
    sock: UnixDatagram,
}

/// An endpoint queue and the test's end (the pod's side).
pub fn queue() -> io::Result<(MockQueue, Wire)> {
    let (ours, theirs) = pair()?;
    Ok((MockQueue { sock: ours }, Wire(theirs)))
}

impl crate::batch::PacketQueue for MockQueue {
    fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.sock.recv(buf)
    }
    fn send(&self, packet: &[u8]) -> io::Result<usize> {
        self.sock.send(packet)
    }
    fn send_vectored(&self, parts: &[IoSlice<'_>]) -> io::Result<usize> {
        let joined: Vec<u8> = parts.iter().flat_map(|p| p.iter().copied()).collect();
        self.sock.send(&joined)
    }
    fn offload(&self) -> bool {
        false
    }
    fn set_persist(&self, _on: bool) -> io::Result<()> {
        Ok(())
    }
    fn location(&self) -> io::Result<Location> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "a mock queue is in no namespace",
        ))
    }
}

impl AsRawFd for MockQueue {
    fn as_raw_fd(&self) -> RawFd {
        self.sock.as_raw_fd()
    }
}
