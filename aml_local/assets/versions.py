"""Versions and labels of versioned assets (model, data, environment), once for all of them, with Azure ML's rules:

- a version is any string; a YAML without one gets the next whole number (one past the highest whole-number
  version: "v2" does not count);
- `@latest` (or no version) is the most recently created version: azure-ai-ml's `_get_latest_version`
  (azure/ai/ml/_utils/_asset_utils.py) lists versions ordered by `createdtime desc` and takes the first;
- a version, once created, cannot change: the same content again is answered as it is, other content is refused.

Data and environment versions are JSON records, $AML_LOCAL_HOME/<kind>/<name>/<version>.json (`RecordStore`);
models live in the MLflow registry and use `sort_key`/`next_version`/`pick` alone.

Archive and restore (`az ml data|environment|model|component archive/restore`), as the az ml reference describes them
(learn.microsoft.com/cli/azure/ml/data, `az ml data archive`): an archived version is left out of `list` (unless
--include-archived / --archived-only) and of `@latest`, yet is still found and used by its version; archiving the
container (no --version/--label) archives every version of the name, and then no single version can be restored until
the container is. azure-ai-ml's `_archive_or_restore` (azure/ai/ml/_utils/_asset_utils.py) sets `is_archived` on the
version, or on the container when neither version nor label is given; `_get_latest` lists the versions in the
service's default view (active only), newest first. Here: `<version>.archived` and `.archived` marker files.
"""

import datetime
import json
import time
from collections.abc import Iterable
from pathlib import Path

from aml_local import AmlLocalError, ResourceNotFound, store


def now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def sort_key(version) -> tuple:
    """Whole numbers in numeric order, then other versions by text: comparable whatever the mix ("1", "v2")."""
    text = str(version)
    return (0, int(text), "") if text.isdigit() else (1, 0, text)


def next_version(existing: Iterable[str]) -> str:
    return str(max((int(v) for v in map(str, existing) if v.isdigit()), default=0) + 1)


def list_view(include_archived: bool, archived_only: bool):
    """What a list shows, from --include-archived/--archived-only: a test of one item's archived state (azext_mlv2
    custom/utils.py get_list_view_type: ActiveOnly by default, All, ArchivedOnly; both flags is an error, exit 1)."""
    if include_archived and archived_only:
        raise AmlLocalError("Cannot provide both archived-only and include-archived.")
    return lambda archived: include_archived or archived == archived_only


def check_version_or_label(version, label):
    # azure-ai-ml's get, _archive_or_restore: "Cannot specify both version and label." (a ValidationException, exit 1).
    if version is not None and label is not None:
        raise AmlLocalError("Cannot specify both version and label.")


def pick(noun: str, name: str, versions: list[str], version: str | None, label: str | None, where: str = "") -> str:
    """The version a show/reference means: `version` itself, or the latest (`versions` are oldest first).

    A version asked for by number is a GET of that version, which Azure answers with 404 (ResourceNotFound, exit
    3); the latest is found by listing, and azure-ai-ml's `_get_latest` (azure/ai/ml/_utils/_asset_utils.py)
    raises a ValidationException when there is none (exit 1)."""
    missing = ResourceNotFound if version is not None else AmlLocalError
    if not versions:
        raise missing(f"{noun} {name!r} not found in {where or store.home()}")
    if version is not None:
        if str(version) not in versions:
            raise missing(f"{noun} {name}:{version} not found (versions: {', '.join(versions)})")
        return str(version)
    if label not in (None, "latest"):
        raise AmlLocalError(f"{noun} {name}@{label}: only the label 'latest' exists locally")
    return versions[-1]


