"""The `component` noun: `component create/show/list/archive/restore`, and the registered component a pipeline node
names (`component: azureml:<name>:<version>`, `azureml:<name>@latest`, a sweep node's `trial:` too), as `az ml
component` keeps them (Azure/azure-cli-extensions src/machinelearningservices/azext_mlv2/manual/custom/component.py).

`component create` parses the YAML with the SDK's own `load_component`, with --set, then --version and --name, as
`params_override` (ml_component_create appends {"version": ...} and {"name": ...} to them, in that order). What is
registered, in $AML_LOCAL_HOME/components/<name>/:
- `<version>.json`: the version's record (assets/versions.py RecordStore: a YAML without a version gets the next one;
  the same content again is answered as it is; other content under an existing version is refused);
- `<version>/code/`: the code folder as `az ml component create` uploads it (azure-ai-ml's walk and ignore file, as
  a job's code snapshot: .amlignore, else .gitignore), so a registered component keeps running what it was
  registered with after the source changes; empty when the component has no `code:`;
- `<version>/component.yml`: the component as registered (its `_to_dict()`, with `code: ./code`), what a pipeline
  node that names it loads, again with `load_component`.
- `<version>.archived` / `.archived`: `component archive` of a version / of the whole component (the container).
A YAML without a version gets the next one even when its content is the same as the latest's, as azure-ai-ml's
ComponentOperations.create_or_update does for a component that sets none (`_create_or_update_autoincrement`).

The environment a component names must exist at create, and a label in it is resolved then: azure-ai-ml's
ComponentOperations.create_or_update resolves the component's environment with OperationOrchestrator.
get_asset_arm_id, which turns `name@latest` into that name's latest version (`_resolve_name_version_from_name_label`),
so a registered component keeps the environment version it was registered with. Here: an environment registered
with `environment create` is pinned (`azureml:<name>:<version>`); one found only in the project's environments/
(environment.py's fallback, which Azure does not have) stays as written.

Versions and labels: `@latest` is the most recently created version that is not archived (azure-ai-ml's
`_get_latest` lists versions with the service's default view, active only, newest first); an archived version is
still found by its number.
"""

import hashlib
import json
import shutil
import tempfile
from pathlib import Path

import yaml

from aml_local import AmlLocalError, ResourceNotFound, specs, store
from aml_local.assets import env_build, environment, versions

RECORDS = versions.RecordStore("components", "component")
NOUN = "component"
CONTAINER_ARCHIVED = ".archived"


def _archived_marker(name: str, version: str) -> Path:
    return RECORDS.folder(name) / f"{version}.archived"


def _is_archived(name: str, version: str) -> bool:
    return _archived_marker(name, version).exists()


def _active_versions(name: str) -> list[str]:
    return [v for v in RECORDS.versions(name) if not _is_archived(name, v)]


def _snapshot_code(source: Path, target: Path) -> str:
    """Copy the code folder as `az ml component create` uploads it (the walk and ignore file of azure-ai-ml's
    upload: azure/ai/ml/_utils/_asset_utils.py get_ignore_file and get_upload_files_from_folder, the ones a job's
    snapshot uses, jobs/common.py); returns a digest of the files (their paths and bytes)."""
    from azure.ai.ml._utils._asset_utils import get_ignore_file, get_upload_files_from_folder

    target.mkdir(parents=True)
    digest = hashlib.sha256()
    home = store.home()
    files = get_upload_files_from_folder(source, ignore_file=get_ignore_file(source))
    for path, relative in sorted(files, key=lambda pair: pair[1]):
        if Path(path).resolve().is_relative_to(home):
            continue  # aml-local's own store is no part of the code (see jobs/common.py)
        destination = target / relative
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, destination)  # symbolic links followed, as the upload follows them
        digest.update(relative.encode() + b"\0" + destination.read_bytes() + b"\0")
    return digest.hexdigest()


def _code_folder(entity, file: Path) -> Path | None:
    code = entity.code
    if code is None:
        return None
    text = str(code)
    if text.startswith(("azureml:", "http:", "https:", "git+", "wasbs:", "abfss:")):
        raise AmlLocalError(f"{file}: code {text}: only a local folder can be registered here")
    folder = Path(text)
    if not folder.is_absolute():
        folder = Path(entity.base_path or file.parent) / folder
    if not folder.is_dir():
        raise AmlLocalError(f"{file}: code {text}: no such folder ({folder})")
    return folder.resolve()


