"""Between azure-ai-ml's entity objects and the YAML documents and shown dicts of aml-local's verbs.

An entity built in Python becomes the document `az ml` would read from a file: the SDK's own `_to_dict()` (the
CLI's schema, dumped), with local paths made absolute against the entity's base path (the folder it was made in, as
azure-ai-ml resolves them when it uploads), since the document is kept under .aml-local/sdk (see write), not beside
the code. What a verb shows comes back as the entity again: loaded with the SDK's load_* from the shown fields that
are settable, the read-only ones (id, creation context, status, provisioning state, scoring URI) set as
azure-ai-ml's operations set them from the service's answer."""

import datetime
import io
import json
import re
import uuid
from pathlib import Path

import yaml
from azure.ai.ml import Input
from azure.ai.ml.entities import Asset, JobService, SystemData

from aml_local import store
from aml_local.assets import data

# A value that names a place by scheme (azureml:, azureml://, https://, wasbs://, runs:/, file:) is not a local path.
SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
# Fields holding a local file or folder in the documents of jobs, assets and deployments.
PATH_FIELDS = ("code", "path", "conda_file")
# What a verb shows that no YAML sets: the service fills them in, and azure-ai-ml's entities keep them read-only.
READ_ONLY = (
    "$schema",
    "id",
    "creation_context",
    "status",
    "services",
    "provisioning_state",
    "scoring_uri",
    "openapi_uri",
    "kind",
    "location",
    "identity",
)


def _plain(value):
    """The SDK's dict (OrderedDicts, enums, dates) as plain YAML-safe values."""
    return json.loads(json.dumps(value, default=str))


def _local(text, base: Path) -> str:
    # A binding (${{parent.jobs.<node>.outputs.<name>}}, ${{parent.inputs.<name>}}) is a pipeline's, not a path.
    if not isinstance(text, str) or not text or SCHEME.match(text) or Path(text).is_absolute() or "${{" in text:
        return text
    return str((base / text).resolve())


def local_path(text: str) -> str:
    """A path given in Python (an Input's path): relative to the current folder, as azure-ai-ml reads it."""
    return _local(text, Path.cwd())


def _absolute_paths(node, base: Path):
    if isinstance(node, dict):
        for key, value in node.items():
            if key in PATH_FIELDS and isinstance(value, str):
                node[key] = _local(value, base)
            else:
                _absolute_paths(value, base)
    elif isinstance(node, list):
        for value in node:
            _absolute_paths(value, base)


def _local_inputs(entity, document: dict, base: Path):
    """A job's inputs with their paths as given: azure-ai-ml dumps Input(path="../data") as "azureml:../data", and
    Input(path="https://...") as "azureml:https://..." (its path field tries the asset-reference form first), which
    would name a data asset; the entity still holds each path as written."""
    for name, value in (getattr(entity, "inputs", None) or {}).items():
        value = getattr(value, "_data", value)
        if isinstance(value, Input) and isinstance(value.path, str):
            document["inputs"][name]["path"] = _local(value.path, base)


def document(entity) -> dict:
    """The YAML document of an entity, as `az ml` would read it, with absolute local paths, and the registered
    assets it holds (a model or environment that create_or_update or get returned) named by reference."""
    base = Path(entity.base_path or ".").resolve()
    result = _plain(entity._to_dict())
    _absolute_paths(result, base)
    if isinstance(result.get("inputs"), dict):
        _local_inputs(entity, result, base)
    for field in ("model", "environment"):
        value = getattr(entity, field, None)
        if isinstance(value, Asset) and value.id and value.name and value.version:
            # As azure-ai-ml's deployment and job operations turn a registered asset into its id before sending
            # (operations/_operation_orchestrator.py get_asset_arm_id), rather than registering it again.
            result[field] = f"azureml:{value.name}:{value.version}"
    return result


