//! The one eBPF program podwire loads, built here as data (no compiler at
//! build time, no object file), and the two `bpf()` calls that load it and
//! attach it to a device's TCX ingress hook.
//!
//! The program re-tags IPIP super-packets: a TCP/IPv4 super-packet written
//! into a TUN with a virtio header is, to the kernel, a plain TCP
//! super-packet (virtio has no GSO type for IP-in-IP), and cutting it would
//! cut the outer packet as if it were the TCP one. The program takes the
//! inner IPv4 header out and puts it back with `bpf_skb_adjust_room`'s
//! `BPF_F_ADJ_ROOM_ENCAP_L3_IPV4`, which marks the packet as IPv4-in-IPv4
//! (`SKB_GSO_IPXIP4`, its inner headers set): the kernel then cuts it into
//! IPIP segments, each with its own outer and inner headers, as Linux's own
//! `tunl0` would send them. The segment size is kept
//! (`BPF_F_ADJ_ROOM_FIXED_GSO`). Anything else passes untouched.

use std::ffi::CString;
use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

/// One eBPF instruction (`struct bpf_insn`), as the kernel reads it on a
/// little-endian machine: opcode, destination and source registers,
/// offset, immediate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insn {
    pub code: u8,
    pub dst: u8,
    pub src: u8,
    pub off: i16,
    pub imm: i32,
}

impl Insn {
    /// The 8 bytes of the instruction.
    pub fn to_bytes(self) -> [u8; 8] {
        let mut b = [0u8; 8];
        b[0] = self.code;
        b[1] = (self.src << 4) | (self.dst & 0x0f);
        b[2..4].copy_from_slice(&self.off.to_le_bytes());
        b[4..8].copy_from_slice(&self.imm.to_le_bytes());
        b
    }
}

// Opcodes (linux/bpf.h, linux/bpf_common.h).
pub const MOV64_X: u8 = 0xbf; // BPF_ALU64 | BPF_MOV | BPF_X
pub const MOV64_K: u8 = 0xb7; // BPF_ALU64 | BPF_MOV | BPF_K
pub const ADD64_K: u8 = 0x07; // BPF_ALU64 | BPF_ADD | BPF_K
pub const LDX_W: u8 = 0x61; // BPF_LDX | BPF_MEM | BPF_W
pub const LDX_B: u8 = 0x71; // BPF_LDX | BPF_MEM | BPF_B
pub const JEQ_K: u8 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
pub const JNE_K: u8 = 0x55; // BPF_JMP | BPF_JNE | BPF_K
pub const CALL: u8 = 0x85; // BPF_JMP | BPF_CALL
pub const EXIT: u8 = 0x95; // BPF_JMP | BPF_EXIT

// Helpers (enum bpf_func_id).
pub const SKB_STORE_BYTES: i32 = 9;
pub const SKB_LOAD_BYTES: i32 = 26;
pub const SKB_ADJUST_ROOM: i32 = 50;

/// `offsetof(struct __sk_buff, gso_size)`.
pub const SKB_GSO_SIZE: i16 = 176;
/// `BPF_F_ADJ_ROOM_FIXED_GSO`.
pub const ADJ_ROOM_FIXED_GSO: i32 = 1;
/// `BPF_F_ADJ_ROOM_ENCAP_L3_IPV4`.
pub const ADJ_ROOM_ENCAP_L3_IPV4: i32 = 2;
/// TCX verdicts.
pub const TCX_PASS: i32 = 0;
pub const TCX_DROP: i32 = 2;

/// Register 10 is the read-only frame pointer; 1–5 carry a call's
/// arguments, 0 its result.
const FP: u8 = 10;

const fn mov_x(dst: u8, src: u8) -> Insn {
    Insn {
        code: MOV64_X,
        dst,
        src,
        off: 0,
        imm: 0,
    }
}

const fn mov_k(dst: u8, imm: i32) -> Insn {
    Insn {
        code: MOV64_K,
        dst,
        src: 0,
        off: 0,
        imm,
    }
}

const fn add_k(dst: u8, imm: i32) -> Insn {
    Insn {
        code: ADD64_K,
        dst,
        src: 0,
        off: 0,
        imm,
    }
}

const fn ldx(code: u8, dst: u8, src: u8, off: i16) -> Insn {
    Insn {
        code,
        dst,
        src,
        off,
        imm: 0,
    }
}

const fn jmp_k(code: u8, dst: u8, imm: i32, off: i16) -> Insn {
    Insn {
        code,
        dst,
        src: 0,
        off,
        imm,
    }
}

const fn call(helper: i32) -> Insn {
    Insn {
        code: CALL,
        dst: 0,
        src: 0,
        off: 0,
        imm: helper,
    }
}

const EXIT_INSN: Insn = Insn {
    code: EXIT,
    dst: 0,
    src: 0,
    off: 0,
    imm: 0,
};

