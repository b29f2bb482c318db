#!/usr/bin/env bash
# CPU profile of one embedded pod under a steady 1:1 load (cpu-clock sampling: hardware
# counters are not available on every VM). Usage: perf/profile.sh [RATE] [SECONDS]
# Prints the split by thread and by binary, the top user-space and kernel symbols, and the
# bench's summary line. PROFILE_KEEP=DIR keeps perf.data and the bench JSON there.
set -euo pipefail
cd "$(dirname "$0")/.."
RATE=${1:-8000}; SECS=${2:-10}
cargo build --release --bin distrisocks --bin distrisocks-bench >&2
work=$(mktemp -d); trap 'kill $POD 2>/dev/null || true; rm -rf "$work"' EXIT
cp target/release/distrisocks target/release/distrisocks-bench "$work/"
"$work/distrisocks" --listen 127.0.0.1:18900 --shards 2 --data-dir "$work/data" 2>"$work/pod.log" &
POD=$!
sleep 1.5
"$work/distrisocks-bench" --url ws://127.0.0.1:18900/ws --connections 1000 --rate "$RATE" \
    --duration-secs $((SECS + 10)) --threads 1 --json "$work/bench.json" >/dev/null 2>&1 &
BENCH=$!
sleep 6
perf record -e cpu-clock -F 499 -g -p "$POD" -o "$work/perf.data" -- sleep "$SECS" 2>/dev/null
wait "$BENCH"
if [[ -n "${PROFILE_KEEP:-}" ]]; then mkdir -p "$PROFILE_KEEP"; cp "$work/perf.data" "$work/bench.json" "$PROFILE_KEEP/"; fi
echo "== by thread"; perf report -i "$work/perf.data" --no-children --sort comm --stdio -g none 2>/dev/null | grep -E '^ +[0-9]'
echo "== by binary"; perf report -i "$work/perf.data" --no-children --sort dso --stdio -g none 2>/dev/null | grep -E '^ +[0-9]' | head -5
echo "== top kernel symbols"; perf report -i "$work/perf.data" --no-children --sort sym --stdio -g none --dsos '[kernel.kallsyms]' 2>/dev/null | grep -E '^ +[0-9]' | head -15
echo "== top user-space symbols"; perf report -i "$work/perf.data" --no-children --sort sym --stdio -g none --dsos distrisocks 2>/dev/null | grep -E '^ +[0-9]' | head -15
echo "== load"; python3 -c "import json;d=json.load(open('$work/bench.json'));print(d['offered_per_sec'], d['delivered_per_sec'], d['latency_us'])"
