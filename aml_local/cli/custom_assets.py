"""The command functions of the asset nouns (model, data, environment, component, compute), one per command as az's
command modules keep them (Azure/azure-cli-extensions src/machinelearningservices/azext_mlv2/manual/custom/
model.py, data.py, environment.py, component.py, compute.py: each function here takes the parameters its namesake
there takes, and commands.py gives them az's flags). -g/-w and --no-wait, where az has them and a function here has no
use for them, are command.py's. knack prints what a function returns with -o/--query; None prints nothing."""

from knack.log import get_logger

from aml_local import AmlLocalError
from aml_local.assets import component, compute, curated, data, environment, model
from aml_local.cli import flags, generic_update, transforms

logger = get_logger(__name__)


def _updated(before, params_override, add, remove, force_string, allowed, what, instead="create a new version"):
    """The shown entity after --set/--add/--remove (generic_update.py), with only `allowed` fields changed."""
    after = generic_update.apply(before, params_override, add, remove, force_string=force_string)
    generic_update.refuse_others(before, after, allowed, what, instead)
    return after


def _tags(value, what):
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise AmlLocalError(f"{what}: tags must be an object of key-value pairs, e.g. --set tags.stage=prod")
    return {str(k): str(v) for k, v in value.items()}


# ---------------------------------------------------------------------------------------------------------------
# model: ml_model_create/show/list/archive/restore and the generic update (_ml_model_show, _ml_model_update)


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
):
    # The flags of ml_model_create (azext_mlv2/manual/custom/model.py, _params/_model_params.py). --no-wait: it
    # is unused there too. --datastore names where Azure uploads the files: here they are copied into the store.
    flags.no_registry(registry_name, "models")
    flags.refuse(
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
        params_override=flags.set_dicts(params_override),
        tags=tags,
        stage=stage,
    )


def model_show(name, version=None, label=None, registry_name=None):
    flags.no_registry(registry_name, "models")
    flags.version_or_label(version, label)
    return model.show(name, version=version, label=label)


def model_list(
    name=None, stage=None, max_results=None, include_archived=False, archived_only=False, registry_name=None
):
    flags.no_registry(registry_name, "models")
    listed = model.list_models(name, stage=stage, include_archived=include_archived, archived_only=archived_only)
    return transforms.model_list(flags.capped(listed, max_results))


def model_archive(name, version=None, label=None, registry_name=None):
    # ml_model_archive returns what ModelOperations.archive does: nothing, so az prints nothing.
    flags.no_registry(registry_name, "models")
    model.set_archived(name, version, label, True)


def model_restore(name, version=None, label=None, registry_name=None):
    flags.no_registry(registry_name, "models")
    model.set_archived(name, version, label, False)


def model_update(
    name,
    version=None,
    label=None,
    stage=None,
    registry_name=None,
    params_override=None,
    add=None,
    remove=None,
    force_string=False,
):
    """az's generic update of a model version: the version shown, --set/--add/--remove applied to it, then --stage
    (_ml_model_update appends it), and the result registered again; what changes here is the description, the tags
    and the stage (a version's files, path and type are what was registered)."""
    flags.no_registry(registry_name, "models")
    before = model_show(name, version=version, label=label)
    after = _updated(before, params_override, add, remove, force_string, {"description", "tags", "stage"}, "model")
    if stage is not None:
        after["stage"] = stage
    changed_stage = after.get("stage") if after.get("stage") != before.get("stage") else None
    return model.update(
        name,
        before["version"],
        description=after.get("description"),
        tags=_tags(after.get("tags"), "model update"),
        stage=changed_stage,
    )


# ---------------------------------------------------------------------------------------------------------------
# data: ml_data_create/show/list/archive/restore and the generic update (_ml_data_show, _ml_data_update)


