#!/bin/bash
# steer on/off alternating, same binary
cd /work/main
for r in 1 2 3; do
  for s in true false; do
    PERF_NO_WAIT=1 POD=/tmp/bins/pod-steer BENCH=/tmp/bins/bench POD_ARGS="--steer-connections $s" perf/pacing.sh "1000 4000 8000" "1000" > /tmp/s22/pacing-steer$s-$r.tsv 2>/tmp/s22/pacing-steer$s-$r.err
  done
done
echo done > /tmp/s22/ab.done
