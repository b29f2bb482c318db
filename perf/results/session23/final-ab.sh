#!/bin/bash
# base (729f5b0 + steering guard, defaults) vs new (this session's final, defaults), two distributed pods
cd /work/main
eval "$(scripts/services.sh env)"
for r in 1 2; do
  for rate in ${RATES:-1000 250}; do
    for b in base new; do
      pod=/tmp/bins/pod; [ $b = new ] && pod=/tmp/bins/pod-new
      PERF_NO_WAIT=1 POD=$pod BENCH=/tmp/bins/bench TARGETS=dist DIST_EXTRA="--kafka-replication-factor 1" PERF_OUT=/tmp/s23/final-$b-$rate-$r perf/cost.sh $rate > /tmp/s23/final-$b-$rate-$r.log 2>&1
    done
  done
done
for f in /tmp/s23/final-*-?/cost.tsv; do echo "$f $(tail -1 $f)"; done
