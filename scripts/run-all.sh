#!/usr/bin/env bash
# The whole path in one go, for either backend: set up the workspace's compute, environments and data;
# train (a command, sweep or pipeline job) and wait for it; register the model; deploy it (blue with all
# traffic the first time, a smoke-tested blue/green rollout after that); score the sample request; with --batch,
# score the 10,000 MNIST test images with the batch endpoint too.
# Usage: scripts/run-all.sh [--subscription ID] [--resource-group GROUP] [--workspace NAME]
#                           [--job JOB_YAML] [--deploy-set KEY=VALUE ...] [--skip-setup] [--batch] [--teardown]
#                           [-- JOB_CREATE_ARGS...]
#   --job         jobs/train.yml, jobs/sweep.yml, jobs/pipeline.yml, ... (default jobs/sweep.yml)
#   --deploy-set  a deployment YAML override, e.g. environment_variables.WORKER_COUNT=1 (repeatable)
#   --batch       also run scripts/batch.sh with the registered model (the MNIST test images as PNG files)
#   --teardown    delete the endpoint at the end (on Azure: stops its instances' billing)
#   after --       passed to `job create`, e.g. -- --set inputs.epochs=2
# The Azure settings may also come from AZURE_SUBSCRIPTION_ID, AZURE_DEFAULTS_GROUP, AZURE_DEFAULTS_WORKSPACE.
set -euo pipefail
cd "$(dirname "$0")/.."

job_file=jobs/sweep.yml
setup=true
batch=false
teardown=false
job_args=()
deploy_args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --subscription | --resource-group | --workspace | --job | --deploy-set)
      [ $# -ge 2 ] && [ -n "$2" ] || { echo "ERROR: $1 needs a value" >&2; exit 1; }
      case "$1" in
        --subscription) export AZURE_SUBSCRIPTION_ID=$2 ;;
        --resource-group) export AZURE_DEFAULTS_GROUP=$2 ;;
        --workspace) export AZURE_DEFAULTS_WORKSPACE=$2 ;;
        --job) job_file=$2 ;;
        --deploy-set) deploy_args+=(--set "$2") ;;
      esac
      shift 2
      ;;
    --skip-setup) setup=false; shift ;;
    --batch) batch=true; shift ;;
    --teardown) teardown=true; shift ;;
    --) shift; job_args=("$@"); break ;;
    *) echo "ERROR: unknown argument '$1' (see the usage at the top of scripts/run-all.sh)" >&2; exit 1 ;;
  esac
done
# shellcheck source=scripts/lib.sh
source scripts/lib.sh
[ -f "$job_file" ] || die "--job: no such job file: $job_file"

if $setup; then
  log "setup: compute, environments, data ($AML_BACKEND)"
  scripts/setup.sh
fi
name="mnist_$(date -u +%Y%m%d_%H%M%S)_$RANDOM"
log "train: $job_file as job $name"
scripts/train.sh "$job_file" --name "$name" "${job_args[@]}"

log "register the model of $name"
registered=$(scripts/register.sh "$name")
model=$(awk '/^model:/ {print $2}' <<<"$registered")
version=$(awk '/^version:/ {print $2}' <<<"$registered")
[ -n "$model" ] && [ -n "$version" ] || die "scripts/register.sh printed no model and version"
echo "registered:    $model:$version"

log "deploy $model:$version"
scripts/deploy.sh --set "model=azureml:$model:$version" "${deploy_args[@]}"
scripts/invoke.sh
if $batch; then
  log "batch: score the MNIST test images with $model:$version"
  scripts/batch.sh --set "model=azureml:$model:$version"
fi
if $teardown; then
  scripts/teardown.sh
fi
