#!/usr/bin/env bash
# A/B of the SQLite page cache: base binary (default 2 MiB cache) vs the experiment build with
# EXP_SQLITE_CACHE_KIB / EXP_SQLITE_MMAP, alternating, same generator binary.
# Usage: cache-ab.sh ROUNDS "RATES" OUTDIR [ENV-ASSIGNMENTS for exp...]
set -euo pipefail
rounds=$1 rates=$2 out=$3; shift 3
mkdir -p "$out"
cd /work/main
for r in $(seq 1 "$rounds"); do
  PERF_NO_WAIT=1 POD=/tmp/bins/pod-base BENCH=/tmp/bins/bench perf/pacing.sh "$rates" "1000" > "$out/base-$r.tsv"
  env "$@" PERF_NO_WAIT=1 POD=/tmp/bins/pod-exp BENCH=/tmp/bins/bench perf/pacing.sh "$rates" "1000" > "$out/exp-$r.tsv"
done
for f in "$out"/*.tsv; do echo "== $f"; cat "$f"; done
