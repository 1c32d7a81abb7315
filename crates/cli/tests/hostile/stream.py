"""The pod-to-pod transfer of tests/hostile.rs.

    stream.py send ADDR PORT STARTED STOP   random data, paced, until STOP exists
    stream.py recv ADDR PORT                 read to the end

Both sides print `BYTES SHA256` of what they sent or received. The sender
creates STARTED once the first megabyte is out.
"""

import hashlib
import os
import socket
import sys
import time

role, addr, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
h = hashlib.sha256()
n = 0
if role == "send":
    started, stop = sys.argv[4], sys.argv[5]
    s = socket.create_connection((addr, port), timeout=30)
    while not os.path.exists(stop):
        block = os.urandom(64 << 10)
        s.sendall(block)
        h.update(block)
        n += len(block)
        if n == 1 << 20:
            open(started, "w").close()
        time.sleep(0.004)
    s.shutdown(socket.SHUT_WR)
    s.settimeout(60)
    s.recv(1)  # the receiver closes once it has everything
    s.close()
else:
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((addr, port))
    srv.listen(1)
    c, _ = srv.accept()
    while True:
        b = c.recv(1 << 20)
        if not b:
            break
        h.update(b)
        n += len(b)
    c.close()
print(n, h.hexdigest(), flush=True)
