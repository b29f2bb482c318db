#!/bin/bash
# base (31b5e94) vs new (route cache, --route-cache-max-age-ms 20 default): perf/cost.sh at
# RATES, two pods, binaries alternating, ROUNDS rounds. Per run also Redis' ZRANGEBYSCORE
# calls (route lookups) per delivered message, from INFO commandstats reset before the run.
cd /work/main
scripts/services.sh up >/dev/null 2>&1
eval "$(scripts/services.sh env)"
for r in $(seq 1 "${ROUNDS:-2}"); do
  for rate in ${RATES:-1000 250}; do
    for b in base new; do
      out=/tmp/s24/cache-$b-$rate-$r
      redis-cli CONFIG RESETSTAT >/dev/null
      PERF_NO_WAIT=1 POD=/tmp/bins/$b-pod BENCH=/tmp/bins/bench TARGETS=dist \
        DIST_EXTRA="--kafka-replication-factor 1" PERF_OUT=$out perf/cost.sh $rate > $out.log 2>&1
      calls=$(redis-cli INFO commandstats | awk -F'[=,:]' '/^cmdstat_zrangebyscore:/{print $3}')
      sent=$(jq -r '.counts.sent // empty' $out/dist.json 2>/dev/null)
      echo -e "$b\t$rate\t$r\tzrangebyscore=$calls\tsent=$sent\t$(tail -1 $out/cost.tsv)" | tee -a /tmp/s24/cache-ab.txt
    done
  done
done
