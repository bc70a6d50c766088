#!/usr/bin/env bash
# Throughput of the synthetic driver: drop and redirect, 1 and 2 queues, PagePool against ArrayPool<byte>.Shared,
# in one run. Each configuration runs ROUNDS times for SECONDS seconds, interleaved (pagepool, arraypool,
# pagepool, ...) so that load from other processes hits both alike; the table shows the median Mpps.
#   tools/PacketProcessor/bench.sh [SECONDS] [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/../.."
SECONDS_PER_RUN=${1:-3}
ROUNDS=${2:-3}
dotnet build tools/PacketProcessor -c Release -v q -nologo >/dev/null
DLL=tools/PacketProcessor/bin/Release/net10.0/PacketProcessor.dll
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT

configs=(
  "drop 1 true" "drop 2 true"
  "redirect 1 true" "redirect 2 true"
  "redirect 1 false" "redirect 2 false"
)
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg), $(nproc) CPUs, ${SECONDS_PER_RUN}s x ${ROUNDS} rounds per cell" >&2
for round in $(seq 1 "$ROUNDS"); do
  for c in "${configs[@]}"; do
    read -r program queues frames <<<"$c"
    for pool in pagepool arraypool; do
      [[ $pool == arraypool && $frames == false ]] && continue
      f="$OUT/$program-$queues-$frames-$pool-$round.json"
      dotnet "$DLL" --program "$program" --queues "$queues" --pool "$pool" --xdp-frames "$frames" \
        --duration "${SECONDS_PER_RUN}s" --json --quiet >"$f"
      echo "  round $round: $program q=$queues $pool xdp-frames=$frames: $(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["mpps"])' "$f") Mpps" >&2
    done
  done
done
python3 - "$OUT" <<'PY'
import json, os, statistics, sys
d = sys.argv[1]
runs = {}
for name in os.listdir(d):
    program, queues, frames, pool, _ = name[:-5].split("-")
    r = json.load(open(os.path.join(d, name)))
    assert r["inFlight"] == 0, f"{name}: inFlight {r['inFlight']}"
    runs.setdefault((program, int(queues), frames, pool), []).append(r["mpps"])
med = {k: statistics.median(v) for k, v in runs.items()}
print("| program | queues | redirected as | pagepool Mpps | arraypool Mpps | pagepool / arraypool |")
print("|---|---|---|---|---|---|")
for program in ("drop", "redirect"):
    for frames in ("true", "false"):
        for q in (1, 2):
            pp = med.get((program, q, frames, "pagepool"))
            if pp is None:
                continue
            ap = med.get((program, q, "true", "arraypool"))
            how = "-" if program == "drop" else ("XdpFrame" if frames == "true" else "bare page")
            print(f"| {program} | {q} | {how} | {pp:.1f} | {ap:.1f} | {pp / ap:.1f}x |")
PY
