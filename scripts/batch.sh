#!/usr/bin/env bash
# Score a folder of digit images with the batch endpoint: create the endpoint (endpoints/batch/endpoint.yml) when it
# is missing, register the batch environment (environments/batch.yml), create or update the deployment
# (endpoints/batch/deployment.yml) as the endpoint's default, invoke it on the folder or data asset, stream the job
# and wait for it, download its `score` output, and print the first lines and, when the labels are known, the
# accuracy.
# Usage: scripts/batch.sh [--input DIR | --input azureml:NAME:VERSION | --data-asset] [--labels CSV]
#                         [--set KEY=VALUE ...] [--download-path DIR]   (AML_BACKEND=local|azure, BATCH_ENDPOINT_NAME)
#   --input       a folder of 28x28 grayscale image files (a local folder is uploaded by az), or a registered
#                 uri_folder data asset; default: the 10,000 MNIST test images as PNG in outputs/mnist-png/images
#                 (written by `mnist-data png` the first time), with their labels
#   --data-asset  the default folder as the data asset data/mnist-png.yml (registered when missing)
#   --labels      a CSV of `file,label` rows (`mnist-data png` writes labels.csv beside its images): the accuracy
#   --set         a deployment YAML override, e.g. model=azureml:mnist-mlp:3 (repeatable)
#   --download-path  where the job's score output is downloaded (default outputs/batch/<job>): as `job download`
#                 lays it out, named-outputs/score/<output_file_name>, one `file digit probability` line per image
set -euo pipefail