def _pinned_environment(entity, file: Path):
    """The component's environment as registered: checked to exist (as the service refuses a component whose
    environment it cannot find), a label of a registered environment resolved to its version."""
    value = entity.environment
    if value is None or not isinstance(value, str):
        environment.resolve(value, file=file)  # an inline environment: checked as a job's is
        return None
    environment.resolve(value, file=file)
    text = value if value.startswith("azureml:") else f"azureml:{value}"
    match = environment.REFERENCE.match(text)
    if env_build.curated_name(text) or not match or match["version"]:
        return text
    name = match["name"]
    if environment.RECORDS.versions(name):
        return f"azureml:{name}:{environment.RECORDS.load(name, None, 'latest')['version']}"
    return text


def create(file, name=None, version=None, params_override=None) -> dict:
    file = Path(file)
    overrides = list(params_override or [])
    # ml_component_create: params_override, then {"version": version}, then {"name": name}.
    if version:
        overrides.append({"version": version})
    if name:
        overrides.append({"name": name})
    entity = specs.load("load_component", file, overrides, expected="a component")
    if entity.type != "command":
        raise AmlLocalError(f"{file}: a {entity.type} component does not run locally (command components do)")
    folder = _code_folder(entity, file.resolve())
    pinned = _pinned_environment(entity, file.resolve())
    spec = entity._to_dict()
    spec.pop("version", None)
    spec.pop("code", None)
    if pinned is not None:
        spec["environment"] = pinned
    RECORDS.folder(entity.name).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=RECORDS.folder(entity.name), prefix=".partial-") as partial:
        staged = Path(partial) / "code"
        if folder is not None:
            code_digest = _snapshot_code(folder, staged)
        else:
            staged.mkdir()
            code_digest = None
        chosen = RECORDS.create(entity.name, entity.version, {"spec": spec, "code_digest": code_digest}, file)
        target = RECORDS.folder(entity.name) / chosen
        if not (target / "component.yml").is_file():
            shutil.rmtree(target, ignore_errors=True)
            target.mkdir()
            staged.rename(target / "code")
            registered = {"name": entity.name, "version": chosen, **spec, "code": "./code"}
            (target / "component.yml").write_text(yaml.safe_dump(registered, sort_keys=False))
    return show(entity.name, version=chosen)


def _shown_environment(value):
    """A pinned environment as az ml shows a registered component's: its id (local ids, as environment show's)."""
    if isinstance(value, str):
        match = environment.REFERENCE.match(value)
        if match and match["version"]:
            return f"azureml:/local/environments/{match['name']}/versions/{match['version']}"
    return value


def _view(record: dict) -> dict:
    """A version as `az ml component show` prints it: the component's `_to_dict()` (ml_component_show's
    _dump_entity_with_warnings), with the id, code and creation_context the registered version has."""
    name, version = record["name"], record["version"]
    spec, folder = record["content"]["spec"], RECORDS.folder(record["name"])
    shown = {"name": name, "version": version, **spec}
    shown["environment"] = _shown_environment(spec.get("environment"))
    shown["code"] = str(folder / version / "code")
    shown["id"] = f"azureml:/local/components/{name}/versions/{version}"
    shown["creation_context"] = {"created_at": record["created_at"]}
    shown["properties"] = {
        **(spec.get("properties") or {}),
        "aml_local.file": record["file"],
        "aml_local.archived": str(_is_archived(name, version)).lower(),
    }
    return shown


def _pick(name: str, version: str | None, label: str | None) -> str:
    if version is not None and label is not None:
        # azure-ai-ml's ComponentOperations._get and _archive_or_restore: a ValidationException (exit 1).
        raise AmlLocalError("Cannot specify both version and label.")
    if not RECORDS.versions(name):
        raise ResourceNotFound(f"component {name!r} not found in {store.home()} (component create --file ...)")
    if version is not None:
        return versions.pick(NOUN, name, RECORDS.versions(name), version, None)
    active = _active_versions(name)
    if not active:
        # azure-ai-ml's _get_latest: "Asset {name} does not exist in workspace ..." (a ValidationException, exit 1).
        raise AmlLocalError(f"component {name}@{label or 'latest'}: every version is archived (component restore)")
    return versions.pick(NOUN, name, active, None, label)


def show(name: str, version: str | None = None, label: str | None = None) -> dict:
    chosen = _pick(name, version, label)
    return _view(json.loads((RECORDS.folder(name) / f"{chosen}.json").read_text()))


