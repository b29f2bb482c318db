#!/usr/bin/env bash
# The server API against its contract: schemathesis (PyPI) generates requests from
# docs/openapi.yaml, valid and invalid, and checks every answer of a live pod against the
# document (status codes, content types, bodies, headers, no 5xx, invalid input refused,
# the API key enforced). A fixed seed and example count keep the run repeatable.
#
#   scripts/api-contract.sh [path/to/distrisocks]    (default target/debug/distrisocks)
#   API_EXAMPLES=500 scripts/api-contract.sh          (a longer run)
set -euo pipefail
cd "$(dirname "$0")/.."

POD_BIN="${1:-target/debug/distrisocks}"
VENV="${DISTRISOCKS_CACHE:-$HOME/.cache/distrisocks}/schemathesis-4.32.5"
KEY="contract-test-key-0123456789"

if [ ! -x "$VENV/bin/schemathesis" ]; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet "schemathesis==4.32.5"
fi

work="$(mktemp -d)"
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
"$POD_BIN" --listen "127.0.0.1:$port" --shards 2 --auth dev --data-dir "$work/data" \
    --api-keys "$KEY" >"$work/pod.log" 2>&1 &
pod=$!
trap 'kill "$pod" 2>/dev/null || true; wait "$pod" 2>/dev/null || true; rm -rf "$work"' EXIT

for _ in $(seq 100); do
    if python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$port/healthz')" 2>/dev/null; then
        break
    fi
    kill -0 "$pod" 2>/dev/null || { cat "$work/pod.log" >&2; echo "api-contract: the pod died" >&2; exit 1; }
    sleep 0.1
done

"$VENV/bin/schemathesis" run docs/openapi.yaml \
    --url "http://127.0.0.1:$port/api/v1" \
    --header "Authorization: Bearer $KEY" \
    --checks not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance,negative_data_rejection,ignored_auth,unsupported_method \
    --phases examples,coverage,fuzzing \
    --max-examples "${API_EXAMPLES:-60}" --seed 20261207 --generation-database none \
    --workers 2 --no-color --request-timeout 35
kill -0 "$pod" 2>/dev/null || { cat "$work/pod.log" >&2; echo "api-contract: the pod died during the run" >&2; exit 1; }
