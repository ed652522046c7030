"""The `model` noun: `model create/show/list/archive/restore`, for the model YAML that `az ml model create` takes.

A registered version is a copy: its files go to $AML_LOCAL_HOME/models/<name>/<version>/<file or folder name>,
laid out as Azure ML lays out AZUREML_MODEL_DIR for a deployment, and are made read-only. Deleting the job
that produced them loses nothing. The version is recorded in the MLflow model registry of the local store
(a registered model per name, one MLflow model version per Azure ML version; Azure's version strings are
kept as a tag because MLflow numbers its versions itself). An archived version carries the tag aml.archived, an
archived model (the container: archive without --version/--label) the same tag on its registered model; what that
means for list and @latest is versions.py's (as for data, environments and components).
"""

import datetime
import getpass
import os
import re
import shutil
import tempfile
from pathlib import Path

from aml_local import AmlLocalError, ResourceNotFound, job_records, specs, store
from aml_local.assets import versions

# Azure ML's asset naming rules, and the version strings `az ml model create --version` accepts.
MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$")
VERSION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
# azureml:<name>:<version>, azureml:<name>@<label>, or the same without the azureml: prefix (the SDK strips it).
MODEL_REF = re.compile(
    r"^(?:azureml:)?(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)(?::(?P<version>[^:@/]+)|@(?P<label>[^:@/]+))$"
)
# A job's output as Azure ML names it, optionally a path inside it: .../outputs/<output>[/paths/<sub path>]
JOB_OUTPUT = re.compile(r"^azureml://jobs/(?P<job>[^/]+)/outputs/(?P<output>[^/]+)(?:/paths/(?P<sub>.+?))?/?$")
RUN_ARTIFACT = re.compile(r"^runs:/(?P<run>[0-9a-fA-F]+)/(?P<artifact>.+?)/?$")
REMOTE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")

TAG_VERSION = "aml.version"
TAG_TYPE = "aml.model_type"
TAG_SOURCE = "aml.source"
TAG_JOB = "aml.job_name"
TAG_CREATED_BY = "aml.created_by"
TAG_PREFIX = "aml."
TAG_ARCHIVED = "aml.archived"
TAG_STAGE = "aml.stage"  # the version's stage (az ml model create/update --stage); Development when none was given
SCHEMA = "https://azuremlschemas.azureedge.net/latest/model.schema.json"


def models_dir() -> Path:
    return store.home() / "models"


def _load(file, name, version, path, model_type, description, params_override=(), tags=None, stage=None):
    """The Model entity, as `az ml model create` builds it: the YAML with the flags as params_override,
    or, without --file, from --name and --path alone."""
    from azure.ai.ml.entities import Model
    from azure.ai.ml.exceptions import MlException
    from marshmallow.exceptions import ValidationError

    # ml_model_create (azext_mlv2/manual/custom/model.py): the --set pairs first, then each flag given appended
    # after them (so a flag wins over a --set of the same field); without --file, --set is not used there.
    flags = {
        "name": name,
        "version": version,
        "path": path,
        "type": model_type,
        "description": description,
        "tags": tags,
        "stage": stage,
    }
    overrides = [*(params_override or ()), *({k: v} for k, v in flags.items() if v)]
    if file:
        return specs.load("load_model", file, overrides)
    if not (name and path):
        # ml_model_create refuses this too ("Please provide either --file/-f  or --name/-n and --path/-p.").
        raise AmlLocalError("model create: give --file, or --name and --path")
    try:
        return Model(
            name=name,
            version=version,
            path=path,
            type=model_type or "custom_model",
            description=description,
            tags=tags,
            stage=stage,
        )
    except (ValidationError, MlException, ValueError) as err:
        raise AmlLocalError(f"model create: {specs.sdk_error_summary(err)}") from None


def resolve_source(path_text: str, base_dir: Path, field: str = "--path") -> tuple[Path, dict]:
    """The local file or folder a model path names, and what to record about where it came from.

    A local path is relative to the YAML's folder (the SDK resolves it so); azureml://jobs/<job>/outputs/<output>
    is the local job's output folder; runs:/<run_id>/<path> is an artifact of a run in the local store,
    downloaded into a temporary folder (the caller copies it and removes the folder)."""
    match = JOB_OUTPUT.match(path_text)
    if match:
        return _job_output(path_text, match, field)
    match = RUN_ARTIFACT.match(path_text)
    if match:
        return _run_artifact(path_text, match, field)
    if REMOTE.match(path_text):
        raise AmlLocalError(
            f"{field} {path_text}: not on this machine; use a local path, azureml://jobs/<job>/outputs/<output> "
            "or runs:/<run_id>/<artifact path>"
        )
    local = Path(path_text).expanduser()
    if not local.is_absolute():
        local = base_dir / local
    if not local.exists():
        raise AmlLocalError(f"{field} {path_text}: {local} does not exist")
    return local.resolve(), {}