def data_create(
    file=None,
    name=None,
    version=None,
    description=None,
    path=None,
    data_type=None,
    datastore=None,
    params_override=None,
    skip_validation=False,
    registry_name=None,
):
    """ml_data_create (azext_mlv2/manual/custom/data.py): --set pairs, then each flag given, as params_override of
    load_data(source=file); without --file, the flags alone make the asset. --skip-validation skips the checks of
    an MLTable's metadata there; here the path is still checked to exist. --no-wait: creating is quick here."""
    flags.no_registry(registry_name, "data assets")
    if datastore:
        logger.warning("--datastore %s: ignored; local data assets point at local paths", datastore)
    overrides = flags.set_dicts(params_override)
    for key, value in (("description", description), ("type", data_type), ("path", path)):
        if value:
            overrides.append({key: value})
    return data.create(file, name=name, version=version, params_override=overrides)


def data_show(name, version=None, label=None, registry_name=None):
    flags.no_registry(registry_name, "data assets")
    flags.version_or_label(version, label)
    return data.show(name, version=version, label=label)


def data_list(name=None, max_results=None, include_archived=False, archived_only=False, registry_name=None):
    flags.no_registry(registry_name, "data assets")
    return flags.capped(data.list_data(name, include_archived, archived_only), max_results)


def data_archive(name, version=None, label=None):
    data.archive(name, version=version, label=label)


def data_restore(name, version=None, label=None):
    data.restore(name, version=version, label=label)


def data_update(
    name, version=None, label=None, registry_name=None, params_override=None, add=None, remove=None, force_string=False
):
    """az's generic update of a data version (_ml_data_show, then _ml_data_update): its description and tags change
    here; what it points at does not."""
    flags.no_registry(registry_name, "data assets")
    before = data_show(name, version=version, label=label)
    after = _updated(before, params_override, add, remove, force_string, {"description", "tags"}, "data")
    data.RECORDS.update(
        name, before["version"], description=after.get("description"), tags=_tags(after.get("tags"), "data update")
    )
    return data.show(name, version=before["version"])


# ---------------------------------------------------------------------------------------------------------------
# environment: ml_environment_create/show/list/archive/restore and the generic update


def environment_create(
    file=None,
    name=None,
    version=None,
    params_override=None,
    tags=None,
    description=None,
    image=None,
    conda_file=None,
    build_context=None,
    dockerfile_path="/Dockerfile",
    os_type=None,
    datastore=None,
    path=None,
    registry_name=None,
):
    """ml_environment_create (azext_mlv2/manual/custom/environment.py): --set pairs, then each flag given, as
    params_override of load_environment(source=file), --build-context with --dockerfile-path as `build`; without
    --file the flags alone make the environment. --path is for copying an environment into a registry (its help:
    "else it will be ignored"); --datastore is where Azure uploads a build context."""
    flags.no_registry(registry_name, "environments")
    for flag, value in (("--datastore", datastore), ("--path", path)):
        if value:
            logger.warning("%s %s: ignored; an environment here is recorded in this machine's store", flag, value)
    overrides = flags.set_dicts(params_override)
    for key, value in (
        ("tags", tags),
        ("description", description),
        ("image", image),
        ("conda_file", conda_file),
        ("build", build_context and {"path": build_context, "dockerfile_path": dockerfile_path}),
        ("os_type", os_type),
    ):
        if value:
            overrides.append({key: value})
    return environment.create(file, name=name, version=version, params_override=overrides)


def _curated_registry(registry_name):
    if registry_name.strip().lower() != curated.REGISTRY:
        raise AmlLocalError(
            f"registry {registry_name!r}: only the {curated.REGISTRY} registry's curated environments are known here"
        )


def environment_show(name, version=None, label=None, registry_name=None):
    flags.version_or_label(version, label)
    if registry_name is not None:
        _curated_registry(registry_name)
        return curated.show(name, version=version, label=label)
    return environment.show(name, version=version, label=label)


def environment_list(name=None, registry_name=None, max_results=None, include_archived=False, archived_only=False):
    """As az ml lists them: one item per environment, or with --name its versions, newest first, each cut to az's
    shape (transforms.environment_list); --registry-name azureml lists the curated catalog (a name there has one
    definition, never archived)."""
    if registry_name is not None:
        _curated_registry(registry_name)
        shown = [] if archived_only else [curated.show(name)] if name else curated.list_environments()
    else:
        shown = environment.list_environments(name, include_archived, archived_only)
    return transforms.environment_list(flags.capped(shown, max_results))


