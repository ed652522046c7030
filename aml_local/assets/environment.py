"""The `environment` noun: `environment create/show/list/archive/restore` for the environment YAML `az ml environment
create` takes (or its flags alone: --name with --image or --build-context, as ml_environment_create builds one), and
the environment a job or deployment names, resolved to what it asks for (an EnvSpec) and prepared to run in.

`environment create` parses the YAML with the SDK's own `load_environment` (its image, conda file or build context
checked as az checks them) and keeps it in $AML_LOCAL_HOME/environments/<name>/<version>.json with the conda file's
content. As on Azure, a YAML without a version gets the next one (1, 2, ...); a version that exists with other
content is refused, the same content is answered as it is.

What a job's or deployment's `environment:` resolves to (`resolve`):
- an inline environment (in the job, component or deployment YAML): itself;
- a curated name (`azureml:AzureML-<name>...`, `azureml://registries/azureml/environments/<name>/...`): its package
  set from curated_environments.json (assets/env_sources.py);
- `azureml:<name>:<version>` or `azureml:<name>@latest`: the version `environment create` recorded here, else (our
  choice, as data assets fall back to data/*.yml) the YAML in the project's environments/ folder with that `name:`
  (and `version:`, when one is asked), the project being the nearest folder above the job's YAML with a
  pyproject.toml or .git; else an error naming both places, as Azure refuses a job whose environment is not in the
  workspace.
Then `prepare` gives the Python it runs in (assets/env_build.py): the project venv when that already has every
requirement, else a venv built once into the machine's cache (`cache_root`).
"""

import os
import re
from pathlib import Path

import yaml
from knack.log import get_logger

from aml_local import AmlLocalError, specs
from aml_local.assets import curated, data, env_build, versions

RECORDS = versions.RecordStore("environments", "environment")
# The one cache of built environments on this machine, shared by every AML_LOCAL_HOME (a venv depends on the
# requirements only); this variable moves it.
CACHE_VARIABLE = "AML_LOCAL_ENV_CACHE"
# knack's logger: under aml-local it prints `WARNING: ...` on stderr (--only-show-errors hides it), as az's warnings.
logger = get_logger(__name__)
REFERENCE = re.compile(r"^azureml:(?P<name>[A-Za-z0-9][A-Za-z0-9_.-]*)(?::(?P<version>[^:@/]+)|@(?P<label>[^:@/]+))?$")


def _load(file, overrides):
    """load_environment(source=file, params_override=overrides), as ml_environment_create calls it
    (azext_mlv2/manual/custom/environment.py); without --file the SDK builds it from the overrides alone."""
    if file:
        return specs.load("load_environment", file, overrides, expected="an environment")
    import azure.ai.ml
    from azure.ai.ml.exceptions import MlException
    from marshmallow.exceptions import ValidationError

    try:
        return azure.ai.ml.load_environment(None, params_override=list(overrides))
    except (ValidationError, MlException, ValueError, KeyError, TypeError, OSError) as err:
        raise AmlLocalError(f"environment create: {specs.sdk_error_summary(err)}") from None


def create(file=None, name=None, version=None, params_override=()) -> dict:
    """`params_override`: what ml_environment_create appends to load_environment's (--set pairs, then the flags
    given); --name and --version here come after them."""
    overrides = [*params_override, *({k: v} for k, v in (("name", name), ("version", version)) if v)]
    entity = _load(file, overrides)
    where = file or "environment create"
    if not entity.name:
        raise AmlLocalError(f"{where}: an environment needs a name (--name/-n)")
    if not entity.image and not entity.build:
        raise AmlLocalError(f"{where}: an environment needs image (with an optional conda_file) or build")
    if str(entity.os_type or "linux").lower() != "linux":
        raise AmlLocalError(f"{where}: os_type {entity.os_type}: jobs and deployments here run on this Linux machine")
    build_path = str(entity.build.path) if entity.build else None
    if build_path and not file and not re.match(r"^[a-z]+:", build_path):
        build_path = str(Path(build_path).resolve())  # from flags: relative to here, as the SDK reads it
    content = {
        "image": entity.image,
        "conda_file": entity.conda_file,
        "build": {"path": build_path} if entity.build else None,
        "description": entity.description,
        "tags": {str(k): str(v) for k, v in (entity.tags or {}).items()},
    }
    chosen = RECORDS.create(entity.name, entity.version, content, file)
    return show(entity.name, version=chosen)


def show(name: str, version: str | None = None, label: str | None = None) -> dict:
    return _view(RECORDS.load(name, version, label))


def list_environments(name=None, include_archived=False, archived_only=False) -> list[dict]:
    """azure-ai-ml's EnvironmentOperations.list: with a name, its versions, newest first; without, one item per
    environment (its container: name, id, creation_context, latest_version), in the view the flags ask for."""
    if name:
        return [_view(record) for record in RECORDS.list_versions(name, include_archived, archived_only)]
    return RECORDS.list_containers(include_archived, archived_only)


def archive(name: str, version: str | None = None, label: str | None = None) -> None:
    RECORDS.set_archived(name, version, label, True)


def restore(name: str, version: str | None = None, label: str | None = None) -> None:
    RECORDS.set_archived(name, version, label, False)


def _view(record: dict) -> dict:
    name, version = record["name"], record["version"]
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
            "aml_local.runs_in": (
                "a venv built from its requirements (conda file or build context), or the project venv when that "
                "already has every one of them; the image itself is not pulled"
            ),
            "aml_local.file": record["file"],
        },
        "tags": content["tags"],
        "version": version,
    }


