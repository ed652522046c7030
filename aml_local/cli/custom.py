"""What each `aml-local` command does: one function per command (as az's command modules keep theirs in custom.py),
calling the job and endpoint verbs; the asset nouns' functions are in custom_assets.py. knack reads each function's
signature for its arguments (commands.py names their flags) and prints what it returns with -o/--query; `cmd` (when
a function takes it) is knack's command object, whose `cli_ctx.data` carries a failure that must be printed after the
result (see app.main). -g/-w and --no-wait, where az has them and a function here has no use for them, are
command.py's."""

import sys
from pathlib import Path

import yaml

from aml_local import AmlLocalError, store, tracking_server
from aml_local.cli import flags, transforms
from aml_local.endpoints.online import deployment, endpoint
from aml_local.jobs import verbs as job_verbs

FAILURE = "aml_local.failure"  # the key in cli_ctx.data of the one line a failed job ends the command with
MAX_LIST_CLI_RESULTS = 50  # azure-ai-ml's constants/_common.py: job list's default --max-results


def _fail_if_not_completed(cmd, shown):
    """After `job create --stream` and `job stream`: a job that did not complete fails the command (exit 1) with the
    one line `az ml job stream` ends with. Our choice: the job is still printed first (az raises instead), so a
    script can read the failed job's name from the output."""
    if shown["status"] != "Completed":
        message = shown["properties"].get("aml_local.status_message")
        cmd.cli_ctx.data[FAILURE] = f"job {shown['name']} ended {shown['status']}" + (f": {message}" if message else "")


# ---------------------------------------------------------------------------------------------------------------
# job: ml_job_create/show/list/stream/cancel/download/archive/restore (azext_mlv2/manual/custom/job.py)


def job_create(
    cmd, file, name=None, params_override=None, stream=False, skip_validation=False, save_as=None, web=False
):
    """--skip-validation: the YAML is still loaded (and checked) by load_job, as ml_job_create does before it.
    --save-as: ml_job_create writes the created job's state as YAML there (job.dump(save_as)); here the job as shown.
    --web: no studio here (flags.no_web)."""
    flags.no_web(web)
    shown = job_verbs.create(file, name=name, set_pairs=flags.pairs(params_override), stream=stream)
    if save_as:
        Path(save_as).write_text(yaml.safe_dump(shown, sort_keys=False))
    if stream:
        _fail_if_not_completed(cmd, shown)
    return shown


def job_show(name, web=False):
    flags.no_web(web)
    return job_verbs.show(name)


def job_list(
    parent_job_name=None,
    max_results=MAX_LIST_CLI_RESULTS,
    all_results=False,
    include_archived=False,
    archived_only=False,
):
    """ml_job_list: --all-results lists every job; otherwise az prints its limited-result line (on stderr, as its
    print_styled_text does) and lists --max-results of them."""
    if all_results:
        max_results = None
    else:
        print(flags.LIMITED_RESULTSET_WARNING.format(max_results), file=sys.stderr)
    return job_verbs.list_jobs(
        parent_job_name=parent_job_name,
        max_results=max_results,
        include_archived=include_archived,
        archived_only=archived_only,
    )


def job_stream(cmd, name):
    _fail_if_not_completed(cmd, job_verbs.stream(name))


def job_cancel(name, no_wait=False):
    # --no-wait: accepted; the command returns once the job's processes have stopped (seconds here). Nothing is
    # printed: the ml extension's ml_job_cancel (custom/job.py) returns nothing, whatever begin_cancel gave.
    job_verbs.cancel(name)


def job_download(name, output_name=None, download_path=None, all_outputs=False):
    job_verbs.download(name, output_name=output_name, download_path=download_path, all_outputs=all_outputs)


def job_archive(name):
    # ml_job_archive returns nothing: az prints nothing.
    job_verbs.set_archived(name, True, "archive")


def job_restore(name):
    job_verbs.set_archived(name, False, "restore")


# ---------------------------------------------------------------------------------------------------------------
# online-endpoint: ml_online_endpoint_* (azext_mlv2/manual/custom/online_endpoint.py)


