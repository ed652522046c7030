"""`batch-endpoint invoke`: a batch scoring job, and its driver (`python -m aml_local.endpoints.batch.scoring JOB_DIR`).

Shaped as Azure shows one: a pipeline job (the job `invoke` names; `job show` prints it with `type: pipeline`) whose
one step, `batchscoring`, is a parallel job running the deployment's scoring script over the input's files ("Deploy
models for scoring in batch endpoints": "In the graph of the job, select the batchscoring step"; "Deploy MLflow models
in batch deployments": Azure "creates a batch job pipeline with a scoring script"), with the job's output named
`score` holding output_file_name (predictions.csv by default: "The job generates an output named score, where this
file is placed"). So `job show/list/stream/cancel/download --output-name score` handle it as any pipeline job: the
step's progress lines are in the pipeline's log (jobs/parallel.py). The job lives in the experiment named after the
endpoint (our reading), and is found by list-jobs by its run's tags (TAG_ENDPOINT, TAG_DEPLOYMENT).

What invoke takes is az's (azext_mlv2/manual/custom/batch_endpoint.py ml_batch_endpoint_invoke; azure-ai-ml
BatchEndpointOperations.invoke): --input, a local folder (or file with --input-type uri_file), a data asset
`azureml:<name>:<version>` (its type decides), or a public URI this machine has a copy of (MNIST); the deployment
--deployment-name or the endpoint's default ("Set a default deployment or provide a deployment name through cli
command." otherwise); --mini-batch-size, --instance-count, --output-path azureml://datastores/<datastore>/paths/<path>
(a folder of the store here, $AML_LOCAL_HOME/datastores/...), --job-name and --set with the fields of azure-ai-ml's
BatchJobSchema (mini_batch_size, compute.instance_count, output_file_name, error_threshold, retry_settings.max_retries,
retry_settings.timeout, job_name), validated by that schema. It prints what az prints: azure-ai-ml's BatchJob (its
id, name, type and status; entities/_deployment/batch_job.py), the values ours.

Variables the scoring script gets besides the deployment's environment_variables: AZUREML_MODEL_DIR (as online), and
for an MLflow no-code deployment MLFLOW_MODEL_FOLDER; AZUREML_BI_OUTPUT_PATH, the score output's folder, which
azureml-examples' custom-output batch drivers read ("Customize outputs in batch deployments").
"""

import getpass
import json
import sys
import uuid
from pathlib import Path

from aml_local import AmlLocalError, ResourceNotFound, job_records, quiet, specs, store
from aml_local.assets import data
from aml_local.endpoints import records
from aml_local.jobs import common, parallel, runner

# The MLflow run tags that mark a batch scoring job's runs (set here; list-jobs finds the jobs by them). Our own names:
# Azure keeps the endpoint and deployment of a batch job in its service.
TAG_ENDPOINT = "aml.batch_endpoint"
TAG_DEPLOYMENT = "aml.batch_deployment"
NODE = "batchscoring"
OUTPUT = "score"
INPUT = "input_data"
# az's messages (ml_batch_endpoint_invoke, azure-ai-ml BatchEndpointOperations): no default deployment; an input type
# other than the two.
NO_DEFAULT = "Set a default deployment or provide a deployment name through cli command."
UNSUPPORTED_INPUT = (
    "Unsupported input please use either a path on the datastore, public URI, a registered data asset, or a local "
    "folder path."
)
# ...and an `azureml:` --input without --input-type that gives no version or label (a datastore path among them): az
# reads any azureml: value there as <name>:<version> (parse_name_version) and DataOperations.get refuses it so.
NO_VERSION = "Must provide either version or label."
SET_FIELDS = {
    "mini_batch_size": "mini_batch_size",
    "compute.instance_count": "instance_count",
    "output_file_name": "output_file_name",
    "error_threshold": "error_threshold",
    "retry_settings.max_retries": "max_retries",
    "retry_settings.timeout": "timeout",
}


def _deployment(endpoint: dict, deployment_name: str | None) -> dict:
    name = endpoint["name"]
    if deployment_name:
        known = records.BATCH.deployment_names(name)
        if not known:
            raise ResourceNotFound("No deployment exists for this endpoint")
        if deployment_name not in known:
            # azure-ai-ml's _validate_deployment_name (a RESOURCE_NOT_FOUND ValidationException).
            raise ResourceNotFound(f"Deployment name {deployment_name} not found for this endpoint")
        return records.BATCH.load_deployment(name, deployment_name)
    default = (endpoint.get("defaults") or {}).get("deployment_name")
    if not default:
        raise AmlLocalError(NO_DEFAULT)
    return records.BATCH.load_deployment(name, default)


