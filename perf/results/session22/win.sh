#!/bin/bash
cd /work/main
for r in 1 2; do
  PERF_NO_WAIT=1 POD=/tmp/bins/pod-steer BENCH=/tmp/bins/bench perf/pacing.sh "1000 4000 8000" "1000 3000" > /tmp/s22/window-$r.tsv 2>/tmp/s22/window-$r.err
done
echo done > /tmp/s22/win.done
