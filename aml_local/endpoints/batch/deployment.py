"""The `batch-deployment` noun: `batch-deployment create/show/list/update/delete/list-jobs`.

A batch deployment runs nothing until its endpoint is invoked: it is a record of what a scoring job runs, taken when
it is created, as Azure registers the model and code of a deployment then:

- the YAML is read as az reads it (azext_mlv2/manual/custom/batch_deployment.py): `type: model` with
  azure-ai-ml's load_model_batch_deployment (its settings under `settings:`), `type: pipeline` refused (a pipeline
  component deployment does not run locally), anything else with load_batch_deployment (settings at the top); with
  --set pairs, then --name and --endpoint-name, as params_override;
- model: a registered version (`azureml:<name>:<version>`, `azureml:<name>@latest`), AZUREML_MODEL_DIR being its
  folder as for an online deployment; an inline model (`path:`) is copied into the deployment's
  azureml-models/<name>/1, as Azure registers it anonymously;
- code_configuration.code is copied into the deployment's code/<folder name> (later edits do not change it);
- an MLflow model (type mlflow_model) with no code_configuration is Azure's no-code batch deployment: the scoring
  script is ours (endpoints/batch/mlflow_driver.py, what Azure generates), and with no environment either, the
  environment is the model's own requirements (its conda.yaml, else python_env.yaml or requirements.txt), as
  "Deploy MLflow models in batch deployments" describes; MLFLOW_MODEL_FOLDER names the model's folder;
- settings and their defaults are azure-ai-ml's (BatchDeployment's docstring): mini_batch_size 10,
  max_concurrency_per_instance 1, output_action append_row, output_file_name predictions.csv, error_threshold -1,
  logging_level info, resources.instance_count 1; retry_settings max_retries 3 and timeout 30 s ("Deploy models for
  scoring in batch endpoints", "Troubleshoot batch endpoints": "By default, the timeout value is 30 and the
  max_retries value is 3").
`show` prints the deployment as az does: azure-ai-ml's BatchDeployment, as the service returns it, dumped by
_to_dict.
"""

import contextlib
import datetime
import getpass
import shutil
import warnings
from pathlib import Path

import yaml

from aml_local import AmlLocalError, ResourceNotFound, specs, store
from aml_local.assets import environment, model
from aml_local.endpoints import deployment_sources, records
from aml_local.endpoints.batch import scoring
from aml_local.endpoints.overrides import deployment_overrides
from aml_local.jobs import verbs as job_verbs

SCHEMA = "https://azuremlschemas.azureedge.net/latest/batchDeployment.schema.json"
MLFLOW_DRIVER = Path(__file__).resolve().with_name("mlflow_driver.py")
MLFLOW_CODE_FOLDER = "mlflow_resources"  # the app folder of Azure's MLflow images (see online/deployment.py)
DEFAULTS = {
    "mini_batch_size": 10,
    "max_concurrency_per_instance": 1,
    "output_action": "append_row",
    "output_file_name": "predictions.csv",
    "error_threshold": -1,
    "logging_level": "info",
    "max_retries": 3,
    "timeout": 30,
    "instance_count": 1,
}


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def load(file, overrides=()):
    """The YAML as az loads it (see the module's docstring); one line for anything the SDK refuses."""
    import azure.ai.ml
    from azure.ai.ml.entities._load_functions import load_model_batch_deployment
    from azure.ai.ml.exceptions import MlException
    from marshmallow.exceptions import ValidationError

    if not Path(file).is_file():
        raise AmlLocalError(f"--file {file}: no such file (expected a batch deployment YAML)")
    try:
        kind = (yaml.safe_load(Path(file).read_text()) or {}).get("type")
    except (OSError, yaml.YAMLError, AttributeError) as err:
        raise AmlLocalError(f"{file}: not a YAML mapping ({' '.join(str(err).split())[:200]})") from None
    if kind == "pipeline":
        raise AmlLocalError(f"{file}: type pipeline: a pipeline component batch deployment does not run locally")
    loader = load_model_batch_deployment if kind == "model" else azure.ai.ml.load_batch_deployment
    try:
        with warnings.catch_warnings():
            # BatchDeployment warns that it is a base class whenever it is built: az's own loader builds it too.
            warnings.simplefilter("ignore", UserWarning)
            return loader(source=file, params_override=[dict(o) for o in overrides])
    except (ValidationError, MlException, yaml.YAMLError, ValueError, KeyError, TypeError) as err:
        raise AmlLocalError(f"{file}: {specs.sdk_error_summary(err)}") from None


