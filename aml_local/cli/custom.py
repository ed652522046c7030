"""What each `aml-local` command does: one function per command (as az's command modules keep theirs in custom.py),
calling the job, endpoint and asset verbs. knack reads each function's signature for its arguments (commands.py
names their flags) and prints what it returns with -o/--query; `cmd` (when a function takes it) is knack's command
object, whose `cli_ctx.data` carries a failure that must be printed after the result (see app.main)."""

from knack.log import get_logger

from aml_local import AmlLocalError, ResourceNotFound, store, tracking_server
from aml_local.assets import component, compute, curated, data, environment, model
from aml_local.cli import transforms
from aml_local.endpoints.online import deployment, endpoint
from aml_local.jobs import verbs as job_verbs

FAILURE = "aml_local.failure"  # the key in cli_ctx.data of the one line a failed job ends the command with
logger = get_logger(__name__)
# azext_mlv2's message where --local and --no-wait are both given (custom/online_endpoint.py, online_deployment.py).
LOCAL_AND_NO_WAIT = '"no_wait" and "local" options are mutually exclusive. Set only one option and try again.'


def _pairs(params_override):
    """az ml's --set gives one {key: value} dict per --set (action.py's OverridePropertiesBySet): back to the
    `key=value` strings the job and deployment verbs take (and record, to reload a sweep's trials)."""
    return [f"{key}={value}" for pairs in params_override or [] for key, value in pairs.items()]


def _fail_if_not_completed(cmd, shown):
    """After `job create --stream` and `job stream`: a job that did not complete fails the command (exit 1) with the
    one line `az ml job stream` ends with. Our choice: the job is still printed first (az raises instead), so a
    script can read the failed job's name from the output."""
    if shown["status"] != "Completed":
        message = shown["properties"].get("aml_local.status_message")
        cmd.cli_ctx.data[FAILURE] = f"job {shown['name']} ended {shown['status']}" + (f": {message}" if message else "")


def _set_dicts(params_override):
    """--set as az's params_override: a list of {key: value} dicts (action.py's OverridePropertiesBySet)."""
    return [{key: value} for pairs in params_override or [] for key, value in pairs.items()]


def _no_web(web):
    # --web opens the entity in Azure ML studio (azext_mlv2's open_online_endpoint_in_browser); there is none here.
    if web:
        logger.warning("--web: there is no Azure ML studio locally; ignored (the JSON below is what it would show)")


def _refuse(flag, value, why):
    if value not in (None, False, ""):
        raise AmlLocalError(f"{flag}: {why}")


def _exit_1_when_missing(call, *args, **kwargs):
    """Where az ml turns Azure's 404 into a ValueError (exit 1, not 3), so do we (the callers cite where)."""
    try:
        return call(*args, **kwargs)
    except ResourceNotFound as err:
        raise AmlLocalError(str(err)) from None


def job_create(cmd, file, name=None, params_override=None, stream=False):
    shown = job_verbs.create(file, name=name, set_pairs=_pairs(params_override), stream=stream)
    if stream:
        _fail_if_not_completed(cmd, shown)
    return shown


def job_show(name):
    return job_verbs.show(name)


def job_list(parent_job_name=None, max_results=50):
    return job_verbs.list_jobs(parent_job_name=parent_job_name, max_results=max_results)


def job_stream(cmd, name):
    _fail_if_not_completed(cmd, job_verbs.stream(name))


def job_cancel(name):
    return job_verbs.cancel(name)


def job_download(name, output_name=None, download_path=None, all_outputs=False):
    job_verbs.download(name, output_name=output_name, download_path=download_path, all_outputs=all_outputs)


def model_create(
    file=None,
    name=None,
    version=None,
    path=None,
    model_type=None,
    description=None,
    params_override=None,
    tags=None,
    stage=None,
    datastore=None,
    registry_name=None,
    default_deployment_template=None,
    no_wait=False,
    resource_group_name=None,
    workspace_name=None,
):
    # The flags of ml_model_create (azext_mlv2/manual/custom/model.py, _params/_model_params.py). --no-wait: it
    # is unused there too. --datastore names where Azure uploads the files: here they are copied into the store.
    _refuse("--registry-name", registry_name, "models are registered in this machine's store only; leave it out")
    _refuse("--stage", stage, "model stages are not recorded here; leave it out")
    _refuse(
        "--default-deployment-template",
        default_deployment_template,
        "deployment templates live in Azure ML registries; leave it out",
    )
    if datastore:
        logger.warning("--datastore %s: ignored; the model's files are copied into this machine's store", datastore)
    return model.create(
        file,
        name=name,
        version=version,
        path=path,
        model_type=model_type,
        description=description,
        params_override=_set_dicts(params_override),
        tags=tags,
    )


