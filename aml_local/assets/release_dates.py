"""When an environment's exact pins were released: the date a user's environment resolves as of.

Azure builds an environment's image once, when it is first used, and keeps it: a requirement without an exact pin
got whatever was newest that day, and stays so. Built again here today, the same file would get today's releases
(a conda file pinning scikit-learn 1.2.2 with an unpinned numpy got numpy 2.2, which that scikit-learn cannot load).
So a user's environment resolves as of the newest release date among its exact pins (`==X.Y.Z`), the closest
reading of "when it was written" that the file itself gives; uv's `--exclude-newer` applies it.

Release dates come from the package index's JSON simple API (PEP 691 and PEP 700: each file's `upload-time`), the
same index uv installs from; a version's date is the newest upload among its files (wheels for a new Python are
sometimes added later, and the one this machine needs must not be excluded). Dates are cached in the environment
cache (`release-dates.json`): a version's files do not change once published.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from aml_local import AmlLocalError

DEFAULT_INDEX = "https://pypi.org/simple"
CACHE_NAME = "release-dates.json"
TIMEOUT_S = 30
ACCEPT = "application/vnd.pypi.simple.v1+json"


def index_url(pip_options=()) -> str:
    """The index uv installs from: an environment's own --index-url, else uv's settings, else PyPI."""
    for option in pip_options:
        flag, _, value = option.partition(" ")
        if flag in ("-i", "--index-url") and value.strip():
            return value.strip().rstrip("/")
    for variable in ("UV_DEFAULT_INDEX", "UV_INDEX_URL"):
        if os.environ.get(variable, "").strip():
            return os.environ[variable].strip().rstrip("/")
    return DEFAULT_INDEX


def exact_pins(requirements) -> list[tuple[str, str]]:
    """(name, version) for each requirement pinned to one release: `==1.2.2`, and conda's `=1.2.2` (`==1.2.2.*`,
    which admits only 1.2.2 and its post releases); not `==1.2.*` or a range."""
    pins = []
    for requirement in requirements:
        parsed = requirement.parsed
        if parsed is None:
            continue
        exact = []
        for specifier in parsed.specifier:
            if specifier.operator not in ("==", "==="):
                continue
            version = specifier.version.removesuffix(".*")
            if specifier.version.endswith(".*") and len(version.split(".")) < 3:
                continue  # ==1.2.*: a series, not a release
            exact.append(version)
        if len(exact) == 1:
            pins.append((canonicalize_name(parsed.name), exact[0]))
    return pins


def newest(pins: list[tuple[str, str]], *, index: str, cache_dir: Path) -> tuple[str, str] | None:
    """(RFC 3339 upload time, "name==version") of the newest-released pin; None when nothing is pinned.
    Raises AmlLocalError naming the pin when the index cannot say (offline, not on the index)."""
    if not pins:
        return None
    cache = _read_cache(cache_dir)
    missing = [pin for pin in pins if f"{pin[0]}=={pin[1]}" not in cache]
    if missing:
        with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
            found = dict(zip(missing, pool.map(lambda pin: _upload_time(*pin, index=index), missing), strict=True))
        for (name, version), moment in found.items():
            cache[f"{name}=={version}"] = moment
        _write_cache(cache_dir, cache)
    dated = [(cache[f"{name}=={version}"], f"{name}=={version}") for name, version in pins]
    return max(dated)


def latest_as_of(names, moment: str, *, python: str, index: str, cache_dir: Path) -> dict[str, str]:
    """{name: its newest final release as of `moment` for python X.Y} (latest_before), cached beside the release
    dates."""
    cache = _read_cache(cache_dir)
    key = {name: f"{name}@{moment}@py{python}" for name in names}
    missing = [name for name in names if key[name] not in cache]
    if missing:
        with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
            found = list(pool.map(lambda name: latest_before(name, moment, python=python, index=index), missing))
        cache.update({key[name]: version for name, version in zip(missing, found, strict=True)})
        _write_cache(cache_dir, cache)
    return {name: cache[key[name]] for name in names}


def _read_cache(cache_dir: Path) -> dict:
    try:
        return json.loads((Path(cache_dir) / CACHE_NAME).read_text())
    except (OSError, ValueError):
        return {}


def _write_cache(cache_dir: Path, cache: dict) -> None:
    cache_path = Path(cache_dir) / CACHE_NAME
    cache_path.parent.mkdir(parents=True, exist_ok=True)
    # Written aside and renamed (a unique name: two builds may date their pins at the same moment).
    with tempfile.NamedTemporaryFile("w", dir=cache_path.parent, prefix=".release-dates.", delete=False) as out:
        json.dump(dict(sorted(cache.items())), out, indent=1)
    os.replace(out.name, cache_path)


def latest_before(name: str, moment: str, *, python: str, index: str = DEFAULT_INDEX) -> str:
    """The newest final release of `name` uploaded by `moment` (RFC 3339) that installs on python X.Y (its
    requires-python admits it, and it has an sdist or a wheel for it): what azureml-assets'
    `=={{latest-pypi-version}}` stood for when an environment with that Python was built that day (pip picks the
    newest release that installs)."""
    name = canonicalize_name(name)
    document = _project(name, index, f"{name} (latest as of {moment})")
    found = set()
    for entry in document.get("files", []):
        version = _version(_file_version(entry.get("filename", ""), name))
        uploaded = entry.get("upload-time")
        if not isinstance(version, Version) or version.is_prerelease or not uploaded or entry.get("yanked"):
            continue
        if uploaded[:19] <= moment[:19] and _installs_on(entry, python):
            found.add(version)
    if not found:
        raise AmlLocalError(f"{name}: no release on {index} by {moment}")
    return str(max(found))


def _installs_on(entry: dict, python: str) -> bool:
    """Whether an index file can be installed on CPython X.Y: its requires-python admits X.Y, and it is an sdist or
    a wheel whose python tag fits (py3, pyXY, cpXY, or an abi3 wheel for cp3N with N <= Y)."""
    requires = entry.get("requires-python")
    if requires:
        try:
            if not SpecifierSet(requires).contains(f"{python}.0", prereleases=True):
                return False
        except InvalidSpecifier:
            pass  # an unreadable requires-python: pip ignores it too
    filename = entry.get("filename", "")
    if not filename.endswith(".whl"):
        return True
    parts = filename[:-4].split("-")
    if len(parts) < 5:
        return False
    major, minor = (int(x) for x in python.split(".")[:2])
    for tag in parts[-3].split("."):
        if tag in ("py3", f"py{major}{minor}", f"cp{major}{minor}", "py2.py3"):
            return True
        if parts[-2] == "abi3" and tag.startswith(f"cp{major}") and tag[2:].isdigit() and int(tag[3:] or 0) <= minor:
            return True
    return False


def _project(name: str, index: str, what: str) -> dict:
    """The index's JSON simple page of a project (PEP 691)."""
    url = f"{index}/{name}/"
    request = urllib.request.Request(url, headers={"Accept": ACCEPT})
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as answer:
            return json.loads(answer.read())
    except urllib.error.HTTPError as err:
        reason = "not on the index" if err.code == 404 else f"HTTP {err.code}"
        raise AmlLocalError(f"{what}: cannot read its releases from {url}: {reason}") from None
    except (OSError, ValueError) as err:
        raise AmlLocalError(f"{what}: cannot read its releases from {url}: {err}") from None


