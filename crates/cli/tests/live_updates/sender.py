import json, os, socket, struct, sys, time
ip, port, rate, burst, stop = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
pad = bytes(56)
seq = errors = 0
# A first burst, faster than a worker drains it: the batches grow to their
# largest and touch every receive buffer they can (RSS is measured after).
while seq < burst:
    s.sendto(struct.pack('!Q', seq) + pad, (ip, port))
    seq += 1
start = check = time.monotonic() - seq / rate
while True:
    due = int((time.monotonic() - start) * rate)
    if due - seq > 100:
        # Descheduled for a while: catch up by 100 at most, not in one
        # burst that could fill the pod's TUN queue by itself.
        start += (due - seq - 100) / rate
        due = seq + 100
    while seq < due:
        try:
            s.sendto(struct.pack('!Q', seq) + pad, (ip, port))
            seq += 1
        except OSError:
            errors += 1
            time.sleep(0.001)
    if time.monotonic() >= check:
        if os.path.exists(stop):
            break
        check += 0.1
    time.sleep(0.001)
print(json.dumps({"sent": seq, "errors": errors}))
