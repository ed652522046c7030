"""The azureml registry's curated environments: the catalog `tools/curated_catalog.py` writes from a snapshot of
Azure/azureml-assets (curated_environments.json), the names a job may give them, and the EnvSpec each one is.

- Names: the registry form `azureml://registries/azureml/environments/<name>/versions/<n>` (or `/labels/latest`)
  and the workspace form `azureml:AzureML-<name>:<version>` (or `@latest`), case aside. A retired name that Azure's
  examples and docs still use (the catalog's `retired` table, each with its successor, a note and sources) runs as
  its successor, with a note saying so. A version is accepted and not told apart: the snapshot holds one
  definition per name.
- `spec_for(reference, *, source, catalog)`: the entry's python (as a conda `python=` entry), conda packages and
  pip requirements read by env_spec.SpecBuilder (which maps conda names, skips workspace-only and GPU-only
  packages, and turns `pkg[and-cuda]` into `pkg`), its image, the date it resolves as of (`exclude_newer`) and its
  runtime (R for an R environment: refused at create where R is not installed).
- A curated name the catalog does not hold is an AmlLocalError (one line), as Azure refuses a job whose
  environment does not exist: never a silent fallback.
- `list_environments()` / `show()`: `az ml environment list/show --registry-name azureml`, from the catalog.

Errors are `AmlLocalError`, one line.
"""

from __future__ import annotations

import functools
import json
import re
from pathlib import Path

from aml_local import AmlLocalError, ResourceNotFound
from aml_local.assets.env_spec import EnvSpec, SpecBuilder

CATALOG_FILE = Path(__file__).resolve().parent / "curated_environments.json"
CURATED_FILE = CATALOG_FILE  # the name env_sources and env_build have exported since the first table
REGISTRY = "azureml"
REPOSITORY = "https://github.com/Azure/azureml-assets"
WORKSPACE_PREFIX = "AzureML-"
_CURATED_WORKSPACE = re.compile(r"^azureml:(?P<name>AzureML-[^:@/]+)(?::(?P<version>[^:@/]+)|@(?P<label>[^:@/]+))?$")
_CURATED_REGISTRY = re.compile(
    r"^azureml://registries/azureml/environments/(?P<name>[^/]+)(?:/versions/(?P<version>[^/]+)|/labels/(?P<label>[^/]+))?/?$"
)
LIST_HINT = f"`aml-local environment list --registry-name {REGISTRY}` lists them"


def curated_name(reference: str) -> str | None:
    """`azureml:AzureML-sklearn-1.5@latest` -> "AzureML-sklearn-1.5"; a registry URI -> its name; else None."""
    text = reference.strip()
    match = _CURATED_WORKSPACE.match(text) or _CURATED_REGISTRY.match(text)
    return match["name"] if match else None


def load(catalog: Path = CATALOG_FILE) -> dict:
    path = Path(catalog)
    try:
        stamp = path.stat().st_mtime_ns
    except OSError as err:
        raise AmlLocalError(f"{path}: cannot read the curated-environment catalog ({err.strerror})") from None
    return _load(str(path), stamp)


@functools.lru_cache(maxsize=4)
def _load(path: str, stamp: int) -> dict:
    try:
        table = json.loads(Path(path).read_text())
    except (OSError, ValueError) as err:
        raise AmlLocalError(f"{path}: not a curated-environment catalog ({err})") from None
    if not isinstance(table, dict) or not isinstance(table.get("environments"), dict):
        raise AmlLocalError(f"{path}: expected a curated-environment catalog ({{'environments': {{...}}}})")
    return table


def _bare(name: str) -> str:
    """The registry name a workspace name stands for: AzureML-sklearn-1.5 -> sklearn-1.5 (case kept)."""
    return name[len(WORKSPACE_PREFIX) :] if name.lower().startswith(WORKSPACE_PREFIX.lower()) else name


def find(name: str, table: dict) -> tuple[str, dict, dict | None]:
    """(registry name, catalog entry, the retired-name record or None) for a curated name in either form; raises
    ResourceNotFound when the catalog has no such name."""
    wanted = {name.lower(), _bare(name).lower()}
    for entry_name, entry in table["environments"].items():
        names = {entry_name.lower(), *(alias.lower() for alias in entry.get("aliases", []))}
        if wanted & names:
            return entry_name, entry, None
    for retired_name, record in (table.get("retired") or {}).items():
        if wanted & {retired_name.lower(), _bare(retired_name).lower()}:
            successor = record["successor"]
            return successor, table["environments"][successor], {"name": retired_name, **record}
    raise ResourceNotFound(f"{name} is not in the {REGISTRY} registry's catalog of {_about(table)}; {LIST_HINT}")


def _about(table: dict) -> str:
    snapshot = table.get("snapshot") or {}
    commit = next((e.get("source_commit", "") for e in table["environments"].values()), "")[:12] or "unknown"
    return (
        f"{len(table['environments'])} environments (azureml-assets at commit {commit}, "
        f"{snapshot.get('date', 'undated')})"
    )


