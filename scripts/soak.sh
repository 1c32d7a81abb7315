#!/usr/bin/env bash
# Soak: DURATION seconds (default ten minutes) of mixed load across the
# nodes of the lab's cluster — a TCP bulk transfer, a stream of small (64-byte)
# UDP datagrams and pings, all at once — with the resident memory (VmRSS) and
# the open file descriptors of every podwire daemon sampled each second into
# a CSV. At the end it prints, per daemon, the RSS at the start, after the
# warm-up, its minimum, maximum and end, and whether it stayed flat: after the
# warm-up (the first minute: buffers and sockets are made as traffic first
# needs them) it must never rise more than THRESHOLD_KB above its value at
# the end of the warm-up.
#
# As root, on one machine: `podwire lab --keep` builds the cluster (three
# nodes in network namespaces, two pods each, every address inside them) and
# `podwire lab --down` removes it, also on failure and Ctrl-C. Not run by CI.
#
# Usage: scripts/soak.sh
# Environment:
#   DURATION=600        seconds of load
#   MODE=vxlan          lab mode: vxlan, ipip or direct
#   BIN=target/release/podwire
#   OUT=/tmp/podwire-soak-<date>   CSV, load reports, lab logs
#   WARMUP=60           seconds before the flatness reference (DURATION/4 if shorter)
#   THRESHOLD_KB=1024   allowed rise over the reference
#   TCP_RATE=0          iperf3 -b for the TCP bulk transfer (0: as fast as it goes)
#   UDP_RATE=2M         iperf3 -b for the 64-byte UDP stream (2 Mbit/s: ~3900 datagrams/s)
set -euo pipefail

DURATION=${DURATION:-600}
MODE=${MODE:-vxlan}
BIN=${BIN:-target/release/podwire}
OUT=${OUT:-/tmp/podwire-soak-$(date +%Y%m%d-%H%M%S)}
WARMUP=${WARMUP:-60}
THRESHOLD_KB=${THRESHOLD_KB:-1024}
TCP_RATE=${TCP_RATE:-0}
UDP_RATE=${UDP_RATE:-2M}
STATE=/run/podwire-lab/state.json

die() { echo "soak: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "needs root (network namespaces, TUN devices); run it with sudo"
for tool in ip iperf3 ping python3; do
  command -v "$tool" >/dev/null || die "needs $tool"
done
[ -x "$BIN" ] || die "no podwire binary at $BIN: cargo build --release, or set BIN"
[ -e "$STATE" ] && die "a lab kept with --keep is up ($STATE); remove it first with: $BIN lab --down"
case "$DURATION" in ''|*[!0-9]*) die "DURATION must be a number of seconds" ;; esac
[ "$DURATION" -ge 8 ] || die "DURATION must be at least 8 seconds"
[ "$WARMUP" -lt "$DURATION" ] || WARMUP=$((DURATION / 4))
BIN=$(realpath "$BIN")
mkdir -p "$OUT"
OUT=$(realpath "$OUT")