class RecordStore:
    """Versions of one asset kind as JSON records: {"name", "version", "content", "file", "created_at"}."""

    def __init__(self, kind: str, noun: str):
        self.kind, self.noun = kind, noun  # e.g. ("data", "data asset")

    def folder(self, name: str) -> Path:
        return store.home() / self.kind / name

    def versions(self, name: str) -> list[str]:
        """Oldest first, by creation time."""
        records = []
        for path in self.folder(name).glob("*.json"):
            try:
                records.append(json.loads(path.read_text()))
            except (OSError, ValueError):
                continue  # a record being written right now
        # created_ns orders versions made within one second (created_at, shown to users, has whole seconds).
        records.sort(key=lambda r: (r.get("created_at", ""), r.get("created_ns", 0), sort_key(r["version"])))
        return [r["version"] for r in records]

    def create(self, name: str, version: str | None, content: dict, file) -> str:
        """Record a version (the next whole number without one); returns the version."""
        with store.locked(self.kind):
            folder = self.folder(name)
            folder.mkdir(parents=True, exist_ok=True)
            chosen = str(version) if version else next_version(self.versions(name))
            path = folder / f"{chosen}.json"
            if path.exists():
                if json.loads(path.read_text())["content"] != content:
                    raise AmlLocalError(
                        f"{self.noun} {name}:{chosen} already exists with other content; a version cannot change "
                        "(give another version, or leave version out for the next one)"
                    )
                return chosen
            # `file`: the YAML it was created from; None for one made from flags alone (`data create -n -p -t`).
            record = {"name": name, "version": chosen, "content": content, "file": file and str(Path(file).resolve())}
            store.write_json(path, record | {"created_at": now(), "created_ns": time.time_ns()})
        return chosen

    def load(self, name: str, version: str | None = None, label: str | None = None) -> dict:
        """A version by number (archived or not), else the latest: the newest version not archived."""
        every = self.versions(name)
        if version is None and every:
            active = [v for v in every if not self.archived(name, v)]
            if not active:
                # azure-ai-ml's _get_latest finds no active version: "Asset ... does not exist" (exit 1).
                raise AmlLocalError(
                    f"{self.noun} {name}@{label or 'latest'}: every version is archived ({self.restore_hint(name)})"
                )
            every = active
        chosen = pick(self.noun, name, every, version, label)
        return json.loads((self.folder(name) / f"{chosen}.json").read_text())

    def update(self, name: str, version: str, **fields) -> None:
        """Change a version's metadata in its record (`data|environment update`: description and tags; what the
        version holds cannot change)."""
        with store.locked(self.kind):
            record = self.load(name, version)
            record["content"].update(fields)
            store.write_json(self.folder(name) / f"{record['version']}.json", record)

    def names(self) -> list[str]:
        root = store.home() / self.kind
        return sorted(p.name for p in root.glob("*") if p.is_dir() and self.versions(p.name))

    def _marker(self, name: str, version: str | None) -> Path:
        return self.folder(name) / (f"{version}.archived" if version is not None else ".archived")

    def container_archived(self, name: str) -> bool:
        return self._marker(name, None).exists()

    def version_archived(self, name: str, version: str) -> bool:
        """The version's own archived state (not its container's)."""
        return self._marker(name, version).exists()

    def archived(self, name: str, version: str) -> bool:
        return self.container_archived(name) or self.version_archived(name, version)

    def restore_hint(self, name: str) -> str:
        return f"{self.kind.rstrip('s')} restore -n {name}"

    def set_archived(self, name: str, version: str | None, label: str | None, archived: bool) -> None:
        """archive (archived=True) or restore a version, the version a label names, or with neither the container."""
        check_version_or_label(version, label)
        every = self.versions(name)
        if not every:
            raise ResourceNotFound(f"{self.noun} {name!r} not found in {store.home()}")
        if version is None and label is None:
            marker = self._marker(name, None)
        else:
            if not archived and self.container_archived(name):
                raise AmlLocalError(
                    f"{self.noun} {name}: the whole {self.noun} is archived; restore it first "
                    f"({self.restore_hint(name)}, without --version/--label)"
                )
            if version is None:  # a label: the version it names now (azure-ai-ml's _resolve_label_to_asset)
                version = self.load(name, None, label)["version"]
            marker = self._marker(name, pick(self.noun, name, every, version, None))
        if archived:
            marker.touch()
        else:
            marker.unlink(missing_ok=True)

    def list_versions(self, name: str, include_archived=False, archived_only=False) -> list[dict]:
        """A name's version records, newest first, in the view the flags ask for."""
        wanted = list_view(include_archived, archived_only)
        return [self.load(name, v) for v in reversed(self.versions(name)) if wanted(self.archived(name, v))]

    def list_containers(self, include_archived=False, archived_only=False) -> list[dict]:
        """One item per name, as azure-ai-ml lists an asset's containers (`_from_container_rest_object`: name, id,
        creation_context, latest_version), in the view the flags ask for (of the containers themselves)."""
        wanted = list_view(include_archived, archived_only)
        shown = []
        for name in self.names():
            if not wanted(self.container_archived(name)):
                continue
            every = self.versions(name)
            # Ours: the latest version is the newest not archived on its own, else the newest.
            latest = ([v for v in every if not self.version_archived(name, v)] or every)[-1]
            first, last = (self.load(name, v) for v in (every[0], every[-1]))
            shown.append(
                {
                    "creation_context": {"created_at": first["created_at"], "last_modified_at": last["created_at"]},
                    "id": f"azureml:/local/{self.kind}/{name}",
                    "latest_version": latest,
                    "name": name,
                }
            )
        return shown
