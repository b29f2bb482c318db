#!/usr/bin/env bash
# Checks the deployment examples in deploy/: the Kubernetes manifests against the
# Kubernetes API schemas (kubernetes-validate from PyPI, strict: unknown fields fail), and
# every DISTRISOCKS_* variable they set against the pod's real configuration (a renamed
# flag must not leave the example silently ignored).
set -euo pipefail
cd "$(dirname "$0")/.."
KUBERNETES_VALIDATE_VERSION=1.37.0
# The oldest Kubernetes the example targets: policy/v1 PDBs, sysctls, seccompProfile.
KUBERNETES_VERSION=1.31.0

if ! command -v kubernetes-validate >/dev/null \
    || ! kubernetes-validate --version 2>/dev/null | grep -q "$KUBERNETES_VALIDATE_VERSION"; then
    python3 -m pip install --quiet "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION" \
        || { echo "check-deploy: pip install kubernetes-validate failed" >&2; exit 1; }
fi
kubernetes-validate --strict --quiet -k "$KUBERNETES_VERSION" deploy/kubernetes/*.yaml

known=$(grep -oE 'env = "DISTRISOCKS_[A-Z0-9_]+"' src/config.rs | grep -oE 'DISTRISOCKS_[A-Z0-9_]+' | sort -u)
# DISTRISOCKS_LOG is read by main.rs (the log filter), not by the flag parser.
known=$(printf '%s\nDISTRISOCKS_LOG\n' "$known")
used=$(grep -ohE 'DISTRISOCKS_[A-Z0-9_]+' deploy/kubernetes/*.yaml | sort -u)
unknown=$(comm -13 <(echo "$known" | sort -u) <(echo "$used"))
if [ -n "$unknown" ]; then
    echo "check-deploy: deploy/kubernetes sets variables the pod does not read:" $unknown >&2
    exit 1
fi
echo "check-deploy: deploy/kubernetes valid for Kubernetes $KUBERNETES_VERSION; $(echo "$used" | wc -l) variables known"
