# shellcheck shell=bash
# Shared by the stage scripts. AML_BACKEND picks who runs the `az ml` verbs: `azure` (the real
# `az ml`, against the workspace set with `az configure --defaults`) or `local` (aml-local, this
# machine). Nothing else in a script differs between the two.
AML_BACKEND=${AML_BACKEND:-local}

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'ERROR: %s\n' "$*" >&2; exit 1; }

aml() {
  case "$AML_BACKEND" in
    local) aml-local "$@" ;;
    azure) az ml "$@" ;;
    *) die "AML_BACKEND must be 'local' or 'azure' (got '$AML_BACKEND')" ;;
  esac
}

case "$AML_BACKEND" in
  local) command -v aml-local >/dev/null || die "aml-local not found: run 'make setup' and use .venv/bin" ;;
  azure) command -v az >/dev/null || die "az not found: install the Azure CLI and 'az extension add -n ml'" ;;
  *) die "AML_BACKEND must be 'local' or 'azure' (got '$AML_BACKEND')" ;;
esac