LOAD_PIDS=()
LAB_STARTED=
cleanup() {
  local status=$?
  trap - EXIT INT TERM
  # Our load generators first (by PID), then the lab, if it is ours.
  for p in "${LOAD_PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [ -n "$LAB_STARTED" ] && [ -e "$STATE" ] && grep -q "\"$OUT/lab\"" "$STATE"; then
    "$BIN" lab --down || true
  fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

echo "soak: $DURATION s of TCP bulk, 64-byte UDP and pings on a $MODE lab; output in $OUT"
LAB_STARTED=1
"$BIN" lab --keep --mode "$MODE" --seconds 1 --out "$OUT/lab" >"$OUT/lab.txt" 2>&1 ||
  { cat "$OUT/lab.txt" >&2; die "podwire lab --keep failed"; }
[ -e "$STATE" ] || die "podwire lab did not leave a cluster up ($STATE missing)"

# The kept lab: its namespaces and daemon PIDs, by node name.
read -r PREFIX < <(python3 -c '
import json, sys
s = json.load(open(sys.argv[1]))
pods = [n for n in s["namespaces"] if n.endswith("-p1a")]
print(pods[0][:-len("-p1a")])' "$STATE")
mapfile -t DAEMONS < <(python3 -c '
import json, sys
for pid in json.load(open(sys.argv[1]))["pids"]:
    args = open(f"/proc/{pid}/cmdline").read().split("\0")
    print(pid, args[args.index("--node") + 1])' "$STATE")
[ "${#DAEMONS[@]}" -gt 0 ] || die "no podwire daemon found in $STATE"
for d in "${DAEMONS[@]}"; do
  read -r pid node <<<"$d"
  [ "$(cat "/proc/$pid/comm")" = podwire ] || die "PID $pid is not podwire"
  echo "  daemon $node: PID $pid"
done

# The load, across nodes in every case (`ip netns exec` execs its command,
# so $! is the PID of iperf3 or ping itself):
#   TCP bulk        k8s-node1 pod a 10.2.36.68    -> k8s-node2 pod a 10.2.169.138
#   64-byte UDP     k8s-master pod b 10.2.235.195 -> k8s-node1 pod b 10.2.36.69
#   pings (5/s)     k8s-node2 pod b 10.2.169.139  -> k8s-master pod a 10.2.235.194
#                   k8s-master pod a 10.2.235.194 -> k8s-node2 pod a 10.2.169.138
ip netns exec "$PREFIX-p2a" iperf3 -s -1 -p 5201 >"$OUT/tcp-server.txt" 2>&1 &
LOAD_PIDS+=($!)
ip netns exec "$PREFIX-p1b" iperf3 -s -1 -p 5202 >"$OUT/udp-server.txt" 2>&1 &
LOAD_PIDS+=($!)
sleep 0.5
ip netns exec "$PREFIX-p1a" iperf3 -c 10.2.169.138 -p 5201 -t "$DURATION" -b "$TCP_RATE" -J >"$OUT/tcp.json" 2>&1 &
LOAD_PIDS+=($!)
ip netns exec "$PREFIX-pmb" iperf3 -c 10.2.36.69 -p 5202 -u -l 64 -b "$UDP_RATE" -t "$DURATION" -J >"$OUT/udp.json" 2>&1 &
LOAD_PIDS+=($!)
ip netns exec "$PREFIX-p2b" ping -q -i 0.2 -w "$DURATION" 10.2.235.194 >"$OUT/ping-1.txt" 2>&1 &
LOAD_PIDS+=($!)
ip netns exec "$PREFIX-pma" ping -q -i 0.2 -w "$DURATION" 10.2.169.138 >"$OUT/ping-2.txt" 2>&1 &
LOAD_PIDS+=($!)

# One sample a second, against the clock: seconds, then RSS (kB) and open
# descriptors per daemon.
CSV="$OUT/rss.csv"
{
  printf seconds
  for d in "${DAEMONS[@]}"; do read -r pid node <<<"$d"; printf ',%s_rss_kb,%s_fds' "$node" "$node"; done
  echo
} >"$CSV"
start=${EPOCHREALTIME/./}
for ((t = 0; t <= DURATION; t++)); do
  now=${EPOCHREALTIME/./}
  wait_us=$((start + t * 1000000 - now))
  [ "$wait_us" -gt 0 ] && sleep "$(printf '%d.%06d' $((wait_us / 1000000)) $((wait_us % 1000000)))"
  line=$t
  for d in "${DAEMONS[@]}"; do
    read -r pid node <<<"$d"
    rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status" 2>/dev/null) ||
      die "the daemon of $node (PID $pid) is gone at $t s; its log is in $OUT/lab"
    fds=$(find "/proc/$pid/fd" -mindepth 1 -maxdepth 1 | wc -l)
    line+=",$rss,$fds"
  done
  echo "$line" >>"$CSV"
  if ((t % 60 == 0)); then echo "  $t s: $line"; fi
done

# The load ends by itself at DURATION; give iperf3 a moment to report.
for p in "${LOAD_PIDS[@]}"; do
  for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.2; done
done
for d in "${DAEMONS[@]}"; do
  read -r pid node <<<"$d"
  "$BIN" show stats --json --control "$OUT/lab/$MODE-$node.sock" >"$OUT/stats-$node.json" 2>/dev/null || true
done

python3 - "$OUT" "$CSV" "$WARMUP" "$THRESHOLD_KB" "$DURATION" <<'EOF'
import csv, json, os, re, sys
out, path, warmup, threshold, duration = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
rows = list(csv.DictReader(open(path)))
nodes = [c[: -len("_rss_kb")] for c in rows[0] if c.endswith("_rss_kb")]

def load(name):
    try:
        return json.load(open(os.path.join(out, name)))
    except Exception as e:
        return {"error": f"no report ({e})"}

print()
print("== load ==")
tcp = load("tcp.json")
if "end" in tcp:
    e = tcp["end"]
    print(f"tcp bulk 10.2.36.68 -> 10.2.169.138: {e['sum_received']['bits_per_second'] / 1e9:.2f} Gbit/s, "
          f"{e['sum_received']['bytes'] / 1e9:.1f} GB, {e['sum_sent'].get('retransmits', 0)} retransmits")
else:
    print("tcp bulk:", tcp.get("error", tcp))
udp = load("udp.json")
if "end" in udp:
    s = udp["end"]["sum"]
    print(f"udp 64-byte 10.2.235.195 -> 10.2.36.69: {s['packets']} datagrams, {s['lost_packets']} lost "
          f"({s['lost_percent']:.3f} %), {s.get('out_of_order', 0)} out of order")
else:
    print("udp:", udp.get("error", udp))
for name, what in (("ping-1.txt", "10.2.169.139 -> 10.2.235.194"), ("ping-2.txt", "10.2.235.194 -> 10.2.169.138")):
    text = open(os.path.join(out, name)).read()
    loss = re.search(r"(\d+) packets transmitted, (\d+) received.*?([\d.]+)% packet loss", text)
    rtt = re.search(r"= [\d.]+/([\d.]+)/([\d.]+)/", text)
    if loss:
        print(f"ping {what}: {loss.group(2)}/{loss.group(1)} answered ({loss.group(3)} % loss)"
              + (f", rtt avg {rtt.group(1)} ms, max {rtt.group(2)} ms" if rtt else ""))
for node in nodes:
    st = load(f"stats-{node}.json")
    if "drops" in st:
        drops = {r: n for r, n in st["drops"] if n}
        print(f"{node}: drops {drops or 'none'}")

print()
print(f"== resident memory (VmRSS, kB), sampled every second for {duration} s; CSV: {path} ==")
print(f"{'daemon':<12}{'start':>8}{'@' + str(warmup) + 's':>8}{'min':>8}{'max':>8}{'end':>8}"
      f"{'max-@' + str(warmup) + 's':>11}{'slope kB/min':>14}{'fds start/end':>15}  flat?")
ok = True
for node in nodes:
    t = [int(r["seconds"]) for r in rows]
    rss = [int(r[f"{node}_rss_kb"]) for r in rows]
    fds = [int(r[f"{node}_fds"]) for r in rows]
    ref = rss[min(warmup, len(rss) - 1)]
    after = [v for s, v in zip(t, rss) if s >= warmup]
    rise = max(after) - ref
    # Least-squares slope after the warm-up, in kB per minute.
    xs = [s for s in t if s >= warmup]
    n = len(xs)
    mx, my = sum(xs) / n, sum(after) / n
    var = sum((x - mx) ** 2 for x in xs)
    slope = 60 * sum((x - mx) * (y - my) for x, y in zip(xs, after)) / var if var else 0.0
    flat = rise <= threshold
    ok &= flat
    print(f"{node:<12}{rss[0]:>8}{ref:>8}{min(rss):>8}{max(rss):>8}{rss[-1]:>8}{rise:>11}{slope:>14.1f}"
          f"{str(fds[0]) + '/' + str(fds[-1]):>15}  {'yes' if flat else 'NO'} (rise <= {threshold} kB)")
print()
print("flat: every daemon" if ok else "NOT flat: see above")
sys.exit(0 if ok else 1)
EOF
