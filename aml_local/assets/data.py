"""The `data` noun: `data create/show/list/archive/restore` for data asset YAML, and the mapping of a job's data
inputs to folders on this machine.

`data create` parses the YAML with the SDK's own `load_data` (with az's flags as params_override; without --file, from
the flags alone, as ml_data_create does) and records the version in $AML_LOCAL_HOME/data/<name>/<version>.json; as on
Azure a registered version cannot change (the same content again is answered as it is, other content is refused).
`data show` answers az's JSON; list, archive and restore are versions.py's RecordStore's.

On Azure ML an input is mounted from a datastore; here it has to be a local path. A local path is used
as it is; a data asset (`azureml:mnist@latest`, `azureml:mnist:2`) is the version `data create` registered here,
else (our choice, for a project whose data/*.yml were never registered) the project's `data/*.yml` with that
name; a datastore path (azureml://datastores/<datastore>/paths/<path>) is its folder of the store, where jobs'
outputs given that path are written; a remote URL
is mapped to a local copy when we know how to make one (MNIST: the data module's cache, which fetches
from the public mirrors), and anything else fails with a message saying how to give a local path.
"""

import re
from pathlib import Path, PurePosixPath

from aml_local import AmlLocalError, job_records, specs, store
from aml_local.assets import versions

ASSET_REF = re.compile(
    r"^(?:azureml:)?(?P<name>[A-Za-z0-9_.-]+)(?:@(?P<label>[A-Za-z0-9_.-]+)|:(?P<version>[A-Za-z0-9_.-]+))$"
)
REMOTE = re.compile(r"^(https?|wasbs?|abfss?|adl|azureml)://", re.I)
# Another job's output, as Azure ML names it: azureml://jobs/<job name>/outputs/<output name>[/<path>]
JOB_OUTPUT = re.compile(r"^azureml://jobs/(?P<job>[^/]+)/outputs/(?P<output>[^/]+)(?:/(?P<rest>.*))?$")
# A path on a datastore: "azureml://datastores/<data_store_name>/paths/<path>" ("Manage component and pipeline inputs
# and outputs", MicrosoftDocs/azure-ai-docs articles/machine-learning/how-to-manage-inputs-outputs-pipeline.md; the
# same form for inputs in "Access data in a job", how-to-read-write-data-v2.md). Locally a datastore is a folder of
# the store: $AML_LOCAL_HOME/datastores/<datastore>/<path>.
DATASTORE_URI = re.compile(r"^azureml://datastores/(?P<datastore>[A-Za-z0-9_]+)/paths/(?P<path>.*)$")

# Remote folders that hold MNIST: the Azure Open Datasets blob (data/mnist.yml) in its https and wasbs
# spellings, and the public mirrors the data module downloads from.
_MNIST_REMOTES = (
    "https://azureopendatastorage.blob.core.windows.net/mnist",
    "wasbs://mnist@azureopendatastorage.blob.core.windows.net",
)


def project_root(start: Path) -> Path:
    for folder in [start, *start.parents]:
        if (folder / "pyproject.toml").exists() or (folder / ".git").exists():
            return folder
    return start


def find_asset(name: str, label: str | None, version: str | None, root: Path):
    """A data asset from the project's data/*.yml, parsed by the SDK's own load_data."""
    from azure.ai.ml import load_data

    matches = []
    for spec in sorted((root / "data").glob("*.y*ml")):
        asset = load_data(spec)
        if asset.name == name and (version is None or str(asset.version) == version):
            matches.append(asset)
    if not matches:
        raise AmlLocalError(
            f"data asset {name!r}{'@' + label if label else ''}{':' + version if version else ''} is not "
            f"registered here (register it: aml-local data create --file <data YAML>) and no {root / 'data'}/*.yml "
            f"has name: {name}" + (f" and version: {version}" if version else "")
        )
    if label not in (None, "latest"):
        raise AmlLocalError(f"data asset {name}@{label}: only the label 'latest' exists locally")
    return max(matches, key=lambda a: versions.sort_key(a.version or 0))


def _is_mnist_remote(url: str) -> bool:
    import mnist_data

    wanted = url.rstrip("/").lower()
    known = [*_MNIST_REMOTES, *(m.rstrip("/") for m in mnist_data.DEFAULT_MIRRORS)]
    return any(wanted == k.lower() for k in known)


def datastore_folder(match: re.Match, field: str, uri: str) -> Path:
    """The store's file or folder for a DATASTORE_URI match."""
    relative = PurePosixPath(match["path"])
    if relative.is_absolute() or ".." in relative.parts:
        raise AmlLocalError(f"{field} {uri}: the path on the datastore must stay inside it (no '..', no leading '/')")
    return store.home() / "datastores" / match["datastore"] / relative