def _overrides(set_pairs, name, endpoint_name) -> list[dict]:
    return deployment_overrides(set_pairs, name, endpoint_name, example="settings.mini_batch_size=20")


def names_in(file, name=None, endpoint_name=None) -> tuple[str, str]:
    """The deployment's and its endpoint's names as the YAML gives them, -n/-e overriding (how `update --file` finds
    the deployment it changes)."""
    entity = load(file, _overrides([], name, endpoint_name))
    return entity.name, entity.endpoint_name


def _settings(entity) -> dict:
    """The deployment's settings, whichever YAML shape gave them, with Azure's defaults for what it leaves out."""
    source = getattr(entity, "settings", None) or getattr(entity, "_settings", None)

    def get(field):
        value = getattr(source, field, None) if source is not None else None
        return value if value is not None else getattr(entity, field, None)

    retry = get("retry_settings")
    resources = getattr(entity, "resources", None)
    instance_count = (
        resources.get("instance_count") if isinstance(resources, dict) else getattr(resources, "instance_count", None)
    )
    settings = {field: get(field) for field in DEFAULTS if field not in ("max_retries", "timeout", "instance_count")}
    settings |= {
        "max_retries": getattr(retry, "max_retries", None),
        "timeout": getattr(retry, "timeout", None),
        "instance_count": instance_count,
    }
    settings = {k: (v if v is not None else DEFAULTS[k]) for k, v in settings.items()}
    settings["output_action"] = str(settings["output_action"]).lower().replace("appendrow", "append_row")
    settings["output_action"] = settings["output_action"].replace("summaryonly", "summary_only")
    settings["environment_variables"] = {str(k): str(v) for k, v in (get("environment_variables") or {}).items()}
    return settings


def _resolve_model(entity, file, folder: Path) -> dict:
    """{"model": as show prints it, "model_dir": AZUREML_MODEL_DIR, "model_type", "model_path"}."""
    from azure.ai.ml.entities import Model

    reference = entity.model
    if reference is None:
        raise AmlLocalError(f"{file}: model is required (azureml:<name>:<version>, or an inline model with a path)")
    if isinstance(reference, str):
        if reference.startswith("azureml://"):
            raise AmlLocalError(f"{file}: model {reference}: registry models do not run locally; register it here")
        try:
            shown = model.resolve(reference)
        except ResourceNotFound as err:
            raise ResourceNotFound(f"{file}: model: {err}") from None
        except AmlLocalError as err:
            raise AmlLocalError(f"{file}: model: {err}") from None
        return {
            "model": shown["id"],
            "model_dir": shown["properties"]["aml_local.model_dir"],
            "model_type": shown["type"],
            "model_path": shown["path"],
        }
    if not isinstance(reference, Model) or reference.path is None:
        raise AmlLocalError(f"{file}: model: expected azureml:<name>:<version> or an inline model with a path")
    model_id, model_dir, model_type, target = deployment_sources.inline_model(reference, file, folder)
    return {"model": model_id, "model_dir": str(model_dir), "model_type": model_type, "model_path": str(target)}


def _copy_code(entity, file, folder: Path) -> dict:
    source, target, script = deployment_sources.copy_code(entity, file, folder / "code")
    return {"code": str(source), "code_dir": str(target), "scoring_script": script, "mlflow_model_folder": None}


def _mlflow_code(folder: Path, model_path: str) -> dict:
    target = folder / "code" / MLFLOW_CODE_FOLDER
    target.mkdir(parents=True)
    shutil.copy2(MLFLOW_DRIVER, target / MLFLOW_DRIVER.name)
    return {
        "code": None,
        "code_dir": str(target),
        "scoring_script": MLFLOW_DRIVER.name,
        "mlflow_model_folder": Path(model_path).name,
    }


