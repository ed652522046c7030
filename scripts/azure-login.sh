#!/usr/bin/env bash
# Sign in to Azure again inside a GitHub Actions job, with a fresh GitHub OIDC token: the Entra app's federated
# credential trusts this repository's tokens, so no secret is stored. Then fetch the access tokens the `az ml`
# calls use (ARM, Azure ML, storage) while the new assertion is valid: the Azure CLI cannot refresh an assertion
# (it lasts 5 minutes; Azure/login#372, Azure/azure-cli#28708), only use the tokens cached with it (about an hour).
# scripts/lib.sh runs this every AML_RELOGIN_S seconds during a long wait; the workflow's first sign-in is
# azure/login's. The steps are GitHub's (docs.github.com, "Security hardening with OpenID Connect": request the
# token from ACTIONS_ID_TOKEN_REQUEST_URL with ACTIONS_ID_TOKEN_REQUEST_TOKEN, audience api://AzureADTokenExchange)
# and the Azure CLI's `az login --service-principal --federated-token` (as in Azure/azure-iot-cli-extension's
# scripts/github_az_login.sh). The token is passed to az only, never printed.
# Usage: scripts/azure-login.sh   (a job with `permissions: id-token: write`; AZURE_CLIENT_ID, AZURE_TENANT_ID)
set -euo pipefail

die() { printf 'ERROR: %s\n' "$*" >&2; exit 1; }
[ -n "${ACTIONS_ID_TOKEN_REQUEST_URL:-}" ] && [ -n "${ACTIONS_ID_TOKEN_REQUEST_TOKEN:-}" ] \
  || die "ACTIONS_ID_TOKEN_REQUEST_URL/_TOKEN are not set: run this in a GitHub Actions job with" \
    "'permissions: id-token: write'"
[ -n "${AZURE_CLIENT_ID:-}" ] \
  || die "AZURE_CLIENT_ID is not set: the client ID of the Entra app that trusts this repository"
[ -n "${AZURE_TENANT_ID:-}" ] || die "AZURE_TENANT_ID is not set: the Entra tenant of that app"

# The request URL already carries a query string (?api-version=...), hence `&audience=`.
token=$(python3 -c '
import json, os, sys, urllib.request
request = urllib.request.Request(
    os.environ["ACTIONS_ID_TOKEN_REQUEST_URL"] + "&audience=api://AzureADTokenExchange",
    headers={"Authorization": "bearer " + os.environ["ACTIONS_ID_TOKEN_REQUEST_TOKEN"]},
)
try:
    with urllib.request.urlopen(request, timeout=30) as response:
        print(json.load(response)["value"])
except (OSError, ValueError, KeyError) as error:
    sys.exit(f"ERROR: requesting a GitHub OIDC token failed: {error}")
') || exit 1
[ -n "$token" ] || die "GitHub answered an empty OIDC token"

az login --service-principal --username "$AZURE_CLIENT_ID" --tenant "$AZURE_TENANT_ID" --federated-token "$token" \
  --output none || die "az login with a fresh GitHub OIDC token failed"
for scope in https://management.azure.com/.default https://ml.azure.com/.default https://storage.azure.com/.default; do
  az account get-access-token --scope "$scope" --output none || die "fetching an access token for $scope failed"
done
printf '==> signed in to Azure again (GitHub OIDC); access tokens cached\n' >&2
