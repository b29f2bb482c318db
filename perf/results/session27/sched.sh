#!/usr/bin/env bash
# sched.sh POD RATE [pod flags]: per thread over 10 s of a fresh pod at RATE: on-CPU ms, runqueue-wait ms (schedstat), vol/invol cs
POD=$1; RATE=$2; shift 2
BENCH=${BENCH:-/tmp/bins/base/distrisocks-bench}
rm -rf /tmp/pd; $POD --listen 127.0.0.1:18960 --shards 2 --data-dir /tmp/pd "$@" 2>/dev/null & PP=$!; sleep 1.5
$BENCH --url ws://127.0.0.1:18960/ws --connections 1000 --rate $RATE --duration-secs 20 --threads 1 --json /tmp/bn.json >/dev/null 2>&1 & B=$!
sleep 1; GP=$(pgrep -n -f distrisocks-bench)
snap() { for p in $PP $GP; do for t in /proc/$p/task/*; do echo "$p:$(basename $t):$(cat $t/comm | tr ' ' _) $(cat $t/schedstat | awk '{print $1, $2}') $(awk '/^voluntary/{v=$2} /^nonvoluntary/{n=$2} END{print v, n}' $t/status)"; done; done | sort; }
sleep 6; snap > /tmp/s0; sleep 10; snap > /tmp/s1
wait $B; kill $PP; wait $PP 2>/dev/null
join /tmp/s0 /tmp/s1 | awk '{ run=($6-$2)/1e6/10; wt=($7-$3)/1e6/10; if (run>1) printf "%-28s run %5.0f ms/s  rq-wait %5.0f ms/s  vol %6d/s invol %5d/s\n", $1, run, wt, ($8-$4)/10, ($9-$5)/10 }'
python3 -c "import json;d=json.load(open('/tmp/bn.json'));l=d['latency_us'];print('deliv',round(d['delivered_per_sec']),'p50',l['p50'],'p99',l['p99'],'miss',d['counts']['missing'])"