def local_path(input_name: str, path: str, base_dir: Path, input_type: str = "uri_folder") -> Path:
    """The local path a job input of the given path reads from (never downloads anything but MNIST)."""
    job_output = JOB_OUTPUT.match(path)
    if job_output:
        return _job_output(input_name, path, job_output)
    on_datastore = DATASTORE_URI.match(path)
    if on_datastore:
        local = datastore_folder(on_datastore, f"input {input_name}:", path)
        if not local.exists():
            example = "<file>" if input_type == "uri_file" else "<folder>"
            raise AmlLocalError(
                f"input {input_name}: {path}: nothing at {local} (a datastore is a folder of the store here: a job's "
                f"output given this path writes it); or pass a local one with --set inputs.{input_name}.path={example}"
            )
        return _checked_type(input_name, local, input_type)
    if REMOTE.match(path):
        if _is_mnist_remote(path):
            import mnist_data

            try:
                return mnist_data.resolve_data_folder(None)
            except mnist_data.MnistDataError as err:
                raise AmlLocalError(f"input {input_name}: {err}") from None
        local = "<file>" if input_type == "uri_file" else "<folder>"
        raise AmlLocalError(
            f"input {input_name}: remote path {path} has no local copy; "
            f"pass a local one with --set inputs.{input_name}.path={local}"
        )
    candidate = Path(path).expanduser()
    if not candidate.is_absolute():
        candidate = base_dir / candidate
    if candidate.exists():
        return _checked_type(input_name, candidate, input_type)
    ref = ASSET_REF.match(path)
    if ref and (path.startswith("azureml:") or "@" in path or ":" in path):
        if RECORDS.versions(ref["name"]):  # registered here: what Azure would resolve the reference to
            try:
                record = RECORDS.load(ref["name"], ref["version"], ref["label"])
            except AmlLocalError as err:
                raise AmlLocalError(f"input {input_name}: {err}") from None
            content = record["content"]
            base = Path(record["file"]).parent if record["file"] else Path.cwd()  # from flags: the SDK made it absolute
            return local_path(input_name, content["path"], base, content["type"])
        asset = find_asset(ref["name"], ref["label"], ref["version"], project_root(base_dir))
        spec_dir = Path(asset.base_path) if getattr(asset, "base_path", None) else base_dir
        return local_path(input_name, str(asset.path), spec_dir, str(asset.type))
    raise AmlLocalError(f"input {input_name}: local path {candidate} does not exist")


def _checked_type(input_name: str, candidate: Path, input_type: str) -> Path:
    if input_type == "uri_file" and not candidate.is_file():
        raise AmlLocalError(f"input {input_name}: {candidate} is not a file (type uri_file)")
    if input_type == "uri_folder" and not candidate.is_dir():
        raise AmlLocalError(f"input {input_name}: {candidate} is not a folder (type uri_folder)")
    return candidate.resolve()


def _job_output(input_name: str, path: str, match) -> Path:
    folder = job_records.output_folder(match["job"], match["output"], f"input {input_name}: {path}")
    target = folder / match["rest"] if match["rest"] else folder
    if not target.exists():
        raise AmlLocalError(f"input {input_name}: {path}: {target} does not exist")
    return target


RECORDS = versions.RecordStore("data", "data asset")


def _load(file, overrides):
    """load_data(source=file, params_override=overrides), as ml_data_create calls it (azext_mlv2/manual/custom/data.py);
    without --file the SDK builds the asset from the overrides alone."""
    if file:
        return specs.load("load_data", file, overrides, expected="a data asset")
    import azure.ai.ml
    from azure.ai.ml.exceptions import MlException
    from marshmallow.exceptions import ValidationError

    try:
        return azure.ai.ml.load_data(None, params_override=list(overrides))
    except (ValidationError, MlException, ValueError, KeyError, TypeError) as err:
        raise AmlLocalError(f"data create: {specs.sdk_error_summary(err)}") from None


def create(file=None, name=None, version=None, params_override=()) -> dict:
    """`params_override`: what ml_data_create appends to load_data's (--set pairs, then the flags given); --name and
    --version here come after them."""
    overrides = [*params_override, *({k: v} for k, v in (("name", name), ("version", version)) if v)]
    asset = _load(file, overrides)
    if not asset.name or asset.path is None:
        raise AmlLocalError(f"{file or 'data create'}: a data asset needs a name and a path (--name/-n, --path/-p)")
    where = file or "data create"
    spec_dir = Path(asset.base_path) if getattr(asset, "base_path", None) else Path(file).resolve().parent
    path = str(asset.path)
    if not REMOTE.match(path) and not (spec_dir / path).exists():
        raise AmlLocalError(f"{where}: path {spec_dir / path} does not exist")
    content = {"type": str(asset.type), "path": path, "description": asset.description}
    if asset.tags:
        content["tags"] = {str(k): str(v) for k, v in asset.tags.items()}
    chosen = RECORDS.create(asset.name, asset.version, content, file)
    return show(asset.name, version=chosen)


def show(name: str, version: str | None = None, label: str | None = None) -> dict:
    return _view(RECORDS.load(name, version, label))


def list_data(name=None, include_archived=False, archived_only=False) -> list[dict]:
    """azure-ai-ml's DataOperations.list: with a name, its versions, newest first; without, one item per data asset
    (its container: name, id, creation_context, latest_version), in the view the flags ask for."""
    if name:
        return [_view(record) for record in RECORDS.list_versions(name, include_archived, archived_only)]
    return RECORDS.list_containers(include_archived, archived_only)


def archive(name: str, version: str | None = None, label: str | None = None) -> None:
    RECORDS.set_archived(name, version, label, True)


def restore(name: str, version: str | None = None, label: str | None = None) -> None:
    RECORDS.set_archived(name, version, label, False)


def _view(record: dict) -> dict:
    name, version = record["name"], record["version"]
    return {
        "creation_context": {"created_at": record["created_at"]},
        "description": record["content"]["description"],
        "id": f"azureml:/local/data/{name}/versions/{version}",
        "name": name,
        "path": record["content"]["path"],
        "properties": {"aml_local.file": record["file"]},
        "tags": record["content"].get("tags", {}),
        "type": record["content"]["type"],
        "version": version,
    }
