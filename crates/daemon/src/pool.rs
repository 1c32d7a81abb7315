//! A worker's packet buffers: one pool, allocated once, each buffer with
//! [`HEADROOM`] in front of the packet for the headers the pipeline writes.
//! The packet path refers to bytes by [`Slot`] (a buffer and a range in it),
//! so what is queued for sending is never copied.

use podwire::pipeline::HEADROOM;
use podwire_wire::vnet;
use podwire_wire::vxlan::ETH_LEN;

/// The largest packet a buffer holds after its headroom.
pub const MAX_PACKET: usize = 65_535;

/// Bytes of one buffer: the headroom, room for a virtio header and an
/// Ethernet header in front of a whole frame, and the largest packet.
const BUF_LEN: usize = HEADROOM + vnet::LEN + ETH_LEN + MAX_PACKET;

/// A range of bytes in one buffer of the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot {
    pub buf: usize,
    pub start: usize,
    pub end: usize,
}

impl Slot {
    pub fn len(&self) -> usize {
        self.end - self.start
    }
}

/// Receive buffers first, then buffers for fragments.
pub struct Pool {
    bufs: Vec<Box<[u8]>>,
    rx: usize,
    frags_used: usize,
}

impl Pool {
    /// `rx` receive buffers and `frags` buffers for fragments.
    pub fn new(rx: usize, frags: usize) -> Pool {
        Pool {
            bufs: (0..rx + frags)
                .map(|_| vec![0u8; BUF_LEN].into_boxed_slice())
                .collect(),
            rx,
            frags_used: 0,
        }
    }

    /// How many receive buffers there are.
    pub fn rx_len(&self) -> usize {
        self.rx
    }

    /// Buffer `i`, whole.
    #[inline]
    pub fn buf(&mut self, i: usize) -> &mut [u8] {
        &mut self.bufs[i]
    }

    /// The bytes of `s`.
    #[inline]
    pub fn bytes(&self, s: &Slot) -> &[u8] {
        &self.bufs[s.buf][s.start..s.end]
    }

    /// The bytes of `s`, to change.
    #[inline]
    pub fn bytes_mut(&mut self, s: &Slot) -> &mut [u8] {
        &mut self.bufs[s.buf][s.start..s.end]
    }

    /// Receive buffer `i` and the receive buffers after it (where a
    /// super-packet read into `i` is cut).
    pub fn split_at(&mut self, i: usize) -> (&mut [u8], &mut [Box<[u8]>]) {
        let (a, b) = self.bufs[..self.rx].split_at_mut(i + 1);
        (&mut a[i], b)
    }

    /// The first `n` receive buffers after their headroom (for a batched receive).
    pub fn rx_bufs(&mut self, n: usize) -> impl Iterator<Item = &mut [u8]> {
        self.bufs[..self.rx.min(n)]
            .iter_mut()
            .map(|b| &mut b[HEADROOM..])
    }

    /// A free buffer for a fragment, or `None` when all are queued (flush
    /// and [`Pool::release_frags`] first).
    pub fn take_frag(&mut self) -> Option<usize> {
        let i = self.rx + self.frags_used;
        (i < self.bufs.len()).then(|| {
            self.frags_used += 1;
            i
        })
    }

    /// Every fragment buffer is free again (after a flush).
    pub fn release_frags(&mut self) {
        self.frags_used = 0;
    }

    /// Receive buffer `i` and a fragment buffer `f`, at once.
    pub fn pair(&mut self, i: usize, f: usize) -> (&[u8], &mut [u8]) {
        debug_assert!(i < self.rx && f >= self.rx);
        let (a, b) = self.bufs.split_at_mut(self.rx);
        (&a[i], &mut b[f - self.rx])
    }
}
