#!/usr/bin/env bash
# The chaos suite (issue 11): seeded faults under recorded traffic, judged by an independent
# checker (perf/chaos/check.py). Usage:
#   perf/chaos.sh --seed N --minutes M [--mode embedded|distributed] [--out DIR]
# Builds the pod and the chaos client (release) first. Distributed mode needs Postgres and
# the cached tansu (scripts/services.sh up). A failure prints the command that replays it.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q --bin distrisocks --bin distrisocks-chaos
exec python3 perf/chaos/chaos.py "$@"
