#!/usr/bin/env bash
# Single-stream TCP throughput between two pods on two nodes, in the same
# run: the kernel's VXLAN (vxlan.calico on both nodes, as Felix sets it up),
# then podwire in VXLAN and in IPIP mode. As root; everything lives in
# namespaces named pwt<pid>-*, deleted at the end. Until `podwire bench`
# exists, this is how the figures in docs/performance.md were measured.
#
# Usage: scripts/throughput.sh [SECONDS] [PODWIRE_BINARY]
# Environment: MODES="vxlan ipip" (podwire modes to run), SKIP_KERNEL=1 (no
# kernel baseline), PERF=FILE (perf record -a -g for 3 s mid-transfer),
# PODWIRE_FLAGS="--no-tun-offload ..." (extra flags for podwire run),
# SYSCALLS=1 (count each daemon's system calls with perf for 3 s
# mid-transfer and print them per 64 KB of pod traffic).
set -euo pipefail
SECS=${1:-5}
BIN=${2:-target/release/podwire}
R=pwt$$
DIR=$(mktemp -d)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  for n in sw n1 n2 p1 p2; do ip netns del "$R-$n" 2>/dev/null || true; done
  rm -rf "$DIR"
}
trap cleanup EXIT
trap "exit 1" INT TERM

M1=66:8c:73:5a:90:99 M2=66:90:43:3d:b3:e7 # vtep_mac_for(k8s-node1), (k8s-node2)

# count_syscalls PID CONTROL COUNTER LABEL: system calls of daemon PID over
# 3 s (perf tracepoints, all threads), per 64 KB that crossed its endpoint
# (COUNTER of `show stats`: from_workload on the sender, to_workload on the
# receiver).
count_syscalls() {
  local pid=$1 ctl=$2 counter=$3 label=$4 b0 b1 out
  bytes() { "$BIN" show endpoints --json --control "$ctl" |
    python3 -c "import json,sys; print(sum(e['$counter']['bytes'] for e in json.load(sys.stdin)))"; }
  b0=$(bytes)
  out=$(perf stat -x, -e raw_syscalls:sys_enter -e syscalls:sys_enter_read \
    -e syscalls:sys_enter_readv -e syscalls:sys_enter_writev -e syscalls:sys_enter_write \
    -e syscalls:sys_enter_sendmsg -e syscalls:sys_enter_sendmmsg \
    -e syscalls:sys_enter_recvmmsg -e syscalls:sys_enter_recvmsg \
    -e syscalls:sys_enter_epoll_wait -e syscalls:sys_enter_epoll_pwait \
    -p "$pid" -- sleep 3 2>&1 >/dev/null)
  b1=$(bytes)
  echo "$out" | python3 -c "
import sys
per = ($b1 - $b0) / 65536
print('  $label: %.0f MB in 3 s; system calls per 64 KB:' % (($b1 - $b0) / 1e6))
for line in sys.stdin:
    f = line.strip().split(',')
    if len(f) > 2 and f[0].isdigit() and int(f[0]) > 0:
        print('    %-12s %6.2f' % (f[2].split('sys_enter_')[-1].replace('raw_syscalls:sys_enter', 'all'), int(f[0]) / max(per, 1e-9)))
"
}

topology() {
  for n in sw n1 n2 p1 p2; do ip netns add "$R-$n"; ip -n "$R-$n" link set lo up; done
  ip -n "$R-sw" link add br0 type bridge; ip -n "$R-sw" link set br0 up
  for i in 1 2; do
    ip link add eth0 netns "$R-n$i" type veth peer name "$R-$i" netns "$R-sw"
    ip -n "$R-sw" link set "$R-$i" master br0 up
    ip -n "$R-n$i" link set eth0 up
  done
  ip -n "$R-n1" addr add 192.168.33.55/24 dev eth0
  ip -n "$R-n2" addr add 192.168.33.57/24 dev eth0
}
teardown() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true; PIDS=()
  for n in sw n1 n2 p1 p2; do ip netns del "$R-$n" 2>/dev/null || true; done
}
pod_route() { # pod-ns ip
  ip -n "$1" addr add "$2/32" dev eth0; ip -n "$1" link set eth0 up
  ip -n "$1" route add 169.254.1.1 dev eth0 scope link; ip -n "$1" route add default via 169.254.1.1 dev eth0
}
kernel_node() { # i me-ip peer-ip me-tunnel peer-tunnel peer-block my-mac peer-mac pod-ip
  local N="ip -n $R-n$1"
  $N link add vxlan.calico type vxlan id 4096 dstport 4789 local "$2" dev eth0 nolearning
  $N link set vxlan.calico address "$7" mtu 1450 up
  $N addr add "$4/32" dev vxlan.calico
  $N route add "$6" via "$5" dev vxlan.calico onlink
  $N neigh add "$5" lladdr "$8" dev vxlan.calico nud permanent
  bridge -n "$R-n$1" fdb add "$8" dev vxlan.calico dst "$3"
  $N route add default via 192.168.33.1 dev eth0 onlink
  ip netns exec "$R-n$1" sysctl -q -w net.ipv4.ip_forward=1
  $N link add cali0 type veth peer name eth0 netns "$R-p$1"
  $N link set cali0 address ee:ee:ee:ee:ee:ee mtu 1450 up
  ip netns exec "$R-n$1" sysctl -q -w net.ipv4.conf.cali0.proxy_arp=1
  $N route add "$9" dev cali0 scope link
  ip -n "$R-p$1" link set eth0 mtu 1450
  pod_route "$R-p$1" "$9"
}
iperf() {
  ip netns exec "$R-p2" iperf3 -s -1 -D -I "$DIR/iperf.pid" >/dev/null; sleep 0.3
  ip netns exec "$R-p1" iperf3 -c 10.2.169.138 -t "$SECS" -J | python3 -c 'import json,sys; print("%.2f" % (json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"]/1e9))'
}