def online_endpoint_create(
    file=None, name=None, auth_mode=None, params_override=None, local=False, no_wait=False, web=False
):
    """ml_online_endpoint_create (azext_mlv2/manual/custom/online_endpoint.py): load_online_endpoint(source=file) with
    --set, then --name (lower-cased) and --auth-mode as params_override; with no --file the flags alone make it.
    --local: every endpoint here is local; --no-wait: creating one is quick here (both accepted)."""
    flags.local_flag(local, no_wait)
    flags.no_web(web)
    return endpoint.create(file, name=name, auth_mode=auth_mode, params_override=flags.set_dicts(params_override))


def online_endpoint_show(name, local=False, web=False):
    flags.no_web(web)
    return endpoint.show(name)


def online_endpoint_get_credentials(name):
    return endpoint.get_credentials(name)


def online_endpoint_regenerate_keys(name, key_type="primary", no_wait=False):  # --no-wait: accepted as az does
    # az ml regenerate-keys prints nothing (ml_online_endpoint_regenerate_keys returns no result).
    endpoint.regenerate_keys(name, key_type=key_type)


def online_endpoint_list(local=False):
    return transforms.online_endpoint_list(endpoint.list_endpoints())


def online_endpoint_update(
    name=None,
    traffic=None,
    mirror_traffic=None,
    file=None,
    local=False,
    no_wait=False,
    web=False,
    params_override=None,
    add=None,
    remove=None,
    force_string=False,
):
    """az ml's update reads the endpoint with _ml_online_endpoint_show (with --file: the YAML, its name unless --name
    is given), which raises ValueError("Endpoint does not exist.") on a 404 (azext_mlv2/manual/custom/
    online_endpoint.py): exit 1. Then --traffic and --mirror-traffic (else the YAML's) are what changes here."""
    flags.local_flag(local, no_wait)
    # az's generic update (--set/--add/--remove/--force-string, azure-cli's generic_update_command) edits the
    # whole endpoint object; here only its traffic can change, which --traffic/--mirror-traffic set.
    for flag, value in (
        ("--set", params_override),
        ("--add", add),
        ("--remove", remove),
        ("--force-string", force_string),
    ):
        flags.refuse(flag, value, "only traffic changes on a local endpoint; use --traffic or --mirror-traffic")
    flags.no_web(web)
    if file:
        entity = endpoint.load(file, name, None)
        name = entity.name
        if traffic is None and entity.traffic:
            traffic = " ".join(f"{k}={v}" for k, v in entity.traffic.items())
        if mirror_traffic is None and entity.mirror_traffic:
            mirror_traffic = " ".join(f"{k}={v}" for k, v in entity.mirror_traffic.items())
    if not name:
        raise AmlLocalError("online-endpoint update: give --name/-n or --file/-f")
    return flags.exit_1_when_missing(endpoint.update, name, traffic=traffic, mirror_traffic=mirror_traffic)


def online_endpoint_delete(name, yes=False, local=False, no_wait=False):  # --yes: accepted (aml-local never prompts)
    # az ml's ml_online_endpoint_delete raises ValueError(f"Online endpoint {name} does not exist.") on a 404: exit 1.
    flags.local_flag(local, no_wait)
    flags.exit_1_when_missing(endpoint.delete, name)


def online_endpoint_invoke(name, request_file=None, deployment_name=None, local=False):
    # Optional in az's signature, yet azure-ai-ml's OnlineEndpointOperations.invoke opens it: without one az fails
    # (exit 1) on opening None.
    if not request_file:
        raise AmlLocalError("online-endpoint invoke: give --request-file/-r, the JSON file to send")
    return endpoint.invoke(name, request_file, deployment_name=deployment_name)


# ---------------------------------------------------------------------------------------------------------------
# online-deployment: ml_online_deployment_* (azext_mlv2/manual/custom/online_deployment.py)


