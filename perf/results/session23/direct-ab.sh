#!/bin/bash
# base (1ef9eff defaults) vs final (10fefc4 + --postgres-flushers 1 = e430c2d's defaults), 1,000 msg/s, two rounds
cd /work/main
scripts/services.sh up >/dev/null 2>&1
eval "$(scripts/services.sh env)"
for r in 1 2; do
  for b in base final; do
    pod=/tmp/bins/pod; extra=""; [ $b = final ] && { pod=/tmp/bins/pod-new; extra="--postgres-flushers 1"; }
    PERF_NO_WAIT=1 POD=$pod BENCH=/tmp/bins/bench TARGETS=dist DIST_EXTRA="--kafka-replication-factor 1 $extra" PERF_OUT=/tmp/s23/direct-$b-$r perf/cost.sh 1000 > /tmp/s23/direct-$b-$r.log 2>&1
  done
done
for x in /tmp/s23/direct-*-?/cost.tsv; do echo "$x $(tail -1 $x)"; done
