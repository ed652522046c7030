#!/usr/bin/env bash
# Submit a training job YAML, follow its logs, fail unless it completes, then say where the model is.
# Usage: scripts/train.sh [JOB_YAML] [--set KEY=VALUE ...]    (AML_BACKEND=local|azure)
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

file=${1:-jobs/train.yml}
shift || true
[ -f "$file" ] || die "no such job file: $file"

name=$(aml job create --file "$file" "$@" --query name -o tsv)
log "submitted $file as job $name ($AML_BACKEND)"
aml job stream --name "$name" || true
status=$(aml job show --name "$name" --query status -o tsv)
[ "$status" = Completed ] || die "job $name ended $status (see: aml job show --name $name)"

if [ "$AML_BACKEND" = azure ]; then
  model_dir=$(mktemp -d)
  aml job download --name "$name" --output-name model --download-path "$model_dir" >/dev/null
  model_dir=$(find "$model_dir" -name MLmodel -printf '%h\n' | head -n 1)
else
  model_dir=$(aml job show --name "$name" --query outputs.model.path -o tsv)
fi
test_acc=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["test_acc"])' "$model_dir/test_metrics.json")

echo "job:           $name"
echo "status:        $status"
echo "test accuracy: $test_acc"
echo "model:         $model_dir"
