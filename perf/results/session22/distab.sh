#!/bin/bash
cd /work/main
eval "$(scripts/services.sh env)"
for r in 1 2; do
  for v in "steer-true:--steer-connections true" "steer-false:--steer-connections false" "fl1:--steer-connections true --postgres-flushers 1"; do
    name=${v%%:*}; flags=${v#*:}
    PERF_NO_WAIT=1 POD=/tmp/bins/pod-steer BENCH=/tmp/bins/bench TARGETS=dist DIST_EXTRA="--kafka-replication-factor 1 $flags" PERF_OUT=/tmp/s22/cost-$name-$r perf/cost.sh 1000 > /tmp/s22/cost-$name-$r.log 2>&1
  done
done
echo done > /tmp/s22/distab.done
