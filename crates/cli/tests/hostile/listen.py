"""A pod's listener for tests/hostile.rs: `listen.py ADDR OUT`.

Receives the markers inject.py sends to UDP port 7777 and appends one line
per datagram to OUT: `TAG LEN OK TOS TTL`, where OK says whether the
datagram has the length its marker declares and the expected byte pattern.
"""

import socket
import struct
import sys

IP_TOS, IP_TTL, IP_RECVTTL, IP_RECVTOS = 1, 2, 12, 13

addr, out_path = sys.argv[1], sys.argv[2]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
s.setsockopt(socket.IPPROTO_IP, IP_RECVTOS, 1)
s.setsockopt(socket.IPPROTO_IP, IP_RECVTTL, 1)
s.bind((addr, 7777))
out = open(out_path, "a")
out.write("listening\n")
out.flush()
while True:
    data, anc, _, _ = s.recvmsg(70000, 256)
    tos = ttl = -1
    for level, kind, value in anc:
        if level == socket.IPPROTO_IP and kind == IP_TOS:
            tos = value[0]
        elif level == socket.IPPROTO_IP and kind == IP_TTL:
            ttl = struct.unpack("i", value[:4])[0]
    parts = data.split(b" ", 3)
    try:
        tag, size = parts[1].decode(), int(parts[2])
        head = len(b" ".join(parts[:3])) + 1
        want = bytes(i & 0xFF for i in range(size))
        ok = len(data) == size and data[head:] == want[head:]
    except (IndexError, ValueError):
        tag, ok = "?", False
    out.write("%s %d %s %d %d\n" % (tag, len(data), "ok" if ok else "bad", tos, ttl))
    out.flush()
