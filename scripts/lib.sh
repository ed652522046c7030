# shellcheck shell=bash
# Shared by the stage scripts. AML_BACKEND picks who runs the `az ml` verbs: `azure` (the real `az ml`)
# or `local` (aml-local, this machine). Nothing else in a script differs between the two: every verb
# goes through aml() below.
#
# Azure workspace, from the environment (scripts/run-all.sh also takes them as arguments):
#   AZURE_DEFAULTS_GROUP      the workspace's resource group (required for azure)
#   AZURE_DEFAULTS_WORKSPACE  the workspace name (required for azure)
#   AZURE_SUBSCRIPTION_ID     the subscription (optional: the logged-in account's default otherwise)
# The first two are the names under which the Azure CLI itself reads its `defaults` settings from the
# environment; aml() also passes them as -g/-w, so no global `az configure --defaults` is written.
# Waiting for jobs: AML_POLL_S (seconds between `job show` calls, default 30; 0.5 works too) and AML_WAIT_TIMEOUT_S
# (default 21600, six hours). AML_RELOGIN_S (azure only, unset by default): sign in again with
# scripts/azure-login.sh (a fresh GitHub OIDC token) every so many seconds while waiting, so that the cached
# access tokens never run out during a wait longer than they last. The local backend ignores the Azure variables.
AML_BACKEND=${AML_BACKEND:-local}
AML_POLL_S=${AML_POLL_S:-30}
AML_WAIT_TIMEOUT_S=${AML_WAIT_TIMEOUT_S:-21600}
AML_RELOGIN_S=${AML_RELOGIN_S:-}

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'ERROR: %s\n' "$*" >&2; exit 1; }

aml() {
  case "$AML_BACKEND" in
    local) aml-local "$@" ;;
    azure)
      az ml "$@" --resource-group "$AZURE_DEFAULTS_GROUP" --workspace-name "$AZURE_DEFAULTS_WORKSPACE" \
        ${AZURE_SUBSCRIPTION_ID:+--subscription "$AZURE_SUBSCRIPTION_ID"} --only-show-errors
      ;;
    *) die "AML_BACKEND must be 'local' or 'azure' (got '$AML_BACKEND')" ;;
  esac
}

# How a user types the verbs aml() runs, for messages that suggest a command.
case "$AML_BACKEND" in
  local) AML_CLI_NAME=aml-local ;;
  *) AML_CLI_NAME="az ml" ;;
esac
export AML_CLI_NAME

case "$AML_BACKEND" in
  local) command -v aml-local >/dev/null || die "aml-local not found: run 'make setup' and use .venv/bin" ;;
  azure)
    command -v az >/dev/null || die "az not found: install the Azure CLI and 'az extension add -n ml'"
    [ -n "${AZURE_DEFAULTS_GROUP:-}" ] \
      || die "AZURE_DEFAULTS_GROUP is not set: export the workspace's resource group (or pass --resource-group)"
    [ -n "${AZURE_DEFAULTS_WORKSPACE:-}" ] \
      || die "AZURE_DEFAULTS_WORKSPACE is not set: export the workspace name (or pass --workspace)"
    ;;
  *) die "AML_BACKEND must be 'local' or 'azure' (got '$AML_BACKEND')" ;;
esac
# The poll interval only reaches `sleep`, which takes fractions (tests poll a fake `az` every 0.2 s); the timeouts
# are compared with bash's whole-second $SECONDS, so they stay whole numbers.
[[ $AML_POLL_S =~ ^([0-9]+([.][0-9]*)?|[.][0-9]+)$ && $AML_POLL_S =~ [1-9] ]] \
  || die "AML_POLL_S must be a positive number of seconds (got '$AML_POLL_S')"
[[ $AML_WAIT_TIMEOUT_S =~ ^[1-9][0-9]*$ ]] \
  || die "AML_WAIT_TIMEOUT_S must be a whole number of seconds >= 1 (got '$AML_WAIT_TIMEOUT_S')"
[ -z "$AML_RELOGIN_S" ] || [[ $AML_RELOGIN_S =~ ^[1-9][0-9]*$ ]] \
  || die "AML_RELOGIN_S must be empty or a whole number of seconds >= 1 (got '$AML_RELOGIN_S')"

# The top-level `name:` of a YAML spec (no YAML parser needed: the specs keep it on one plain line).
yaml_name() {
  local name
  name=$(sed -n 's/^name:[[:space:]]*\([^[:space:]#]*\).*/\1/p' "$1" | head -n 1)
  [ -n "$name" ] || die "$1 has no top-level name:"
  printf '%s\n' "$name"
}

