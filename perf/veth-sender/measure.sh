#!/bin/bash
# Measures the packet processor's real drivers on a veth pair this script creates (and deletes): COUNT 64-byte
# UDP frames from one sender process on CPU 0 inside a namespace, the processor pinned to CPU 1 on the host end.
# The sender is trafgen (netsniff-ng) at its full rate where installed, otherwise veth_sender (built with gcc).
# Needs root and a Release build of tools/PacketProcessor.
# usage: [SENDER=trafgen|c] [SENDERS=N] [PROGRAMS="drop count"] [PROCESSOR_ARGS="--xdp-ring 8192"] measure.sh [COUNT] [DRIVER...]
#        (default 1000000, drivers afpacket afxdp; SENDERS sender processes on CPU 0, COUNT frames each)
#        DRIVER "c" is the reference: xsk_receiver.c (a minimal AF_XDP receiver in C, copy mode, drop only;
#        XSK_RING=N sets its fill and RX ring sizes);
#        DRIVER "none" sends with no receiver attached (the sender's own rate into the host's stack).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
count=${1:-1000000}
senders=${SENDERS:-1}
programs=${PROGRAMS:-drop count}
shift || true
drivers=${*:-afpacket afxdp}
ns=upx-measure-$$
host=upxmh$$
peer=upxmp$$
work=$(mktemp -d)
kind=${SENDER:-$(command -v trafgen >/dev/null 2>&1 && echo trafgen || echo c)}
if [ "$kind" = c ]; then
  sender=$work/veth_sender
  gcc -O2 -o "$sender" "$here/veth_sender.c"
fi
if [[ " $drivers " == *" c "* ]]; then
  gcc -O2 -o "$work/xsk_receiver" "$here/xsk_receiver.c"
fi
cleanup() { ip netns del "$ns" 2>/dev/null || true; ip link del "$host" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
ip netns add "$ns"
ip link add "$host" type veth peer name "$peer"
ip link set "$peer" netns "$ns"
sysctl -qw "net.ipv6.conf.$host.disable_ipv6=1" || true
ip netns exec "$ns" sysctl -qw "net.ipv6.conf.$peer.disable_ipv6=1" || true
ip addr add 10.233.0.1/24 dev "$host"
ip link set "$host" up
ip netns exec "$ns" ip addr add 10.233.0.2/24 dev "$peer"
ip netns exec "$ns" ip link set "$peer" up
mac=$(cat "/sys/class/net/$host/address")
# trafgen: 14 + 20 + 8 + 22 = 64 bytes, IPv4 and UDP checksums filled in by trafgen.
echo "{ eth(da=$mac), ipv4(saddr=10.233.0.2, daddr=10.233.0.1, ttl=64), udp(sp=40000, dp=4791), fill(0x5a, 22) }" >"$work/udp64.cfg"
echo "sender: $kind; load average $(cut -d' ' -f1-3 /proc/loadavg)"
dll="$root/tools/PacketProcessor/bin/Release/net10.0/PacketProcessor.dll"
for driver in $drivers; do
  for program in $programs; do
    [ "$driver" = c ] || [ "$driver" = none ] && [ "$program" != drop ] && continue
    out=$(mktemp)
    # Runs until stopped: SIGTERM one second after the sender is done (the processor detaches and reports).
    if [ "$driver" = none ]; then
      sleep 600 &
    elif [ "$driver" = c ]; then
      taskset -c 1 "$work/xsk_receiver" "$host" ${XSK_RING:-} >"$out" 2>&1 &
    else
      taskset -c 1 dotnet "$dll" --driver "$driver" -i "$host" -p "$program" --port 4791 -t 600s --json --quiet ${PROCESSOR_ARGS:-} >"$out" 2>/dev/null &
    fi
    pid=$!
    sleep 4
    logs=(); spids=()
    for s in $(seq 1 "$senders"); do
      log=$(mktemp); logs+=("$log")
      if [ "$kind" = trafgen ]; then
        # One process (--cpus 1) on CPU 0 at its full rate; its own report gives the send time, turned into
        # veth_sender's "... in S s" form.
        ip netns exec "$ns" taskset -c 0 trafgen --dev "$peer" --conf "$work/udp64.cfg" --num "$count" --cpus 1 --no-sock-mem 2>&1 \
          | awk '/ usec on CPU/ { gsub(/[\r()]/, ""); printf "sent %d frames in %.6f s\n", $(NF - 1), $1 + $3 / 1e6 }' >"$log" &
      else
        ip netns exec "$ns" taskset -c 0 "$sender" "$peer" "$mac" 10.233.0.2 10.233.0.1 4791 "$count" >"$log" &
      fi
      spids+=($!)
    done
    wait "${spids[@]}" || true
    # The longest sender's time; every sender sent COUNT frames.
    sent=$(cat "${logs[@]}" | sort -t' ' -k5 -n | tail -1)
    [ -n "${DEBUG:-}" ] && echo "sender: $sent"
    rm -f "${logs[@]}"
    sleep 1
    kill -TERM $pid
    wait $pid || true
    if ip link show dev "$host" | grep -q xdp; then echo "XDP program left attached after $driver"; exit 1; fi
    if [ "$driver" = none ]; then
      echo "none      -      $sent (no receiver)"
      rm -f "$out"
      continue
    fi
    python3 - "$out" "$driver" "$program" "$((count * senders))" "$sent" <<'PY'
import json, re, sys
text = open(sys.argv[1]).read()
if sys.argv[2] == "c":
    # "received N rx_dropped N rx_invalid_descs N rx_ring_full N rx_fill_ring_empty_descs N"
    f = dict(zip(*[iter(text.split("\n")[-2].split())] * 2))
    r = {"rxPackets": int(f["received"]), "matched": 0, "inFlight": 0,
         "kernelDrops": int(f["rx_dropped"]) + int(f["rx_invalid_descs"]) + int(f["rx_ring_full"])}
else:
    r = json.loads(text)
sent = sys.argv[5]
secs = float(re.search(r"in ([0-9.]+) s", sent).group(1))
rx = r["rxPackets"]
print(f"{sys.argv[2]:9} {sys.argv[3]:6} sent {int(sys.argv[4]):>9,} in {secs:6.3f} s | received {rx:>9,} "
      f"kernel drops {r['kernelDrops']:>7,} matched {r['matched']:>9,} | {rx / secs / 1e6:5.2f} Mpps (received / send time) | inflight {r['inFlight']}")
PY
    rm -f "$out"
  done
done
