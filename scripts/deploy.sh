#!/usr/bin/env bash
# Serve a registered model on the online endpoint. The first time (no deployment takes traffic) it creates
# the endpoint if missing and deploys blue (endpoints/blue-deployment.yml) with all traffic; when a
# deployment is live it hands over to scripts/rollout.sh (the other colour, smoke-tested, then given the
# traffic step by step, rolled back on failure). Prints the endpoint, the live deployment and the scoring URI.
# Usage: scripts/deploy.sh [--set model=azureml:mnist-mlp:3 ...]    (AML_BACKEND=local|azure, ENDPOINT_NAME=...)
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

endpoint=$(endpoint_name)

if aml online-endpoint show --name "$endpoint" -o none >/dev/null 2>&1; then
  live=$(scripts/rollout.sh --live-colour)
  if [ -n "$live" ]; then
    log "endpoint $endpoint: $live is live; rolling out the other colour"
    exec scripts/rollout.sh "$@"
  fi
  log "endpoint $endpoint exists, with no deployment taking traffic"
else
  log "creating endpoint $endpoint ($AML_BACKEND)"
  aml online-endpoint create --file endpoints/endpoint.yml --name "$endpoint" -o none \
    || die "creating endpoint $endpoint failed"
fi

deployment=$(yaml_name endpoints/blue-deployment.yml)
if aml online-deployment show --name "$deployment" --endpoint-name "$endpoint" -o none >/dev/null 2>&1; then
  die "deployment $deployment already exists on endpoint $endpoint but takes no traffic" \
    "(remove it with scripts/teardown.sh, or give it traffic with $AML_CLI_NAME online-endpoint update)"
fi
log "deploying $deployment to $endpoint (waits until it answers)"
state=$(aml online-deployment create --file endpoints/blue-deployment.yml --endpoint-name "$endpoint" --all-traffic \
  "$@" --query provisioning_state -o tsv) \
  || die "deployment $deployment failed (logs: $AML_CLI_NAME online-deployment get-logs --name $deployment" \
    "--endpoint-name $endpoint)"
[ "$state" = Succeeded ] || die "deployment $deployment ended $state"
uri=$(aml online-endpoint show --name "$endpoint" --query scoring_uri -o tsv)

echo "endpoint:    $endpoint"
echo "deployment:  $deployment (100% of traffic)"
echo "scoring URI: $uri"
