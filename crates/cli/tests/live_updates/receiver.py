import json, os, socket, struct, sys, time
port, ready, stop = int(sys.argv[1]), sys.argv[2], sys.argv[3]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
SO_RCVBUFFORCE = 33
s.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 8 << 20)
s.bind(('0.0.0.0', port))
s.settimeout(0.2)
open(ready, 'w').close()
seen = bytearray(1 << 22)
received = dups = ooo = 0
high = -1
last = first = None
max_gap = 0.0
jumps = []
while True:
    try:
        data = s.recv(2048)
    except socket.timeout:
        if os.path.exists(stop) and last is not None and time.monotonic() - last > 1.0:
            break
        continue
    now = time.monotonic()
    if last is not None:
        max_gap = max(max_gap, now - last)
    else:
        first = now
    last = now
    (seq,) = struct.unpack('!Q', data[:8])
    received += 1
    if seen[seq]:
        dups += 1
        continue
    seen[seq] = 1
    if seq < high:
        ooo += 1
    elif seq > high + 1 and len(jumps) < 20:
        jumps.append([high + 1, seq - high - 1, round(now, 4)])
    high = max(high, seq)
missing = [i for i in range(high + 1) if not seen[i]]
print(json.dumps({
    "received": received, "highest": high, "missing": len(missing),
    "first_missing": missing[:20], "jumps": jumps, "duplicates": dups, "out_of_order": ooo,
    "max_gap_ms": round(max_gap * 1000, 1),
    "seconds": round((last or 0) - (first or 0), 1),
    "rcvbuf": s.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF),
}))
