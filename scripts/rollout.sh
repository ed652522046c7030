#!/usr/bin/env bash
# Safe rollout of a new model version to an endpoint that already serves one. The live colour (blue or
# green, read from the endpoint's traffic) keeps serving while the other colour is deployed without traffic,
# smoke-tested by name, sent a mirrored copy of live traffic, given a small share of live traffic, and then
# all of it; the old colour is deleted. At each step real requests go through the endpoint's scoring URI, as
# any client's do (scripts/traffic.py), and who answered them (the azureml-model-deployment header of each
# answer) must match the traffic split, with no request failing. Any failure puts all traffic back on the old
# colour, deletes the new one and exits non-zero. (Azure's rules shape the order: a deployment that takes live
# traffic cannot also receive mirrored traffic, and at most 50% can be mirrored.)
# Usage: scripts/rollout.sh [--set model=azureml:mnist-mlp:3 ...]   (AML_BACKEND=local|azure, ENDPOINT_NAME=...)
#        scripts/rollout.sh --live-colour                          (print the colour taking traffic, or nothing)
# Settings: ROLLOUT_MIRROR_PERCENT (10), ROLLOUT_CANARY_PERCENT (10), ROLLOUT_OBSERVE_S (30: the wait at the
# mirror and canary steps before checking again), ROLLOUT_REQUESTS (200: requests sent through the scoring URI
# at each step), SMOKE_REQUEST (endpoints/sample-request.json: the request sent) and SMOKE_EXPECTED (7, the
# sample's label; empty: any digit will do).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

endpoint=$(endpoint_name)
blue=$(yaml_name endpoints/blue-deployment.yml)
green=$(yaml_name endpoints/green-deployment.yml)

# The deployment taking the most traffic (nothing when none takes any).
live_colour() {
  local traffic
  traffic=$(aml online-endpoint show --name "$endpoint" --query traffic -o json) \
    || die "no endpoint named $endpoint ($AML_BACKEND)"
  printf '%s' "$traffic" | python3 -c '
import json, sys
traffic = {name: int(percent or 0) for name, percent in (json.load(sys.stdin) or {}).items()}
live = [name for name, percent in sorted(traffic.items(), key=lambda item: -item[1]) if percent > 0]
print(live[0] if live else "")'
}

if [ "${1:-}" = --live-colour ]; then
  live_colour
  exit 0
fi

old=$(live_colour)
case "$old" in
  "$blue") new=$green ;;
  "$green") new=$blue ;;
  "") die "endpoint $endpoint has no deployment taking traffic: deploy the first one with scripts/deploy.sh" ;;
  *) die "endpoint $endpoint's live deployment is $old, neither $blue nor $green: roll out by hand" ;;
esac
mirror=${ROLLOUT_MIRROR_PERCENT:-10}
canary=${ROLLOUT_CANARY_PERCENT:-10}
observe=${ROLLOUT_OBSERVE_S:-30}
requests=${ROLLOUT_REQUESTS:-200}
request=${SMOKE_REQUEST:-endpoints/sample-request.json}
expected=${SMOKE_EXPECTED-7}
[[ $mirror =~ ^[0-9]+$ ]] && [ "$mirror" -le 50 ] || die "ROLLOUT_MIRROR_PERCENT must be 0 to 50 (got '$mirror')"
[[ $canary =~ ^[0-9]+$ ]] && [ "$canary" -ge 1 ] && [ "$canary" -le 99 ] \
  || die "ROLLOUT_CANARY_PERCENT must be 1 to 99 (got '$canary')"
[[ $observe =~ ^[0-9]+$ ]] || die "ROLLOUT_OBSERVE_S must be a whole number of seconds (got '$observe')"
[[ $requests =~ ^[1-9][0-9]*$ ]] || die "ROLLOUT_REQUESTS must be a whole number >= 1 (got '$requests')"
[ -f "$request" ] || die "SMOKE_REQUEST: no such request file: $request"
[ -z "$expected" ] || [[ $expected =~ ^[0-9]$ ]] || die "SMOKE_EXPECTED must be one digit or empty (got '$expected')"

mirrored=false
shifted=false
rollback() {
  log "rolling back: $old keeps all traffic, $new is deleted"
  if $mirrored; then
    aml online-endpoint update --name "$endpoint" --mirror-traffic "$new=0" -o none || log "could not stop mirroring"
  fi
  if $shifted; then
    aml online-endpoint update --name "$endpoint" --traffic "$old=100 $new=0" -o none \
      || die "rollout of $new failed ($1) and moving traffic back to $old failed too: check the endpoint now"
  fi
  if aml online-deployment show --name "$new" --endpoint-name "$endpoint" -o none >/dev/null 2>&1; then
    aml online-deployment delete --name "$new" --endpoint-name "$endpoint" --yes -o none \
      || log "could not delete $new (delete it with: $AML_CLI_NAME online-deployment delete --name $new --endpoint-name $endpoint)"
  fi
  die "rollout of $new failed ($1); rolled back: $old takes 100% of traffic"
}

