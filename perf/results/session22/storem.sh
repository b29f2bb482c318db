#!/bin/bash
POD=$1; RATE=$2; shift 2
rm -rf /tmp/pdata; $POD --listen 127.0.0.1:18963 --shards 2 --data-dir /tmp/pdata "$@" 2>/tmp/pod.log &
P=$!; sleep 1.5
/tmp/bins/bench --url ws://127.0.0.1:18963/ws --connections 1000 --connect-rate 2000 --rate $RATE --duration-secs 20 --threads 1 --payload-bytes 100 --drain-secs 3 --json /tmp/b.json >/dev/null 2>/tmp/b.log &
B=$!; sleep 6
curl -s 127.0.0.1:18963/metrics | grep -E '^distrisocks_store' | grep -v bucket > /tmp/m0; sleep 10
curl -s 127.0.0.1:18963/metrics | grep -E '^distrisocks_store' | grep -v bucket > /tmp/m1
join <(sort /tmp/m0) <(sort /tmp/m1) | awk -v r=$RATE '{printf "%-60s %10.3f per msg\n", $1, ($3-$2)/(10*r)}'
wait $B; kill $P; wait $P 2>/dev/null
