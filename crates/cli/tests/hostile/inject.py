"""Hostile packets for tests/hostile.rs, one kind at a time.

    inject.py underlay MODE IFACE NODE_MAC OWN_MAC VTEP_MAC
    inject.py pod MODE IFACE

Reads a kind's name per line on stdin, sends that kind's packets and answers
`sent NAME COUNT` (or `error NAME ...`); `list` answers with every kind's name.

- underlay: runs in a "stranger" namespace on the underlay bridge and writes
  whole Ethernet frames to the node's MAC through an AF_PACKET socket, so
  that nothing in the sender's kernel fixes what the test broke. Most kinds
  come from the peer node's address (spoofed), so that they pass podwire's
  unknown-peer check and reach the deeper ones; MODE (ipip or vxlan) picks
  the encapsulation.
- pod: runs in a pod's namespace and writes IPv4 packets as they are to the
  pod's eth0 (the TUN device podwire reads) through an AF_PACKET socket: a
  raw IP socket would have the kernel fix the header checksum and length.

Packets that must reach the pod carry a marker (`H TAG LEN ` then a byte
pattern) to UDP port 7777, where listen.py checks them.
"""

import random
import socket
import struct
import sys

from scapy.all import ICMP, IP, UDP, IPv6, ICMPv6EchoRequest, Raw, conf

conf.verb = 0

ROLE, MODE, IFACE = sys.argv[1], sys.argv[2], sys.argv[3]
NODE, PEER, STRANGER = "192.168.33.55", "192.168.33.57", "192.168.33.99"
BROADCAST = "192.168.33.255"
POD, POD_B, REMOTE_POD = "10.2.36.68", "10.2.36.69", "10.2.169.138"
HOLE = "10.2.36.100"  # in k8s-node1's block, no workload has it
OUTSIDE = "198.51.100.1"  # TEST-NET-2, outside every pool
PORT = 7777
VXLAN_PORT = 4789
VNI = 4096
PEER_VTEP_MAC = "66:00:00:00:00:57"

if ROLE == "underlay":
    NODE_MAC, OWN_MAC, VTEP_MAC = sys.argv[4], sys.argv[5], sys.argv[6]


def mac(text):
    return bytes.fromhex(text.replace(":", ""))


SOCK = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
SOCK.bind((IFACE, 0))


def send_all(packets, dst_mac=None):
    """Sends IPv4 packets: framed for the underlay, or as they are on a TUN."""
    n = 0
    for p in packets:
        p = bytes(p)
        if ROLE == "underlay":
            frame = mac(dst_mac or NODE_MAC) + mac(OWN_MAC) + b"\x08\x00" + p
            SOCK.sendto(frame, (IFACE, 0x0800))
        else:
            SOCK.sendto(p, (IFACE, 0x0800))
        n += 1
    return n


# --- IPv4 header surgery -------------------------------------------------


def csum(b):
    if len(b) % 2:
        b = b + b"\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def fix(p):
    """Recomputes the header checksum of IPv4 packet p (a bytearray)."""
    hl = max((p[0] & 0xF) * 4, 20)
    p[10:12] = b"\0\0"
    p[10:12] = struct.pack("!H", csum(bytes(p[:hl])))
    return p


def set_total_length(p, n):
    struct.pack_into("!H", p, 2, n)
    return fix(p)