# Scores the smoke request with the new deployment by name; prints the prediction; fails with a reason.
smoke_test() {
  local response prediction
  response=$(aml online-endpoint invoke --name "$endpoint" --deployment-name "$new" --request-file "$request" \
    -o tsv 2>&1) || {
    printf 'invoking %s failed: %s' "$new" "${response:0:300}"
    return 1
  }
  prediction=$(printf '%s' "$response" | python3 -c '
import json, sys
print(" ".join(str(p) for p in json.load(sys.stdin)["predictions"]))' 2>/dev/null) || {
    printf '%s answered without predictions: %s' "$new" "${response:0:300}"
    return 1
  }
  if [ -n "$expected" ] && [ "$prediction" != "$expected" ]; then
    printf '%s predicted %s for %s, expected %s' "$new" "$prediction" "$request" "$expected"
    return 1
  fi
  printf '%s' "$prediction"
}

# Sends $requests requests through the endpoint's scoring URI with its key (on stdin, never in argv) and checks
# who answered: traffic_check DEPLOYMENT=PERCENT... Prints scripts/traffic.py's line; fails with the reason.
traffic_check() {
  local uri key report
  uri=$(aml online-endpoint show --name "$endpoint" --query scoring_uri -o tsv) || {
    printf 'online-endpoint show %s failed' "$endpoint"
    return 1
  }
  key=$(aml online-endpoint get-credentials --name "$endpoint" --query primaryKey -o tsv) || {
    printf 'online-endpoint get-credentials %s failed' "$endpoint"
    return 1
  }
  report=$(printf '%s' "$key" | python3 scripts/traffic.py "$uri" --requests "$requests" --request-file "$request" \
    --expect "$@" 2>&1) || {
    printf '%s' "${report//$'\n'/; }"
    return 1
  }
  printf '%s' "$report"
}

# The new deployment must still be healthy after a while with (mirrored or live) traffic.
still_healthy() {
  local state
  state=$(aml online-deployment show --name "$new" --endpoint-name "$endpoint" --query provisioning_state -o tsv) \
    || rollback "online-deployment show $new failed"
  [ "$state" = Succeeded ] || rollback "$new is $state"
}

if aml online-deployment show --name "$new" --endpoint-name "$endpoint" -o none >/dev/null 2>&1; then
  log "$new exists without traffic (left by an earlier rollout): deleting it first"
  aml online-deployment delete --name "$new" --endpoint-name "$endpoint" --yes -o none \
    || die "deleting the leftover $new failed"
fi

report=$(traffic_check "$old=100") || die "endpoint $endpoint fails before the rollout starts: $report"
log "live traffic: $report"

log "1/5 deploying $new to $endpoint without traffic ($old stays live)"
state=$(aml online-deployment create --file "endpoints/$new-deployment.yml" --endpoint-name "$endpoint" "$@" \
  --query provisioning_state -o tsv) || rollback "creating $new failed"
[ "$state" = Succeeded ] || rollback "$new ended $state"

log "2/5 smoke test: $request on $new by name"
prediction=$(smoke_test) || rollback "smoke test: $prediction"
log "$new predicted $prediction"

if [ "$mirror" -gt 0 ]; then
  log "3/5 mirroring $mirror% of live traffic to $new for ${observe}s"
  mirrored=true
  aml online-endpoint update --name "$endpoint" --mirror-traffic "$new=$mirror" -o none \
    || rollback "mirroring traffic to $new failed"
  # Mirrored copies are answered by $new and dropped: every client still gets $old's answer.
  report=$(traffic_check "$old=100") || rollback "traffic while mirroring: $report"
  log "live traffic: $report"
  sleep "$observe"
  still_healthy
  aml online-endpoint update --name "$endpoint" --mirror-traffic "$new=0" -o none \
    || rollback "stopping the mirror to $new failed"
  mirrored=false
fi

log "4/5 $new takes $canary% of live traffic for ${observe}s"
shifted=true
aml online-endpoint update --name "$endpoint" --traffic "$old=$((100 - canary)) $new=$canary" -o none \
  || rollback "moving $canary% of traffic to $new failed"
report=$(traffic_check "$old=$((100 - canary))" "$new=$canary") || rollback "canary traffic: $report"
log "live traffic: $report"
sleep "$observe"
still_healthy
prediction=$(smoke_test) || rollback "smoke test with live traffic: $prediction"

log "5/5 $new takes all traffic; deleting $old"
aml online-endpoint update --name "$endpoint" --traffic "$old=0 $new=100" -o none \
  || rollback "moving all traffic to $new failed"
report=$(traffic_check "$new=100") || rollback "traffic with $new live: $report"
log "live traffic: $report"
shifted=false
aml online-deployment delete --name "$old" --endpoint-name "$endpoint" --yes -o none \
  || die "$new is live but deleting $old failed (delete it with: $AML_CLI_NAME online-deployment delete --name $old" \
    "--endpoint-name $endpoint --yes)"
uri=$(aml online-endpoint show --name "$endpoint" --query scoring_uri -o tsv)

echo "endpoint:    $endpoint"
echo "deployment:  $new (100% of traffic; $old deleted)"
echo "scoring URI: $uri"
