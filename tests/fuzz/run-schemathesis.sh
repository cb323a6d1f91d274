#!/usr/bin/env bash
# Property-based fuzz of the HTTP API from its own OpenAPI document, with schemathesis
# (PyPI). Starts `smooch all` on a free port against a database of its own (smooch_fuzz),
# makes an app and a key with the admin API, then lets schemathesis loose with each kind of
# credential: the app token, an app-scope JWT and the operator's account-scope JWT.
#
# Checks: no 5xx (not_a_server_error), and every answer is in the document: its status
# (status_code_conformance), content type and body schema. Bounded: SMOOCH_FUZZ_CASES
# examples per operation and phase (default 30), well under 3 minutes. Prints
# `schemathesis: N passed, M failed` (operations x credentials) last; exits non-zero on any
# failure. Needs PostgreSQL, Redis and RabbitMQ up (scripts/services-up.sh).
set -euo pipefail
cd "$(dirname "$0")/../.."

cases="${SMOOCH_FUZZ_CASES:-30}"
venv="${XDG_CACHE_HOME:-$HOME/.cache}/smooch-fuzz-venv"
work="$(mktemp -d)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}"

if [ ! -x "$venv/bin/schemathesis" ] || ! "$venv/bin/python" -c 'import jwt' 2>/dev/null; then
  echo "fuzz: installing schemathesis into $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "schemathesis>=4.3,<5" "pyjwt>=2.8,<3"
fi

cargo build --quiet --bin smooch
smooch="$CARGO_TARGET_DIR/debug/smooch"

port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
base="http://127.0.0.1:$port"
account_kid="fuzz-account"
account_secret="fuzz-account-secret-$(python3 -c 'import secrets; print(secrets.token_hex(16))')"

export SMOOCH_HTTP_ADDR="127.0.0.1:$port"
export SMOOCH_DATABASE_URL="${SMOOCH_FUZZ_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/smooch_fuzz}"
export SMOOCH_ACCOUNT_KEY_ID="$account_kid" SMOOCH_ACCOUNT_SECRET="$account_secret"
export SMOOCH_AMQP_PREFIX="fuzz-$$" SMOOCH_REDIS_PREFIX="fuzz-$$"
export SMOOCH_MEDIA_DIR="$work/media"
# The fuzzer is one fast client: limits would answer 429 (documented, but it hides the
# routes behind it).
export SMOOCH_RATE_LIMIT_ENABLED=false
export RUST_LOG="${RUST_LOG:-warn}"

"$smooch" all >"$work/smooch.log" 2>&1 &
smooch_pid=$!
cleanup() {
  kill "$smooch_pid" 2>/dev/null || true
  wait "$smooch_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

for _ in $(seq 1 240); do
  if curl -fsS "$base/healthz" >/dev/null 2>&1; then break; fi
  if ! kill -0 "$smooch_pid" 2>/dev/null; then
    echo "fuzz: smooch all exited:"; tail -50 "$work/smooch.log"; exit 1
  fi
  sleep 0.5
done
curl -fsS "$base/healthz" >/dev/null

mint() { # kid secret claims-json
  "$venv/bin/python" -c 'import json, sys, jwt
print(jwt.encode(json.loads(sys.argv[3]), sys.argv[2], algorithm="HS256", headers={"kid": sys.argv[1]}))' "$@"
}
field() { "$venv/bin/python" -c 'import json, sys; d = json.load(sys.stdin); print(d[sys.argv[1]][sys.argv[2]])' "$@"; }

account_jwt="$(mint "$account_kid" "$account_secret" '{"scope": "account"}')"
app_json="$(curl -fsS -X POST "$base/v1/apps" -H "authorization: Bearer $account_jwt" \
  -H 'content-type: application/json' -d '{"name": "fuzz"}')"
app_id="$(field app _id <<<"$app_json")"
app_token="$(field app appToken <<<"$app_json")"
key_json="$(curl -fsS -X POST "$base/v1/apps/$app_id/keys" -H "authorization: Bearer $account_jwt" \
  -H 'content-type: application/json' -d '{"name": "fuzz"}')"
app_jwt="$(mint "$(field key _id <<<"$key_json")" "$(field key secret <<<"$key_json")" '{"scope": "app"}')"
# A user with a conversation, so that some generated ids name something.
curl -fsS -X POST "$base/v1/init" -H "app-token: $app_token" -H 'content-type: application/json' \
  -d '{"device": {"id": "fuzz-device", "platform": "ios"}, "userId": "fuzz-user"}' >/dev/null

run() { # name, then extra schemathesis arguments
  local name="$1"; shift
  echo "fuzz: $name"
  "$venv/bin/schemathesis" run "$base/openapi.json" \
    --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance \
    --phases examples,coverage,fuzzing \
    --max-examples "$cases" \
    --request-timeout 20 \
    --workers 1 \
    --seed 1 \
    --suppress-health-check all \
    --report junit --report-dir "$work/$name" \
    --exclude-path /metrics \
    "$@" || true
}
# `/v1/appUsers/...` aliases the same handlers as `/v1/appusers/...`: once is enough.
run app-token -H "app-token: $app_token" --exclude-path-regex '^/v1/(appUsers|apps)'
run app-jwt -H "authorization: Bearer $app_jwt" --exclude-path-regex '^/v1/(appUsers|apps)'
run account-jwt -H "authorization: Bearer $account_jwt" --include-path-regex '^/v1/apps'

panics="$(grep -c "panicked" "$work/smooch.log" || true)"
if [ "$panics" -gt 0 ]; then
  echo "fuzz: the suite panicked $panics times:"
  grep -A3 panicked "$work/smooch.log" | sed -n '1,40p' || true
fi
"$venv/bin/python" - "$work" "$panics" <<'PY'
import glob, sys, xml.etree.ElementTree as ET
passed = 0
failed = int(sys.argv[2])  # a panic is a failure even when the answer looked fine
for path in glob.glob(f"{sys.argv[1]}/*/*.xml"):
    for case in ET.parse(path).getroot().iter("testcase"):
        if case.find("failure") is not None or case.find("error") is not None:
            failed += 1
            print(f"FAILED {path.split('/')[-2]}: {case.get('name')}")
            for f in list(case.iter("failure")) + list(case.iter("error")):
                print("   ", (f.get("message") or f.text or "").strip()[:2000])
        elif case.find("skipped") is None:
            passed += 1
print(f"schemathesis: {passed} passed, {failed} failed")
sys.exit(1 if failed or not passed else 0)
PY
