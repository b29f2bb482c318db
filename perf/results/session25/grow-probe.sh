#!/usr/bin/env bash
# One embedded pod, three 15 s steps at RATE msg/s (separate generator runs, as
# perf/throughput.sh does); samples the store's file sizes every 5 s and profiles the pod 8 s
# into the first and the last step. Usage: grow-probe.sh RATE OUT [POD_FLAGS...]
set -euo pipefail
rate=$1 out=$2; shift 2
mkdir -p "$out"; work=$(mktemp -d)
/tmp/bins/pod-new --listen 127.0.0.1:18970 --shards 2 --data-dir "$work/data" "$@" 2>"$out/pod.log" &
pod=$!; trap 'kill $pod 2>/dev/null || true; rm -rf "$work"' EXIT
sleep 1.5
( while kill -0 $pod 2>/dev/null; do echo "$(date +%s) $(stat -c '%n %s' "$work"/data/* | tr '\n' ' ')"; sleep 5; done ) > "$out/sizes.txt" &
for step in 1 2 3; do
  /tmp/bins/bench --url ws://127.0.0.1:18970/ws --connections 1000 --rate "$rate" --duration-secs 15 \
    --drain-secs 5 --json "$out/step$step.json" >/dev/null 2>&1 &
  b=$!
  if [[ $step != 2 ]]; then sleep 8; perf record -e cpu-clock -F 499 -g -p $pod -o "$out/perf$step.data" -- sleep 6 2>/dev/null; fi
  wait $b
  python3 -c "import json;d=json.load(open('$out/step$step.json'));print('step $step', d['delivered_per_sec'], d['latency_us']['p50'], d['latency_us']['p99'])"
done