def _version_or_label(version, label):
    # azure-ai-ml's ModelOperations.get (and DataOperations.get): "Cannot specify both version and label."
    if version is not None and label is not None:
        raise AmlLocalError("give --version or --label, not both")


def model_show(name, version=None, label=None):
    _version_or_label(version, label)
    return model.show(name, version=version, label=label)


def model_list(name=None):
    return transforms.model_list(model.list_models(name))


# ml_compute_create's flags that name Azure resources (networks, identities, SSH, users): nothing here to apply
# them to, so each is refused (azext_mlv2/manual/_params/_compute_params.py names them).
COMPUTE_AZURE_ONLY = {
    "vnet_name": "--vnet-name",
    "subnet": "--subnet",
    "admin_username": "--admin-username",
    "admin_password": "--admin-password",
    "ssh_key_value": "--ssh-key-value",
    "ssh_public_access_enabled": "--ssh-public-access-enabled",
    "identity_type": "--identity-type",
    "user_assigned_identities": "--user-assigned-identities",
    "enable_node_public_ip": "--enable-node-public-ip",
    "user_tenant_id": "--user-tenant-id",
    "user_object_id": "--user-object-id",
}


def compute_create(
    file=None,
    name=None,
    compute_type=None,
    size=None,
    min_instances=None,
    max_instances=None,
    idle_time_before_scale_down=None,
    tier=None,
    description=None,
    tags=None,
    location=None,
    params_override=None,
    no_wait=False,
    vnet_name=None,
    subnet=None,
    admin_username=None,
    admin_password=None,
    ssh_key_value=None,
    ssh_public_access_enabled=None,
    identity_type=None,
    user_assigned_identities=None,
    enable_node_public_ip=None,
    user_tenant_id=None,
    user_object_id=None,
    resource_group_name=None,
    workspace_name=None,
):
    """As ml_compute_create (azext_mlv2/manual/custom/compute.py): the --set pairs, then each flag given appended
    as params_override (type lower-cased), loaded with load_compute(source=file). --no-wait: recording is quick."""
    given = locals()
    for dest, flag in COMPUTE_AZURE_ONLY.items():
        _refuse(flag, given[dest], "an Azure resource setting; jobs run on this machine, so leave it out")
    _refuse("--location", location, "computes here are on this machine; leave it out")
    overrides = _set_dicts(params_override)
    if compute_type:
        overrides.append({"type": compute_type.lower()})
    for key, value in (
        ("size", size),
        ("min_instances", min_instances),
        ("max_instances", max_instances),
        ("idle_time_before_scale_down", idle_time_before_scale_down),
        ("description", description),
        ("tier", tier),
        ("tags", tags),
    ):
        if value:
            overrides.append({key: value})
    return compute.create(file, name=name, overrides=overrides)


def compute_show(name):
    return compute.show(name)


def environment_create(file, name=None, version=None):
    return environment.create(file, name=name, version=version)


def environment_show(name, version=None, label=None, registry_name=None):
    _version_or_label(version, label)
    if registry_name is not None:
        _curated_registry(registry_name)
        return curated.show(name, version=version, label=label)
    return environment.show(name, version=version, label=label)


def environment_list(name=None, registry_name=None, max_results=None):
    """As az ml lists them: one item per environment (name, latest_version, ...), or with --name its versions,
    newest first; --registry-name azureml lists the curated catalog (a name there has one definition)."""
    if registry_name is not None:
        _curated_registry(registry_name)
        shown = [curated.show(name)] if name else curated.list_environments()
    elif name:
        shown = [environment.show(name, version=v) for v in reversed(environment.RECORDS.versions(name))]
    else:
        shown = []
        records = environment.RECORDS.folder("_").parent  # $AML_LOCAL_HOME/environments/<name>/<version>.json
        for folder in sorted(p for p in records.glob("*") if p.is_dir()):
            versions = environment.RECORDS.versions(folder.name)
            if versions:
                first, latest = (environment.RECORDS.load(folder.name, v) for v in (versions[0], versions[-1]))
                shown.append(
                    {
                        "creation_context": {
                            "created_at": first["created_at"],
                            "last_modified_at": latest["created_at"],
                        },
                        "id": f"azureml:/local/environments/{folder.name}",
                        "latest_version": latest["version"],
                        "name": folder.name,
                    }
                )
    return shown[:max_results] if max_results else shown


