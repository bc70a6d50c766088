#!/usr/bin/env bash
# Regenerates perf/RESULTS.md and perf/plots/*.png from one run on this machine:
#   1. the BenchmarkDotNet suite (short job; pass other BenchmarkDotNet arguments to override, e.g. --job medium),
#   2. the cross-thread methods interleaved in one process (perf/UnmanagedPool.CrossThread: perf/crossthread.json
#      and its table, perf/crossthread.txt, from a second run),
#   3. a 20 s stress run on 2 threads with 1 % injected allocation faults (perf/stress-20s.txt),
#   4. perf/UnmanagedPool.Results, which reads BenchmarkDotNet.Artifacts/results, perf/crossthread.json and the stress
#      outputs (perf/stress-20s.txt and, when present, perf/soak-10min.txt from a 10-minute soak).
# Usage: perf/run-all.sh [extra BenchmarkDotNet arguments]
#   FILTER='*Bulk*' perf/run-all.sh      runs only the matching benchmark classes
# The 10-minute soak is separate (it takes 10 minutes):
#   dotnet run -c Release --project perf/UnmanagedPool.Stress -- --threads 2 --duration 10m --seed 1 --fault-rate 0.01 --json perf/soak-10min.json > perf/soak-10min.txt
set -euo pipefail
cd "$(dirname "$0")/.."

FILTER=${FILTER:-*}
ARTIFACTS=BenchmarkDotNet.Artifacts
JOB_ARGS=(--job short)
if [[ $# -gt 0 ]]; then JOB_ARGS=("$@"); fi

dotnet build perf/UnmanagedPool.Benchmarks -c Release -nologo -v q
dotnet build perf/UnmanagedPool.CrossThread -c Release -nologo -v q
dotnet build perf/UnmanagedPool.Stress -c Release -nologo -v q
dotnet build perf/UnmanagedPool.Results -c Release -nologo -v q

rm -rf "$ARTIFACTS/results"
dotnet run -c Release --no-build --project perf/UnmanagedPool.Benchmarks -- \
  --filter "$FILTER" --artifacts "$ARTIFACTS" --exporters json github "${JOB_ARGS[@]}"

# The exit codes of the cross-thread program (1: a pool method allocated) and of the stress run (1: a violation)
# are kept: a failure fails this script after the results are written.
set +e
dotnet run -c Release --no-build --project perf/UnmanagedPool.CrossThread -- --json > perf/crossthread.json
crossthread_rc=$?
dotnet run -c Release --no-build --project perf/UnmanagedPool.CrossThread > perf/crossthread.txt
crossthread_text_rc=$?
dotnet run -c Release --no-build --project perf/UnmanagedPool.Stress -- \
  --threads 2 --duration 20s --seed 1 --fault-rate 0.01 --json perf/stress-20s.json > perf/stress-20s.txt
stress_rc=$?
set -e

stress_files=(perf/stress-20s.txt)
[[ -f perf/soak-10min.txt ]] && stress_files+=(perf/soak-10min.txt)
dotnet run -c Release --no-build --project perf/UnmanagedPool.Results -- \
  --artifacts "$ARTIFACTS/results" --out perf --crossthread perf/crossthread.json --command "perf/run-all.sh${*:+ $*}" "${stress_files[@]}"
# The packet processor's side-by-side table comes from tools/PacketProcessor/bench.sh (run separately: it needs a
# quiet machine); it is appended when present.
if [[ -f perf/RESULTS-packet-processor.md ]]; then
  { echo; cat perf/RESULTS-packet-processor.md; } >> perf/RESULTS.md
fi
for rc in "$crossthread_rc" "$crossthread_text_rc" "$stress_rc"; do
  if [[ $rc -ne 0 ]]; then exit "$rc"; fi
done
