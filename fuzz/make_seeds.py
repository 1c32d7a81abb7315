#!/usr/bin/env python3
"""Writes the seed corpus of podwire's fuzz targets: fuzz/corpus/<target>/seed-*.

Plain Python 3, no third-party modules: every header is built by hand from
its RFC, so the seeds do not depend on the code they test. Run it from
anywhere; it rewrites every seed-* file it owns and removes stale ones.

    python3 fuzz/make_seeds.py

Addresses are those of examples/*.yaml: nodes k8s-master 192.168.33.53
(192.168.34.53 in crosssubnet.yaml), k8s-node1 192.168.33.55 (the node the
targets drive) and k8s-node2 192.168.33.57; pods 10.2.36.68 and 10.2.36.69
on k8s-node1, 10.2.169.138 on k8s-node2, 10.2.235.194 on k8s-master.
"""

import hashlib
import os
import random
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "corpus")
EXAMPLES = os.path.join(HERE, "..", "examples")

MASTER = "192.168.33.53"
MASTER_XS = "192.168.34.53"  # k8s-master in crosssubnet.yaml
NODE1 = "192.168.33.55"
NODE2 = "192.168.33.57"
STRANGER = "192.168.33.99"
POD_WEB = "10.2.36.68"  # k8s-node1, endpoint 0
POD_DB = "10.2.36.69"  # k8s-node1, endpoint 1
POD_FREE = "10.2.36.70"  # k8s-node1's block, no workload: blackhole
POD_NODE2 = "10.2.169.138"
POD_MASTER = "10.2.235.194"

VNI = 4096
VXLAN_PORT = 4789


def vtep_mac(name):
    """Felix: 0x66 then the first five bytes of SHA-1 of the node name."""
    return bytes([0x66]) + hashlib.sha1(name.encode()).digest()[:5]


NODE1_MAC = vtep_mac("k8s-node1")
assert NODE1_MAC.hex(":") == "66:8c:73:5a:90:99"  # SPEC section 2
NODE2_MAC = bytes.fromhex("6690433db3e7")  # vxlanTunnelMACAddr of k8s-node2
assert NODE2_MAC.hex(":") == "66:90:43:3d:b3:e7"


def ip4(a):
    return bytes(int(x) for x in a.split("."))


def csum(data):
    """RFC 1071 Internet checksum."""
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def ipv4(src, dst, proto, payload, ttl=64, tos=0, ident=0x1C46, df=True, mf=False,
         frag_off=0, options=b"", total_len=None, bad_csum=False):
    """An IPv4 packet (RFC 791) with a correct header checksum unless bad_csum."""
    assert len(options) % 4 == 0
    hl = 20 + len(options)
    if total_len is None:
        total_len = hl + len(payload)
    flags = (0x4000 if df else 0) | (0x2000 if mf else 0) | frag_off
    h = struct.pack("!BBHHHBBH4s4s", 0x40 | hl // 4, tos, total_len, ident, flags, ttl,
                    proto, 0, ip4(src), ip4(dst)) + options
    c = csum(h)
    if bad_csum:
        c ^= 0x0101
    return h[:10] + struct.pack("!H", c) + h[12:] + payload


def icmp_echo(ident=0x1234, seq=1, data=b"podwire-seed-ping"):
    body = struct.pack("!HH", ident, seq) + data
    c = csum(struct.pack("!BBH", 8, 0, 0) + body)
    return struct.pack("!BBH", 8, 0, c) + body


def udp(src, dst, sport, dport, payload, zero_csum=False, bad_csum=False):
    """RFC 768 datagram; a computed 0 checksum is sent as 0xffff."""
    length = 8 + len(payload)
    hdr = struct.pack("!HHHH", sport, dport, length, 0)
    if zero_csum:
        return hdr + payload
    pseudo = ip4(src) + ip4(dst) + struct.pack("!BBH", 0, 17, length)
    c = csum(pseudo + hdr + payload) or 0xFFFF
    if bad_csum:
        c ^= 0x00FF
    return hdr[:6] + struct.pack("!H", c) + payload