# Paths given are the caller's: made absolute before the script moves to the repository's root.
from_caller() {
  case "$1" in
    azureml:* | https:* | /*) printf '%s\n' "$1" ;;
    *) printf '%s\n' "$PWD/$1" ;;
  esac
}
input=""
labels=""
data_asset=false
scores_dir=""
deploy_args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --input | --labels | --set | --download-path)
      [ $# -ge 2 ] && [ -n "$2" ] || { echo "ERROR: $1 needs a value" >&2; exit 1; }
      case "$1" in
        --input) input=$(from_caller "$2") ;;
        --labels) labels=$(from_caller "$2") ;;
        --set) deploy_args+=(--set "$2") ;;
        --download-path) scores_dir=$(from_caller "$2") ;;
      esac
      shift 2
      ;;
    --data-asset) data_asset=true; shift ;;
    *) echo "ERROR: unknown argument '$1' (see the usage at the top of scripts/batch.sh)" >&2; exit 1 ;;
  esac
done
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

[ -z "$labels" ] || [ -f "$labels" ] || die "--labels: no such file: $labels"
if $data_asset && [ -n "$input" ]; then
  die "--data-asset scores data/mnist-png.yml's folder: give it or --input, not both"
fi

# The batch endpoint's name: BATCH_ENDPOINT_NAME, or endpoints/batch/endpoint.yml's followed by 8 hex digits of the
# workspace (names are unique per Azure region), as endpoint_name() in scripts/lib.sh names the online endpoint.
if [ -n "${BATCH_ENDPOINT_NAME:-}" ]; then
  [[ $BATCH_ENDPOINT_NAME =~ $ENDPOINT_NAME_RULE ]] || die "BATCH_ENDPOINT_NAME '$BATCH_ENDPOINT_NAME': expected 3" \
    "to 32 letters, digits and '-', starting with a letter and not ending with '-'"
  endpoint=$BATCH_ENDPOINT_NAME
else
  endpoint=$(yaml_name endpoints/batch/endpoint.yml)
  if [ -n "${AZURE_DEFAULTS_WORKSPACE:-}" ]; then
    endpoint="$endpoint-$(python3 -c 'import hashlib, sys; print(hashlib.sha256(sys.argv[1].encode()).hexdigest()[:8])' \
      "${AZURE_SUBSCRIPTION_ID:-}/${AZURE_DEFAULTS_GROUP:-}/$AZURE_DEFAULTS_WORKSPACE")"
  fi
fi
deployment=$(yaml_name endpoints/batch/deployment.yml)

# The input: a folder or data asset given, else the 10,000 MNIST test images as PNG files (made once).
if [ -z "$input" ]; then
  folder=outputs/mnist-png
  if [ ! -f "$folder/labels.csv" ]; then
    log "writing the 10,000 MNIST test images as PNG files into $folder"
    command -v mnist-data >/dev/null || die "mnist-data not found: run 'make setup' and use .venv/bin"
    mnist-data png --count 10000 --out "$folder" >/dev/null || die "writing the test images into $folder failed"
  fi
  [ -n "$labels" ] || labels=$folder/labels.csv
  input=$folder/images
  if $data_asset; then
    asset=$(yaml_name data/mnist-png.yml)
    asset_version=$(yaml_version data/mnist-png.yml)
    if aml data show --name "$asset" --version "$asset_version" -o none >/dev/null 2>&1; then
      log "data asset $asset:$asset_version exists"
    else
      aml data create --file data/mnist-png.yml -o none || die "creating data asset $asset:$asset_version failed"
      log "data asset $asset:$asset_version created from $input"
    fi
    input=azureml:$asset:$asset_version
  fi
fi
case "$input" in
  azureml:* | https:*) ;;
  *) [ -d "$input" ] || die "--input: no such folder: $input" ;;
esac

if aml batch-endpoint show --name "$endpoint" -o none >/dev/null 2>&1; then
  log "batch endpoint $endpoint exists ($AML_BACKEND)"
else
  log "creating batch endpoint $endpoint ($AML_BACKEND)"
  aml batch-endpoint create --file endpoints/batch/endpoint.yml --name "$endpoint" -o none \
    || die "creating batch endpoint $endpoint failed"
fi
version=$(aml environment create --file environments/batch.yml --query version -o tsv) \
  || die "creating environment from environments/batch.yml failed"
log "environment $(yaml_name environments/batch.yml):$version from environments/batch.yml"
# create is create-or-update (the SDK's begin_create_or_update): a second run deploys the model and code anew.
log "deploying $deployment to $endpoint as its default"
aml batch-deployment create --file endpoints/batch/deployment.yml --endpoint-name "$endpoint" --set-default \
  "${deploy_args[@]}" -o none || die "creating batch deployment $deployment on $endpoint failed"
output_file=$(aml batch-deployment show --name "$deployment" --endpoint-name "$endpoint" \
  --query output_file_name -o tsv) || die "reading batch deployment $deployment failed"

log "invoking $endpoint on $input"
job=$(aml batch-endpoint invoke --name "$endpoint" --deployment-name "$deployment" --input "$input" \
  --query name -o tsv) || die "invoking batch endpoint $endpoint on $input failed"
[ -n "$job" ] || die "invoking batch endpoint $endpoint returned no job name"
log "job $job: streaming its log"
aml job stream --name "$job" >&2 || true # the status decides, as scripts/wait.sh does
wait_for_job "$job"

[ -n "$scores_dir" ] || scores_dir=outputs/batch/$job
aml job download --name "$job" --output-name score --download-path "$scores_dir" >/dev/null \
  || die "downloading the score output of job $job failed ($AML_BACKEND)"
scores=$scores_dir/named-outputs/score/$output_file
[ -f "$scores" ] || die "job $job's score output has no $output_file (the deployment's output_file_name)"

echo "endpoint:    $endpoint"
echo "deployment:  $deployment"
echo "job:         $job"
echo "scores:      $scores ($(wc -l <"$scores") lines: file digit probability)"
head -n 5 "$scores"
if [ -n "$labels" ]; then
  # Every labelled file counts: one without a score line (it failed) counts as wrong.
  python3 - "$scores" "$labels" <<'PY'
import csv, sys

scores, labels = sys.argv[1], sys.argv[2]
predicted = {}
with open(scores) as lines:
    for line in lines:
        fields = line.split()
        if len(fields) >= 2:
            predicted[fields[0]] = fields[1]
with open(labels, newline="") as rows:
    truth = {row["file"]: row["label"] for row in csv.DictReader(rows)}
if not truth:
    sys.exit(f"ERROR: {labels} has no `file,label` rows")
right = sum(predicted.get(name) == label for name, label in truth.items())
print(f"accuracy:    {right / len(truth):.4f} ({right} of {len(truth)} labelled files; {len(predicted)} scored)")
PY
fi