def environment_archive(name, version=None, label=None, registry_name=None):
    flags.no_registry(registry_name, "environments registered here")
    environment.archive(name, version=version, label=label)


def environment_restore(name, version=None, label=None, registry_name=None):
    flags.no_registry(registry_name, "environments registered here")
    environment.restore(name, version=version, label=label)


def environment_update(
    name, version=None, label=None, registry_name=None, params_override=None, add=None, remove=None, force_string=False
):
    """az's generic update of an environment version (_ml_environment_show, _ml_environment_update): its
    description and tags change here; its image, conda file and build context do not."""
    flags.no_registry(registry_name, "environments registered here")
    before = environment_show(name, version=version, label=label)
    after = _updated(before, params_override, add, remove, force_string, {"description", "tags"}, "environment")
    environment.RECORDS.update(
        name,
        before["version"],
        description=after.get("description"),
        tags=_tags(after.get("tags"), "environment update"),
    )
    return environment.show(name, version=before["version"])


# ---------------------------------------------------------------------------------------------------------------
# component: ml_component_create/show/list/archive/restore


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
    return flags.capped(shown, max_results)  # ml_component_list: islice(..., max_results)


def component_archive(name, version=None, label=None, registry_name=None):
    # ml_component_archive prints nothing; without --version or --label the whole component is archived.
    _no_component_registry(registry_name)
    component.archive(name, version=version, label=label)


def component_restore(name, version=None, label=None, registry_name=None):
    _no_component_registry(registry_name)
    component.restore(name, version=version, label=label)


# ---------------------------------------------------------------------------------------------------------------
# compute: ml_compute_create/show/list/delete and the generic update (ml_compute_show, _ml_compute_update)

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
AZURE_SETTING = "an Azure resource setting; jobs run on this machine, so leave it out"


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
):
    """As ml_compute_create (azext_mlv2/manual/custom/compute.py): the --set pairs, then each flag given appended
    as params_override (type lower-cased), loaded with load_compute(source=file). --no-wait: recording is quick."""
    given = locals()
    for dest, flag in COMPUTE_AZURE_ONLY.items():
        flags.refuse(flag, given[dest], AZURE_SETTING)
    flags.refuse("--location", location, "computes here are on this machine; leave it out")
    overrides = flags.set_dicts(params_override)
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


def compute_list(compute_type=None, max_results=None):
    return flags.capped(compute.list_computes(compute_type), max_results)


def compute_delete(name, yes=False):  # --yes: accepted (aml-local never prompts); --no-wait: deleting is quick here
    # ml_compute_delete returns the finished operation's result, None: az prints nothing.
    compute.delete(name)


def compute_update(
    name,
    max_instances=None,
    min_instances=None,
    idle_time_before_scale_down=None,
    identity_type=None,
    user_assigned_identities=None,
    tags=None,
    params_override=None,
    add=None,
    remove=None,
    force_string=False,
):
    """az's generic update of a compute (ml_compute_show, then _ml_compute_update, which appends the flags given to
    the shown compute as params_override): its scale settings and tags change here; identities are Azure's."""
    flags.refuse("--identity-type", identity_type, AZURE_SETTING)
    flags.refuse("--user-assigned-identities", user_assigned_identities, AZURE_SETTING)
    before = compute.show(name)
    allowed = {"max_instances", "min_instances", "idle_time_before_scale_down", "tags"}
    after = _updated(before, params_override, add, remove, force_string, allowed, "compute", "create another compute")
    for key, value in (
        ("max_instances", max_instances),
        ("min_instances", min_instances),
        ("idle_time_before_scale_down", idle_time_before_scale_down),
        ("tags", tags),
    ):
        if value:
            after[key] = value
    # Tags are text (--set tags.a=1 reads 1 as JSON): as the other assets' updates keep them.
    after["tags"] = _tags(after.get("tags"), "compute update")
    return compute.update(name, {key: after.get(key) for key in allowed})