def _input(text: str | None, input_type: str | None) -> tuple[str, Path]:
    """(uri_folder or uri_file, the local path) of --input/--input-type, as az makes the Input."""
    if not text:
        raise AmlLocalError(
            "batch-endpoint invoke: give --input (a local folder, a data asset azureml:<name>:<version>)"
        )
    if input_type not in (None, "uri_folder", "uri_file"):
        raise AmlLocalError(UNSUPPORTED_INPUT)
    if text.startswith("azureml:") and not input_type:
        if not data.ASSET_REF.match(text):
            raise AmlLocalError(NO_VERSION)
        local = data.local_path(INPUT, text, Path.cwd())  # a data asset: its own type decides
        return ("uri_file" if local.is_file() else "uri_folder"), local
    kind = input_type or "uri_folder"
    if data.REMOTE.match(text):
        return kind, data.local_path(INPUT, text, Path.cwd(), kind)
    local = Path(text).expanduser().resolve()
    # azure-ai-ml's _resolve_input, with its messages.
    if kind == "uri_folder" and not local.is_dir():
        raise AmlLocalError(f"There is no folder on target path: {text}")
    if kind == "uri_file" and not local.is_file():
        raise AmlLocalError(f"There is no file on target path: {text}")
    return kind, local


def _overrides(set_pairs) -> dict:
    """--set pairs checked by azure-ai-ml's BatchJobSchema (an unknown field is its "Unknown field."), as the
    settings they change."""
    from azure.ai.ml._schema._deployment.batch.batch_job import BatchJobSchema
    from azure.ai.ml.constants._common import BASE_PATH_CONTEXT_KEY, PARAMS_OVERRIDE_KEY
    from marshmallow.exceptions import ValidationError

    if not set_pairs:
        return {}
    pairs = specs.parse_set_pairs(set_pairs, example="output_file_name=scores.csv")
    try:
        BatchJobSchema(
            context={BASE_PATH_CONTEXT_KEY: Path.cwd(), PARAMS_OVERRIDE_KEY: [{k: v} for k, v in pairs]}
        ).load(data={})
    except ValidationError as err:
        fields = "; ".join(f"{field}: {' '.join(map(str, why))}" for field, why in err.normalized_messages().items())
        raise AmlLocalError(f"batch-endpoint invoke: {fields}") from None
    except (ValueError, TypeError) as err:
        raise AmlLocalError(f"batch-endpoint invoke: {' '.join(str(err).split())[:300]}") from None
    changed = {}
    for key, value in pairs:
        if key in SET_FIELDS:
            field = SET_FIELDS[key]
            changed[field] = (
                value if field == "output_file_name" else float(value) if field == "timeout" else int(value)
            )
        elif key == "job_name":
            changed["job_name"] = value
        else:
            raise AmlLocalError(
                f"--set {key}: known to azure-ai-ml's batch job, but not used here ({', '.join(SET_FIELDS)} are)"
            )
    return changed


def _output_folder(output_path: str | None, job_dir_of_step: Path) -> dict:
    if not output_path:
        return {"type": "uri_folder", "mode": "rw_mount"}
    # az's --output-path is a datastore folder (validate_and_split_output_path); jobs/common.py maps it to the store.
    common.datastore_path(output_path, "--output-path")
    return {"type": "uri_folder", "mode": "rw_mount", "path": output_path}