def tcp_syn(src, dst, sport=40000, dport=80):
    opts = struct.pack("!BBH", 2, 4, 1460) + b"\x01\x01\x04\x02"  # MSS, NOP, NOP, SACK-permitted
    hdr = struct.pack("!HHIIBBHHH", sport, dport, 1, 0, (5 + len(opts) // 4) << 4, 0x02,
                      64240, 0, 0) + opts
    pseudo = ip4(src) + ip4(dst) + struct.pack("!BBH", 0, 6, len(hdr))
    c = csum(pseudo + hdr)
    return hdr[:16] + struct.pack("!H", c) + hdr[18:]


def vxlan_header(vni=VNI, flags=0x08, reserved=b"\0\0\0", last=0):
    return bytes([flags]) + reserved + vni.to_bytes(3, "big") + bytes([last])


def eth(dst, src, ethertype=0x0800):
    return dst + src + struct.pack("!H", ethertype)


def inner_ping(src=POD_NODE2, dst=POD_WEB, ttl=63, tos=0, **kw):
    return ipv4(src, dst, 1, icmp_echo(), ttl=ttl, tos=tos, **kw)


def vxlan_packet(inner, outer_src=NODE2, outer_dst=NODE1, vni=VNI, flags=0x08,
                 reserved=b"\0\0\0", last=0, dst_mac=NODE1_MAC, src_mac=NODE2_MAC,
                 ethertype=0x0800, outer_tos=0, sport=51234, dport=VXLAN_PORT,
                 zero_csum=False, bad_udp_csum=False, **outer):
    frame = eth(dst_mac, src_mac, ethertype) + inner
    payload = vxlan_header(vni, flags, reserved, last) + frame
    u = udp(outer_src, outer_dst, sport, dport, payload, zero_csum, bad_udp_csum)
    outer.setdefault("df", False)
    return ipv4(outer_src, outer_dst, 17, u, tos=outer_tos, **outer)


def ipip_packet(inner, outer_src=NODE2, outer_dst=NODE1, outer_tos=None, **outer):
    if outer_tos is None:
        e = inner[1] & 3
        outer_tos = 2 if e == 3 else e
    inner_ttl = inner[8]
    outer.setdefault("ttl", inner_ttl)
    return ipv4(outer_src, outer_dst, 4, inner, tos=outer_tos, **outer)


# ---------------------------------------------------------------------------

def ingress_seeds():
    """Selector byte (bit 0: 0 = vxlan.yaml, 1 = ipip.yaml tables; bits 1-2:
    vxlan_payload source; bits 3-7: its outer ECN) + outer IPv4 packet."""
    VX, IP = 0x00, 0x01
    ping = inner_ping()
    s = {}
    # VXLAN (vxlan.yaml tables).
    s["vxlan-ping"] = bytes([VX]) + vxlan_packet(ping)
    s["vxlan-zero-udp-csum"] = bytes([VX]) + vxlan_packet(ping, zero_csum=True)
    s["vxlan-bad-udp-csum"] = bytes([VX]) + vxlan_packet(ping, bad_udp_csum=True)
    s["vxlan-bad-vni"] = bytes([VX]) + vxlan_packet(ping, vni=4097)
    s["vxlan-bad-flags"] = bytes([VX]) + vxlan_packet(ping, flags=0x0C)
    s["vxlan-reserved-bit"] = bytes([VX]) + vxlan_packet(ping, reserved=b"\0\x01\0")
    s["vxlan-reserved-last"] = bytes([VX]) + vxlan_packet(ping, last=1)
    s["vxlan-wrong-mac"] = bytes([VX]) + vxlan_packet(ping, dst_mac=NODE2_MAC)
    s["vxlan-ipv6-ethertype"] = bytes([VX]) + vxlan_packet(ping, ethertype=0x86DD)
    s["vxlan-unknown-peer"] = bytes([VX]) + vxlan_packet(ping, outer_src=STRANGER)
    s["vxlan-from-master"] = bytes([VX | 4]) + vxlan_packet(ping, outer_src=MASTER)
    s["vxlan-not-for-node"] = bytes([VX]) + vxlan_packet(ping, outer_dst=NODE2)
    s["vxlan-other-port"] = bytes([VX]) + vxlan_packet(ping, dport=8472)
    s["vxlan-outer-fragment"] = bytes([VX]) + vxlan_packet(ping, mf=True)
    s["vxlan-bad-outer-csum"] = bytes([VX]) + vxlan_packet(ping, bad_csum=True)
    s["vxlan-inner-ttl1"] = bytes([VX]) + vxlan_packet(inner_ping(ttl=1))
    s["vxlan-inner-not-local"] = bytes([VX]) + vxlan_packet(inner_ping(dst=POD_FREE))
    s["vxlan-to-db"] = bytes([VX]) + vxlan_packet(inner_ping(dst=POD_DB))
    s["vxlan-ce-not-ect"] = bytes([VX | 0x18]) + vxlan_packet(ping, outer_tos=3)
    s["vxlan-ce-ect0"] = bytes([VX | 0x18]) + vxlan_packet(inner_ping(tos=2), outer_tos=3)
    s["vxlan-ect1"] = bytes([VX | 0x08]) + vxlan_packet(inner_ping(tos=1), outer_tos=1)
    small = ipv4(POD_NODE2, POD_WEB, 1, icmp_echo(data=b""), ttl=63)  # 28 bytes
    s["vxlan-padded-frame"] = bytes([VX]) + vxlan_packet(small + bytes(60 - 14 - len(small)))
    s["vxlan-tcp-syn"] = bytes([VX]) + vxlan_packet(
        ipv4(POD_NODE2, POD_WEB, 6, tcp_syn(POD_NODE2, POD_WEB), ttl=63))
    s["vxlan-inner-options"] = bytes([VX]) + vxlan_packet(
        inner_ping(options=b"\x07\x07\x04" + bytes(4) + b"\x00"))  # record route
    s["vxlan-inner-bad-csum"] = bytes([VX]) + vxlan_packet(inner_ping(bad_csum=True))
    s["vxlan-inner-short-len"] = bytes([VX]) + vxlan_packet(ping + b"\0\0\0\0")
    s["vxlan-trailing-bytes"] = bytes([VX]) + vxlan_packet(ping) + b"\xde\xad\xbe\xef"
    s["vxlan-big"] = bytes([VX]) + vxlan_packet(
        ipv4(POD_NODE2, POD_WEB, 17, udp(POD_NODE2, POD_WEB, 5000, 53, bytes(1400)), ttl=63))
    # IP-in-IP (ipip.yaml tables).
    s["ipip-ping"] = bytes([IP]) + ipip_packet(ping)
    s["ipip-unknown-peer"] = bytes([IP]) + ipip_packet(ping, outer_src=STRANGER)
    s["ipip-from-master"] = bytes([IP]) + ipip_packet(ping, outer_src=MASTER)
    s["ipip-outer-fragment"] = bytes([IP]) + ipip_packet(ping, frag_off=1)
    s["ipip-inner-ttl1"] = bytes([IP]) + ipip_packet(inner_ping(ttl=1))
    s["ipip-ce-not-ect"] = bytes([IP]) + ipip_packet(ping, outer_tos=3)
    s["ipip-ce-ect1"] = bytes([IP]) + ipip_packet(inner_ping(tos=1), outer_tos=3)
    s["ipip-inner-not-local"] = bytes([IP]) + ipip_packet(inner_ping(dst=POD_NODE2))
    s["ipip-trailing-bytes"] = bytes([IP]) + ipip_packet(ping) + bytes(6)
    s["ipip-inner-padding"] = bytes([IP]) + ipip_packet(ping + bytes(4))
    s["ipip-outer-options"] = bytes([IP]) + ipip_packet(ping, options=b"\x01\x01\x01\x00")
    s["ipip-ipv6-inner"] = bytes([IP]) + ipip_packet(b"\x60" + ping[1:])
    s["ipip-to-db-tcp"] = bytes([IP]) + ipip_packet(
        ipv4(POD_NODE2, POD_DB, 6, tcp_syn(POD_NODE2, POD_DB), ttl=63, tos=0x02))
    # Plain packets for ingress_direct.
    s["direct-ping"] = bytes([IP]) + ping
    s["vxlan-payload-only"] = bytes([VX]) + vxlan_header() + eth(NODE1_MAC, NODE2_MAC) + ping
    return s


def egress_seeds():
    """Selector byte (bits 6-7: 0 vxlan, 1 ipip, 2 direct, 3 crosssubnet;
    bits 0-5 modulo the endpoint count: the endpoint) + inner IPv4 packet."""
    s = {}
    clusters = {"vxlan": 0x00, "ipip": 0x40, "direct": 0x80, "xsubnet": 0xC0}
    ping_remote = ipv4(POD_WEB, POD_NODE2, 1, icmp_echo())
    for name, sel in clusters.items():
        s[f"{name}-ping-node2"] = bytes([sel]) + ping_remote
        s[f"{name}-ping-master"] = bytes([sel]) + ipv4(POD_WEB, POD_MASTER, 1, icmp_echo())
        s[f"{name}-tcp-syn-node2"] = bytes([sel]) + ipv4(
            POD_WEB, POD_NODE2, 6, tcp_syn(POD_WEB, POD_NODE2), tos=0x03)
    s["vxlan-ping-local"] = bytes([0x00]) + ipv4(POD_WEB, POD_DB, 1, icmp_echo())
    s["vxlan-ping-from-db"] = bytes([0x01]) + ipv4(POD_DB, POD_WEB, 1, icmp_echo())
    s["vxlan-spoofed"] = bytes([0x01]) + ping_remote
    s["vxlan-no-such-endpoint"] = bytes([0x3F]) + ping_remote
    s["vxlan-blackhole"] = bytes([0x00]) + ipv4(POD_WEB, POD_FREE, 1, icmp_echo())
    s["vxlan-no-route"] = bytes([0x00]) + ipv4(POD_WEB, "8.8.8.8", 1, icmp_echo())
    s["vxlan-ttl1"] = bytes([0x00]) + ipv4(POD_WEB, POD_NODE2, 1, icmp_echo(), ttl=1)
    s["vxlan-ttl2"] = bytes([0x00]) + ipv4(POD_WEB, POD_NODE2, 1, icmp_echo(), ttl=2)
    s["vxlan-ttl1-later-fragment"] = bytes([0x00]) + ipv4(
        POD_WEB, POD_NODE2, 17, bytes(16), ttl=1, df=False, frag_off=10)
    s["vxlan-ttl1-icmp-error"] = bytes([0x00]) + ipv4(
        POD_WEB, POD_NODE2, 1, bytes([3, 1, 0, 0]) + bytes(32), ttl=1)
    s["vxlan-ipip-from-workload"] = bytes([0x00]) + ipv4(POD_WEB, POD_NODE2, 4, ping_remote)
    s["vxlan-udp-to-vxlan-port"] = bytes([0x00]) + ipv4(
        POD_WEB, POD_NODE2, 17, udp(POD_WEB, POD_NODE2, 40000, VXLAN_PORT, b"x" * 16))
    s["vxlan-bad-csum"] = bytes([0x00]) + ipv4(POD_WEB, POD_NODE2, 1, icmp_echo(), bad_csum=True)
    s["vxlan-short-total-len"] = bytes([0x00]) + ping_remote + b"\0\0"
    s["vxlan-ipv6"] = bytes([0x00]) + b"\x60" + bytes(47)
    s["vxlan-options"] = bytes([0x00]) + ipv4(
        POD_WEB, POD_NODE2, 1, icmp_echo(), options=b"\x07\x07\x04" + bytes(4) + b"\x00")
    s["vxlan-ce"] = bytes([0x00]) + ipv4(POD_WEB, POD_NODE2, 1, icmp_echo(), tos=0xB3)
    for name, sel in [("vxlan", 0x00), ("ipip", 0x40), ("direct", 0x80)]:
        big = udp(POD_WEB, POD_NODE2, 40000, 5001, bytes(range(256)) * 7)  # 1800 bytes
        s[f"{name}-big-df"] = bytes([sel]) + ipv4(POD_WEB, POD_NODE2, 17, big, df=True)
        s[f"{name}-big-fragment"] = bytes([sel]) + ipv4(POD_WEB, POD_NODE2, 17, big, df=False)
        s[f"{name}-big-fragment-options"] = bytes([sel]) + ipv4(
            POD_WEB, POD_NODE2, 17, big, df=False,
            options=b"\x07\x07\x04" + bytes(4) + b"\x83\x07\x04" + bytes(4) + b"\x00\x00")
    s["vxlan-at-mtu"] = bytes([0x00]) + ipv4(
        POD_WEB, POD_NODE2, 17, udp(POD_WEB, POD_NODE2, 40000, 5001, bytes(1450 - 28)), df=True)
    # A pod's TCP super-packet as TSO hands it over: 4000 bytes, DF, ACK
    # (podwire does not read the TCP checksum, left zero here).
    tcp_hdr = struct.pack("!HHIIBBHHH", 40000, 5001, 1, 1, 5 << 4, 0x10, 64240, 0, 0)
    for name, sel, dst in [("direct", 0x80, POD_NODE2), ("vxlan", 0x00, POD_NODE2),
                           ("direct-local", 0x80, POD_DB)]:
        s[f"{name}-tcp-super-packet"] = bytes([sel]) + ipv4(
            POD_WEB, dst, 6, tcp_hdr + bytes(range(256)) * 15 + bytes(3960 - 3840), df=True)
    s["xsubnet-ipip-pool"] = bytes([0xC0]) + ipv4(POD_WEB, "10.3.7.5", 1, icmp_echo())
    s["xsubnet-direct-pool"] = bytes([0xC0]) + ipv4(POD_WEB, "10.3.8.5", 1, icmp_echo())
    return s


def frag_seeds():
    """Raw bytes for the `arbitrary`-structured frag target: any bytes are a
    valid input; these just start it in different corners."""
    rng = random.Random(20240601)
    s = {}
    for i in range(8):
        n = [16, 24, 32, 48, 64, 80, 96, 128][i]
        s[f"random-{i}"] = bytes(rng.randrange(256) for _ in range(n))
    s["zeros"] = bytes(64)
    s["ones"] = b"\xff" * 64
    return s


def config_seeds():
    s = {}
    for name in sorted(os.listdir(EXAMPLES)):
        if name.endswith(".yaml"):
            with open(os.path.join(EXAMPLES, name), "rb") as f:
                s[name[:-5] + ".yaml"] = f.read()
    vx = s["vxlan.yaml"].decode()
    # A few edits that reach other validation paths.
    s["bad-cidr.yaml"] = vx.replace("cidr: 10.2.0.0/16", "cidr: 10.2.0.0/33").encode()
    # blockSize 32: every block is one address, a workload's.
    s["block-size-32.yaml"] = (
        vx.replace("blockSize: 26", "blockSize: 32")
        .replace("cidr: 10.2.36.64/26", "cidr: 10.2.36.68/32")
        .replace("cidr: 10.2.235.192/26", "cidr: 10.2.235.194/32")
        .replace("cidr: 10.2.169.128/26", "cidr: 10.2.169.138/32")
        .replace("cidr: 10.2.7.0/26", "cidr: 10.2.36.69/32")
        .replace("affinity: host:k8s-old-node", "affinity: host:k8s-node1")
        .replace("  deleted: true\n", "  deleted: false\n")
    ).encode()
    s["felix-mtu.yaml"] = vx.replace(
        "  vxlanVNI: 4096", "  vxlanVNI: 4096\n  vxlanMTU: 1400\n  ipipMTU: 68").encode()
    s["list.yaml"] = (
        b"apiVersion: v1\nkind: List\nitems:\n"
        b"- apiVersion: projectcalico.org/v3\n  kind: IPPool\n  metadata: {name: p}\n"
        b"  spec: {cidr: 10.9.0.0/16, ipipMode: Always}\n"
        b"- apiVersion: projectcalico.org/v3\n  kind: Node\n  metadata: {name: a}\n"
        b"  spec: {bgp: {ipv4Address: 192.168.1.1/24}}\n"
    )
    s["unknown-kind.yaml"] = b"apiVersion: projectcalico.org/v3\nkind: NetworkPolicy\nmetadata: {name: x}\n"
    s["not-yaml.yaml"] = b"- [unbalanced\n"
    return s


def control_seeds():
    """Control-socket requests: one selector byte (the cluster) then what a
    client writes."""
    s = {}
    for i, topic in enumerate(["routes", "neigh", "fdb", "endpoints", "stats"]):
        s[f"{topic}"] = bytes([i % 4]) + f"show {topic}\n".encode()
        s[f"{topic}-json"] = bytes([(i + 1) % 4]) + f"show {topic} json\n".encode()
    s["padded"] = b"\x00  show \t routes   json \r\n"
    s["no-newline"] = b"\x01show fdb"
    s["two-lines"] = b"\x02show neigh\nshow stats json\n"
    s["unknown-topic"] = b"\x00show route\n"
    s["unknown-option"] = b"\x00show routes yaml\n"
    s["extra-word"] = b"\x00show routes json please\n"
    s["not-utf8"] = b"\x00show \xff\xfe\n"
    s["too-long"] = b"\x00" + b"show " + b"x" * 300
    s["empty"] = b"\x00"
    return s


def regressions():
    """Inputs that show the library bugs the fuzzers found (see
    regressions/README.md). They pass the default checks, which tolerate
    these bugs so fuzzing can go on, and fail with --features known-bugs."""
    r = {}
    # Record route (kind 7) claiming 40 bytes in a 4-byte option area: a
    # malformed option list, which Linux's ip_options_compile rejects.
    bad_opts = b"\x07\x28\x04\x00"
    big = udp(POD_WEB, POD_NODE2, 40000, 5001, bytes(range(256)) * 7)  # 1800 bytes
    r["egress-bad-options-fragmented"] = bytes([0x00]) + ipv4(
        POD_WEB, POD_NODE2, 17, big, df=False, options=bad_opts)
    r["egress-bad-options-sent"] = bytes([0x00]) + ipv4(
        POD_WEB, POD_NODE2, 1, icmp_echo(), options=bad_opts)
    r["ingress-bad-options-delivered"] = bytes([0x00]) + vxlan_packet(
        inner_ping(options=bad_opts))
    # A fragment (MF, offset 8128 units = 65024 bytes) whose 1800 bytes of
    # data would run past 65535: the second fragment's offset overflows.
    r["egress-fragment-offset-overflow"] = bytes([0x00]) + ipv4(
        POD_WEB, POD_NODE2, 17, big, df=False, mf=True, frag_off=0x1FC0)
    r["config-block-size-32.yaml"] = b"""\
# blockSize 32: k8s-node1's block is the single address of its workload, so
# the workload's /32 route and the block's blackhole route share a prefix.
apiVersion: projectcalico.org/v3
kind: IPPool
metadata:
  name: pool
spec:
  cidr: 10.2.0.0/16
  blockSize: 32
  ipipMode: Always
---
apiVersion: projectcalico.org/v3
kind: Node
metadata:
  name: k8s-node1
spec:
  bgp:
    ipv4Address: 192.168.33.55/24
---
apiVersion: crd.projectcalico.org/v1
kind: IPAMBlock
metadata:
  name: 10-2-36-68-32
spec:
  affinity: host:k8s-node1
  cidr: 10.2.36.68/32
---
apiVersion: projectcalico.org/v3
kind: WorkloadEndpoint
metadata:
  name: web
  namespace: default
spec:
  node: k8s-node1
  interfaceName: calif5eaaa317d1
  ipNetworks:
  - 10.2.36.68/32
"""
    return r


def main():
    targets = {
        "ingress": ingress_seeds(),
        "egress": egress_seeds(),
        "frag": frag_seeds(),
        "config": config_seeds(),
        "control": control_seeds(),
    }
    total = 0
    for target, seeds in targets.items():
        d = os.path.join(CORPUS, target)
        os.makedirs(d, exist_ok=True)
        wanted = {"seed-" + name for name in seeds}
        for old in os.listdir(d):
            if old.startswith("seed-") and old not in wanted:
                os.remove(os.path.join(d, old))
        for name, data in seeds.items():
            with open(os.path.join(d, "seed-" + name), "wb") as f:
                f.write(data if isinstance(data, bytes) else data.encode())
        total += len(seeds)
        print(f"{target}: {len(seeds)} seeds in {os.path.relpath(d)}")
    print(f"{total} seeds", file=sys.stderr)
    d = os.path.join(HERE, "regressions")
    os.makedirs(d, exist_ok=True)
    for name, data in regressions().items():
        with open(os.path.join(d, name), "wb") as f:
            f.write(data)
    print(f"regressions: {len(regressions())} inputs in {os.path.relpath(d)}")


if __name__ == "__main__":
    main()
