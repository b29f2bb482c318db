#!/bin/bash
# A/B of --postgres-commit-window-us on two distributed pods at RATE, alternating, two rounds
cd /work/main
eval "$(scripts/services.sh env)"
RATE=${1:-500}
for r in 1 2; do
  for w in ${WINDOWS:-0 3000 10000}; do
    PERF_NO_WAIT=1 POD=/tmp/bins/pod BENCH=/tmp/bins/bench TARGETS=dist DIST_EXTRA="--kafka-replication-factor 1 --postgres-commit-window-us $w" PERF_OUT=/tmp/s23/pgwin-$RATE-$w-$r perf/cost.sh $RATE > /tmp/s23/pgwin-$RATE-$w-$r.log 2>&1
  done
done
for f in /tmp/s23/pgwin-$RATE-*-?/cost.tsv; do echo "$f $(tail -1 $f)"; done
