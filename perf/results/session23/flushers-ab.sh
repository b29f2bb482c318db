#!/bin/bash
# pod-new (defaults, 10 ms window) with --postgres-flushers 2 (default) vs 1, alternating, two rounds
cd /work/main
scripts/services.sh up >/dev/null 2>&1
eval "$(scripts/services.sh env)"
for r in 1 2; do
  for rate in 1000 250; do
    for f in 2 1; do
      PERF_NO_WAIT=1 POD=/tmp/bins/pod-new BENCH=/tmp/bins/bench TARGETS=dist DIST_EXTRA="--kafka-replication-factor 1 --postgres-flushers $f" PERF_OUT=/tmp/s23/fl$f-$rate-$r perf/cost.sh $rate > /tmp/s23/fl$f-$rate-$r.log 2>&1
    done
  done
done
for x in /tmp/s23/fl?-*-?/cost.tsv; do echo "$x $(tail -1 $x)"; done
