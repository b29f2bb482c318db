#!/bin/bash
cd /work/main
for r in 1 2 3; do
  for b in steer win; do
    PERF_NO_WAIT=1 POD=/tmp/bins/pod-$b BENCH=/tmp/bins/bench perf/pacing.sh "1000 4000 8000" "1000" > /tmp/s22/active-$b-$r.tsv 2>/tmp/s22/active-$b-$r.err
  done
done
echo done > /tmp/s22/winab.done
