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
- `<version>.archived` / `.archived`: `component archive` of a version / of the whole component (the container), as
  versions.py's RecordStore keeps them for every versioned asset.
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
        "aml_local.archived": str(RECORDS.archived(name, version)).lower(),
    }
    return shown


def _pick(name: str, version: str | None, label: str | None) -> str:
    # azure-ai-ml's ComponentOperations._get: both is a ValidationException (exit 1).
    versions.check_version_or_label(version, label)
    if not RECORDS.versions(name):
        raise ResourceNotFound(f"component {name!r} not found in {store.home()} (component create --file ...)")
    return RECORDS.load(name, version, label)["version"]


def show(name: str, version: str | None = None, label: str | None = None) -> dict:
    chosen = _pick(name, version, label)
    return _view(json.loads((RECORDS.folder(name) / f"{chosen}.json").read_text()))


def list_components(name=None, include_archived=False, archived_only=False) -> list[dict]:
    """azure-ai-ml's ComponentOperations.list: with a name, its versions (ComponentVersions list); without, one item
    per component (the ComponentContainers list, each `Component._from_container_rest_object`: name, id,
    creation_context, latest_version). The view (ActiveOnly by default, All, ArchivedOnly) applies to what is
    listed: versions, or the components themselves (versions.py RecordStore)."""
    if name:
        return [_view(record) for record in RECORDS.list_versions(name, include_archived, archived_only)]
    return RECORDS.list_containers(include_archived, archived_only)


def archive(name: str, version: str | None = None, label: str | None = None) -> None:
    """azure-ai-ml's _archive_or_restore (_utils/_asset_utils.py): a version (or the version a label names) is
    archived; with neither, the component's container is."""
    RECORDS.set_archived(name, version, label, True)


def restore(name: str, version: str | None = None, label: str | None = None) -> None:
    RECORDS.set_archived(name, version, label, False)


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
