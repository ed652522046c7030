"""The `batch-endpoint` and `batch-deployment` commands: one function per command (knack reads each signature for its
arguments), with az's flags (azext_mlv2/manual/_params/_batch_endpoint_params.py, _batch_deployment_params.py;
custom/batch_endpoint.py, batch_deployment.py; commands.py registers the updates as generic updates). `load_arguments`
registers the flags; cli/commands.py calls it and points these nouns' CommandGroups at this module.

Flags az has that change nothing here are accepted as az accepts them (--no-wait: every verb returns when it is done;
--skip-script-validation: the script is checked when a job imports it; --yes: nothing prompts); those that ask for
what cannot be here are refused in one line (invoke's --file/--inputs/--outputs/--experiment-name are for pipeline
component deployments, which do not run locally)."""

from knack.arguments import ArgumentsContext

from aml_local import AmlLocalError
from aml_local.cli import generic_update
from aml_local.endpoints.batch import deployment, endpoint, scoring

ENDPOINT_UPDATABLE = {"defaults", "description", "tags"}


def _pairs(params_override):
    """az ml's --set (one {key: value} dict per --set) as `key=value` strings."""
    return [f"{key}={value}" for pairs in params_override or [] for key, value in pairs.items()]


def _set_dicts(params_override):
    return [{key: value} for pairs in params_override or [] for key, value in pairs.items()]


def _refuse(flag, value, why):
    if value not in (None, False, "", []):
        raise AmlLocalError(f"{flag}: {why}")


def _generic_words(entries):
    """GenericUpdate's (position, option, words) entries as `key=value` words, for --set on a YAML-made entity."""
    return [word for _, _, words in sorted(entries or []) for word in words]


# ---- batch-endpoint


def batch_endpoint_create(file=None, name=None, params_override=None, no_wait=False):
    return endpoint.create(file, name=name, params_override=_set_dicts(params_override))


def batch_endpoint_show(name):
    return endpoint.show(name)


def batch_endpoint_list():
    # az's transform_batch_endpoint_list (azext_mlv2/manual/_format.py), applied to every output format. It reads
    # defaults.deploymentName, which the dumped endpoint spells deployment_name: our reading is the default deployment.
    return [
        {
            "id": e.get("id"),
            "name": e.get("name"),
            "deployment_name": (e.get("defaults") or {}).get("deployment_name"),
            "location": e.get("location"),
            "provisioning_state": e.get("provisioning_state"),
            "scoring_uri": e.get("scoring_uri"),
            "auth_mode": e.get("auth_mode"),
        }
        for e in endpoint.list_endpoints()
    ]


def batch_endpoint_update(
    name=None, file=None, defaults=None, params_override=None, add=None, remove=None, force_string=False, no_wait=False
):
    """az's generic update (getter _ml_batch_endpoint_show: the endpoint, or with --file the YAML with its name unless
    --name; setter ml_batch_endpoint_update: --defaults deployment_name=<d> too): description, tags and
    defaults.deployment_name change; anything else is refused."""
    if file and not name:
        name = endpoint.load(file, None).name
    if not name:
        raise AmlLocalError("batch-endpoint update: give --name/-n or --file/-f")
    before = endpoint.show(name)
    if file:
        loaded = endpoint.load(file, name)
        before = before | {"description": loaded.description, "tags": dict(loaded.tags or {})}
        if loaded.defaults:
            before["defaults"] = endpoint.defaults_of(loaded, file)
    after = generic_update.apply(before, params_override, add, remove, force_string=force_string)
    if defaults:
        # ml_batch_endpoint_update: convert_str_to_dict("deployment_name=<name>").
        key, sep, value = defaults.partition("=")
        if not sep or key.strip() != "deployment_name":
            raise AmlLocalError(f"--defaults {defaults!r}: expected deployment_name=<deployment>")
        after["defaults"] = {"deployment_name": value.strip()}
    current = endpoint.show(name)
    generic_update.refuse_others(current, after, ENDPOINT_UPDATABLE, f"batch endpoint {name}")
    changed = {key: after.get(key) for key in generic_update.changed(current, after)}
    return endpoint.update(name, changed)


def batch_endpoint_delete(name, yes=False, no_wait=False):
    endpoint.delete(name)


def batch_endpoint_invoke(
    name,
    input=None,  # az's parameter name
    deployment_name=None,
    input_type=None,
    output_path=None,
    job_name=None,
    mini_batch_size=None,
    instance_count=None,
    params_override=None,
    file=None,
    inputs=None,
    outputs=None,
    experiment_name=None,
):
    why = "for pipeline component deployments, which do not run locally; use --input"
    for flag, value in (("--file", file), ("--inputs", inputs), ("--outputs", outputs)):
        _refuse(flag, value, why)
    _refuse("--experiment-name", experiment_name, "for pipeline component deployments; a job is in its endpoint's")
    return scoring.invoke(
        name,
        input=input,
        input_type=input_type,
        deployment_name=deployment_name,
        output_path=output_path,
        mini_batch_size=mini_batch_size,
        instance_count=instance_count,
        job_name=job_name,
        set_pairs=_pairs(params_override),
    )


def _batch_job(shown: dict) -> dict:
    """A job as az prints azure-ai-ml's BatchJob (id, name, type, status: entities/_deployment/batch_job.py)."""
    return {key: shown.get(key) for key in ("id", "name", "status", "type")}


def batch_endpoint_list_jobs(name):
    return [_batch_job(job) for job in endpoint.list_jobs(name)]


# ---- batch-deployment


def batch_deployment_create(
    file,
    name=None,
    endpoint_name=None,
    set_default=False,
    params_override=None,
    skip_script_validation=False,
    no_wait=False,
):
    return deployment.create(
        file, name=name, endpoint_name=endpoint_name, set_pairs=_pairs(params_override), set_default=set_default
    )