def invoke(
    endpoint_name,
    input=None,  # az's parameter name
    input_type=None,
    deployment_name=None,
    output_path=None,
    mini_batch_size=None,
    instance_count=None,
    job_name=None,
    set_pairs=(),
) -> dict:
    endpoint = records.BATCH.load_endpoint(endpoint_name)
    deployment = _deployment(endpoint, deployment_name)
    input_kind, input_path = _input(input, input_type)
    # As ml_batch_endpoint_invoke appends them to params_override: checked by the same schema as --set.
    flags = [f"mini_batch_size={mini_batch_size}"] if mini_batch_size is not None else []
    flags += [f"compute.instance_count={instance_count}"] if instance_count is not None else []
    changed = _overrides([*(set_pairs or ()), *flags])
    name = common.new_name(job_name or changed.pop("job_name", None) or f"batchjob-{uuid.uuid4()}")
    settings = {**deployment, **changed}
    where = f"batch deployment {deployment['name']}"
    engine_settings = parallel.settings_from(
        where,
        mini_batch_size=settings["mini_batch_size"],
        instance_count=settings["instance_count"],
        max_concurrency_per_instance=settings["max_concurrency_per_instance"],
        retry_settings={"max_retries": settings["max_retries"], "timeout": settings["timeout"]},
        error_threshold=settings["error_threshold"],
        output_action=settings["output_action"],
        logging_level=settings["logging_level"],
    )
    step = f"{name}_{NODE}"
    step_dir = store.jobs_dir() / step
    output = _output_folder(output_path, step_dir)
    score_folder = common.datastore_path(output_path, "--output-path") if output_path else step_dir / "outputs" / OUTPUT
    variables = dict(settings["environment_variables"]) | {
        "AZUREML_MODEL_DIR": deployment["model_dir"],
        "AZUREML_BI_OUTPUT_PATH": str(score_folder),
    }
    if deployment.get("mlflow_model_folder"):
        variables["MLFLOW_MODEL_FOLDER"] = deployment["mlflow_model_folder"]
    experiment_name, experiment_id, run_id, tags = common.record_run(name, "pipeline", endpoint_name, None)
    for tag, value in ((TAG_ENDPOINT, endpoint_name), (TAG_DEPLOYMENT, deployment["name"])):
        store.client().set_tag(run_id, tag, value)
    job_dir = store.jobs_dir() / name
    (job_dir / "outputs").mkdir(parents=True)
    # A data asset or a URI as given; a local path as the folder or file it names (the job outlives the shell).
    given = input if input.startswith("azureml:") or data.REMOTE.match(input) else str(input_path)
    shown_input = {"type": input_kind, "path": given, "mode": "ro_mount"}
    spec = {
        "name": name,
        "type": "pipeline",
        "display_name": name,
        "description": f"batch scoring job of deployment {deployment['name']} of batch endpoint {endpoint_name}",
        "experiment_name": experiment_name,
        "experiment_id": experiment_id,
        "mlflow_run_id": run_id,
        "file": deployment["file"],
        "set_pairs": [],
        "compute": deployment["compute"] or "local",
        "settings": {},
        "nodes": {NODE: {"type": "parallel", "job_name": step, "needs": []}},
        "inputs": {INPUT: shown_input},
        "outputs": {OUTPUT: {"type": "uri_folder", "mode": "rw_mount", "path": str(score_folder)}},
        "tags": tags,
        "batch": {"endpoint": endpoint_name, "deployment": deployment["name"]},
        "created_at": common.now(),
        "created_by": getpass.getuser(),
    }
    job_records.write_spec(job_dir, spec)
    try:
        parallel.prepare(
            step,
            file=deployment["file"],
            yaml_dir=Path(deployment["code_dir"]).parent,
            code=deployment["code_dir"],
            entry_script=deployment["scoring_script"],
            program_arguments="",
            input_data=f"${{{{inputs.{INPUT}}}}}",
            # The step reads the input where it is (mode direct), not a copy: Azure mounts the data read-only rather
            # than copy it, and jobs/common.py's copy for ro_mount (a stand-in for that protection) costs about 1 ms a
            # file, seconds for a folder of thousands of images. The scoring job writes nothing there.
            shown_inputs={INPUT: shown_input | {"mode": "direct"}},
            input_values={f"inputs.{INPUT}": str(input_path)},
            outputs={OUTPUT: output},
            append_row_to=OUTPUT,
            output_file_name=settings["output_file_name"],
            settings=engine_settings,
            environment=deployment["environment"],
            environment_spec=deployment["environment_spec"],
            environment_variables=variables,
            experiment_name=experiment_name,
            display_name=NODE,
            compute=deployment["compute"],
            parent_run_id=run_id,
            parent_job_name=name,
        )
    except BaseException as err:
        store.set_status(run_id, "Failed", str(err) if isinstance(err, AmlLocalError) else "invoke was interrupted")
        raise
    common.spawn(job_dir, __name__)
    status, _ = job_records.current_status(name)
    return {"id": f"azureml:/local/jobs/{name}", "name": name, "status": status, "type": "pipeline"}


def run(job_dir: Path) -> str:
    """Drive a batch scoring job: its one step, then the job's end (the step's status, and why it failed)."""
    job_dir = Path(job_dir)
    spec = json.loads((job_dir / "job.json").read_text())
    step = spec["nodes"][NODE]["job_name"]
    events = runner.EventLog(job_dir, "pipeline", None)
    status, message = "Failed", None
    with runner.driving(job_dir):
        try:
            store.set_status(spec["mlflow_run_id"], "Running")
            events.say(f"nodes in order: {NODE}")
            events.say(f"node {NODE}: job {step} started")
            status = parallel.run(store.jobs_dir() / step)
            events.say(f"node {NODE}: {status}")
            if status != "Completed":
                detail = job_records.current_status(step)[1]
                message = f"node {NODE} {status.lower()}" + (f" ({step}: {detail})" if detail else "")
        except runner.Canceled as signame:
            status, message = "Canceled", f"canceled by {signame}"
        except Exception as err:
            status, message = "Failed", f"aml-local could not run the batch scoring job: {err}"
        finally:
            store.set_status(spec["mlflow_run_id"], status, message)
            events.say(f"pipeline {status}" + (f": {message}" if message else ""))
            events.close()
    return status


def main(argv=None):
    with quiet.libraries():
        return 0 if run(Path((argv or sys.argv[1:])[0])) == "Completed" else 1


if __name__ == "__main__":
    sys.exit(main())