def _curated_registry(registry_name):
    if registry_name.strip().lower() != curated.REGISTRY:
        raise AmlLocalError(
            f"registry {registry_name!r}: only the {curated.REGISTRY} registry's curated environments are known here"
        )


def _no_component_registry(registry_name):
    if registry_name is not None:
        raise AmlLocalError(
            f"--registry-name {registry_name}: components live in this machine's store only; leave it out"
        )


def component_create(file, name=None, version=None, params_override=None, skip_validation=False, registry_name=None):
    # --skip-validation: az still loads the YAML with load_component (its schema checked) before the flag applies.
    _no_component_registry(registry_name)
    return component.create(file, name=name, version=version, params_override=params_override)


def component_show(name, version=None, label=None, registry_name=None):
    _no_component_registry(registry_name)
    if not version and not label:
        # ml_component_show (azext_mlv2/manual/custom/component.py): ClientRequestError, exit 1.
        raise AmlLocalError("Must provide either version or label.")
    return component.show(name, version=version, label=label)


def component_list(name=None, max_results=None, include_archived=False, archived_only=False, registry_name=None):
    _no_component_registry(registry_name)
    shown = component.list_components(name, include_archived=include_archived, archived_only=archived_only)
    return shown[:max_results] if max_results else shown  # ml_component_list: islice(..., max_results)


def component_archive(name, version=None, label=None, registry_name=None):
    # ml_component_archive prints nothing; without --version or --label the whole component is archived.
    _no_component_registry(registry_name)
    component.archive(name, version=version, label=label)


def component_restore(name, version=None, label=None, registry_name=None):
    _no_component_registry(registry_name)
    component.restore(name, version=version, label=label)


def data_create(file, name=None, version=None):
    return data.create(file, name=name, version=version)


def data_show(name, version=None, label=None):
    _version_or_label(version, label)
    return data.show(name, version=version, label=label)


def online_endpoint_create(
    file=None,
    name=None,
    auth_mode=None,
    params_override=None,
    local=False,
    no_wait=False,
    web=False,
    resource_group_name=None,
    workspace_name=None,
):
    """ml_online_endpoint_create (azext_mlv2/manual/custom/online_endpoint.py): load_online_endpoint(source=file) with
    --set, then --name (lower-cased) and --auth-mode as params_override; with no --file the flags alone make it.
    --local: every endpoint here is local; --no-wait: creating one is quick here (both accepted)."""
    if local and no_wait:
        raise AmlLocalError(LOCAL_AND_NO_WAIT)
    _no_web(web)
    return endpoint.create(file, name=name, auth_mode=auth_mode, params_override=_set_dicts(params_override))


def online_endpoint_show(name):
    return endpoint.show(name)


def online_endpoint_get_credentials(name):
    return endpoint.get_credentials(name)


def online_endpoint_regenerate_keys(name, key_type="primary", no_wait=False):  # --no-wait: accepted as az does
    # az ml regenerate-keys prints nothing (ml_online_endpoint_regenerate_keys returns no result).
    endpoint.regenerate_keys(name, key_type=key_type)


def online_endpoint_list():
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
    resource_group_name=None,
    workspace_name=None,
):
    """az ml's update reads the endpoint with _ml_online_endpoint_show (with --file: the YAML, its name unless --name
    is given), which raises ValueError("Endpoint does not exist.") on a 404 (azext_mlv2/manual/custom/
    online_endpoint.py): exit 1. Then --traffic and --mirror-traffic (else the YAML's) are what changes here."""
    if local and no_wait:
        raise AmlLocalError(LOCAL_AND_NO_WAIT)
    # az's generic update (--set/--add/--remove/--force-string, azure-cli's generic_update_command) edits the
    # whole endpoint object; here only its traffic can change, which --traffic/--mirror-traffic set.
    for flag, value in (
        ("--set", params_override),
        ("--add", add),
        ("--remove", remove),
        ("--force-string", force_string),
    ):
        _refuse(flag, value, "only traffic changes on a local endpoint; use --traffic or --mirror-traffic")
    _no_web(web)
    if file:
        entity = endpoint._load(file, name, None)
        name = entity.name
        if traffic is None and entity.traffic:
            traffic = " ".join(f"{k}={v}" for k, v in entity.traffic.items())
        if mirror_traffic is None and entity.mirror_traffic:
            mirror_traffic = " ".join(f"{k}={v}" for k, v in entity.mirror_traffic.items())
    if not name:
        raise AmlLocalError("online-endpoint update: give --name/-n or --file/-f")
    return _exit_1_when_missing(endpoint.update, name, traffic=traffic, mirror_traffic=mirror_traffic)


