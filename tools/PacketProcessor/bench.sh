#!/usr/bin/env bash
# Throughput of the synthetic driver, PagePool against ArrayPool<byte>.Shared: a markdown table of medians on stdout,
# each run on stderr. The work is done by perf/PacketProcessor.Bench (C#); this keeps the old short form:
#   tools/PacketProcessor/bench.sh [SECONDS] [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/../.."
exec dotnet run -c Release --project perf/PacketProcessor.Bench -- --duration "${1:-3}" --rounds "${2:-3}"