# How the verbs show a registered asset that a deployment or job uses (azureml:/local/<kind>/<name>/versions/<v>), as
# the reference the SDK's schemas load (azureml:<name>:<version>).
LOCAL_ASSET_ID = re.compile(r"^azureml:/local/(?:models|environments|data|components)/([^/]+)/versions/([^/]+)$")


def _loadable_reference(value):
    """A shown model or environment as the YAML would give it; None for what only describes one ("inline
    environment": the YAML's own definition, which the entity's YAML file holds)."""
    if not isinstance(value, str):
        return value
    match = LOCAL_ASSET_ID.match(value)
    if match:
        return f"azureml:{match[1]}:{match[2]}"
    return value if value.startswith("azureml") else None


def write(entity, noun: str) -> Path:
    """The entity's document as a YAML file for the verbs (which read files, and a sweep's or pipeline's driver reads
    its file again after the call returns): <project>/.aml-local/sdk/<noun>-<time>-<id>.yml, where <project> holds
    the folder the entity was made in (a pyproject.toml or .git above it), so that what a YAML file in the project
    finds unregistered (its environments/*.yml and data/*.yml, aml_local/assets) the entity finds too; outside a
    project, AML_LOCAL_HOME/sdk."""
    base = Path(entity.base_path or ".").resolve()
    root = data.project_root(base)
    folder = (root / ".aml-local" if _is_project(root) else store.home()) / "sdk"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{noun}-{datetime.datetime.now():%Y%m%d%H%M%S}-{uuid.uuid4().hex[:8]}.yml"
    path.write_text(yaml.safe_dump(document(entity), sort_keys=False))
    return path


def _is_project(folder: Path) -> bool:
    return (folder / "pyproject.toml").exists() or (folder / ".git").exists()


def system_data(shown: dict):
    context = shown.get("creation_context")
    if not context:
        return None
    fields = {key: value for key, value in context.items() if key in SYSTEM_DATA_FIELDS}
    for key in ("created_at", "last_modified_at"):
        # Dates, as azure-ai-ml's SystemData holds them from the service (and dumps them with isoformat()).
        if isinstance(fields.get(key), str):
            fields[key] = datetime.datetime.fromisoformat(fields[key])
    return SystemData(**fields)


SYSTEM_DATA_FIELDS = (
    "created_by",
    "created_by_type",
    "created_at",
    "last_modified_by",
    "last_modified_by_type",
    "last_modified_at",
)


def from_shown(loader, shown: dict, **settable):
    """The entity of what a verb shows: its settable fields loaded with the SDK's loader (so they are the same
    objects user code gets from azure-ai-ml), then the read-only ones set."""
    # properties: kept on every entity, yet not a field of every YAML (an environment's): set after loading.
    fields = {k: v for k, v in shown.items() if k not in (*READ_ONLY, "properties") and v is not None} | settable
    for field in ("model", "environment"):
        if field in fields:
            fields[field] = _loadable_reference(fields[field])
            if fields[field] is None:
                del fields[field]
    entity = loader(io.StringIO(yaml.safe_dump(_plain(fields), sort_keys=False)))
    set_read_only(entity, shown)
    return entity


def set_read_only(entity, shown: dict):
    """What azure-ai-ml's entities take from the service's answer into private fields (entities/_resource.py,
    _job/job.py, _endpoint/endpoint.py, _deployment/deployment.py, _compute/compute.py)."""
    entity._id = shown.get("id")
    entity._creation_context = system_data(shown)
    for field in ("status", "provisioning_state", "scoring_uri", "openapi_uri"):
        if field in shown and hasattr(entity, f"_{field}"):
            setattr(entity, f"_{field}", shown[field])
    if "properties" in shown and hasattr(entity, "properties"):
        entity.properties = dict(shown["properties"])
    if shown.get("services"):
        entity.services = {
            key: JobService(endpoint=value.get("endpoint"), type=value.get("type"))
            for key, value in shown["services"].items()
        }
    return entity
