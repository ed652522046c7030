#!/usr/bin/env bash
# Register the model a job produced, from endpoints/model.yml, and print its name and version. The job may
# be a training job, a sweep (its best trial's model) or a pipeline (its sweep node's best trial's model).
# Usage: scripts/register.sh JOB_NAME                  (AML_BACKEND=local|azure)
#        scripts/register.sh --find-model-job JOB_NAME  (only print the name of the job holding the model)
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

find_only=false
if [ "${1:-}" = --find-model-job ]; then
  find_only=true
  shift
fi
[ $# -eq 1 ] && [ -n "$1" ] || die "usage: scripts/register.sh JOB_NAME (a completed training, sweep or pipeline job)"
job=$1

job_type=$(aml job show --name "$job" --query type -o tsv) || die "no job named $job ($AML_BACKEND)"
source_job=$job
if [ "$job_type" = pipeline ]; then
  # A pipeline's model comes from its sweep node, a child job of the pipeline.
  source_job=$(aml job list --parent-job-name "$job" --query "[?type=='sweep'].name" -o tsv | head -n 1)
  [ -n "$source_job" ] || die "pipeline job $job has no sweep node (job list --parent-job-name $job)"
  log "pipeline $job: its sweep node is job $source_job"
  job_type=sweep
fi
if [ "$job_type" = sweep ]; then
  # A sweep's model is its best trial's: the trial job is named in the sweep's properties.
  sweep=$source_job
  source_job=$(aml job show --name "$sweep" --query properties.best_child_run_id -o tsv)
  [ -n "$source_job" ] || die "sweep job $sweep names no best trial (properties.best_child_run_id is empty):" \
    "no trial completed with its primary metric logged"
  log "sweep $sweep: the model of its best trial, $source_job"
fi
status=$(aml job show --name "$source_job" --query status -o tsv) || die "no job named $source_job ($AML_BACKEND)"
[ "$status" = Completed ] || die "job $source_job is $status: only a completed job's model can be registered"
if $find_only; then
  printf '%s\n' "$source_job"
  exit 0
fi

registered=$(aml model create --file endpoints/model.yml --path "azureml://jobs/$source_job/outputs/model" \
  --query "[name, version]" -o tsv) || die "registering the model of job $source_job failed"
{ read -r name; read -r version; } <<<"$registered"
[ -n "$name" ] && [ -n "$version" ] || die "registering the model of job $source_job returned no name and version"
log "registered azureml://jobs/$source_job/outputs/model as $name:$version"

echo "model:   $name"
echo "version: $version"
