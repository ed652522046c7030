#!/usr/bin/env bash
# Score a request file with the online endpoint (its key is used by the CLI, never shown) and print the prediction.
# Usage: scripts/invoke.sh [REQUEST_FILE]    (default endpoints/sample-request.json; AML_BACKEND=local|azure)
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

request=${1:-endpoints/sample-request.json}
[ -f "$request" ] || die "no such request file: $request"
endpoint=$(endpoint_name)

# -o tsv prints the response body itself (the default JSON output would quote it as one string).
response=$(aml online-endpoint invoke --name "$endpoint" --request-file "$request" -o tsv) \
  || die "invoking endpoint $endpoint with $request failed"
predictions=$(printf '%s' "$response" | python3 -c '
import json, sys
body = json.load(sys.stdin)
print(" ".join(str(p) for p in body["predictions"]))
' 2>/dev/null) || die "the response has no predictions: ${response:0:300}"

echo "endpoint:   $endpoint"
echo "request:    $request"
echo "prediction: $predictions"
