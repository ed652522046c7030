#!/usr/bin/env bash
# Create or update what jobs and deployments refer to: the compute cluster(s), the training and inference
# environments, the pipeline components (components/*.yml, which jobs/pipeline-registered.yml names), and the
# MNIST data asset. Safe to run again: compute and environments are created or updated; the components and the
# data asset, whose versions are fixed in their YAML, are created only when that version is missing (a registered
# version cannot change: a component keeps the environment version and code it was registered with).
# Usage: scripts/setup.sh [COMPUTE_YAML ...]    (default compute/cpu-cluster.yml; AML_BACKEND=local|azure)
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

computes=("$@")
[ ${#computes[@]} -gt 0 ] || computes=(compute/cpu-cluster.yml)
components=(components/*.yml)
for file in "${computes[@]}" environments/train.yml environments/inference.yml "${components[@]}" data/mnist.yml; do
  [ -f "$file" ] || die "no such file: $file"
done

for file in "${computes[@]}"; do
  log "compute $(yaml_name "$file") from $file ($AML_BACKEND)"
  aml compute create --file "$file" -o none || die "creating or updating compute from $file failed"
done
for file in environments/train.yml environments/inference.yml; do
  version=$(aml environment create --file "$file" --query version -o tsv) \
    || die "creating environment from $file failed"
  log "environment $(yaml_name "$file"):$version from $file"
done
for file in "${components[@]}"; do
  component=$(yaml_name "$file")
  component_version=$(yaml_version "$file")
  if aml component show --name "$component" --version "$component_version" -o none >/dev/null 2>&1; then
    log "component $component:$component_version exists"
  else
    aml component create --file "$file" -o none || die "creating component $component:$component_version failed"
    log "component $component:$component_version created from $file"
  fi
done
data=$(yaml_name data/mnist.yml)
data_version=$(yaml_version data/mnist.yml)
if aml data show --name "$data" --version "$data_version" -o none >/dev/null 2>&1; then
  log "data asset $data:$data_version exists"
else
  aml data create --file data/mnist.yml -o none || die "creating data asset $data:$data_version failed"
  log "data asset $data:$data_version created from data/mnist.yml"
fi
echo "ready: ${#computes[@]} compute, 2 environments, ${#components[@]} components, data $data:$data_version ($AML_BACKEND)"
