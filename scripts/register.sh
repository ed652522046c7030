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

# One `job show` per job read: its type, status and best trial (a sweep's; None otherwise, as az prints a null in a
# tsv list), one per line.
shown_type="" shown_status="" shown_best=""
read_job() {
  local shown
  shown=$(aml job show --name "$1" --query "[type, status, properties.best_child_run_id]" -o tsv) || return 1
  { IFS= read -r shown_type; IFS= read -r shown_status; IFS= read -r shown_best; } <<<"$shown"
  [ "$shown_best" != None ] || shown_best=""
}

read_job "$job" || die "no job named $job ($AML_BACKEND)"
job_type=$shown_type
source_job=$job
if [ "$job_type" = pipeline ]; then
  # A pipeline's model comes from its sweep node. The pipeline's own record names its nodes with their types
  # (`jobs: {sweep_train: {type: sweep, ...}}`). Its child jobs carry no type: `job list --parent-job-name` and
  # `job show` of a child answer generic jobs from run history (azure-ai-ml 1.35: operations/_job_operations.py
  # list() and get() -> _run_operations.get_run_children / get_run -> entities/_job/base_job.py _BaseJob, whose
  # schema has no `type`), each with its node's name as display_name (as azure-ai-ml's own test finds a child:
  # sdk/ml/azure-ai-ml/tests/pipeline_job/e2etests/test_pipeline_job.py, test_pipeline_job_get_child_run; and the
  # Azure ML docs' "look for the job with display_name as train_job"). Our pipelines set no display_name on a node.
  nodes=$(aml job show --name "$job" --query jobs -o json) || die "no job named $job ($AML_BACKEND)"
  sweep_nodes=$(printf '%s' "$nodes" | python3 -c '
import json, sys
nodes = json.load(sys.stdin) or {}
print("\n".join(name for name, node in nodes.items() if isinstance(node, dict) and node.get("type") == "sweep"))')
  [ -n "$sweep_nodes" ] \
    || die "pipeline job $job has no sweep node (its nodes: $AML_CLI_NAME job show --name $job --query jobs)"
  [ "$(wc -l <<<"$sweep_nodes")" -eq 1 ] \
    || die "pipeline job $job has more than one sweep node ($(paste -sd ' ' <<<"$sweep_nodes")): register the one" \
      "you mean by its job name (scripts/register.sh CHILD_JOB; $AML_CLI_NAME job list --parent-job-name $job)"
  node=$sweep_nodes
  [[ $node =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || die "pipeline job $job: unexpected node name '$node'"
  source_job=$(aml job list --parent-job-name "$job" --query "[?display_name=='$node'].name" -o tsv | head -n 1) \
    || die "listing the child jobs of pipeline job $job failed ($AML_BACKEND)"
  [ -n "$source_job" ] || die "pipeline job $job has no child job for its sweep node $node" \
    "($AML_CLI_NAME job list --parent-job-name $job): did the node start?"
  log "pipeline $job: its sweep node $node is job $source_job"
  read_job "$source_job" || die "no job named $source_job ($AML_BACKEND)"
  job_type=sweep
fi
if [ "$job_type" = sweep ]; then
  # A sweep's model is its best trial's: the trial job is named in the sweep's properties.
  sweep=$source_job
  source_job=$shown_best
  [ -n "$source_job" ] || die "sweep job $sweep names no best trial (properties.best_child_run_id is empty):" \
    "no trial completed with its primary metric logged"
  log "sweep $sweep: the model of its best trial, $source_job"
  read_job "$source_job" || die "no job named $source_job ($AML_BACKEND)"
fi
status=$shown_status
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