def _job_output(path_text, match, field):
    folder = job_records.output_folder(match["job"], match["output"], f"{field} {path_text}")
    status, _ = job_records.current_status(match["job"])
    if status != "Completed":
        raise AmlLocalError(
            f"{field} {path_text}: job {match['job']} is {status}; only a Completed job's outputs can be registered"
        )
    target = folder / match["sub"] if match["sub"] else folder
    if not target.exists() or (target.is_dir() and not any(target.iterdir())):
        raise AmlLocalError(f"{field} {path_text}: {target} is missing or empty")
    return target, {TAG_JOB: match["job"]}


def _run_artifact(path_text, match, field):
    import mlflow.artifacts
    from mlflow.exceptions import MlflowException

    client = store.client()
    try:
        run = client.get_run(match["run"])
    except MlflowException:
        raise AmlLocalError(f"{field} {path_text}: no run {match['run']!r} in the local store {store.home()}") from None
    download_dir = Path(tempfile.mkdtemp(prefix="aml-local-model-", dir=store.home()))
    # MLflow draws a progress bar on stderr for every download: not what a one-line CLI prints.
    os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"
    try:
        local = mlflow.artifacts.download_artifacts(
            run_id=match["run"],
            artifact_path=match["artifact"],
            dst_path=str(download_dir),
            tracking_uri=store.tracking_uri(),
        )
    except (MlflowException, OSError) as err:
        shutil.rmtree(download_dir, ignore_errors=True)
        message = " ".join(str(err).split())[:200]
        raise AmlLocalError(
            f"{field} {path_text}: run {match['run']} has no artifact {match['artifact']!r} ({message})"
        ) from None
    info = {"aml_local.download_dir": str(download_dir)}
    job_name = run.data.tags.get(store.TAG_NAME)
    if job_name:
        info[TAG_JOB] = job_name
    return Path(local), info


def _versions(name: str):
    """All MLflow model versions registered under this name, oldest first."""
    client = store.client()
    if not MODEL_NAME.match(name):
        return []
    found = client.search_model_versions(f"name = '{name}'")
    return sorted(found, key=lambda v: int(v.version))


def _copy_read_only(source: Path, target_dir: Path) -> Path:
    target = target_dir / source.name
    if source.is_dir():
        shutil.copytree(source, target, symlinks=False)
        files = [p for p in target.rglob("*") if p.is_file()]
    else:
        target_dir.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)
        files = [target]
    for file in files:
        file.chmod(0o444)  # a registered version does not change; folders stay writable so it can be removed
    return target


def create(
    file=None,
    name=None,
    version=None,
    path=None,
    model_type=None,
    description=None,
    params_override=(),
    tags=None,
    stage=None,
) -> dict:
    entity = _load(file, name, version, path, model_type, description, params_override, tags, stage)
    name = entity.name
    if not name or not MODEL_NAME.match(name):
        raise AmlLocalError(
            f"name {name!r}: use letters, digits, '.', '_' and '-' (at most 255, first a letter or digit)"
        )
    if entity.version is not None and not VERSION.match(str(entity.version)):
        raise AmlLocalError(f"version {entity.version!r}: use letters, digits, '.', '_' and '-', e.g. 3")
    if entity.path is None:
        raise AmlLocalError(
            f"{file or 'model create'}: path is required (a local folder, azureml://jobs/... or runs:/...)"
        )
    base_dir = Path(entity.base_path) if entity.base_path else Path.cwd()
    source_text = str(entity.path)
    source, origin = resolve_source(source_text, base_dir, field="--path" if path else "path")
    download_dir = origin.pop("aml_local.download_dir", None)
    try:
        model_type = entity.type or "custom_model"
        if model_type == "mlflow_model" and not (source.is_dir() and (source / "MLmodel").is_file()):
            raise AmlLocalError(f"path {source_text}: type mlflow_model needs an MLmodel file at the top of {source}")
        return _register(entity, name, model_type, source, source_text, origin)
    finally:
        if download_dir:
            shutil.rmtree(download_dir, ignore_errors=True)


