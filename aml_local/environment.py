"""The `environment` noun: `environment create/show` for the environment YAML `az ml environment create` takes.

Locally every job and deployment runs in this Python environment, so an environment version is a record:
the YAML is parsed by the SDK's own `load_environment` (its image, conda file or build context checked as
az checks them), and kept in $AML_LOCAL_HOME/environments/<name>/<version>.json with the conda file's
content. As on Azure, a YAML without a version gets the next one (1, 2, ...); a version that exists with
other content is refused, the same content is answered as it is.
"""

import json
from pathlib import Path

from aml_local import AmlLocalError, specs, store
from aml_local.compute import now


def environments_dir() -> Path:
    return store.home() / "environments"


def _versions(name: str) -> list[str]:
    return sorted((p.stem for p in (environments_dir() / name).glob("*.json")), key=_version_key)


def _version_key(version: str):
    return (0, int(version), "") if version.isdigit() else (1, 0, version)


def create(file, name=None, version=None) -> dict:
    overrides = [o for o in ({"name": name} if name else None, {"version": version} if version else None) if o]
    entity = specs.load("load_environment", file, overrides, expected="an environment")
    if not entity.image and not entity.build:
        raise AmlLocalError(f"{file}: an environment needs image (with an optional conda_file) or build")
    content = {
        "image": entity.image,
        "conda_file": entity.conda_file,
        "build": {"path": str(entity.build.path)} if entity.build else None,
        "description": entity.description,
        "tags": {str(k): str(v) for k, v in (entity.tags or {}).items()},
    }
    with store.locked("environments"):
        folder = environments_dir() / entity.name
        folder.mkdir(parents=True, exist_ok=True)
        existing = _versions(entity.name)
        chosen = str(entity.version) if entity.version else None
        if chosen is None:
            numbers = [int(v) for v in existing if v.isdigit()]
            chosen = str(max(numbers, default=0) + 1)
        path = folder / f"{chosen}.json"
        if path.exists():
            record = json.loads(path.read_text())
            if record["content"] != content:
                raise AmlLocalError(
                    f"environment {entity.name}:{chosen} already exists with other content; a version cannot "
                    "change (give another version, or leave version out for the next one)"
                )
        else:
            record = {"name": entity.name, "version": chosen, "content": content, "file": str(Path(file).resolve())}
            record["created_at"] = now()
            store.write_json(path, record)
    return show(entity.name, version=chosen)


def show(name: str, version: str | None = None, label: str | None = None) -> dict:
    versions = _versions(name)
    if not versions:
        raise AmlLocalError(f"environment {name!r} not found in {store.home()}")
    if version is None:
        if label not in (None, "latest"):
            raise AmlLocalError(f"--label {label}: only the label 'latest' exists locally")
        version = versions[-1]
    path = environments_dir() / name / f"{version}.json"
    if not path.exists():
        raise AmlLocalError(f"environment {name}:{version} not found (versions: {', '.join(versions)})")
    record = json.loads(path.read_text())
    content = record["content"]
    return {
        "build": content["build"],
        "conda_file": content["conda_file"],
        "creation_context": {"created_at": record["created_at"]},
        "description": content["description"],
        "id": f"azureml:/local/environments/{name}/versions/{version}",
        "image": content["image"],
        "name": name,
        "os_type": "linux",
        "properties": {
            # Said plainly: no image is built; jobs and deployments that name it run in this Python.
            "aml_local.runs_in": "this machine's Python environment; the image and conda file are recorded, not built",
            "aml_local.file": record["file"],
        },
        "tags": content["tags"],
        "version": version,
    }
