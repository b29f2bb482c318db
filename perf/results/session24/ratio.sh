#!/bin/bash
# The issue 8 cost ratio in one sitting: perf/cost.sh at RATE with TARGETS="sync dist", new binary, ROUNDS rounds.
cd /work/main
scripts/services.sh up >/dev/null 2>&1
eval "$(scripts/services.sh env)"
for r in $(seq 1 "${ROUNDS:-2}"); do
  out=/tmp/s24/ratio-${RATE:-1000}-$r
  PERF_NO_WAIT=1 POD=/tmp/bins/new-pod BENCH=/tmp/bins/bench TARGETS="sync dist" \
    DIST_EXTRA="--kafka-replication-factor 1" PERF_OUT=$out perf/cost.sh ${RATE:-1000} > $out.log 2>&1
  tail -2 $out/cost.tsv | sed "s/^/$r\t/" | tee -a /tmp/s24/ratio.txt
done
