"""The `data` noun: `data create/show` for data asset YAML, and the mapping of a job's data inputs to folders
on this machine.

`data create` parses the YAML with the SDK's own `load_data` and records the version in
$AML_LOCAL_HOME/data/<name>/<version>.json; as on Azure a registered version cannot change (the same
content again is answered as it is, other content is refused). `data show` answers az's JSON.

On Azure ML an input is mounted from a datastore; here it has to be a local path. A local path is used
as it is; a data asset (`azureml:mnist@latest`, `azureml:mnist:2`) is the version `data create` registered here,
else (our choice, for a project whose data/*.yml were never registered) the project's `data/*.yml` with that
name; a remote URL
is mapped to a local copy when we know how to make one (MNIST: the data module's cache, which fetches
from the public mirrors), and anything else fails with a message saying how to give a local path.
"""

import re
from pathlib import Path

from aml_local import AmlLocalError, job_records, specs
from aml_local.assets import versions

ASSET_REF = re.compile(
    r"^(?:azureml:)?(?P<name>[A-Za-z0-9_.-]+)(?:@(?P<label>[A-Za-z0-9_.-]+)|:(?P<version>[A-Za-z0-9_.-]+))$"
)
REMOTE = re.compile(r"^(https?|wasbs?|abfss?|adl|azureml)://", re.I)
# Another job's output, as Azure ML names it: azureml://jobs/<job name>/outputs/<output name>[/<path>]
JOB_OUTPUT = re.compile(r"^azureml://jobs/(?P<job>[^/]+)/outputs/(?P<output>[^/]+)(?:/(?P<rest>.*))?$")

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


def local_path(input_name: str, path: str, base_dir: Path, input_type: str = "uri_folder") -> Path:
    """The local path a job input of the given path reads from (never downloads anything but MNIST)."""
    job_output = JOB_OUTPUT.match(path)
    if job_output:
        return _job_output(input_name, path, job_output)
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
        if input_type == "uri_file" and not candidate.is_file():
            raise AmlLocalError(f"input {input_name}: {candidate} is not a file (type uri_file)")
        if input_type == "uri_folder" and not candidate.is_dir():
            raise AmlLocalError(f"input {input_name}: {candidate} is not a folder (type uri_folder)")
        return candidate.resolve()
    ref = ASSET_REF.match(path)
    if ref and (path.startswith("azureml:") or "@" in path or ":" in path):
        if RECORDS.versions(ref["name"]):  # registered here: what Azure would resolve the reference to
            try:
                record = RECORDS.load(ref["name"], ref["version"], ref["label"])
            except AmlLocalError as err:
                raise AmlLocalError(f"input {input_name}: {err}") from None
            content = record["content"]
            return local_path(input_name, content["path"], Path(record["file"]).parent, content["type"])
        asset = find_asset(ref["name"], ref["label"], ref["version"], project_root(base_dir))
        spec_dir = Path(asset.base_path) if getattr(asset, "base_path", None) else base_dir
        return local_path(input_name, str(asset.path), spec_dir, str(asset.type))
    raise AmlLocalError(f"input {input_name}: local path {candidate} does not exist")


def _job_output(input_name: str, path: str, match) -> Path:
    folder = job_records.output_folder(match["job"], match["output"], f"input {input_name}: {path}")
    target = folder / match["rest"] if match["rest"] else folder
    if not target.exists():
        raise AmlLocalError(f"input {input_name}: {path}: {target} does not exist")
    return target


RECORDS = versions.RecordStore("data", "data asset")


def create(file, name=None, version=None) -> dict:
    overrides = [o for o in ({"name": name} if name else None, {"version": version} if version else None) if o]
    asset = specs.load("load_data", file, overrides, expected="a data asset")
    spec_dir = Path(asset.base_path) if getattr(asset, "base_path", None) else Path(file).resolve().parent
    path = str(asset.path)
    if not REMOTE.match(path) and not (spec_dir / path).exists():
        raise AmlLocalError(f"{file}: path {spec_dir / path} does not exist")
    content = {"type": str(asset.type), "path": path, "description": asset.description}
    chosen = RECORDS.create(asset.name, asset.version, content, file)
    return show(asset.name, version=chosen)


def show(name: str, version: str | None = None, label: str | None = None) -> dict:
    record = RECORDS.load(name, version, label)
    version = record["version"]
    return {
        "creation_context": {"created_at": record["created_at"]},
        "description": record["content"]["description"],
        "id": f"azureml:/local/data/{name}/versions/{version}",
        "name": name,
        "path": record["content"]["path"],
        "properties": {"aml_local.file": record["file"]},
        "type": record["content"]["type"],
        "version": version,
    }
