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

# The top-level `name:` of a YAML spec (no YAML parser needed: the specs keep it on one plain line).
yaml_name() {
  local name
  name=$(sed -n 's/^name:[[:space:]]*\([^[:space:]#]*\).*/\1/p' "$1" | head -n 1)
  [ -n "$name" ] || die "$1 has no top-level name:"
  printf '%s\n' "$name"
}

# The online endpoint the serving scripts work on: ENDPOINT_NAME, else the name in endpoints/endpoint.yml
# (endpoint names are unique per Azure region, so a taken one is replaced with ENDPOINT_NAME=...).
endpoint_name() {
  if [ -n "${ENDPOINT_NAME:-}" ]; then printf '%s\n' "$ENDPOINT_NAME"; else yaml_name endpoints/endpoint.yml; fi
}
