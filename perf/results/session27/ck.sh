#!/usr/bin/env bash
# ck.sh POD RATE CKPT_MS: fresh pod, RATE msg/s for 30 s (1000 conns); the checkpoint period from
# DISTRISOCKS_EXP_CKPT_MS (throwaway hook). Prints latency, commit histogram, pod CPU-us/msg and
# the checkpoint thread's CPU-us and bytes written per message (over the middle 20 s).
POD=$1; RATE=$2; CK=$3; shift 3
BENCH=${BENCH:-/tmp/bins/base/distrisocks-bench}
rm -rf /tmp/pd; DISTRISOCKS_EXP_CKPT_MS=$CK $POD --listen 127.0.0.1:18960 --shards 2 --data-dir /tmp/pd "$@" 2>/dev/null & PP=$!; sleep 1.5
$BENCH --url ws://127.0.0.1:18960/ws --connections 1000 --rate $RATE --duration-secs 30 --threads 1 --json /tmp/bn.json >/dev/null 2>&1 & B=$!
snap() { local cpu=$(awk '{print $14+$15}' /proc/$PP/stat) ck=0 ckw=0 st=0 stw=0
  for t in /proc/$PP/task/*; do c=$(cat $t/comm)
    if [ "$c" = store-checkpoin ]; then ck=$(awk '{print $14+$15}' $t/stat); ckw=$(awk '/^wchar/{print $2}' $t/io); fi
    if [ "$c" = store-writer ]; then st=$(awk '{print $14+$15}' $t/stat); stw=$(awk '/^wchar/{print $2}' $t/io); fi
  done; echo "$cpu $ck $ckw $st $stw"; }
sleep 6; a=($(snap)); sleep 20; b=($(snap))
m=$(curl -s localhost:18960/metrics | awk -F'[{}" ]' '/store_commit_seconds_bucket/{b[++i]=$NF} /store_commit_micros_max /{mx=$NF} END {printf "commits=%d >12.8ms=%d >51ms=%d max=%dus", b[21], b[21]-b[8], b[21]-b[10], mx}')
wait $B; kill $PP; wait $PP 2>/dev/null
n=$((20*RATE))
python3 -c "import json;d=json.load(open('/tmp/bn.json'));l=d['latency_us'];print('ck $CK rate $RATE: deliv',round(d['delivered_per_sec']),'p50',l['p50'],'p99',l['p99'],'p999',l['p999'],'miss',d['counts']['missing'],'| pod %d us/msg store %d us %d B ckpt %d us %d B/msg | $m' % ((${b[0]}-${a[0]})*10000/$n, (${b[3]}-${a[3]})*10000/$n, (${b[4]}-${a[4]})/$n, (${b[1]}-${a[1]})*10000/$n, (${b[2]}-${a[2]})/$n))"
