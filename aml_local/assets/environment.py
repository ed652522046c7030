"""The `environment` noun: `environment create/show` for the environment YAML `az ml environment create` takes.

Locally every job and deployment runs in this Python environment, so an environment version is a record:
the YAML is parsed by the SDK's own `load_environment` (its image, conda file or build context checked as
az checks them), and kept in $AML_LOCAL_HOME/environments/<name>/<version>.json with the conda file's
content. As on Azure, a YAML without a version gets the next one (1, 2, ...); a version that exists with
other content is refused, the same content is answered as it is.
"""

from aml_local import AmlLocalError, specs
from aml_local.assets import versions

RECORDS = versions.RecordStore("environments", "environment")


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
    chosen = RECORDS.create(entity.name, entity.version, content, file)
    return show(entity.name, version=chosen)


def show(name: str, version: str | None = None, label: str | None = None) -> dict:
    record = RECORDS.load(name, version, label)
    version = record["version"]
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
