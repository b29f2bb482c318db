#!/usr/bin/env bash
# Sets up and runs every test of distriSocks; the README's test command and what CI runs.
#
# 1. services the tests need (Postgres, Redis, a Kafka-protocol broker), started or installed
#    when missing (scripts/services.sh);
# 2. formatting and lints, and the deployment examples against the Kubernetes schemas;
# 3. unit and integration tests (real sockets, real WebSocket clients, real backends);
#    the TypeScript client's tests (clients/js, Node.js >= 20, against the debug pod) and
#    the demo page's in headless Chromium (clients/demo); the server API against its
#    OpenAPI document (schemathesis from PyPI, scripts/api-contract.sh);
# 4. the chaos suite's short run (perf/chaos/, perf/chaos.sh for long ones);
# 5. a repeatable fuzz check of every libFuzzer target (fuzz/README.md; nightly toolchain);
# 6. Autobahn conformance of the WebSocket layer against the expected results in conformance/.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

step() { printf '\n=== %s ===\n' "$*" >&2; }

if [ -f scripts/services.sh ]; then
    step "services"
    # shellcheck source=scripts/services.sh
    source scripts/services.sh
    services_up
fi

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy"
cargo clippy --all-targets -- -D warnings
# The crash-window tests compile only with failpoints on.
cargo clippy --features failpoints --tests -- -D warnings

step "deployment examples (deploy/kubernetes)"
scripts/check-deploy.sh

step "cargo test"
cargo test --all-targets 2>&1 | tee target/test-output.log
if grep -qE '^test result: FAILED|error: test failed' target/test-output.log; then
    echo "cargo test failed" >&2
    exit 1
fi

step "TypeScript client (clients/js): unit tests, then against a real pod"
services_node
cargo build -q --bin distrisocks
(cd clients/js && npm ci --no-audit --no-fund && npm test)

step "server API (docs/openapi.yaml): schemathesis against a live pod"
scripts/api-contract.sh target/debug/distrisocks

step "demo chat page (clients/demo): end to end in headless Chromium, screenshots in target/demo-screenshots"
services_chromium
(cd clients/demo && npm ci --no-audit --no-fund && npm test)

step "crash windows and fault points (failpoints build)"
cargo test --features failpoints --test crash_windows --test fault_points

step "chaos suite: the checker's own tests, then a short seeded run per mode"
python3 perf/chaos/test_check.py
python3 perf/chaos/test_proxy.py
cargo build -q --bin distrisocks --bin distrisocks-chaos
for mode in embedded distributed; do
    rm -rf "target/chaos/$mode" # An earlier run's data would answer this run's sends.
    python3 perf/chaos/chaos.py --mode "$mode" --seed "${CHAOS_SEED:-$(( $(date +%s) % 1000 ))}" \
        --minutes 1 --pod target/debug/distrisocks --client target/debug/distrisocks-chaos \
        --out "target/chaos/$mode"
done

step "fuzzing: ${FUZZ_RUNS:-1000000} inputs per target from a fixed seed (fuzz/README.md)"
FUZZ_RUNS="${FUZZ_RUNS:-1000000}" scripts/fuzz.sh

if [ -x scripts/conformance.sh ]; then
    step "Autobahn conformance (cases 1-7, 9, 10)"
    scripts/conformance.sh
fi

step "all tests passed"