def _upload_time(name: str, version: str, *, index: str) -> str:
    url = f"{index}/{name}/"
    document = _project(name, index, f"{name}=={version}")
    wanted = _version(version)
    times = [
        entry["upload-time"]
        for entry in document.get("files", [])
        if entry.get("upload-time") and _version(_file_version(entry.get("filename", ""), name)) == wanted
    ]
    if not times:
        raise AmlLocalError(f"{name}=={version}: the index lists no file of that version ({url})")
    return max(times)


def _version(text: str | None):
    try:
        return Version(text) if text else None
    except InvalidVersion:
        return text


def _file_version(filename: str, name: str) -> str | None:
    """The version part of a wheel's or sdist's file name (`scikit_learn-1.2.2-cp311-...whl` -> 1.2.2)."""
    stem = filename
    for suffix in (".whl", ".tar.gz", ".zip", ".tar.bz2", ".tgz", ".egg"):
        if stem.endswith(suffix):
            stem = stem[: -len(suffix)]
            break
    else:
        return None
    if filename.endswith(".whl") or filename.endswith(".egg"):
        parts = stem.split("-")
        return parts[1] if len(parts) > 1 else None
    # sdist: name-version, where the name may itself hold dashes or underscores
    normalized = canonicalize_name(name)
    for split in range(len(stem) - 1, 0, -1):
        if stem[split] == "-" and canonicalize_name(stem[:split]) == normalized:
            return stem[split + 1 :]
    return None
