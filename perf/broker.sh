#!/usr/bin/env bash
# perf/broker.sh: the Kafka broker alone (the distributed-mode baseline), with perf/broker.py.
#
#   perf/broker.sh [RECORDS]        default 100000 records of PAYLOAD (100) bytes, REPEAT (3) runs
#
# Uses the broker at 127.0.0.1:9092 (scripts/services.sh services_up starts tansu if none).
# Installs kafka-python 2.0.2 into a venv at PERF_VENV (/tmp/perf-kvenv) if missing. Prints and
# stores one JSON line per run (produce msg/s with acks=all + linger.ms=1, then consume msg/s) and
# the broker process's CPU over the run. (kcat from Debian, librdkafka 2.0.2, fails the
# ApiVersions exchange with tansu 0.6.0: "ApiVersionRequest failed: Local: Read underflow".)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
perf_traps

N="${1:-100000}"
PAYLOAD="${PAYLOAD:-100}"
REPEAT="${REPEAT:-3}"
PARTS="${PARTS:-2}"
PERF_VENV="${PERF_VENV:-/tmp/perf-kvenv}"

if [[ ! -x "$PERF_VENV/bin/python" ]] || ! "$PERF_VENV/bin/python" -c 'import kafka' 2>/dev/null; then
    python3 -m venv "$PERF_VENV"
    "$PERF_VENV/bin/pip" install -q kafka-python==2.0.2
fi
# shellcheck disable=SC1091
source "$PERF_ROOT/scripts/services.sh"
services_up >&2

wait_ci
perf_out_dir broker
machine_info | tee "$PERF_OUT/machine.txt" >&2
bpid="$(ss -ltnpH 'sport = :9092' | grep -o 'pid=[0-9]*' | head -1 | cut -d= -f2)"
hz="$(clk_tck)"
for ((run = 1; run <= REPEAT; run++)); do
    ld="$(load_now)"
    c0="$( [[ -n "$bpid" ]] && cpu_ticks "$bpid" || echo 0)"; t0="$(date +%s.%N)"
    line="$(timeout 300 "$PERF_VENV/bin/python" "$PERF_ROOT/perf/broker.py" 127.0.0.1:9092 "$N" "$PAYLOAD" "$PARTS")"
    c1="$( [[ -n "$bpid" ]] && cpu_ticks "$bpid" || echo 0)"; t1="$(date +%s.%N)"
    bcpu="$(awk -v a="$c0" -v b="$c1" -v hz="$hz" -v t0="$t0" -v t1="$t1" 'BEGIN{printf "%.0f", (b-a)/hz/(t1-t0)*100}')"
    echo "$line" | jq -c --arg ld "$ld" --arg cpu "$bcpu" --argjson run "$run" '. + {run: $run, load: $ld, broker_cpu_pct: ($cpu|tonumber)}' \
        | tee -a "$PERF_OUT/broker.jsonl" >&2
done