def _mlflow_environment(model_path: Path, file):
    """A no-code deployment's environment: the MLflow model's own requirements ("Deploy MLflow models in batch
    deployments": Azure provides an MLflow base image with the model's dependencies). MLflow writes them as
    conda.yaml, and as python_env.yaml with requirements.txt."""
    flavors = deployment_sources.mlmodel_flavors(model_path, file)
    if "python_function" not in flavors:
        raise AmlLocalError(
            f"{file}: model {model_path}: its MLmodel has no python_function flavor, and a batch deployment without a "
            'scoring script needs it ("Batch deployments support deploying MLflow models with a pyfunc flavor '
            'only"); give code_configuration and an environment'
        )
    builder = deployment_sources.mlflow_requirements(model_path, flavors["python_function"] or {})
    builder.notes.append(
        "no-code MLflow batch deployment: the model's own requirements; the scoring script is aml-local's "
        "(aml_local/endpoints/batch/mlflow_driver.py)"
    )
    return builder.finish()


def _prepare(entity, file, folder: Path) -> dict:
    """The record's fields for the model, code and environment (copies made under `folder`)."""
    fields = _resolve_model(entity, file, folder)
    environment_spec = environment.resolve(entity.environment, file=file) if entity.environment else None
    if deployment_sources.no_code(entity):
        if fields["model_type"] != "mlflow_model":
            _copy_code(entity, file, folder)  # raises: code and scoring_script are required
        fields |= _mlflow_code(folder, fields["model_path"])
        if environment_spec is None:
            environment_spec = _mlflow_environment(Path(fields["model_path"]), file)
    else:
        if entity.environment is None:
            raise AmlLocalError(
                f"{file}: environment is required with a scoring script (only an MLflow model deployed without "
                "code_configuration gets one of its own)"
            )
        fields |= _copy_code(entity, file, folder)
    fields["environment"] = deployment_sources.recorded_reference(entity.environment)
    fields["environment_spec"] = environment_spec.to_record() if environment_spec is not None else None
    return fields


def create(file, name=None, endpoint_name=None, set_pairs=(), set_default=False) -> dict:
    entity = load(file, _overrides(set_pairs, name, endpoint_name))
    name, endpoint_name = entity.name, entity.endpoint_name
    records.check_deployment_name(name)
    if not endpoint_name:
        raise AmlLocalError(f"{file}: endpoint_name is required (in the YAML or --endpoint-name)")
    endpoint = records.BATCH.load_endpoint(endpoint_name)  # not found: exit 3, as the SDK's GET of the endpoint says
    folder = records.BATCH.deployment_dir(endpoint_name, name)
    with store.locked("batch-endpoints"):
        previous = records.BATCH.deployment_dir(endpoint_name, name) / "deployment.json"
        # As on Azure, a create of an existing deployment replaces it (begin_create_or_update).
        staging = folder.with_name(f".{name}.new")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        try:
            fields = _prepare(entity, file, staging)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        created = records.BATCH.load_deployment(endpoint_name, name)["created_at"] if previous.exists() else _now()
        record = {
            "name": name,
            "endpoint_name": endpoint_name,
            "description": entity.description,
            "tags": {str(k): str(v) for k, v in (entity.tags or {}).items()},
            "file": str(Path(file).resolve()),
            "set_pairs": list(set_pairs or ()),
            "compute": deployment_sources.recorded_reference(entity.compute),
            **fields,
            **_settings(entity),
            "created_at": created,
            "created_by": getpass.getuser(),
        }
        for key in ("code_dir", "model_dir", "model_path"):  # where the copies will be once moved into place
            if record.get(key) and Path(record[key]).is_relative_to(staging):
                record[key] = str(folder / Path(record[key]).relative_to(staging))
        shutil.rmtree(folder, ignore_errors=True)
        staging.rename(folder)
        records.BATCH.save_deployment(record)
        if set_default:
            records.BATCH.save_endpoint(endpoint | {"defaults": {"deployment_name": name}})
    return show(endpoint_name, name)