/// The IPIP re-tag program (see the module's text). The skb's data starts
/// at the outer IPv4 header (a TUN has no link-layer header). In order:
/// not a super-packet (`gso_size` 0): pass; copy the first 40 bytes to the
/// stack; not outer IPv4 without options carrying protocol 4 around an
/// inner IPv4 header without options: pass; shrink the room after the
/// outer header by 20 (the inner header goes), grow it by 20 as an L3
/// IPv4 encapsulation, write the inner header back; any helper failing:
/// drop (the packet could no longer be what was written).
pub fn ipip_retag() -> Vec<Insn> {
    // Jump offsets count from the next instruction; `PASS` and `DROP` are
    // the indices of the two exits, checked by the tests.
    const PASS: i16 = 36;
    const DROP: i16 = 38;
    let to = |at: i16, target: i16| target - at - 1;
    vec![
        /* 0 */ mov_x(6, 1),
        /* 1 */ ldx(LDX_W, 2, 6, SKB_GSO_SIZE),
        /* 2 */ jmp_k(JEQ_K, 2, 0, to(2, PASS)),
        /* 3 */ mov_x(1, 6),
        /* 4 */ mov_k(2, 0),
        /* 5 */ mov_x(3, FP),
        /* 6 */ add_k(3, -40),
        /* 7 */ mov_k(4, 40),
        /* 8 */ call(SKB_LOAD_BYTES),
        /* 9 */ jmp_k(JNE_K, 0, 0, to(9, PASS)),
        /* 10 */ ldx(LDX_B, 1, FP, -40),
        /* 11 */ jmp_k(JNE_K, 1, 0x45, to(11, PASS)),
        /* 12 */ ldx(LDX_B, 1, FP, -40 + 9),
        /* 13 */ jmp_k(JNE_K, 1, 4, to(13, PASS)),
        /* 14 */ ldx(LDX_B, 1, FP, -20),
        /* 15 */ jmp_k(JNE_K, 1, 0x45, to(15, PASS)),
        /* 16 */ mov_x(1, 6),
        /* 17 */ mov_k(2, -20),
        /* 18 */ mov_k(3, 0), // BPF_ADJ_ROOM_NET
        /* 19 */ mov_k(4, ADJ_ROOM_FIXED_GSO),
        /* 20 */ call(SKB_ADJUST_ROOM),
        /* 21 */ jmp_k(JNE_K, 0, 0, to(21, DROP)),
        /* 22 */ mov_x(1, 6),
        /* 23 */ mov_k(2, 20),
        /* 24 */ mov_k(3, 0),
        /* 25 */ mov_k(4, ADJ_ROOM_FIXED_GSO | ADJ_ROOM_ENCAP_L3_IPV4),
        /* 26 */ call(SKB_ADJUST_ROOM),
        /* 27 */ jmp_k(JNE_K, 0, 0, to(27, DROP)),
        /* 28 */ mov_x(1, 6),
        /* 29 */ mov_k(2, 20),
        /* 30 */ mov_x(3, FP),
        /* 31 */ add_k(3, -20),
        /* 32 */ mov_k(4, 20),
        /* 33 */ mov_k(5, 0),
        /* 34 */ call(SKB_STORE_BYTES),
        /* 35 */ jmp_k(JNE_K, 0, 0, to(35, DROP)),
        /* 36 */ mov_k(0, TCX_PASS),
        /* 37 */ EXIT_INSN,
        /* 38 */ mov_k(0, TCX_DROP),
        /* 39 */ EXIT_INSN,
    ]
}

/// `bpf()` commands and types.
const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_LINK_CREATE: libc::c_long = 28;
const BPF_PROG_TYPE_SCHED_CLS: u32 = 3;
/// `BPF_TCX_INGRESS` (Linux 6.6).
const BPF_TCX_INGRESS: u32 = 46;
/// Room for the fields podwire sets of `union bpf_attr` (the kernel takes
/// a shorter union than its own, and a longer one whose tail is zero).
const ATTR_LEN: usize = 128;

fn bpf(cmd: libc::c_long, attr: &mut [u8; ATTR_LEN]) -> io::Result<RawFd> {
    // SAFETY: `attr` is a valid, writable buffer of ATTR_LEN bytes laid out
    // as the fields of `union bpf_attr` this command reads (the rest zero),
    // alive for the call; pointers inside it point at live buffers of the
    // caller.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr.as_mut_ptr() as *mut libc::c_void,
            ATTR_LEN as libc::c_uint,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(r as RawFd)
}

fn put_u32(attr: &mut [u8; ATTR_LEN], at: usize, v: u32) {
    attr[at..at + 4].copy_from_slice(&v.to_ne_bytes());
}

fn put_u64(attr: &mut [u8; ATTR_LEN], at: usize, v: u64) {
    attr[at..at + 8].copy_from_slice(&v.to_ne_bytes());
}