def spec_for(reference: str, *, source: str, catalog: Path = CATALOG_FILE) -> EnvSpec:
    """The EnvSpec of a curated reference (`azureml:AzureML-<name>...` or `azureml://registries/azureml/...`)."""
    name = curated_name(reference)
    if name is None:
        raise AmlLocalError(
            f"{source}: environment {reference!r}: expected a curated environment (azureml:AzureML-<name>:<version>, "
            "azureml:AzureML-<name>@latest or azureml://registries/azureml/environments/<name>/...); a registered "
            "environment is resolved to its YAML first"
        )
    table = load(catalog)
    try:
        entry_name, entry, retired = find(name, table)
    except ResourceNotFound as err:
        raise AmlLocalError(f"{source}: environment {reference}: {err}") from None
    origin = f"{Path(catalog).name}:{entry_name}"
    return spec_for_entry(reference, entry_name, entry, source=source, origin=origin, retired=retired)


def spec_for_entry(
    reference: str, entry_name: str, entry: dict, *, source: str, origin: str, retired: dict | None = None
) -> EnvSpec:
    """The EnvSpec of one catalog entry (also what tools/curated_catalog.py resolves with uv)."""
    builder = SpecBuilder(name=reference, source=str(source))
    builder.notes.append(
        f"curated {reference}: azureml-assets {entry['source']} at commit {entry['source_commit'][:12]} "
        "(one definition per name; versions are not told apart)"
    )
    if retired is not None:
        builder.notes.append(
            f"{retired['name']} is retired: it runs as {entry_name}, its successor ({retired['basis']}: "
            f"{retired['note']}; {retired['sources'][0]})"
        )
    builder.set_image(entry.get("image"), {})
    dependencies = [*([f"python={entry['python']}"] if entry.get("python") else []), *entry.get("conda", [])]
    dependencies.append({"pip": [*entry.get("pip_options", []), *entry.get("pip", [])]})
    builder.read_conda({"dependencies": dependencies}, origin=origin, base_dir=None)
    if not entry.get("python"):
        builder.notes.append(f"{origin}: its definition names no python version: the engine chooses one")
    builder.set_exclude_newer(entry.get("exclude_newer"), f"{origin} (exclude_newer)")
    builder.add_overrides(entry.get("overrides", []), origin=f"{origin} (overrides)")
    builder.runtime = entry.get("runtime")
    builder.notes.extend(f"{origin}: {note}" for note in entry.get("notes", []))
    return builder.finish()


def list_environments(catalog: Path = CATALOG_FILE) -> list[dict]:
    """`az ml environment list --registry-name azureml`: one item per environment, in the shape azure-ai-ml dumps an
    environment container (Environment._from_container_rest_object: name, id, latest_version; the snapshot has no
    registry version numbers, so latest_version is left out, as the SDK leaves out a field it lacks)."""
    table = load(catalog)
    return [
        {"id": f"azureml://registries/{REGISTRY}/environments/{name}", "name": name}
        for name in sorted(table["environments"])
    ]


def show(name: str, version: str | None = None, label: str | None = None, catalog: Path = CATALOG_FILE) -> dict:
    """`az ml environment show --registry-name azureml -n NAME [--version N | --label latest]` from the catalog:
    the fields of an environment version (Environment._to_dict), plus what aml-local knows of it under
    properties."""
    if version is not None and label is not None:
        raise AmlLocalError("give --version or --label, not both")
    if label not in (None, "latest"):
        raise AmlLocalError(f"environment {name}@{label}: only the label 'latest' exists in the catalog")
    table = load(catalog)
    entry_name, entry, retired = find(name, table)
    snapshot = table.get("snapshot") or {}
    properties = {
        "aml_local.catalog": f"{_about(table)}: one definition per name, versions are not told apart",
        "aml_local.source": entry["source"],
        "aml_local.python": entry.get("python"),
        "aml_local.image": entry.get("image"),
        "aml_local.gpu": entry.get("gpu", False),
        "aml_local.runtime": entry.get("runtime") or "python",
        "aml_local.exclude_newer": entry.get("exclude_newer"),
        "aml_local.requirements": len(entry.get("conda", [])) + len(entry.get("pip", [])),
        "aml_local.resolution": entry.get("resolution"),
    }
    if retired is not None:
        properties["aml_local.retired"] = {key: retired[key] for key in ("name", "basis", "note", "sources")}
    return {
        "build": {
            "path": f"{snapshot.get('repository', REPOSITORY)}/tree/{entry['source_commit']}/{entry['source']}/context",
            "dockerfile_path": "Dockerfile",
        },
        "description": entry.get("description"),
        "id": f"azureml://registries/{REGISTRY}/environments/{entry_name}/"
        + (f"versions/{version}" if version else "labels/latest"),
        "image": entry.get("published_image"),
        "name": entry_name,
        "os_type": "linux",
        "properties": properties,
        "tags": entry.get("tags", {}),
        "version": version,
    }
