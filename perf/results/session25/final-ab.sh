#!/usr/bin/env bash
# Base (133d7c7) against this session's binary (--store-cache-mib default 32), alternating.
# Usage: final-ab.sh ROUNDS "RATES" OUTDIR
set -euo pipefail
rounds=$1 rates=$2 out=$3
mkdir -p "$out"; cd /work/main
for r in $(seq 1 "$rounds"); do
  for b in base new; do
    PERF_NO_WAIT=1 POD=/tmp/bins/pod-$b BENCH=/tmp/bins/bench perf/pacing.sh "$rates" "1000" > "$out/$b-$r.tsv"
  done
done
for f in "$out"/*.tsv; do echo "== $f"; cat "$f"; done
