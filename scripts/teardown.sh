#!/usr/bin/env bash
# Delete the online endpoint and its deployments (on Azure this stops the billing for their instances).
# Usage: scripts/teardown.sh    (AML_BACKEND=local|azure, ENDPOINT_NAME=...)
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

endpoint=$(endpoint_name)
if ! aml online-endpoint show --name "$endpoint" >/dev/null 2>&1; then
  log "endpoint $endpoint does not exist ($AML_BACKEND): nothing to delete"
  exit 0
fi
log "deleting endpoint $endpoint and its deployments ($AML_BACKEND)"
aml online-endpoint delete --name "$endpoint" --yes >/dev/null || die "deleting endpoint $endpoint failed"
echo "deleted endpoint $endpoint"
