#!/usr/bin/env bash
# Register the model a training job (or the best trial of a sweep job) produced, from endpoints/model.yml,
# and print its name and version.
# Usage: scripts/register.sh JOB_NAME    (AML_BACKEND=local|azure)
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

[ $# -eq 1 ] && [ -n "$1" ] || die "usage: scripts/register.sh JOB_NAME (a completed training or sweep job)"
job=$1

job_type=$(aml job show --name "$job" --query type -o tsv) || die "no job named $job ($AML_BACKEND)"
source_job=$job
if [ "$job_type" = sweep ]; then
  # A sweep's model is its best trial's: the trial job is named in the sweep's properties.
  source_job=$(aml job show --name "$job" --query properties.best_child_run_id -o tsv)
  [ -n "$source_job" ] || die "sweep job $job names no best trial yet (properties.best_child_run_id is empty)"
  log "sweep $job: registering the model of its best trial, $source_job"
fi
status=$(aml job show --name "$source_job" --query status -o tsv) || die "no job named $source_job ($AML_BACKEND)"
[ "$status" = Completed ] || die "job $source_job is $status: only a completed job's model can be registered"

registered=$(aml model create --file endpoints/model.yml --path "azureml://jobs/$source_job/outputs/model" \
  --query "[name, version]" -o tsv) || die "registering the model of job $source_job failed"
{ read -r name; read -r version; } <<<"$registered"
log "registered azureml://jobs/$source_job/outputs/model as $name:$version"

echo "model:   $name"
echo "version: $version"
