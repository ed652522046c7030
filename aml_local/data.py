"""The `data` noun: map a job's data inputs to folders on this machine.

On Azure ML an input is mounted from a datastore; here it has to be a local path. A local path is used
as it is; a data asset (`azureml:mnist@latest`) is looked up in the project's `data/*.yml`; a remote URL
is mapped to a local copy when we know how to make one (MNIST: the data module's cache, which fetches
from the public mirrors), and anything else fails with a message saying how to give a local path.
"""

import re
from pathlib import Path

from aml_local import AmlLocalError

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
            f"data asset {name!r}{'@' + label if label else ''}{':' + version if version else ''} "
            f"not found in {root / 'data'} (expected a data/*.yml with name: {name})"
        )
    if label not in (None, "latest"):
        raise AmlLocalError(f"data asset {name}@{label}: only the label 'latest' exists locally")
    return max(matches, key=lambda a: _version_key(a.version))


def _version_key(version):
    return [int(p) if p.isdigit() else p for p in re.split(r"[.]", str(version or "0"))]


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
        raise AmlLocalError(
            f"input {input_name}: remote path {path} has no local copy; "
            f"pass a local one with --set inputs.{input_name}.path=<folder>"
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
        asset = find_asset(ref["name"], ref["label"], ref["version"], project_root(base_dir))
        spec_dir = Path(asset.base_path) if getattr(asset, "base_path", None) else base_dir
        return local_path(input_name, str(asset.path), spec_dir, str(asset.type))
    raise AmlLocalError(f"input {input_name}: local path {candidate} does not exist")


def _job_output(input_name: str, path: str, match) -> Path:
    from aml_local import store

    job_dir = store.jobs_dir() / match["job"]
    if not (job_dir / "job.json").is_file():
        raise AmlLocalError(f"input {input_name}: {path}: no local job named {match['job']!r}")
    folder = job_dir / "outputs" / match["output"]
    if not folder.is_dir():
        outputs = sorted(p.name for p in (job_dir / "outputs").glob("*")) or ["none"]
        raise AmlLocalError(
            f"input {input_name}: {path}: job {match['job']} has no output {match['output']!r} "
            f"(outputs: {', '.join(outputs)})"
        )
    target = folder / match["rest"] if match["rest"] else folder
    if not target.exists():
        raise AmlLocalError(f"input {input_name}: {path}: {target} does not exist")
    return target
