"""The `batch-endpoint` noun: `batch-endpoint create/show/list/update/delete/invoke/list-jobs`.

A batch endpoint is a name in front of its deployments, with a default one (`defaults.deployment_name`): `invoke`
starts a batch scoring job (endpoints/batch/scoring.py) on the deployment it names or the default. Nothing listens
here: a batch endpoint's REST scoring URI is Azure's (POSTs create jobs there); locally `invoke` is the way in, so
`show` has no scoring_uri (our choice, rather than a URI nothing answers).

The YAML and flags are az's (azext_mlv2/manual/custom/batch_endpoint.py, _params/_batch_endpoint_params.py): create
loads the YAML with azure-ai-ml's load_batch_endpoint and --set pairs, then --name (lower-cased) as params_override,
or the flags alone; as on Azure a create of an existing endpoint updates it (begin_create_or_update). `show` prints
azure-ai-ml's BatchEndpoint dumped by _to_dict, as az does.
"""

import datetime
import getpass
from pathlib import Path

from aml_local import AmlLocalError, specs, store
from aml_local.endpoints import records
from aml_local.endpoints.batch import deployment as deployments_verbs

SCHEMA = "https://azuremlschemas.azureedge.net/latest/batchEndpoint.schema.json"


def load(file, name, params_override=()):
    overrides = [dict(o) for o in params_override or ()]
    if name:
        overrides.append({"name": name.lower()})  # the CLI lower-cases a --name: endpoint names ignore case
    if file:
        return specs.load("load_batch_endpoint", file, overrides, expected="a batch endpoint")
    if not name:
        raise AmlLocalError("batch-endpoint create: give --file/-f or --name/-n")
    import azure.ai.ml
    from azure.ai.ml.exceptions import MlException
    from marshmallow.exceptions import ValidationError

    try:
        return azure.ai.ml.load_batch_endpoint(None, params_override=overrides)
    except (ValidationError, MlException, ValueError, KeyError, TypeError) as err:
        raise AmlLocalError(f"batch-endpoint create: {specs.sdk_error_summary(err)}") from None


def defaults_of(entity, where) -> dict:
    defaults = getattr(entity, "defaults", None) or {}
    if not isinstance(defaults, dict):
        defaults = {k: v for k, v in vars(defaults).items() if not k.startswith("_") and v is not None}
    if defaults.get("deployment_name"):
        return {"deployment_name": str(defaults["deployment_name"])}
    if defaults:
        raise AmlLocalError(f"{where}: defaults: only deployment_name is known ({', '.join(defaults)} given)")
    return {}


def create(file=None, name=None, params_override=()) -> dict:
    entity = load(file, name, params_override)
    name = entity.name
    records.check_endpoint_name(name)
    if entity.auth_mode not in (None, "aad_token"):
        # A batch endpoint authenticates with Microsoft Entra tokens only (batchEndpoint schema: auth_mode aad_token).
        raise AmlLocalError(f"{file or 'batch-endpoint create'}: auth_mode {entity.auth_mode!r}: expected aad_token")
    defaults = defaults_of(entity, file or "batch-endpoint create")
    with store.locked("batch-endpoints"):
        existing = None
        if (records.BATCH.endpoint_dir(name) / "endpoint.json").exists():
            existing = records.BATCH.load_endpoint(name)
        if defaults.get("deployment_name"):
            _check_deployment(name, defaults["deployment_name"], "defaults.deployment_name")
        record = {
            "name": name,
            "description": entity.description,
            "tags": {str(k): str(v) for k, v in (entity.tags or {}).items()},
            "defaults": defaults or (existing or {}).get("defaults") or {},
            "file": str(Path(file).resolve()) if file else None,
            "created_at": (existing or {}).get("created_at") or _now(),
            "created_by": (existing or {}).get("created_by") or getpass.getuser(),
        }
        records.BATCH.save_endpoint(record)
    return show(name)


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def _check_deployment(endpoint_name, deployment_name, field):
    known = records.BATCH.deployment_names(endpoint_name)
    if deployment_name not in known:
        raise AmlLocalError(
            f"{field} {deployment_name}: endpoint {endpoint_name} has no such deployment "
            f"(deployments: {', '.join(known) or 'none'})"
        )


def show(name: str) -> dict:
    from azure.ai.ml.entities import BatchEndpoint

    record = records.BATCH.load_endpoint(name)
    entity = BatchEndpoint(
        name=name,
        id=f"azureml:/local/batchEndpoints/{name}",
        description=record["description"],
        tags=record["tags"],
        defaults=record.get("defaults") or None,
        provisioning_state="Succeeded",
        properties={
            "aml_local.endpoint_dir": str(records.BATCH.endpoint_dir(name)),
            "createdAt": record["created_at"],
            "createdBy": record["created_by"],
        },
    )
    return {"$schema": SCHEMA, **dict(entity._to_dict())}


def list_endpoints() -> list[dict]:
    return [show(name) for name in records.BATCH.endpoint_names()]


def update(name: str, changed: dict) -> dict:
    """Apply what an update changed (az's generic update of the shown endpoint, cli/batch.py): description, tags and
    defaults.deployment_name can change; anything else is refused there."""
    with store.locked("batch-endpoints"):
        record = records.BATCH.load_endpoint(name)
        if "defaults" in changed:
            defaults = changed["defaults"] or {}
            deployment_name = defaults.get("deployment_name") if isinstance(defaults, dict) else None
            if deployment_name:
                _check_deployment(name, str(deployment_name), "defaults.deployment_name")
                record["defaults"] = {"deployment_name": str(deployment_name)}
            else:
                record["defaults"] = {}
        if "description" in changed:
            record["description"] = changed["description"]
        if "tags" in changed:
            record["tags"] = {str(k): str(v) for k, v in (changed["tags"] or {}).items()}
        records.BATCH.save_endpoint(record)
    return show(name)


def delete(name: str):
    """The endpoint and its deployments (their jobs stay, as on Azure: "This command doesn't delete batch scoring
    jobs", "Deploy MLflow models in batch deployments")."""
    records.BATCH.load_endpoint(name)
    with store.locked("batch-endpoints"):
        records.BATCH.remove_folder(records.BATCH.endpoint_dir(name), f"batch endpoint {name}")


def list_jobs(name: str) -> list[dict]:
    return deployments_verbs.list_jobs(name)
