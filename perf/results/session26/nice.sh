#!/usr/bin/env bash
# /tmp/nice.sh NICE RATE: pod at RATE 30 s, store-writer thread reniced to NICE (0 = untouched)
N=$1; RATE=$2
rm -rf /tmp/pd; /tmp/bins/rng/distrisocks --listen 127.0.0.1:18960 --shards 2 --data-dir /tmp/pd 2>/dev/null & PP=$!; sleep 1.5
for t in /proc/$PP/task/*; do c=$(cat $t/comm); if [ "$c" = store-writer ] && [ "$N" != 0 ]; then renice -n $N -p $(basename $t) >/dev/null; fi; done
/tmp/bins/base/distrisocks-bench --url ws://127.0.0.1:18960/ws --connections 1000 --rate $RATE --duration-secs 30 --threads 1 --json /tmp/bn.json >/dev/null 2>&1
m=$(curl -s localhost:18960/metrics | awk -F'[{}" ]' '/store_commit_seconds_bucket/{b[++i]=$NF} /store_commit_micros_max /{mx=$NF} END {printf "commits=%d >12.8ms=%d >51ms=%d max=%dus", b[21], b[21]-b[8], b[21]-b[10], mx}')
kill $PP; wait $PP 2>/dev/null
python3 -c "import json;d=json.load(open('/tmp/bn.json'));l=d['latency_us'];print('nice $N rate $RATE: delivered',round(d['delivered_per_sec']),'p50',l['p50'],'p99',l['p99'],'p999',l['p999'],'missing',d['counts']['missing'],'| $m')"
