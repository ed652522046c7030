#!/usr/bin/env bash
# Submit a job YAML (a command, sweep or pipeline job), wait for it by polling its status, fail unless it
# completes (printing its studio URL), then report its model: the test accuracy train.py measured and the
# model's URI, the path a model registration takes. It is scripts/submit.sh followed by scripts/wait.sh.
# Usage: scripts/train.sh [JOB_YAML] [--name NAME] [--set KEY=VALUE ...]
#        (default jobs/train.yml; AML_BACKEND=local|azure; AML_POLL_S, AML_WAIT_TIMEOUT_S, AML_RELOGIN_S;
#        AML_STREAM_LOGS=1 also shows the job's log while it runs, on stderr: the status polling decides the outcome)
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

file=${1:-jobs/train.yml}
shift || true
name=$(scripts/submit.sh "$file" "$@")
exec scripts/wait.sh "$name"