def cache_root() -> Path:
    configured = os.environ.get(CACHE_VARIABLE, "").strip()
    if configured:
        return Path(configured).expanduser().resolve()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "aml-local" / "envs"


def resolve(environment, *, file, field: str = "environment") -> env_build.EnvSpec | None:
    """The EnvSpec of a job's, component's or deployment's `environment` (a reference string or an inline SDK
    Environment), or None when it names none. `file` is the YAML it is written in (named in errors). A Python
    version this machine lacks is said now, at create, in one WARNING naming the version wanted and the one used."""
    spec = _resolve(environment, file=file, field=field)
    if spec is not None:
        warning = env_build.python_warning(spec)
        if warning:
            logger.warning("%s", warning.removeprefix("WARNING: "))
    return spec


def _resolve(environment, *, file, field: str) -> env_build.EnvSpec | None:
    if environment is None:
        return None
    file = Path(file).resolve()
    if not isinstance(environment, str):
        return env_build.spec_from_environment(environment, source=str(file))
    text = environment.strip()
    if not text.startswith("azureml:"):
        text = f"azureml:{text}"  # the SDK drops the prefix az requires (azureml:name@latest -> name@latest)
    if env_build.curated_name(text):
        return env_build.spec_from_environment(text, source=str(file))
    if text.startswith("azureml://"):
        raise AmlLocalError(
            f"{file}: {field} {text}: only the azureml registry's curated environments are known here; register "
            "this one locally (environment create --file ENV.yml) and name it azureml:<name>@latest"
        )
    match = REFERENCE.match(text)
    if not match:
        raise AmlLocalError(
            f"{file}: {field} {text!r}: expected azureml:<name>:<version>, azureml:<name>@latest or an inline "
            "environment"
        )
    name, version, label = match["name"], match["version"], match["label"]
    if label not in (None, "latest"):
        raise AmlLocalError(f"{file}: {field} {text}: only the label 'latest' exists locally")
    if RECORDS.versions(name):
        try:
            record = RECORDS.load(name, version, label)
        except AmlLocalError as err:
            raise AmlLocalError(f"{file}: {field}: {err}") from None
        entity, source = _from_record(record)
        return env_build.spec_from_environment(entity, source=source)
    found = _in_project(name, version, file)
    if found is None:
        root = data.project_root(file.parent)
        raise AmlLocalError(
            f"{file}: {field} {text}: not registered here (environment create --file ENV.yml) and no "
            f"{root / 'environments'}/*.yml has name: {name}"
            + (f" and version: {version}" if version else "")
            + _curated_hint(name)
        )
    return env_build.spec_from_environment(specs.load("load_environment", found), source=str(found))


def _curated_hint(name: str) -> str:
    """Where a workspace name is also a curated environment's (azureml-examples name `azureml:sklearn-1.0@latest`),
    the reference that names the curated one."""
    try:
        registry_name, _, _ = curated.find(name, curated.load())
    except AmlLocalError:
        return ""
    return (
        f"; the azureml registry's curated {registry_name} is "
        f"azureml://registries/{curated.REGISTRY}/environments/{registry_name}/labels/latest"
    )


def _from_record(record: dict):
    """(an SDK Environment, the file it was registered from) for a recorded version. The file itself when it still
    says what was recorded (its conda file's path is then named in errors), else the recorded content."""
    from azure.ai.ml.entities import BuildContext, Environment

    content = record["content"]
    # One made from flags alone (no --file) has its build path absolute already.
    file = Path(record["file"]) if record["file"] else Path.cwd() / f"(environment create -n {record['name']})"
    if file.is_file():
        try:
            loaded = specs.load("load_environment", file)
        except AmlLocalError:
            loaded = None
        if (
            loaded is not None
            and loaded.image == content["image"]
            and loaded.conda_file == content["conda_file"]
            and (str(loaded.build.path) if loaded.build else None) == (content["build"] or {}).get("path")
        ):
            return loaded, str(file)
    build = None
    if content["build"]:
        path = content["build"]["path"]
        if not re.match(r"^[a-z]+:", path) and not Path(path).is_absolute():
            path = str(file.parent / path)
        build = BuildContext(path=path)
    entity = Environment(
        name=record["name"],
        version=record["version"],
        image=content["image"],
        conda_file=content["conda_file"],
        build=build,
    )
    return entity, str(file)


def _in_project(name: str, version: str | None, file: Path) -> Path | None:
    """The project's environments/*.yml with this name (and version), the highest version when several match."""
    folder = data.project_root(file.parent) / "environments"
    matches = []
    for path in sorted(folder.glob("*.y*ml")):
        try:
            document = yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError):
            continue  # not an environment YAML we could use; a conda file is skipped below too
        if not isinstance(document, dict) or document.get("name") != name:
            continue
        if not ({"image", "build"} & set(document)):
            continue  # a conda file with the same name: (the conda environment's name)
        if version is not None and str(document.get("version")) != version:
            continue
        matches.append((versions.sort_key(document.get("version") or 0), path))
    return max(matches)[1] if matches else None


def prepare(spec_record: dict | None, log) -> env_build.Prepared | None:
    """The Python a recorded EnvSpec (`EnvSpec.to_record()`) runs in; None when the job names no environment."""
    if spec_record is None:
        return None
    return env_build.prepare(env_build.EnvSpec.from_record(spec_record), cache_root=cache_root(), log=log)