def online_endpoint_delete(name, yes=False, no_wait=False):  # --yes and --no-wait: accepted as az accepts them
    # az ml's ml_online_endpoint_delete raises ValueError(f"Online endpoint {name} does not exist.") on a 404: exit 1.
    _exit_1_when_missing(endpoint.delete, name)


def online_endpoint_invoke(name, request_file, deployment_name=None):
    return endpoint.invoke(name, request_file, deployment_name=deployment_name)


def _deployment_flags(local, no_wait, web, local_enable_gpu, vscode_debug, package_model=False):
    """The flags of ml_online_deployment_create/update (azext_mlv2/manual/custom/online_deployment.py) that
    change nothing here, or cannot: --local (every deployment here is local), --skip-script-validation (the
    scoring script is checked by starting it, as a deployment's servers start)."""
    if local and no_wait:
        raise AmlLocalError(LOCAL_AND_NO_WAIT)
    # --no-wait is accepted: a local deployment's servers start within the command, which returns when it is ready.
    _refuse("--vscode-debug", vscode_debug, "attaching VS Code to the Docker container is az's --local only")
    _refuse("--package-model", package_model, "model packages are built by Azure ML; leave it out")
    if local_enable_gpu:
        logger.warning("--local-enable-gpu: ignored; the servers run in a venv here and see this machine's GPUs")
    _no_web(web)


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
    resource_group_name=None,
    workspace_name=None,
):
    _deployment_flags(local, no_wait, web, local_enable_gpu, vscode_debug, package_model)
    return deployment.create(
        file, name=name, endpoint_name=endpoint_name, all_traffic=all_traffic, set_pairs=_pairs(params_override)
    )


def online_deployment_update(
    name=None,
    endpoint_name=None,
    file=None,
    params_override=None,
    local=False,
    no_wait=False,
    web=False,
    local_enable_gpu=False,
    vscode_debug=False,
    skip_script_validation=False,
    resource_group_name=None,
    workspace_name=None,
):
    """ml_online_deployment_update with _ml_online_deployment_show (azext_mlv2/manual/custom/online_deployment.py):
    with --file, -n/-e only override the YAML's name and endpoint_name (the YAML names both); without it, -n
    and -e name the deployment."""
    _deployment_flags(local, no_wait, web, local_enable_gpu, vscode_debug)
    pairs = _pairs(params_override)
    if file and not (name and endpoint_name):
        entity = deployment._load(file, name, endpoint_name, pairs)
        name, endpoint_name = entity.name, entity.endpoint_name
    if not (name and endpoint_name):
        raise AmlLocalError("online-deployment update: give --name/-n and --endpoint-name/-e, or --file/-f")
    return deployment.update(name, endpoint_name, file=file, set_pairs=pairs)


def online_deployment_show(name, endpoint_name):
    # az ml's ml_online_deployment_show raises ValueError("Deployment does not exist.") on a 404
    # (azext_mlv2/manual/custom/online_deployment.py): exit 1.
    return _exit_1_when_missing(deployment.show, endpoint_name, name)


def online_deployment_list(endpoint_name):
    return transforms.online_deployment_list(deployment.list_deployments(endpoint_name))


def online_deployment_get_logs(name, endpoint_name, lines=deployment.DEFAULT_LOG_LINES, container=None):
    # az ml prints the log text itself (ml_online_deployment_get_logs), not a JSON string, and returns nothing.
    print(deployment.get_logs(endpoint_name, name, lines=lines, container=container))


def online_deployment_delete(name, endpoint_name, yes=False):  # --yes is accepted as az accepts it
    deployment.delete(endpoint_name, name)


def tracking_server_show():
    return tracking_server.show()


def tracking_server_stop():
    # Local only: stops the store's MLflow tracking server now, rather than after its idle time.
    return {"store": str(store.home()), "stopped": tracking_server.stop()}
