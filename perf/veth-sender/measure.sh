#!/bin/bash
# Measures the packet processor's real drivers on a veth pair this script creates (and deletes): COUNT 64-byte
# UDP frames from one sender process on CPU 0 inside a namespace, the processor pinned to CPU 1 on the host end.
# The sender is trafgen (netsniff-ng) at its full rate where installed, otherwise veth_sender (built with gcc).
# Needs root and a Release build of tools/PacketProcessor.
# usage: [SENDER=trafgen|c] [SENDERS=N] [PROGRAMS="drop count"] [PROCESSOR_ARGS="--xdp-ring 8192"] measure.sh [COUNT] [DRIVER...]
#        (default 1000000, drivers afpacket afxdp; SENDERS sender processes on CPU 0, COUNT frames each)
#        DRIVER "c" is the reference: xsk_receiver.c (a minimal AF_XDP receiver in C, copy mode, drop only;
#        XSK_RING=N sets its fill and RX ring sizes, XSK_BUSY_POLL=US its busy polling as the processor's --busy-poll);
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
      taskset -c 1 "$work/xsk_receiver" "$host" ${XSK_RING:-2048} ${XSK_BUSY_POLL:-0} >"$out" 2>&1 &
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
    # One line per run: the processor's JSON (top-level fields) or the C receiver's last line, and the send time.
    if [ "$driver" = c ]; then
      # "received N rx_dropped N rx_invalid_descs N rx_ring_full N rx_fill_ring_empty_descs N"
      read -r _ rx _ d1 _ d2 _ d3 _ <<<"$(tail -n 1 "$out")"
      drops=$((d1 + d2 + d3)); matched=0; inflight=0
    else
      field() { grep -o "\"$1\": *[0-9]*" "$out" | head -n 1 | grep -o '[0-9]*$'; }
      rx=$(field rxPackets); drops=$(field kernelDrops); matched=$(field matched); inflight=$(field inFlight)
    fi
    secs=$(grep -o 'in [0-9.]* s' <<<"$sent" | head -n 1 | awk '{print $2}')
    LC_ALL=C awk -v d="$driver" -v p="$program" -v n="$((count * senders))" -v s="$secs" -v rx="$rx" \
        -v k="$drops" -v m="$matched" -v f="$inflight" 'BEGIN {
      printf "%-9s %-6s sent %9d in %6.3f s | received %9d kernel drops %7d matched %9d | %5.2f Mpps (received / send time) | inflight %s\n",
             d, p, n, s, rx, k, m, rx / s / 1e6, f }'
    rm -f "$out"
  done
done
