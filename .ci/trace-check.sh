#!/usr/bin/env bash
# Checks that dotnet-trace, given the providers string documented in README.md (section "Profiling", "Events"), records the page pool's
# events from a process running pools under load. Exits non-zero when an expected event is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

CONFIG=${CONFIG:-Release}
PROVIDERS='UnmanagedPool-PagePool:0x1F:5:IntervalSec=1,Microsoft-DotNETCore-SampleProfiler,Microsoft-Windows-DotNETRuntime:0x14C14FCCBD:4'
WORK=$(mktemp -d)
CHILD_PID=""
cleanup() {
    if [ -n "$CHILD_PID" ] && kill -0 "$CHILD_PID" 2>/dev/null; then kill "$CHILD_PID" 2>/dev/null || true; fi
    rm -rf "$WORK"
}
trap cleanup EXIT

dotnet tool restore >/dev/null
dotnet build tests/PoolLoadChild/PoolLoadChild.csproj -c "$CONFIG" -v q -nologo >/dev/null
dotnet build tools/PoolStat/PoolStat.csproj -c "$CONFIG" -v q -nologo >/dev/null

CHILD_DLL=tests/PoolLoadChild/bin/$CONFIG/net10.0/PoolLoadChild.dll
POOLSTAT_DLL=tools/PoolStat/bin/$CONFIG/net10.0/PoolStat.dll

dotnet "$CHILD_DLL" 20 >"$WORK/child.out" &
CHILD_PID=$!
for _ in $(seq 1 100); do
    grep -q '^ready' "$WORK/child.out" 2>/dev/null && break
    sleep 0.1
done
grep -q '^ready' "$WORK/child.out" || { echo "trace-check: the load child did not start"; exit 1; }

dotnet dotnet-trace collect -p "$CHILD_PID" --providers "$PROVIDERS" --duration 00:00:00:03 -o "$WORK/pool.nettrace" >"$WORK/trace.log" 2>&1 \
    || { cat "$WORK/trace.log"; echo "trace-check: dotnet-trace collect failed"; exit 1; }

dotnet "$POOLSTAT_DLL" report "$WORK/pool.nettrace" --json >"$WORK/report.json"
status=0
for event in StateHold StateRelease Release PoolCreated PoolStats; do
    if grep -Eq "\"$event\":[1-9][0-9]*" "$WORK/report.json"; then
        echo "trace-check: $event $(grep -Eo "\"$event\":[0-9]+" "$WORK/report.json" | head -1 | cut -d: -f2)"
    else
        echo "trace-check: no $event event in the trace"
        status=1
    fi
done
if ! grep -Eq '"cpuSamples":[1-9]' "$WORK/report.json"; then
    echo "trace-check: no CPU samples in the trace"
    status=1
fi
[ $status -eq 0 ] && echo "trace-check: ok"
exit $status
