#!/usr/bin/env bash
# A/B of the generator: the same pod binary, base and new generators alternating.
cd /work/main
for rate in 8000 4000; do
  for round in 1 2; do
    for b in base new; do
      if [ $b = base ]; then B=/tmp/base-target/release/distrisocks-bench; else B=/tmp/bin-new/distrisocks-bench; fi
      PERF_NO_WAIT=1 PERF_OUT=/tmp/ab/$rate-$round-$b BENCH=$B POD=/tmp/bin-new/distrisocks TARGETS=sync STEP_SECS=25 perf/cost.sh $rate >/dev/null 2>&1
      echo -e "$b\t$(tail -1 /tmp/ab/$rate-$round-$b/cost.tsv)"
    done
  done
done