# The top-level `version:` of a YAML spec (quoted or not), for the assets whose YAML fixes it.
yaml_version() {
  local version
  version=$(sed -n 's/^version:[[:space:]]*"\{0,1\}\([^"[:space:]#]*\).*/\1/p' "$1" | head -n 1)
  [ -n "$version" ] || die "$1 has no top-level version:"
  printf '%s\n' "$version"
}

# Azure ML's rule for online endpoint names: 3 to 32 characters, a letter first, then letters, digits and
# '-', not ending with '-'.
ENDPOINT_NAME_RULE='^[A-Za-z][A-Za-z0-9-]{1,30}[A-Za-z0-9]$'

# The online endpoint the serving scripts work on. ENDPOINT_NAME when set (checked against the rule);
# otherwise the name in endpoints/endpoint.yml, followed, when a workspace is named, by 8 hex digits of a
# hash of subscription/group/workspace: endpoint names are unique per Azure region, so two workspaces (or
# two users) in one region must not both ask for `mnist-endpoint`.
endpoint_name() {
  local name
  if [ -n "${ENDPOINT_NAME:-}" ]; then
    [[ $ENDPOINT_NAME =~ $ENDPOINT_NAME_RULE ]] || die "ENDPOINT_NAME '$ENDPOINT_NAME': expected 3 to 32 letters," \
      "digits and '-', starting with a letter and not ending with '-'"
    printf '%s\n' "$ENDPOINT_NAME"
    return
  fi
  name=$(yaml_name endpoints/endpoint.yml)
  if [ -n "${AZURE_DEFAULTS_WORKSPACE:-}" ]; then
    name="$name-$(python3 -c 'import hashlib, sys; print(hashlib.sha256(sys.argv[1].encode()).hexdigest()[:8])' \
      "${AZURE_SUBSCRIPTION_ID:-}/${AZURE_DEFAULTS_GROUP:-}/$AZURE_DEFAULTS_WORKSPACE")"
  fi
  printf '%s\n' "$name"
}

# Wait for a job to reach a terminal state by polling `job show --query status`. The terminal states are the
# ones azure-ai-ml 1.35 counts as terminal (RunHistoryConstants.TERMINAL_STATUSES in
# azure/ai/ml/operations/_run_history_constants.py: Completed, Failed, Canceled, NotResponding, Paused).
# Completed returns 0; any other terminal state, and a timeout, stop the script with the job's name and studio
# URL. Every other status (NotStarted, Queued, Preparing, Provisioning, Starting, Running, CancelRequested,
# Finalizing, and any the service adds) keeps the wait going.
wait_for_job() {
  local job=$1 status previous="" failures=0 started=$SECONDS signed_in=$SECONDS url
  while :; do
    if [ -n "$AML_RELOGIN_S" ] && [ "$AML_BACKEND" = azure ] && [ $((SECONDS - signed_in)) -ge "$AML_RELOGIN_S" ]; then
      # A failed sign-in is tried again at the next poll; the tokens cached by the last one still hold until then.
      if scripts/azure-login.sh; then
        signed_in=$SECONDS
      else
        log "signing in again failed; trying again in ${AML_POLL_S}s"
      fi
    fi
    if status=$(aml job show --name "$job" --query status -o tsv); then
      failures=0
      if [ "$status" != "$previous" ]; then
        log "job $job: $status"
        previous=$status
      fi
      case "$status" in
        Completed) return 0 ;;
        Failed | Canceled | NotResponding | Paused)
          url=$(aml job show --name "$job" --query services.Studio.endpoint -o tsv 2>/dev/null) || url="(unknown)"
          die "job $job ended $status; see $url"
          ;;
      esac
    else
      failures=$((failures + 1))
      # A transient error (network, throttling) is retried; three in a row mean the job cannot be read.
      [ "$failures" -lt 3 ] || die "job $job: 'job show' failed $failures times in a row ($AML_BACKEND)"
    fi
    if [ $((SECONDS - started)) -ge "$AML_WAIT_TIMEOUT_S" ]; then
      url=$(aml job show --name "$job" --query services.Studio.endpoint -o tsv 2>/dev/null) || url="(unknown)"
      die "job $job is still ${status:-unknown} after ${AML_WAIT_TIMEOUT_S}s (AML_WAIT_TIMEOUT_S); it was not" \
        "canceled ($AML_CLI_NAME job cancel --name $job); wait again with scripts/wait.sh $job; see $url"
    fi
    sleep "$AML_POLL_S"
  done
}