def batch_deployment_show(name, endpoint_name):
    return deployment.show(endpoint_name, name)


def batch_deployment_list(endpoint_name):
    # az's transform_batch_deployment_list (_format.py), applied to every output format.
    return [
        {
            "id": d.get("id"),
            "name": d.get("name"),
            "model": d.get("model"),
            "code": (d.get("code_configuration") or {}).get("code"),
            "environment": d.get("environment"),
            "compute": d.get("compute"),
            "tags": d.get("tags"),
            "creation_context": d.get("creation_context"),
            "provisioning_state": d.get("provisioning_state"),
        }
        for d in deployment.list_deployments(endpoint_name)
    ]


def batch_deployment_update(
    name=None,
    endpoint_name=None,
    file=None,
    params_override=None,
    add=None,
    remove=None,
    force_string=False,
    no_wait=False,
):
    """az's generic update (getter _ml_batch_deployment_show: with --file the YAML, -n/-e overriding its names; else
    the deployment): here the deployment is made again from that YAML (or the one it was made from) with the --set
    pairs as YAML overrides (e.g. --set settings.mini_batch_size=20); --add/--remove are refused."""
    _refuse("--add", add, "use --set KEY=VALUE or the YAML")
    _refuse("--remove", remove, "use --set KEY=VALUE or the YAML")
    pairs = _generic_words(params_override)
    if file and not (name and endpoint_name):
        name, endpoint_name = deployment.names_in(file, name, endpoint_name)
    if not (name and endpoint_name):
        raise AmlLocalError("batch-deployment update: give --name/-n and --endpoint-name/-e, or --file/-f")
    return deployment.update(name, endpoint_name, file=file, set_pairs=pairs)


def batch_deployment_delete(name, endpoint_name, yes=False, no_wait=False):
    deployment.delete(endpoint_name, name)


def batch_deployment_list_jobs(name, endpoint_name):
    # az's transform_batch_deployment_list_jobs (_format.py): name, and properties.status and properties.output of
    # the job, which the BatchJob it dumps does not have; our reading: the job's status and its score output.
    return [
        {
            "name": job["name"],
            "status": job["status"],
            "output": (job.get("outputs") or {}).get("score", {}).get("path"),
        }
        for job in deployment.list_jobs(endpoint_name, name)
    ]


def load_arguments(loader):
    """The batch nouns' flags (az's help texts, shortened): their own, and the help of the flags every noun shares
    (--name/-n, --file/-f, --endpoint-name/-e, --set: commands.py registers their options for all)."""
    with ArgumentsContext(loader, "batch-endpoint") as c:
        c.argument("name", help="Name of the batch endpoint.")
        c.argument("file", help="Batch endpoint YAML, e.g. endpoints/batch/endpoint.yml.")
        c.argument("params_override", help="Override YAML fields, e.g. --set description=mine.")
    loader.generic_update_arguments("batch-endpoint update", set_example="defaults.deployment_name=<deployment>")
    with ArgumentsContext(loader, "batch-endpoint update") as c:
        c.argument("defaults", options_list=["--defaults"], help="deployment_name=<deployment>: the default one.")
    with ArgumentsContext(loader, "batch-endpoint invoke") as c:
        c.argument(
            "deployment_name", options_list=["--deployment-name", "-d"], help="Name of the deployment to target."
        )
        c.argument(
            "input",
            options_list=["--input"],
            help="The data to score: a local folder (or file), or a data asset azureml:<name>:<version>.",
        )
        c.argument("input_type", options_list=["--input-type"], help="uri_folder (the default) or uri_file.")
        c.argument(
            "output_path",
            options_list=["--output-path"],
            help="azureml://datastores/<datastore>/paths/<path>: a folder of the store here.",
        )
        c.argument("mini_batch_size", options_list=["--mini-batch-size", "-m"], help="Files per mini-batch.")
        c.argument("instance_count", options_list=["--instance-count", "-c"], help="Instances the job runs on.")
        c.argument("job_name", options_list=["--job-name"], help="Name of the job (default: batchjob-<uuid>).")
        c.argument("params_override", help="e.g. --set output_file_name=scores.csv retry_settings.max_retries=1.")
        c.argument("file", help="Refused: for pipeline component deployments.")
        c.argument("inputs", options_list=["--inputs"], help="Refused: for pipeline component deployments.")
        c.argument("outputs", options_list=["--outputs"], help="Refused: for pipeline component deployments.")
        c.argument("experiment_name", options_list=["--experiment-name"], help="Refused: for pipeline components.")
    with ArgumentsContext(loader, "batch-deployment") as c:
        c.argument("name", help="Name of the deployment (create: overrides the YAML's).")
        c.argument("endpoint_name", help="Name of the batch endpoint.")
        c.argument("file", help="Batch deployment YAML (update: default, the one it was made from).")
        c.argument("params_override", help="Override YAML fields, e.g. --set settings.mini_batch_size=20.")
    with ArgumentsContext(loader, "batch-deployment create") as c:
        c.argument(
            "set_default",
            options_list=["--set-default"],
            action="store_true",
            help="Make it the endpoint's default deployment (defaults.deployment_name).",
        )
        c.argument(
            "skip_script_validation",
            options_list=["--skip-script-validation"],
            action="store_true",
            help="Accepted: the scoring script is checked when a job imports it.",
        )
    # A batch deployment is made again from its YAML: the --set pairs are its fields, --add/--remove are refused.
    loader.generic_update_arguments(
        "batch-deployment update",
        params_override="e.g. --set settings.mini_batch_size=20 (a YAML field)",
        add="Refused.",
        remove="Refused.",
        force_string="Accepted: --set values are YAML fields.",
    )