def _names() -> list[str]:
    root = store.home() / RECORDS.kind
    return sorted(p.name for p in root.glob("*") if p.is_dir() and RECORDS.versions(p.name))


def list_components(name=None, include_archived=False, archived_only=False) -> list[dict]:
    """azure-ai-ml's ComponentOperations.list: with a name, its versions (ComponentVersions list); without, one item
    per component (the ComponentContainers list, each `Component._from_container_rest_object`: name, id,
    creation_context, latest_version). The view (ActiveOnly by default, All, ArchivedOnly) applies to what is
    listed: versions, or the components themselves."""
    if include_archived and archived_only:
        # azext_mlv2 custom/utils.py get_list_view_type (exit 1).
        raise AmlLocalError("Cannot provide both archived-only and include-archived.")

    def wanted(archived: bool) -> bool:
        return include_archived or archived == archived_only

    if name:
        return [
            _view(json.loads((RECORDS.folder(name) / f"{v}.json").read_text()))
            for v in reversed(RECORDS.versions(name))
            if wanted(_is_archived(name, v))
        ]
    shown = []
    for each in _names():
        if not wanted((RECORDS.folder(each) / CONTAINER_ARCHIVED).exists()):
            continue
        every = RECORDS.versions(each)
        # Ours: the version @latest resolves to (the newest not archived), else the newest.
        latest = (_active_versions(each) or every)[-1]
        first, last = (RECORDS.load(each, v) for v in (every[0], every[-1]))
        shown.append(
            {
                "creation_context": {"created_at": first["created_at"], "last_modified_at": last["created_at"]},
                "id": f"azureml:/local/components/{each}",
                "latest_version": latest,
                "name": each,
            }
        )
    return shown


def _set_archived(name: str, version: str | None, label: str | None, archived: bool) -> None:
    """azure-ai-ml's _archive_or_restore (_utils/_asset_utils.py): a version (or the version a label names) is
    archived or restored; with neither, the component's container is."""
    if version is None and label is None:
        if not RECORDS.versions(name):
            raise ResourceNotFound(f"component {name!r} not found in {store.home()}")
        marker = RECORDS.folder(name) / CONTAINER_ARCHIVED
    else:
        marker = _archived_marker(name, _pick(name, version, label))
    if archived:
        marker.touch()
    else:
        marker.unlink(missing_ok=True)


def archive(name: str, version: str | None = None, label: str | None = None) -> None:
    _set_archived(name, version, label, True)


def restore(name: str, version: str | None = None, label: str | None = None) -> None:
    _set_archived(name, version, label, False)


def resolve(reference: str, *, file, field: str = "component"):
    """The registered component a pipeline node names (`azureml:<name>:<version>`, `azureml:<name>@latest`; the SDK
    hands the node the text without `azureml:`): (the SDK component loaded from its registered YAML, its
    `azureml:<name>:<version>`). A missing one is an error naming `component create`, as for environments."""
    text = reference.strip()
    if not text.startswith("azureml:"):
        text = f"azureml:{text}"
    if text.startswith("azureml://") or text.startswith("azureml:/"):
        raise AmlLocalError(
            f"{file}: {field} {text}: only components registered here are known (component create --file "
            "COMPONENT.yml); name one as azureml:<name>:<version> or azureml:<name>@latest"
        )
    match = environment.REFERENCE.match(text)
    if not match:
        raise AmlLocalError(f"{file}: {field} {text!r}: expected azureml:<name>:<version> or azureml:<name>@latest")
    name, version, label = match["name"], match["version"], match["label"]
    if not RECORDS.versions(name) or (version is not None and version not in RECORDS.versions(name)):
        wanted = f"name: {name}" + (f" and version: {version}" if version else "")
        raise AmlLocalError(
            f"{file}: {field} {text}: not registered here (component create --file COMPONENT.yml, a YAML with {wanted})"
        )
    try:
        chosen = _pick(name, version, label if version is None else None)
    except AmlLocalError as err:
        raise AmlLocalError(f"{file}: {field}: {err}") from None
    registered = RECORDS.folder(name) / chosen / "component.yml"
    if not registered.is_file():
        raise AmlLocalError(f"{file}: {field} {text}: its registered files are missing ({registered.parent})")
    return specs.load("load_component", registered), f"azureml:{name}:{chosen}"