def _register(entity, name, model_type, source, source_text, origin) -> dict:
    from mlflow.exceptions import MlflowException

    client = store.client()
    with store.locked("models"):
        existing = _versions(name)
        version = (
            str(entity.version)
            if entity.version is not None
            else versions.next_version(v.tags.get(TAG_VERSION, "") for v in existing)
        )
        if any(v.tags.get(TAG_VERSION) == version for v in existing):
            raise AmlLocalError(
                f"model {name} version {version} already exists; give another --version or leave it out"
            )
        version_dir = models_dir() / name / version
        if version_dir.exists():
            shutil.rmtree(version_dir)  # left by a registration that stopped before recording it
        staging = Path(tempfile.mkdtemp(prefix=f".{version}-", dir=_mkdir(models_dir() / name)))
        staging.chmod(0o755)
        try:
            _copy_read_only(source, staging)
            staging.rename(version_dir)
        except OSError as err:
            shutil.rmtree(staging, ignore_errors=True)
            raise AmlLocalError(f"path {source_text}: cannot copy it into {version_dir} ({err.strerror})") from None
        stored = version_dir / source.name
        tags = {str(k): str(v) for k, v in (entity.tags or {}).items()}
        system_tags = {
            TAG_VERSION: version,
            TAG_TYPE: model_type,
            TAG_SOURCE: source_text,
            TAG_CREATED_BY: getpass.getuser(),
            **({TAG_STAGE: str(entity.stage)} if entity.stage else {}),
            **origin,
        }
        try:
            try:
                client.get_registered_model(name)
            except MlflowException:
                client.create_registered_model(name)
            client.create_model_version(
                name,
                source=str(stored),
                tags={**tags, **system_tags},
                description=entity.description,
                run_id=_run_id_of(origin),
            )
        except MlflowException as err:
            shutil.rmtree(version_dir, ignore_errors=True)
            raise AmlLocalError(f"model {name}:{version}: the local registry refused it ({err.message})") from None
    return show(name, version=version)