def update(name, endpoint_name, file=None, set_pairs=()) -> dict:
    """A deployment made again from its YAML (--file, else the one it was made from, with the --set pairs it was
    made with and these): batch deployments have nothing running to replace, so an update is a create in place."""
    record = records.BATCH.load_deployment(endpoint_name, name)
    pairs = [*record.get("set_pairs", []), *(set_pairs or ())] if file is None else list(set_pairs or ())
    return create(file or record["file"], name=name, endpoint_name=endpoint_name, set_pairs=pairs)


def show(endpoint_name: str, name: str) -> dict:
    from azure.ai.ml.entities import BatchDeployment, BatchRetrySettings, CodeConfiguration

    record = records.BATCH.load_deployment(endpoint_name, name)
    code = CodeConfiguration(code=record["code"], scoring_script=record["scoring_script"]) if record["code"] else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        entity = BatchDeployment(
            name=name,
            endpoint_name=endpoint_name,
            id=f"azureml:/local/batchEndpoints/{endpoint_name}/deployments/{name}",
            description=record["description"],
            tags=record["tags"],
            model=record["model"],
            environment=record["environment"],
            code_configuration=code,
            compute=record["compute"],
            resources={"instance_count": record["instance_count"]},
            max_concurrency_per_instance=record["max_concurrency_per_instance"],
            mini_batch_size=record["mini_batch_size"],
            output_action=record["output_action"],
            output_file_name=record["output_file_name"] if record["output_action"] == "append_row" else None,
            retry_settings=BatchRetrySettings(max_retries=record["max_retries"], timeout=record["timeout"]),
            error_threshold=record["error_threshold"],
            logging_level=record["logging_level"],
            environment_variables=record["environment_variables"],
            properties={"aml_local.deployment_dir": str(records.BATCH.deployment_dir(endpoint_name, name))}
            | (
                {"aml_local.scoring_script": str(Path(record["code_dir"]) / record["scoring_script"])}
                if record.get("mlflow_model_folder")
                else {}
            ),
            provisioning_state="Succeeded",
        )
        shown = dict(entity._to_dict())
    return {"$schema": SCHEMA, **shown}


def list_deployments(endpoint_name: str) -> list[dict]:
    records.BATCH.load_endpoint(endpoint_name)
    return [show(endpoint_name, r["name"]) for r in records.BATCH.deployments(endpoint_name)]


def delete(endpoint_name: str, name: str):
    """As on Azure, the default deployment of an endpoint is not deleted (a batch endpoint invoked without
    --deployment-name runs its default); make another the default first."""
    records.BATCH.load_deployment(endpoint_name, name)
    endpoint = records.BATCH.load_endpoint(endpoint_name)
    is_default = (endpoint.get("defaults") or {}).get("deployment_name") == name
    if is_default and len(records.BATCH.deployments(endpoint_name)) > 1:
        raise AmlLocalError(
            f"batch deployment {name} is the default of endpoint {endpoint_name}; make another the default first "
            f"(batch-endpoint update -n {endpoint_name} --set defaults.deployment_name=<deployment>)"
        )
    with store.locked("batch-endpoints"):
        records.BATCH.remove_folder(records.BATCH.deployment_dir(endpoint_name, name), f"batch deployment {name}")
        if is_default:
            records.BATCH.save_endpoint(endpoint | {"defaults": {}})


def list_jobs(endpoint_name: str, name: str | None = None) -> list[dict]:
    """The batch scoring jobs of the endpoint (of one deployment), newest first, as `job show` shows them."""
    if name:
        records.BATCH.load_deployment(endpoint_name, name)
    else:
        records.BATCH.load_endpoint(endpoint_name)
    filters = [f"tags.`{scoring.TAG_ENDPOINT}` = '{endpoint_name}'"]
    if name:
        filters.append(f"tags.`{scoring.TAG_DEPLOYMENT}` = '{name}'")
    runs = store.client().search_runs(
        store.all_experiment_ids(), filter_string=" and ".join(filters), order_by=["attributes.start_time DESC"]
    )
    jobs = []
    for run in runs:
        with contextlib.suppress(AmlLocalError):  # a job whose folder was removed by hand
            jobs.append(job_verbs.show(run.data.tags[store.TAG_NAME]))
    return jobs