/// Loads `prog` as a TCX ingress classifier named `name`; the verifier's
/// log comes back in the error when the kernel refuses it.
pub fn load_tcx_ingress(prog: &[Insn], name: &str) -> io::Result<OwnedFd> {
    let bytes: Vec<u8> = prog.iter().flat_map(|i| i.to_bytes()).collect();
    let license = CString::new("Apache-2.0").map_err(io::Error::other)?;
    let mut log = vec![0u8; 64 * 1024];
    let mut load = |with_log: bool| {
        let mut attr = [0u8; ATTR_LEN];
        put_u32(&mut attr, 0, BPF_PROG_TYPE_SCHED_CLS);
        put_u32(&mut attr, 4, prog.len() as u32);
        put_u64(&mut attr, 8, bytes.as_ptr() as u64);
        put_u64(&mut attr, 16, license.as_ptr() as u64);
        if with_log {
            put_u32(&mut attr, 24, 1);
            put_u32(&mut attr, 28, log.len() as u32);
            put_u64(&mut attr, 32, log.as_mut_ptr() as u64);
        }
        for (d, s) in attr[48..63].iter_mut().zip(name.bytes()) {
            *d = s;
        }
        put_u32(&mut attr, 68, BPF_TCX_INGRESS);
        bpf(BPF_PROG_LOAD, &mut attr)
    };
    match load(false) {
        Ok(fd) => {
            // SAFETY: the kernel returned a new descriptor that nothing else owns.
            Ok(unsafe { OwnedFd::from_raw_fd(fd) })
        }
        Err(e) => {
            // Again with the verifier's log, for the error.
            let _ = load(true);
            let end = log.iter().position(|b| *b == 0).unwrap_or(log.len());
            let text = String::from_utf8_lossy(&log[..end]);
            let last: Vec<&str> = text.lines().rev().take(3).collect();
            Err(io::Error::new(
                e.kind(),
                format!(
                    "{e}; verifier: {}",
                    last.into_iter().rev().collect::<Vec<_>>().join(" | ")
                ),
            ))
        }
    }
}

/// Attaches `prog` to the TCX ingress hook of interface `ifindex`; the
/// program stays attached while the returned link is open.
pub fn attach_tcx_ingress(prog: &OwnedFd, ifindex: u32) -> io::Result<OwnedFd> {
    use std::os::fd::AsRawFd;
    let mut attr = [0u8; ATTR_LEN];
    put_u32(&mut attr, 0, prog.as_raw_fd() as u32);
    put_u32(&mut attr, 4, ifindex);
    put_u32(&mut attr, 8, BPF_TCX_INGRESS);
    let fd = bpf(BPF_LINK_CREATE, &mut attr)?;
    // SAFETY: the kernel returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instructions_encode_as_the_kernel_reads_them() {
        // r3 += -40: BPF_ALU64|BPF_ADD|BPF_K, dst r3, imm -40 (LE).
        assert_eq!(
            add_k(3, -40).to_bytes(),
            [0x07, 0x03, 0, 0, 0xd8, 0xff, 0xff, 0xff]
        );
        // r1 = *(u8 *)(r10 - 31): src r10 in the high nibble.
        assert_eq!(
            ldx(LDX_B, 1, FP, -31).to_bytes(),
            [0x71, 0xa1, 0xe1, 0xff, 0, 0, 0, 0]
        );
        assert_eq!(
            call(SKB_ADJUST_ROOM).to_bytes(),
            [0x85, 0, 0, 0, 50, 0, 0, 0]
        );
    }

    #[test]
    fn every_jump_of_the_retag_program_lands_on_an_exit_path() {
        let p = ipip_retag();
        // The two exits return pass and drop.
        assert_eq!((p[36], p[37]), (mov_k(0, TCX_PASS), EXIT_INSN));
        assert_eq!((p[38], p[39]), (mov_k(0, TCX_DROP), EXIT_INSN));
        for (i, insn) in p.iter().enumerate() {
            if matches!(insn.code, JEQ_K | JNE_K) {
                let target = i as i64 + 1 + i64::from(insn.off);
                // Before a helper call has changed the packet: pass; after: drop.
                let want = if i < 20 { 36 } else { 38 };
                assert_eq!(target, want, "jump at {i}");
            }
        }
        // The helpers in order: load, shrink, grow (encap), store.
        let calls: Vec<i32> = p.iter().filter(|i| i.code == CALL).map(|i| i.imm).collect();
        assert_eq!(
            calls,
            [
                SKB_LOAD_BYTES,
                SKB_ADJUST_ROOM,
                SKB_ADJUST_ROOM,
                SKB_STORE_BYTES
            ]
        );
        // Shrink by 20 then grow by 20 as IPv4-in-IPv4, segment size kept.
        assert_eq!((p[17].imm, p[19].imm), (-20, ADJ_ROOM_FIXED_GSO));
        assert_eq!((p[23].imm, p[25].imm), (20, 3));
    }
}