def with_options(p, opts):
    """Inserts raw option bytes (a multiple of 4) after a 20-byte header."""
    p = bytearray(p[:20]) + bytearray(opts) + bytearray(p[20:])
    p[0] = 0x40 | (5 + len(opts) // 4)
    return set_total_length(p, len(p))


def fragments(p, size, order=None):
    """RFC 791 fragmentation of packet p (no options) into `size`-byte pieces."""
    hl = (p[0] & 0xF) * 4
    data = bytes(p[hl:])
    out = []
    for off in range(0, len(data), size):
        chunk = data[off:off + size]
        h = bytearray(p[:hl])
        struct.pack_into("!H", h, 2, hl + len(chunk))
        more = 0x2000 if off + size < len(data) else 0
        struct.pack_into("!H", h, 6, more | (off // 8))
        out.append(fix(h + chunk))
    return out if order is None else [out[i] for i in order]


_ident = [0x4000]


def ident():
    _ident[0] += 1
    return _ident[0]


# --- inner packets -------------------------------------------------------


def pattern(n):
    return bytes(i & 0xFF for i in range(n))


def marker(tag, size, dst=POD, src=REMOTE_POD, **ip):
    """A UDP datagram to the listener: `size` bytes of payload, a pattern."""
    head = ("H %s %d " % (tag, size)).encode()
    body = head + pattern(size)[len(head):]
    assert len(body) == size, tag
    return bytearray(bytes(IP(src=src, dst=dst, id=ident(), **ip)
                           / UDP(sport=5555, dport=PORT) / Raw(body)))


def echo(dst=POD, src=REMOTE_POD, data=b"hostile", **ip):
    """A plain inner ICMP echo request (never answered: it is dropped)."""
    return bytearray(bytes(IP(src=src, dst=dst, id=ident(), **ip)
                           / ICMP(id=7, seq=1) / Raw(data)))


# --- encapsulation -------------------------------------------------------


def vxlan_header(vni=VNI, flags=0x08, reserved=b"\0\0\0", last=0):
    return bytes([flags]) + reserved + struct.pack("!I", vni)[1:] + bytes([last])


def ethernet(dst=None, src=PEER_VTEP_MAC, ethertype=0x0800):
    return mac(dst or VTEP_MAC) + mac(src) + struct.pack("!H", ethertype)


def udp_outer(payload, src=PEER, dst=NODE, checksum=None, **ip):
    u = UDP(sport=40000, dport=VXLAN_PORT)
    if checksum is not None:
        u.chksum = checksum
    return bytearray(bytes(IP(src=src, dst=dst, id=ident(), **ip) / u / Raw(payload)))


def encap(inner, src=PEER, dst=NODE, vxlan=None, eth=None, **ip):
    """The outer packet for this mode around inner bytes, from the peer."""
    inner = bytes(inner)
    if MODE == "ipip":
        return bytearray(bytes(IP(src=src, dst=dst, proto=4, id=ident(), **ip) / Raw(inner)))
    return udp_outer((vxlan or vxlan_header()) + (eth or ethernet()) + inner, src, dst, **ip)


def encap_payload(b):
    """The bytes after the outer IPv4 header: for VXLAN with a valid UDP
    header around b; for IPIP, b itself."""
    if MODE == "ipip":
        return bytearray(bytes(IP(src=PEER, dst=NODE, proto=4, id=ident()) / Raw(bytes(b))))
    return udp_outer(bytes(b))


def frame_for(inner):
    """The bytes of the encapsulation payload up to and including the inner packet."""
    if MODE == "ipip":
        return bytes(inner)
    return vxlan_header() + ethernet() + bytes(inner)


def flip(p, at, mask=0xFF):
    p = bytearray(p)
    p[at] ^= mask
    return p


def random_frames(seed, count, lo, hi, check=None):
    rng = random.Random(seed)
    out = []
    while len(out) < count:
        b = bytes(rng.randrange(256) for _ in range(rng.randrange(lo, hi)))
        if check is None or check(b):
            out.append(b)
    return out


# --- kinds ---------------------------------------------------------------

K = {}
TO_BROADCAST = {}


def kind(name, broadcast=False):
    def register(f):
        K[name] = f
        if broadcast:
            TO_BROADCAST[name] = True
        return f
    return register


HL = 20  # outer IPv4 header
ENCAP = 20 if MODE == "ipip" else 20 + 8 + 8 + 14  # outer bytes before the inner packet

if ROLE == "underlay":
    # The kernel's IPv4 receive path (ip_rcv_core) judges these first.
    kind("outer-truncated-header")(lambda: [encap(echo())[:12]])
    kind("outer-bad-checksum")(lambda: [flip(encap(echo()), 10)])
    kind("outer-ihl-4")(lambda: [fix(flip(encap(echo()), 0, 0x01))])  # 0x45 -> 0x44
    kind("outer-version-6")(lambda: [fix(flip(encap(echo()), 0, 0x20))])  # 0x45 -> 0x65

    @kind("outer-total-length-larger")
    def _():
        p = encap(echo())
        return [set_total_length(p, len(p) + 40)]

    @kind("outer-total-length-below-header")
    def _():
        return [set_total_length(encap(echo()), 16)]

    @kind("outer-total-length-smaller")
    def _():
        # Bytes after the total length (as link-layer padding is) are trimmed.
        return [encap(marker("outer-total-length-smaller", 64)) + b"\xee" * 24]

    kind("outer-bad-option")(lambda: [with_options(encap(echo()), [7, 40, 4, 0])])
    kind("outer-options")(lambda: [with_options(encap(marker("outer-options", 64)), [1, 1, 1, 0])])
    kind("outer-ttl-0")(lambda: [encap(marker("outer-ttl-0", 64), ttl=0)])
    kind("outer-fragments")(lambda: fragments(encap(marker("outer-fragments", 1200)), 512, [2, 0, 1]))
    kind("outer-incomplete-fragment")(lambda: fragments(encap(marker("x", 1200)), 512)[:1])

    @kind("outer-overlapping-fragments")
    def _():
        first, second = fragments(encap(marker("x", 1200)), 512)[:2]
        # The second fragment starts 8 bytes inside the first one.
        struct.pack_into("!H", second, 6, 0x2000 | (504 // 8))
        return [first, fix(second)]

    @kind("outer-oversize-fragments")
    def _():
        # Fragments whose data reach byte 65536: the datagram would be
        # 65556 bytes, over IPv4's 65535.
        head = encap(echo())[:ENCAP]
        return fragments(head + bytes(65536 - (ENCAP - HL)), 1480)

    kind("outer-max-size")(lambda: fragments(encap(marker("outer-max-size", 65535 - ENCAP - 28)), 1480))
    kind("max-size-not-local")(lambda: fragments(
        encap(marker("x", 65535 - ENCAP - 28, dst=REMOTE_POD)), 1480))
    kind("outer-random")(lambda: random_frames(20251, 20, 1, 200))
    kind("unknown-peer")(lambda: [encap(marker("x", 64), src=STRANGER)])

    # The inner packet, which only podwire judges.
    kind("inner-bad-checksum")(lambda: [encap(flip(echo(), 10))])
    kind("inner-ihl-4")(lambda: [encap(fix(flip(echo(), 0, 0x01)))])
    kind("inner-version-6")(lambda: [encap(fix(flip(echo(), 0, 0x20)))])

    @kind("inner-total-length-larger")
    def _():
        p = echo()
        return [encap(set_total_length(p, len(p) + 8))]

    @kind("inner-total-length-smaller")
    def _():
        # 4 bytes fewer than the payload carries, in a frame well over
        # Ethernet's 60-byte minimum (so they are not padding).
        p = echo(data=bytes(100))
        return [encap(set_total_length(p, len(p) - 4))]

    kind("inner-bad-option")(lambda: [encap(with_options(echo(), [7, 40, 4, 0]))])
    kind("inner-options")(lambda: [encap(with_options(marker("inner-options", 64), [7, 7, 4, 0, 0, 0, 0, 0]))])
    kind("inner-ttl-0")(lambda: [encap(echo(ttl=0))])
    kind("inner-ttl-1")(lambda: [encap(echo(ttl=1))])
    kind("inner-not-local")(lambda: [encap(echo(dst=REMOTE_POD))])
    kind("inner-blackhole")(lambda: [encap(echo(dst=HOLE))])
    kind("inner-outside-pools")(lambda: [encap(echo(dst=OUTSIDE))])
    kind("ecn-ce-on-not-ect")(lambda: [encap(echo(tos=0), tos=0x03)])
    kind("ecn-ce-on-ect")(lambda: [encap(marker("ecn-ce-on-ect", 64, tos=0x02), tos=0x03)])
    kind("inner-fragments")(lambda: [encap(f) for f in fragments(marker("inner-fragments", 2400), 1024, [1, 2, 0])])

    @kind("inner-fragment-past-65535")
    def _():
        p = echo()
        struct.pack_into("!H", p, 6, 0x1FFF)  # offset 65528, 15 data bytes
        return [encap(fix(p))]

    # Cut at each header boundary (and inside each header), the outer
    # header's lengths and checksums consistent with what is left.
    @kind("trunc-after-outer-header")
    def _():
        return [encap_payload(b"")]

    @kind("trunc-in-inner-header")
    def _():
        return [encap_payload(frame_for(echo())[:ENCAP - HL + 12])]

    @kind("trunc-after-inner-header")
    def _():
        return [encap_payload(frame_for(echo())[:ENCAP - HL + 20])]

    if MODE == "ipip":
        kind("outer-broadcast", broadcast=True)(lambda: [encap(echo(), dst=BROADCAST)])
        kind("random-payload")(lambda: [encap_payload(b) for b in random_frames(20252, 20, 1, 1400)])
    else:
        # The IPv4 packet ends 4 bytes into the UDP header (its total length says so).
        kind("udp-truncated-header")(lambda: [set_total_length(udp_outer(b"")[:HL + 4], HL + 4)])

        @kind("udp-length-larger")
        def _():
            p = udp_outer(frame_for(echo()), checksum=0)
            struct.pack_into("!H", p, HL + 4, len(p) - HL + 8)
            return [p]

        @kind("udp-length-below-8")
        def _():
            p = udp_outer(frame_for(echo()), checksum=0)
            struct.pack_into("!H", p, HL + 4, 6)
            return [p]

        @kind("udp-length-smaller")
        def _():
            # A valid datagram followed by 16 bytes inside the IPv4 payload
            # but outside the UDP length: the kernel trims them.
            p = udp_outer(frame_for(marker("udp-length-smaller", 64)))
            return [set_total_length(p + b"\xee" * 16, len(p) + 16)]

        @kind("udp-bad-checksum")
        def _():
            p = udp_outer(frame_for(echo()))
            good = struct.unpack_from("!H", p, HL + 6)[0]
            bad = good ^ 0x5A5A or 0x1234  # never 0, which would mean "no checksum"
            struct.pack_into("!H", p, HL + 6, bad)
            return [p]
        kind("udp-zero-checksum")(lambda: [udp_outer(frame_for(marker("udp-zero-checksum", 64)), checksum=0)])
        kind("broadcast", broadcast=True)(lambda: [udp_outer(frame_for(echo()), dst=BROADCAST)])
        kind("trunc-after-udp-header")(lambda: [udp_outer(b"")])
        kind("trunc-in-vxlan")(lambda: [udp_outer(frame_for(echo())[:4])])
        kind("trunc-after-vxlan")(lambda: [udp_outer(frame_for(echo())[:8])])
        kind("trunc-in-ethernet")(lambda: [udp_outer(frame_for(echo())[:8 + 7])])
        kind("trunc-after-ethernet")(lambda: [udp_outer(frame_for(echo())[:8 + 14])])
        kind("vxlan-flags-zero")(lambda: [encap(echo(), vxlan=vxlan_header(flags=0x00))])
        kind("vxlan-flags-extra")(lambda: [encap(echo(), vxlan=vxlan_header(flags=0x88))])
        kind("vxlan-reserved-bits")(lambda: [encap(echo(), vxlan=vxlan_header(reserved=b"\0\x01\0"))])
        kind("vxlan-reserved-last")(lambda: [encap(echo(), vxlan=vxlan_header(last=0x01))])
        kind("vxlan-wrong-vni")(lambda: [encap(echo(), vxlan=vxlan_header(vni=VNI + 1))])
        kind("vxlan-vni-zero")(lambda: [encap(echo(), vxlan=vxlan_header(vni=0))])
        kind("inner-wrong-mac")(lambda: [encap(echo(), eth=ethernet(dst="02:00:00:00:00:01"))])
        kind("inner-broadcast-mac")(lambda: [encap(echo(), eth=ethernet(dst="ff:ff:ff:ff:ff:ff"))])
        kind("inner-arp")(lambda: [encap(b"\0\x01\x08\x00\x06\x04\0\x01" + bytes(20), eth=ethernet(ethertype=0x0806))])
        kind("inner-ipv6")(lambda: [encap(bytes(IPv6(src="fd00::1", dst="fd00::2") / ICMPv6EchoRequest()),
                                          eth=ethernet(ethertype=0x86DD))])
        kind("inner-vlan-tag")(lambda: [encap(b"\0\x05\x08\x00" + bytes(echo()), eth=ethernet(ethertype=0x8100))])

        @kind("inner-min-frame-padding")
        def _():
            # 14 + 20 + 8 + 12 = 54 bytes, padded to Ethernet's 60.
            return [udp_outer(frame_for(marker("pad", 12)) + bytes(6))]

        kind("random-payload")(lambda: [udp_outer(b) for b in random_frames(
            20253, 20, 8, 1400, check=lambda b: b[0] != 0x08)])
else:
    def pod_packet(dst=REMOTE_POD, src=POD_B, **ip):
        return bytearray(bytes(IP(src=src, dst=dst, id=ident(), **ip)
                               / UDP(sport=5555, dport=9) / Raw(b"hostile pod")))

    def pod_marker(tag, size, dst=POD, **ip):
        return marker(tag, size, dst=dst, src=POD_B, **ip)

    def pod_packet_sized(total, **ip):
        return bytearray(bytes(IP(src=POD_B, dst=REMOTE_POD, id=ident(), **ip)
                               / UDP(sport=5555, dport=9) / Raw(bytes(total - 28))))

    kind("pod-spoofed-other-pod")(lambda: [pod_packet(src=POD)])
    kind("pod-spoofed-outside")(lambda: [pod_packet(src=OUTSIDE)])
    kind("pod-spoofed-node")(lambda: [pod_packet(src=NODE)])
    kind("pod-ipip-to-node")(lambda: [bytes(IP(src=POD_B, dst=NODE, proto=4) / Raw(bytes(echo(src=POD_B))))])
    kind("pod-ipip-to-pod")(lambda: [bytes(IP(src=POD_B, dst=REMOTE_POD, proto=4) / Raw(bytes(echo(src=POD_B))))])
    kind("pod-vxlan-to-node")(lambda: [bytes(IP(src=POD_B, dst=NODE) / UDP(sport=40000, dport=VXLAN_PORT)
                                             / Raw(vxlan_header() + bytes(14) + bytes(echo(src=POD_B))))])
    kind("pod-vxlan-to-pod")(lambda: [bytes(IP(src=POD_B, dst=REMOTE_POD) / UDP(sport=40000, dport=VXLAN_PORT)
                                            / Raw(vxlan_header() + bytes(14) + bytes(echo(src=POD_B))))])
    kind("pod-ttl-0")(lambda: [pod_packet(ttl=0)])
    kind("pod-ttl-1")(lambda: [pod_packet(ttl=1)])
    kind("pod-bad-checksum")(lambda: [flip(pod_packet(), 10)])
    kind("pod-ihl-4")(lambda: [fix(flip(pod_packet(), 0, 0x01))])
    kind("pod-total-length-larger")(lambda: [set_total_length(pod_packet(), len(pod_packet()) + 8)])
    kind("pod-total-length-smaller")(lambda: [set_total_length(pod_packet(), len(pod_packet()) - 4)])
    kind("pod-truncated-header")(lambda: [pod_packet()[:12]])
    kind("pod-bad-option")(lambda: [with_options(pod_packet(), [7, 40, 4, 0])])
    kind("pod-ipv6")(lambda: [bytes(IPv6(src="fd00::1", dst="fd00::2") / ICMPv6EchoRequest())])
    kind("pod-no-route")(lambda: [pod_packet(dst=OUTSIDE)])
    kind("pod-blackhole")(lambda: [pod_packet(dst=HOLE)])
    kind("pod-max-size-df")(lambda: [pod_packet_sized(65535, flags="DF")])
    kind("pod-max-size-local")(lambda: [pod_marker("pod-max-size-local", 65535 - 28)])
    kind("pod-max-size-remote")(lambda: [pod_marker("pod-max-size-remote", 65535 - 28, dst=REMOTE_POD)])
    kind("pod-random")(lambda: random_frames(20254, 20, 1, 1400))
    kind("pod-one-byte")(lambda: [b"\x45"])


def main():
    for line in sys.stdin:
        name = line.strip()
        if not name:
            continue
        if name == "list":
            print("list " + " ".join(K), flush=True)
            continue
        f = K.get(name)
        if f is None:
            print("error %s unknown kind" % name, flush=True)
            continue
        try:
            packets = f()
            n = send_all(packets, "ff:ff:ff:ff:ff:ff" if name in TO_BROADCAST else None)
            print("sent %s %d" % (name, n), flush=True)
        except Exception as e:  # report, keep serving
            print("error %s %r" % (name, e), flush=True)


main()
