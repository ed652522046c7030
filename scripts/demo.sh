#!/usr/bin/env bash
# The model's whole life in one go: a quick sweep, register its best trial's model, deploy it to the online
# endpoint (replacing the demo's earlier deployment), score the sample request, and compare with its label.
# Usage: scripts/demo.sh [SWEEP_OR_JOB_YAML]    (default jobs/sweep-quick.yml; AML_BACKEND=local|azure)
set -euo pipefail
cd "$(dirname "$0")/.."
# Show the sweep's progress as it runs, and notice its end within 2 s (a local job ends on this machine). Set before
# lib.sh, which gives AML_POLL_S its own default (30 s, for Azure) when it is unset.
export AML_STREAM_LOGS=${AML_STREAM_LOGS:-1} AML_POLL_S=${AML_POLL_S:-2}
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

file=${1:-jobs/sweep-quick.yml}
name="mnist_demo_$(date +%Y%m%d_%H%M%S)"

log "1/4 train: $file as job $name"
scripts/train.sh "$file" --name "$name"

log "2/4 register the model of $name"
registered=$(scripts/register.sh "$name")
printf '%s\n' "$registered"
model=$(awk '/^model:/ {print $2}' <<<"$registered")
version=$(awk '/^version:/ {print $2}' <<<"$registered")

log "3/4 deploy $model:$version (a previous demo endpoint is replaced)"
scripts/teardown.sh >/dev/null
scripts/deploy.sh --set "model=azureml:$model:$version"

log "4/4 score endpoints/sample-request.json"
scripts/invoke.sh endpoints/sample-request.json
# The sample is one MNIST test image: find which, and its label, to show next to the prediction.
python3 - <<'PY' || log "could not look the sample up in the MNIST test set (its label is not shown)"
import json, sys
import numpy as np
import mnist_data
pixels = np.rint(np.array(json.load(open("endpoints/sample-request.json"))["data"][0]) * 255).astype(np.uint8)
test = mnist_data.load_mnist(mnist_data.resolve_data_folder(None))
matches = np.flatnonzero((test.test_images.reshape(-1, 784) == pixels).all(axis=1))
if not len(matches):
    sys.exit(1)
print(f"true label: {test.test_labels[matches[0]]} (MNIST test image {matches[0]})")
PY
endpoint=$(endpoint_name)
cat <<TXT

The endpoint stays up. Call it yourself (the key comes from get-credentials; it is not printed here):
  key=\$($AML_CLI_NAME online-endpoint get-credentials -n $endpoint --query primaryKey -o tsv)
  curl -s -H "Authorization: Bearer \$key" -H "Content-Type: application/json" \\
       --data @endpoints/sample-request.json "\$($AML_CLI_NAME online-endpoint show -n $endpoint --query scoring_uri -o tsv)"
Stop it with: scripts/teardown.sh
TXT
