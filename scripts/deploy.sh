#!/usr/bin/env bash
# Create the online endpoint if it is missing, deploy blue (endpoints/blue-deployment.yml) with all traffic,
# and print the scoring URI. Extra arguments go to `online-deployment create`, e.g. to serve another version:
# Usage: scripts/deploy.sh [--set model=azureml:mnist-mlp:3 ...]    (AML_BACKEND=local|azure, ENDPOINT_NAME=...)
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

endpoint=$(endpoint_name)
deployment=$(yaml_name endpoints/blue-deployment.yml)

if aml online-endpoint show --name "$endpoint" >/dev/null 2>&1; then
  log "endpoint $endpoint exists"
else
  log "creating endpoint $endpoint ($AML_BACKEND)"
  aml online-endpoint create --file endpoints/endpoint.yml --name "$endpoint" >/dev/null \
    || die "creating endpoint $endpoint failed"
fi
if aml online-deployment show --name "$deployment" --endpoint-name "$endpoint" >/dev/null 2>&1; then
  die "deployment $deployment already exists on endpoint $endpoint (remove it with scripts/teardown.sh first)"
fi

log "deploying $deployment to $endpoint (waits until it answers)"
state=$(aml online-deployment create --file endpoints/blue-deployment.yml --endpoint-name "$endpoint" --all-traffic \
  "$@" --query provisioning_state -o tsv) \
  || die "deployment $deployment failed (logs: aml online-deployment get-logs --name $deployment --endpoint-name $endpoint)"
[ "$state" = Succeeded ] || die "deployment $deployment ended $state"
uri=$(aml online-endpoint show --name "$endpoint" --query scoring_uri -o tsv)

echo "endpoint:    $endpoint"
echo "deployment:  $deployment (100% of traffic)"
echo "scoring URI: $uri"