def _mkdir(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _run_id_of(origin):
    job_name = origin.get(TAG_JOB)
    if not job_name:
        return None
    try:
        return store.find_job_run(job_name).info.run_id
    except AmlLocalError:
        return None


def _container_archived(name: str) -> bool:
    from mlflow.exceptions import MlflowException

    try:
        return store.client().get_registered_model(name).tags.get(TAG_ARCHIVED) == "true"
    except MlflowException:
        return False


def _archived(found, container_archived: bool) -> bool:
    return container_archived or found.tags.get(TAG_ARCHIVED) == "true"


def _find(name: str, version: str | None = None, label: str | None = None):
    """The registered version a reference means; MLflow versions are in creation order, so the last is `latest`,
    the newest not archived (archived versions are found by their version only)."""
    found = _versions(name)
    if version is None and found:
        container_archived = _container_archived(name)
        found = [v for v in found if not _archived(v, container_archived)]
        if not found:
            # azure-ai-ml's _get_latest finds no active version: "Asset ... does not exist" (exit 1).
            raise AmlLocalError(
                f"model {name}@{label or 'latest'}: every version is archived (model restore -n {name})"
            )
    by_version = {v.tags.get(TAG_VERSION, "?"): v for v in found}
    where = f"the local registry {store.home()}"
    chosen = versions.pick("model", name, list(by_version), version, label, where)
    return by_version[chosen]


def set_archived(name: str, version: str | None, label: str | None, archived: bool) -> None:
    """`model archive` (archived=True) / `model restore`: a version, the version a label names, or with neither the
    model itself (azure-ai-ml's _archive_or_restore), as versions.py's RecordStore.set_archived does for the others."""
    versions.check_version_or_label(version, label)
    client = store.client()
    if not _versions(name):
        raise ResourceNotFound(f"model {name!r} not found in the local registry {store.home()}")
    with store.locked("models"):
        if version is None and label is None:
            if archived:
                client.set_registered_model_tag(name, TAG_ARCHIVED, "true")
            elif _container_archived(name):
                client.delete_registered_model_tag(name, TAG_ARCHIVED)
            return
        if not archived and _container_archived(name):
            raise AmlLocalError(
                f"model {name}: the whole model is archived; restore it first (model restore -n {name}, without"
                " --version/--label)"
            )
        found = _find(name, version, label)
        if archived:
            client.set_model_version_tag(name, found.version, TAG_ARCHIVED, "true")
        elif found.tags.get(TAG_ARCHIVED):
            client.delete_model_version_tag(name, found.version, TAG_ARCHIVED)


def resolve(reference: str) -> dict:
    """`azureml:<name>:<version>` or `azureml:<name>@latest` (also without the prefix) -> the version's show()."""
    match = MODEL_REF.match(reference)
    if not match:
        raise AmlLocalError(f"model {reference!r}: expected azureml:<name>:<version> or azureml:<name>@latest")
    return show(match["name"], version=match["version"], label=match["label"])


def show(name: str, version: str | None = None, label: str | None = None) -> dict:
    if version is None and label is None:
        raise AmlLocalError(f"model show {name}: give --version or --label latest")
    found = _find(name, version, label)
    return _shown(found)


def _shown(found) -> dict:
    tags = found.tags
    version = tags[TAG_VERSION]
    stored = Path(found.source)
    created = datetime.datetime.fromtimestamp(found.creation_timestamp / 1000, datetime.UTC)
    created_at = created.isoformat(timespec="seconds")
    model_type = tags.get(TAG_TYPE, "custom_model")
    result = {
        "$schema": SCHEMA,
        "creation_context": {
            "created_at": created_at,
            "created_by": tags.get(TAG_CREATED_BY, ""),
            "created_by_type": "User",
            "last_modified_at": created_at,
            "last_modified_by": tags.get(TAG_CREATED_BY, ""),
            "last_modified_by_type": "User",
        },
        "description": found.description or None,
        "flavors": _flavors(stored) if model_type == "mlflow_model" else None,
        "id": f"azureml:/local/models/{found.name}/versions/{version}",
        "job_name": tags.get(TAG_JOB),
        "name": found.name,
        "path": str(stored),
        "properties": {
            "aml_local.source": tags.get(TAG_SOURCE, ""),
            # What a deployment's AZUREML_MODEL_DIR is set to: the folder holding the registered file or folder.
            "aml_local.model_dir": str(stored.parent),
            "mlflow.registeredModelVersion": str(found.version),
        },
        "stage": tags.get(TAG_STAGE, "Development"),
        "tags": {k: v for k, v in tags.items() if not k.startswith(TAG_PREFIX)},
        "type": model_type,
        "version": version,
    }
    return {k: v for k, v in result.items() if v is not None}


def update(name: str, version: str, description=None, tags=None, stage=None) -> dict:
    """`model update`: what may change on a registered version here, its description, tags and stage (its files,
    path and type are what was registered). `tags` is the whole new set: the others are removed."""
    client = store.client()
    with store.locked("models"):
        found = _find(name, version)
        client.update_model_version(name, found.version, description=description or "")
        old = {k for k in found.tags if not k.startswith(TAG_PREFIX)}
        for key in old - set(tags or {}):
            client.delete_model_version_tag(name, found.version, key)
        for key, value in (tags or {}).items():
            client.set_model_version_tag(name, found.version, str(key), str(value))
        if stage is not None:
            client.set_model_version_tag(name, found.version, TAG_STAGE, str(stage))
    return show(name, version=version)


def _flavors(stored: Path):
    """The MLmodel's flavors, as Azure ML shows them for an mlflow_model (scalar settings only)."""
    import yaml

    try:
        mlmodel = yaml.safe_load((stored / "MLmodel").read_text())
    except (OSError, yaml.YAMLError):
        return None
    flavors = (mlmodel or {}).get("flavors") or {}
    return {
        flavor: {k: str(v) for k, v in (settings or {}).items() if not isinstance(v, dict | list)}
        for flavor, settings in flavors.items()
    }


def list_models(name: str | None = None, stage=None, include_archived=False, archived_only=False) -> list[dict]:
    """With a name, its versions (newest first); without, the latest version of each model, as az lists them. The
    view (azure-ai-ml's ModelOperations.list list_view_type) applies to versions, or to the models themselves; a
    stage keeps a name's versions in that stage (ModelOperations.list sends it with a name only)."""
    wanted = versions.list_view(include_archived, archived_only)
    if name:
        container_archived = _container_archived(name)
        shown = [_shown(v) for v in reversed(_versions(name)) if wanted(_archived(v, container_archived))]
        return [item for item in shown if stage is None or item["stage"] == stage]
    shown = []
    for registered in store.client().search_registered_models():
        every = _versions(registered.name)
        if every and wanted(registered.tags.get(TAG_ARCHIVED) == "true"):
            # Ours, as for the other assets: the newest version not archived on its own, else the newest.
            shown.append(_shown(([v for v in every if v.tags.get(TAG_ARCHIVED) != "true"] or every)[-1]))
    return shown
