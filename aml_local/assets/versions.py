"""Versions and labels of versioned assets (model, data, environment), once for all of them, with Azure ML's rules:

- a version is any string; a YAML without one gets the next whole number (one past the highest whole-number
  version: "v2" does not count);
- `@latest` (or no version) is the most recently created version: azure-ai-ml's `_get_latest_version`
  (azure/ai/ml/_utils/_asset_utils.py) lists versions ordered by `createdtime desc` and takes the first;
- a version, once created, cannot change: the same content again is answered as it is, other content is refused.

Data and environment versions are JSON records, $AML_LOCAL_HOME/<kind>/<name>/<version>.json (`RecordStore`);
models live in the MLflow registry and use `sort_key`/`next_version`/`pick` alone.
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
            record = {"name": name, "version": chosen, "content": content, "file": str(Path(file).resolve())}
            store.write_json(path, record | {"created_at": now(), "created_ns": time.time_ns()})
        return chosen

    def load(self, name: str, version: str | None = None, label: str | None = None) -> dict:
        chosen = pick(self.noun, name, self.versions(name), version, label)
        return json.loads((self.folder(name) / f"{chosen}.json").read_text())
