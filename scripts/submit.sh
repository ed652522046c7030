#!/usr/bin/env bash
# Submit a job YAML (a command, sweep or pipeline job) and print the job's name; nothing waits for it (see
# scripts/wait.sh). The GitHub workflow submits in one job and waits in the next, so that a wait can be run again.
# Usage: scripts/submit.sh JOB_YAML [--name NAME] [--set KEY=VALUE ...]    (AML_BACKEND=local|azure)
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

[ $# -ge 1 ] && [ -n "$1" ] || die "usage: scripts/submit.sh JOB_YAML [--name NAME] [--set KEY=VALUE ...]"
file=$1
shift
[ -f "$file" ] || die "no such job file: $file"

name=$(aml job create --file "$file" "$@" --query name -o tsv) || die "submitting $file failed ($AML_BACKEND)"
[ -n "$name" ] || die "submitting $file returned no job name ($AML_BACKEND)"
log "submitted $file as job $name ($AML_BACKEND)"
printf '%s\n' "$name"