if [ -z "${SKIP_KERNEL:-}" ]; then
topology
kernel_node 1 192.168.33.55 192.168.33.57 10.2.36.65 10.2.169.129 10.2.169.128/26 $M1 $M2 10.2.36.68
kernel_node 2 192.168.33.57 192.168.33.55 10.2.169.129 10.2.36.65 10.2.36.64/26 $M2 $M1 10.2.169.138
echo "kernel-vxlan  $(iperf) Gbit/s"
teardown
fi

for mode in ${MODES:-vxlan ipip}; do
  cfg="$DIR/$mode.yaml"
  enc=$([ $mode = vxlan ] && echo "vxlanMode: Always" || echo "ipipMode: Always")
  cat > "$cfg" <<YAML
apiVersion: projectcalico.org/v3
kind: IPPool
metadata: {name: pool}
spec: {cidr: 10.2.0.0/16, $enc}
---
apiVersion: projectcalico.org/v3
kind: Node
metadata: {name: k8s-node1}
spec: {bgp: {ipv4Address: 192.168.33.55/24}, ipv4VXLANTunnelAddr: 10.2.36.65}
---
apiVersion: projectcalico.org/v3
kind: Node
metadata: {name: k8s-node2}
spec: {bgp: {ipv4Address: 192.168.33.57/24}, ipv4VXLANTunnelAddr: 10.2.169.129}
---
apiVersion: crd.projectcalico.org/v1
kind: IPAMBlock
metadata: {name: b1}
spec: {cidr: 10.2.36.64/26, affinity: "host:k8s-node1"}
---
apiVersion: crd.projectcalico.org/v1
kind: IPAMBlock
metadata: {name: b2}
spec: {cidr: 10.2.169.128/26, affinity: "host:k8s-node2"}
---
apiVersion: projectcalico.org/v3
kind: WorkloadEndpoint
metadata: {name: w1}
spec: {node: k8s-node1, interfaceName: cali1, ipNetworks: [10.2.36.68/32]}
---
apiVersion: projectcalico.org/v3
kind: WorkloadEndpoint
metadata: {name: w2}
spec: {node: k8s-node2, interfaceName: cali2, ipNetworks: [10.2.169.138/32]}
YAML
  topology
  for i in 1 2; do
    # shellcheck disable=SC2086
    RUST_LOG=warn ip netns exec "$R-n$i" "$BIN" run --config "$cfg" --node "k8s-node$i" --control "$DIR/n$i.sock" ${PODWIRE_FLAGS:-} & PIDS+=($!)
  done
  for i in 1 2; do
    for _ in $(seq 100); do ip -n "$R-n$i" link show "cali$i" >/dev/null 2>&1 && break; sleep 0.05; done
    ip -n "$R-n$i" link set "cali$i" netns "$R-p$i"; ip -n "$R-p$i" link set "cali$i" name eth0
  done
  pod_route "$R-p1" 10.2.36.68; pod_route "$R-p2" 10.2.169.138
  PERF_PID=
  if [ -n "${PERF:-}" ]; then
    ( sleep 2; perf record -a -g -o "$PERF" -- sleep 3 >/dev/null 2>&1 ) & PERF_PID=$!
  fi
  SC_PID=
  if [ -n "${SYSCALLS:-}" ]; then
    ( sleep 2; count_syscalls "${PIDS[-2]}" "$DIR/n1.sock" from_workload sender > "$DIR/sc1" &
      count_syscalls "${PIDS[-1]}" "$DIR/n2.sock" to_workload receiver > "$DIR/sc2"; wait
      cat "$DIR/sc1" "$DIR/sc2" ) > "$DIR/sc" & SC_PID=$!
  fi
  echo "podwire-$mode  $(iperf) Gbit/s"
  [ -z "$PERF_PID" ] || wait "$PERF_PID"
  if [ -n "$SC_PID" ]; then wait "$SC_PID"; cat "$DIR/sc"; fi
  teardown
done