def _deployment_flags(local, no_wait, web, local_enable_gpu, vscode_debug, package_model=False):
    """The flags of ml_online_deployment_create/update (azext_mlv2/manual/custom/online_deployment.py) that
    change nothing here, or cannot: --local (every deployment here is local), --skip-script-validation (the
    scoring script is checked by starting it, as a deployment's servers start)."""
    flags.local_flag(local, no_wait)
    # --no-wait is accepted: a local deployment's servers start within the command, which returns when it is ready.
    flags.refuse("--vscode-debug", vscode_debug, "attaching VS Code to the Docker container is az's --local only")
    flags.refuse("--package-model", package_model, "model packages are built by Azure ML; leave it out")
    if local_enable_gpu:
        flags.logger.warning("--local-enable-gpu: ignored; the servers run in a venv here and see this machine's GPUs")
    flags.no_web(web)


def online_deployment_create(
    file,
    name=None,
    endpoint_name=None,
    all_traffic=False,
    params_override=None,
    local=False,
    no_wait=False,
    web=False,
    local_enable_gpu=False,
    vscode_debug=False,
    skip_script_validation=False,
    package_model=False,
):
    _deployment_flags(local, no_wait, web, local_enable_gpu, vscode_debug, package_model)
    return deployment.create(
        file, name=name, endpoint_name=endpoint_name, all_traffic=all_traffic, set_pairs=flags.pairs(params_override)
    )


def online_deployment_update(
    name=None,
    endpoint_name=None,
    file=None,
    params_override=None,
    add=None,
    remove=None,
    force_string=False,
    local=False,
    no_wait=False,
    web=False,
    local_enable_gpu=False,
    vscode_debug=False,
    skip_script_validation=False,
):
    """ml_online_deployment_update with _ml_online_deployment_show (azext_mlv2/manual/custom/online_deployment.py):
    with --file, -n/-e only override the YAML's name and endpoint_name (the YAML names both); without it, -n
    and -e name the deployment. --set pairs are applied to the deployment YAML as params_override (the values
    are read by its schema, so --force-string changes nothing); --add/--remove of the generic update are refused."""
    _deployment_flags(local, no_wait, web, local_enable_gpu, vscode_debug)
    for flag, value in (("--add", add), ("--remove", remove)):
        flags.refuse(flag, value, "change a deployment here with --set KEY=VALUE or its YAML (--file)")
    pairs = flags.pairs(params_override)
    if file and not (name and endpoint_name):
        name, endpoint_name = deployment.names_in(file, name, endpoint_name, pairs)
    if not (name and endpoint_name):
        raise AmlLocalError("online-deployment update: give --name/-n and --endpoint-name/-e, or --file/-f")
    return deployment.update(name, endpoint_name, file=file, set_pairs=pairs)


def online_deployment_show(name, endpoint_name, local=False, web=False):
    # az ml's ml_online_deployment_show raises ValueError("Deployment does not exist.") on a 404
    # (azext_mlv2/manual/custom/online_deployment.py): exit 1.
    flags.no_web(web)
    return flags.exit_1_when_missing(deployment.show, endpoint_name, name)


def online_deployment_list(endpoint_name, local=False):
    return transforms.online_deployment_list(deployment.list_deployments(endpoint_name))


def online_deployment_get_logs(name, endpoint_name, lines=deployment.DEFAULT_LOG_LINES, container=None, local=False):
    # az ml prints the log text itself (ml_online_deployment_get_logs), not a JSON string, and returns nothing.
    print(deployment.get_logs(endpoint_name, name, lines=lines, container=container))


def online_deployment_delete(name, endpoint_name, yes=False, local=False, no_wait=False):  # --yes: never prompts
    flags.local_flag(local, no_wait)
    deployment.delete(endpoint_name, name)


# ---------------------------------------------------------------------------------------------------------------
# Local only (az ml has no such noun): the store's MLflow tracking server (aml_local/tracking_server.py).


def tracking_server_show():
    return tracking_server.show()


def tracking_server_stop():
    # Local only: stops the store's MLflow tracking server now, rather than after its idle time.
    return {"store": str(store.home()), "stopped": tracking_server.stop()}
