#!/usr/bin/env bash
# Wait for a submitted job by polling its status, fail unless it completes (printing its studio URL), then report
# its model: the test accuracy train.py measured and the model's URI, the path a model registration takes. Run it
# again on the same job to resume a wait that timed out (the job keeps running meanwhile).
# Usage: scripts/wait.sh JOB_NAME    (AML_BACKEND=local|azure; AML_POLL_S, AML_WAIT_TIMEOUT_S, AML_RELOGIN_S;
#        AML_STREAM_LOGS=1 also shows the job's log while it runs, on stderr: the status polling decides the outcome)
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

[ $# -eq 1 ] && [ -n "$1" ] || die "usage: scripts/wait.sh JOB_NAME (a submitted command, sweep or pipeline job)"
name=$1
log "waiting for job $name ($AML_BACKEND); polling its status every ${AML_POLL_S}s"
if [ "${AML_STREAM_LOGS:-0}" = 1 ]; then
  aml job stream --name "$name" >&2 || true
fi
wait_for_job "$name"

# The job whose `model` output holds the model: the job itself, a sweep's best trial, or a pipeline's sweep
# node's best trial, as scripts/register.sh finds it.
model_job=$(scripts/register.sh --find-model-job "$name")
download=$(mktemp -d)
trap 'rm -rf "$download"' EXIT
aml job download --name "$model_job" --output-name model --download-path "$download" >/dev/null \
  || die "downloading the model output of job $model_job failed ($AML_BACKEND)"
metrics=$(find "$download" -name test_metrics.json -print -quit)
[ -n "$metrics" ] || die "job $model_job's model output has no test_metrics.json (was it written by src/train.py?)"
test_acc=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["test_acc"])' "$metrics")

echo "job:           $name"
echo "status:        Completed"
echo "test accuracy: $test_acc"
echo "model:         azureml://jobs/$model_job/outputs/model"
