"""The `compute` noun: `compute create/show/list/delete` for the cluster YAML that `az ml compute create` takes.

Locally every job runs on this machine, so a compute target is a record, not a cluster: the YAML is parsed
and validated by the SDK's own `load_compute` (what az rejects is rejected here), kept in
$AML_LOCAL_HOME/compute/<name>.json, and `show` answers az's JSON with a property saying where jobs really
run. Creating an existing name updates it, as `az ml compute create` does for a cluster's scale settings.
"""

import getpass
import json
import os
import re
from pathlib import Path

from aml_local import AmlLocalError, ResourceNotFound, specs, store
from aml_local.assets.versions import now

# Azure ML's rule for compute names: 2 to 16 characters, a letter first, letters, digits and '-'.
COMPUTE_NAME = re.compile(r"^[a-zA-Z][a-zA-Z0-9-]{1,15}$")


def compute_dir() -> Path:
    return store.home() / "compute"


def _load(file, overrides):
    """load_compute(file, params_override=overrides), as ml_compute_create does (azext_mlv2/manual/custom/compute.py);
    without --file the SDK builds the compute from the overrides alone (source=None)."""
    if file:
        return specs.load("load_compute", file, overrides, expected="a compute")
    import azure.ai.ml
    from azure.ai.ml.exceptions import MlException
    from marshmallow.exceptions import ValidationError

    try:
        return azure.ai.ml.load_compute(None, params_override=list(overrides))
    except (ValidationError, MlException, ValueError, KeyError, TypeError) as err:
        raise AmlLocalError(f"compute create: {specs.sdk_error_summary(err)}") from None


def create(file=None, name=None, overrides=()) -> dict:
    """`overrides`: the params_override list ml_compute_create builds (--set pairs, then the flags given); --name is
    the `name` argument here, as before."""
    overrides = [*overrides, *([{"name": name}] if name else [])]
    if not file and not any("type" in pair for pair in overrides):
        # ml_compute_create's help: --name and --type are "Required if --file/-f is not provided".
        raise AmlLocalError("compute create: give --file/-f, or --name/-n and --type/-t")
    entity = _load(file, overrides)
    if not entity.name or not COMPUTE_NAME.match(entity.name):
        raise AmlLocalError(
            f"name {entity.name!r}: 2 to 16 letters, digits and '-', starting with a letter (Azure ML's rule)"
        )
    if entity.type != "amlcompute":
        raise AmlLocalError(
            f"{file or 'compute create'}: type {entity.type!r}: only amlcompute clusters are recorded locally"
        )
    record = {
        "name": entity.name,
        "type": entity.type,
        "description": entity.description,
        "size": entity.size,
        "tier": entity.tier,
        "min_instances": entity.min_instances,
        "max_instances": entity.max_instances,
        "idle_time_before_scale_down": entity.idle_time_before_scale_down,
        "tags": {str(k): str(v) for k, v in (entity.tags or {}).items()},
        "file": str(Path(file).resolve()) if file else None,
        "created_by": getpass.getuser(),
    }
    with store.locked("compute"):
        compute_dir().mkdir(parents=True, exist_ok=True)
        path = compute_dir() / f"{entity.name}.json"
        previous = json.loads(path.read_text()) if path.exists() else {}
        record["created_at"] = previous.get("created_at", now())
        record["modified_at"] = now()
        store.write_json(path, record)
    return show(entity.name)


def _read(name: str) -> dict:
    path = compute_dir() / f"{name}.json"
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        known = ", ".join(_names()) or "none"
        raise ResourceNotFound(f"compute {name!r} not found in {store.home()} (compute: {known})") from None
    except (OSError, ValueError):
        raise AmlLocalError(f"compute {name!r}: its record {path} is unreadable") from None


def _names() -> list[str]:
    return sorted(p.stem for p in compute_dir().glob("*.json"))


def list_computes(compute_type: str | None = None) -> list[dict]:
    """azure-ai-ml's ComputeOperations.list(compute_type): every compute target, or those of one type (compared
    without case: az's help names AmlCompute, the YAML and the records amlcompute)."""
    shown = [show(name) for name in _names()]
    return [c for c in shown if compute_type is None or c["type"].lower() == compute_type.lower()]


def update(name: str, changes: dict) -> dict:
    """`compute update`: the record's scale settings and tags changed, checked again by load_compute as
    _ml_compute_update does (it loads the shown compute with the changes as params_override)."""
    with store.locked("compute"):
        record = _read(name)
        fields = (
            "type",
            "size",
            "tier",
            "description",
            "min_instances",
            "max_instances",
            "idle_time_before_scale_down",
        )
        overrides = [{key: record[key]} for key in fields if record.get(key) is not None]
        overrides += [{"tags": record["tags"]}, {"name": name}]
        overrides += [{key: value} for key, value in changes.items() if value is not None]
        try:
            entity = _load(None, overrides)
        except AmlLocalError as err:
            raise AmlLocalError(str(err).replace("compute create:", f"compute update {name}:", 1)) from None
        record.update(
            min_instances=entity.min_instances,
            max_instances=entity.max_instances,
            idle_time_before_scale_down=entity.idle_time_before_scale_down,
            tags={str(k): str(v) for k, v in (entity.tags or {}).items()},
            modified_at=now(),
        )
        store.write_json(compute_dir() / f"{name}.json", record)
    return show(name)


def delete(name: str) -> None:
    """`compute delete`: the record goes (a missing one is az's 404, exit 3). Nothing was provisioned, so nothing
    else changes: jobs run on this machine whatever compute they name."""
    with store.locked("compute"):
        _read(name)
        (compute_dir() / f"{name}.json").unlink()


def show(name: str) -> dict:
    record = _read(name)
    return {
        "description": record["description"],
        "id": f"azureml:/local/computes/{name}",
        "idle_time_before_scale_down": record["idle_time_before_scale_down"],
        "location": "local",
        "max_instances": record["max_instances"],
        "min_instances": record["min_instances"],
        "name": name,
        "properties": {
            # Said plainly: nothing is provisioned; jobs that name this compute run here.
            "aml_local.runs_on": f"this machine ({os.cpu_count()} cores); size and instance counts are recorded,"
            " not provisioned",
            **({"aml_local.file": record["file"]} if record.get("file") else {}),
            "createdAt": record["created_at"],
            "modifiedAt": record["modified_at"],
        },
        "provisioning_state": "Succeeded",
        "size": record["size"],
        "tags": record["tags"],
        "tier": record["tier"],
        "type": record["type"],
    }
