"""What a job's or deployment's environment YAML asks for, and a Python that has it: the project venv or a uv venv.

Public API (the nouns call these two, then run the user's command with `Prepared.python`):

- `spec_from_environment(env, *, source, base_images=BASE_IMAGES_FILE, curated=CURATED_FILE) -> EnvSpec`
  `env` is an `azure.ai.ml.entities.Environment` (from `load_environment`, or a job's inline `environment:`),
  or a curated reference string (`azureml:AzureML-<name>:<version>`, `azureml:AzureML-<name>@latest`,
  `azureml://registries/azureml/environments/<name>/versions/<n>` or `.../labels/latest`). `source` is the file
  the environment came from (named in errors). The EnvSpec holds the Python version asked (a PEP 440 specifier),
  the pip requirements (conda packages mapped to PyPI names, the conda `pip:` list, or a build context's
  Dockerfile installs), the base image and what base_images.json says it brings, the notes and warnings, and
  `hash`, a stable hash of the resolved spec (the cache key).
- `prepare(spec, *, cache_root, log) -> Prepared`: the project venv when it already has every requirement
  (fast path, no uv, a few milliseconds), else a venv built by uv in `cache_root/<hash>/venv` and reused.
  `log(line)` receives the build's progress and every WARNING line, once. `Prepared.as_dict()` is what `show`
  prints; `Prepared.layer(folder)` makes a run's own layer over it (env_layer.py), whose `process_env(base)` is the
  environment for the user's command.
- `curated_name(reference) -> str | None`: the curated environment a reference string names, or None.

Errors are `AmlLocalError`, one line. How Azure does it, and where we chose (see env_spec.py and env_sources.py
for how an environment is read):

- A python version this machine lacks: the nearest one here (same major, closest minor, the newer on a tie), with
  a one-line WARNING. Interpreters are uv's
  (`uv python find` / `uv python list --only-installed`, `UV_PYTHON_DOWNLOADS=never`: nothing is downloaded),
  plus pyenv's versions folder, since pyenv's shims only answer for its global version.
- Fast path: the project's own interpreter (`sys.executable`) when its major.minor is the one chosen and every
  requirement is installed in it at a version the specifier admits (`==` pins: exactly that version), extras
  included. Our choice, and its limit: a package the project venv has but the environment lacks is still
  importable on the fast path.
- Cache: `cache_root/<hash>/` holds `requirements.in`, `requirements.lock` (uv pip compile), `venv/` (uv venv
  --seed, so `pip` exists as in a conda env), `build.log`, and `complete.json`, written last: a folder without
  it is a half-built one (a killed build) and is discarded. `cache_root/<hash>.lock` (flock) makes a second
  process wait for the first build instead of corrupting it; the kernel drops the lock if the builder dies.
- Resolution runs before the venv is created, so a requirement that cannot be resolved fails before anything
  runs: one line naming the requirement as written (package and version), the file it came from, and uv's reason.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import importlib.metadata
import json
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import uv
from packaging.markers import default_environment
from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from aml_local import AmlLocalError
from aml_local.assets import env_layer, release_dates
from aml_local.assets.curated import CURATED_FILE, curated_name
from aml_local.assets.env_sources import BASE_IMAGES_FILE, spec_from_environment
from aml_local.assets.env_spec import EXCLUDE_NEWER_VARIABLE, EnvSpec, PipRequirement, normalized_date

# The API the nouns use, whichever module of the engine defines it.
__all__ = [
    "BASE_IMAGES_FILE", "CURATED_FILE", "EXCLUDE_NEWER_VARIABLE", "PROJECT_VENV", "EnvSpec", "Prepared", "curated_name",
    "prepare", "python_warning", "spec_from_environment",
]  # fmt: skip

PROJECT_VENV = "project venv"


@dataclasses.dataclass
class Prepared:
    """The environment a job or deployment runs over, and what `show` records of it. Nothing runs in it directly:
    each run gets a layer of its own over it (`layer`, assets/env_layer.py)."""

    python: str  # the environment's interpreter (its venv's bin/python)
    python_version: str
    environment_hash: str
    location: str  # the cache folder, or "project venv"
    venv: str  # the environment's venv folder: the lower layer of each run's
    built: bool  # this call built it (False: fast path or reused)
    seconds: float
    notes: list[str]
    warnings: list[str]
    exclude_newer: str | None = None  # the date it was resolved as of (None: the project venv's own versions)

    @property
    def in_project(self) -> bool:
        return self.location == PROJECT_VENV

    def as_dict(self) -> dict:
        return {
            "python": self.python,
            "python_version": self.python_version,
            "environment_hash": self.environment_hash,
            "path": self.location,
            "built": self.built,
            "prepare_seconds": round(self.seconds, 3),
            "resolved_as_of": self.exclude_newer,
            "notes": list(self.notes),
            "warnings": list(self.warnings),
        }

    def layer(self, folder: Path) -> env_layer.Layer:
        """A run's own writable layer over this environment, made in `folder` (see env_layer)."""
        return env_layer.make(self.venv, folder)


# ---------------------------------------------------------------------------------------------------------------
# Interpreters


@dataclasses.dataclass(frozen=True)
class _Interpreter:
    path: str
    version: Version

    @property
    def minor(self) -> tuple[int, int]:
        return self.version.major, self.version.minor


def _project_interpreter() -> _Interpreter:
    return _Interpreter(path=sys.executable, version=Version(platform.python_version()))


def _uv_env() -> dict[str, str]:
    """uv's environment: no Python downloads, no project or config discovery, no venv of the caller's, and
    pyenv's installed versions on PATH (its shims only answer for the global version)."""
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "CONDA_PREFIX", "PYTHONHOME")}
    env.update({"UV_PYTHON_DOWNLOADS": "never", "UV_NO_CONFIG": "1", "UV_NO_PROGRESS": "1", "NO_COLOR": "1"})
    pyenv_root = Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv")
    version_bins = [p for p in pyenv_root.glob("versions/*/bin") if p.is_dir()]
    version_bins.sort(key=lambda p: _version_or_zero(p.parent.name), reverse=True)  # newest first
    env["PATH"] = os.pathsep.join([*map(str, version_bins), env.get("PATH", os.defpath)])
    return env


def _version_or_zero(text: str) -> Version:
    try:
        return Version(text)
    except InvalidVersion:
        return Version("0")


def _uv_bin() -> str:
    return uv.find_uv_bin()


def _interpreter_version(path: str) -> Version | None:
    try:
        out = subprocess.run(
            [path, "-c", "import platform; print(platform.python_version())"],
            capture_output=True, text=True, timeout=60, check=True,
        ).stdout  # fmt: skip
        return Version(out.strip())
    except (OSError, subprocess.SubprocessError, InvalidVersion):
        return None


def _find_interpreter(specifier: str) -> _Interpreter | None:
    """uv's pick among this machine's interpreters for a specifier (fast: one `uv python find`)."""
    result = subprocess.run(
        [_uv_bin(), "python", "find", "--system", "--no-project", specifier],
        capture_output=True, text=True, env=_uv_env(), timeout=120,
    )  # fmt: skip
    path = result.stdout.strip().splitlines()[-1] if result.returncode == 0 and result.stdout.strip() else ""
    if not path:
        return None
    version = _interpreter_version(path)
    return _Interpreter(path=path, version=version) if version else None


def _installed_interpreters() -> list[_Interpreter]:
    """Every CPython 3 on this machine that uv knows (`uv python list --only-installed`), one per version."""
    result = subprocess.run(
        [_uv_bin(), "python", "list", "--only-installed", "--output-format", "json"],
        capture_output=True, text=True, env=_uv_env(), timeout=300,
    )  # fmt: skip
    try:
        listed = json.loads(result.stdout)
    except ValueError:
        error = (result.stderr.strip().splitlines() or ["no output"])[0]
        raise AmlLocalError(f"uv python list failed (exit {result.returncode}): {error}") from None
    found: dict[Version, _Interpreter] = {}
    # Real installs before pyenv's shims, which are slow scripts in front of the same interpreters.
    for item in sorted(listed, key=lambda i: "/shims/" in str(i.get("path"))):
        if item.get("implementation") != "cpython" or item.get("variant", "default") != "default":
            continue
        try:
            version = Version(str(item["version"]))
        except (InvalidVersion, KeyError):
            continue
        if version.major == 3 and item.get("path"):
            found.setdefault(version, _Interpreter(path=str(item["path"]), version=version))
    project = _project_interpreter()
    found[project.version] = project
    return sorted(found.values(), key=lambda i: i.version, reverse=True)


def _choose_interpreter(spec: EnvSpec) -> tuple[_Interpreter, str | None]:
    """The interpreter for the spec, and a WARNING when the version asked is not on this machine."""
    project = _project_interpreter()
    if spec.python is None:
        return project, None
    specifier = SpecifierSet(spec.python)
    if specifier.contains(project.version, prereleases=True):
        return project, None
    found = _find_interpreter(spec.python)
    if found is not None and specifier.contains(found.version, prereleases=True):
        return found, None
    interpreters = _installed_interpreters()
    matching = [i for i in interpreters if specifier.contains(i.version, prereleases=True)]
    if matching:
        return matching[0], None
    target = _first_version(spec.python) or project.version
    target_key = target.major * 1000 + (target.minor if len(target.release) > 1 else 0)

    def distance(interpreter: _Interpreter):
        key = interpreter.version.major * 1000 + interpreter.version.minor
        # nearest minor; on a tie the newer; within a minor the project's own, then the newest patch
        return (abs(key - target_key), -key, interpreter.path != project.path, -interpreter.version.micro)

    chosen = min(interpreters, key=distance)
    present = ", ".join(sorted({f"{i.version.major}.{i.version.minor}" for i in interpreters}, key=Version))
    warning = (
        f"WARNING: python {spec.python.removeprefix('==').removesuffix('.*')} ({spec.python_origin}) is not on "
        f"this machine (it has {present}); using the nearest, python {chosen.version}"
    )
    return chosen, warning


def python_warning(spec: EnvSpec) -> str | None:
    """The WARNING a job gets at create when the Python its environment asks for is not on this machine (naming the
    version wanted and the one it will run), else None. uv looks among installed interpreters only."""
    return _choose_interpreter(spec)[1]


def _first_version(specifier: str) -> Version | None:
    match = re.search(r"\d+(\.\d+)*", specifier)
    return Version(match[0]) if match else None


# ---------------------------------------------------------------------------------------------------------------
# Fast path


def _unmet_in_project(requirements: Iterable[PipRequirement]) -> list[str]:
    """The requirements the running interpreter's environment does not meet, each with what it has instead."""
    unmet = []
    environment = default_environment()
    for requirement in requirements:
        if requirement.parsed is None:
            unmet.append(f"{requirement.text} (a URL or path requirement: not compared)")
            continue
        problem = _unmet(requirement.parsed, environment, seen=set())
        if problem:
            unmet.append(problem)
    return unmet


def _version_of(distribution: importlib.metadata.Distribution) -> str:
    """The Version: header alone: `distribution.version` parses the whole METADATA (long descriptions
    included) with the email parser, which is most of the fast path's cost."""
    text = distribution.read_text("METADATA") or distribution.read_text("PKG-INFO") or ""
    match = re.search(r"^Version:[ \t]*(\S+)", text.split("\n\n", 1)[0], re.MULTILINE)
    return match[1] if match else distribution.version


def _unmet(requirement: Requirement, environment: dict, seen: set) -> str | None:
    if requirement.marker is not None and not requirement.marker.evaluate(environment):
        return None
    try:
        distribution = importlib.metadata.distribution(requirement.name)
    except importlib.metadata.PackageNotFoundError:
        return f"{requirement} (not installed)"
    installed = _version_of(distribution)
    if not requirement.specifier.contains(installed, prereleases=True):
        return f"{requirement} (installed: {installed})"
    for extra in sorted(requirement.extras):
        key = (canonicalize_name(requirement.name), extra)
        if key in seen:
            continue
        seen.add(key)
        for text in distribution.requires or []:
            dependency = Requirement(text)
            if dependency.marker is None:
                continue
            wanted = dependency.marker.evaluate({**environment, "extra": extra})
            if wanted and not dependency.marker.evaluate({**environment, "extra": ""}):
                dependency.marker = None
                problem = _unmet(dependency, environment, seen)
                if problem:
                    return f"{requirement}: {problem}"
    return None


# ---------------------------------------------------------------------------------------------------------------
# prepare


def prepare(spec: EnvSpec, *, cache_root: Path, log: Callable[[str], None]) -> Prepared:
    started = time.perf_counter()
    notes = [*spec.notes, *(f"skipped {s}" for s in spec.skipped)]
    warnings = [f"WARNING: {warning}" for warning in spec.warnings]
    for warning in warnings:
        log(warning)
    project = _project_interpreter()

    def in_project(extra_notes=()) -> Prepared:
        return Prepared(
            python=project.path,
            python_version=str(project.version),
            environment_hash=spec.hash,
            location=PROJECT_VENV,
            venv=str(env_layer.project_venv()),
            built=False,
            seconds=time.perf_counter() - started,
            notes=[*notes, *extra_notes],
            warnings=warnings,
        )

    interpreter, warning = _choose_interpreter(spec)
    if warning:
        warnings.append(warning)
        log(warning)
    # An image of unknown contents is its Python and pip alone, never the project venv with all it has.
    if interpreter.path == project.path and not spec.bare:
        unmet = _unmet_in_project(spec.requirements)
        if not unmet:
            return in_project(["every requirement is installed in the project venv at the version asked: no build"])
        notes.append("not the project venv: " + "; ".join(unmet))
    folder = Path(cache_root) / spec.hash
    built = _build_or_reuse(spec, interpreter, folder, log)
    complete = json.loads((folder / "complete.json").read_text())
    return Prepared(
        python=str(folder / "venv" / "bin" / "python"),
        python_version=complete["python_version"],
        environment_hash=spec.hash,
        location=str(folder),
        venv=str(folder / "venv"),
        built=built,
        seconds=time.perf_counter() - started,
        notes=notes,
        warnings=warnings,
        exclude_newer=complete.get("exclude_newer"),
    )


def _complete(folder: Path, interpreter: _Interpreter) -> bool:
    try:
        record = json.loads((folder / "complete.json").read_text())
    except (OSError, ValueError):
        return False
    return record.get("python_version") == str(interpreter.version) and (folder / "venv" / "bin" / "python").exists()


@contextlib.contextmanager
def _locked(lock_path: Path, log: Callable[[str], None], what: str):
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log(f"Waiting for another process that is building {what}")
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _build_or_reuse(spec: EnvSpec, interpreter: _Interpreter, folder: Path, log: Callable[[str], None]) -> bool:
    if _complete(folder, interpreter):  # the common case, without taking the lock
        log(f"Environment {spec.hash}: reusing {folder}")
        return False
    with _locked(folder.parent / f"{spec.hash}.lock", log, f"environment {spec.hash}"):
        if _complete(folder, interpreter):
            log(f"Environment {spec.hash}: reusing {folder} (built by another process)")
            return False
        if folder.exists():
            log(f"Environment {spec.hash}: discarding an incomplete build in {folder}")
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
        try:
            _build(spec, interpreter, folder, log)
        except BaseException:
            # The failed build's log is kept where the error names it (failed_log); the half-built folder goes.
            with contextlib.suppress(OSError):
                failed_log(folder).parent.mkdir(exist_ok=True)
                (folder / "build.log").replace(failed_log(folder))
            shutil.rmtree(folder, ignore_errors=True)
            raise
    return True


def failed_log(folder: Path) -> Path:
    """Where the log of a build that failed in `folder` is kept: <cache>/failed/<hash>.build.log."""
    return folder.parent / "failed" / f"{folder.name}.build.log"


def _build(spec: EnvSpec, interpreter: _Interpreter, folder: Path, log: Callable[[str], None]) -> None:
    started = time.perf_counter()
    log(
        f"Environment {spec.hash}: building a venv for {spec.name} ({spec.source}) with python {interpreter.version} "
        f"and {len(spec.requirements)} requirement(s) in {folder}"
    )
    (folder / "spec.json").write_text(json.dumps(spec.as_dict(), indent=2) + "\n")
    python = f"{interpreter.version.major}.{interpreter.version.minor}"
    exclude_newer = _resolution_date(spec, folder.parent, log) if spec.requirements else None
    lines = [*spec.pip_options, *_pin_latest(spec, exclude_newer, python, folder.parent, log)]
    build_log = folder / "build.log"
    uv_bin = _uv_bin()
    as_of = ["--exclude-newer", exclude_newer] if exclude_newer else []
    # Resolve first: a requirement that cannot be met fails here, before a venv exists or anything runs.
    if spec.requirements:
        resolve_lock(
            spec, lines, folder, ["--python", interpreter.path, *as_of],
            lambda command: _run_uv(command, folder, build_log, log, spec, python),
        )  # fmt: skip
    else:
        (folder / "requirements.lock").write_text("")
    venv_command = [uv_bin, "venv", "venv", "--python", interpreter.path, "--seed", "--no-project"]
    _run_uv(venv_command, folder, build_log, log, spec, python)
    if spec.requirements:
        # No --compile-bytecode (uv's default): compiling all of scipy takes longer than the build itself on this
        # machine; runs compile what they import into the cache's pycache folder beside the venv (env_layer.py).
        # --no-deps where the lock was merged from two resolutions: it is what pip left installed, whole.
        install = [uv_bin, "pip", "install", "--python", str(folder / "venv" / "bin" / "python"), *as_of]
        install += ["--no-deps"] if spec.overrides else []
        _run_uv([*install, "-r", "requirements.lock"], folder, build_log, log, spec, python)
    version = _interpreter_version(str(folder / "venv" / "bin" / "python"))
    if version is None:
        raise AmlLocalError(
            f"environment {spec.name} ({spec.source}): the venv built in {folder} has no working python"
        )
    record = {
        "hash": spec.hash,
        "python": interpreter.path,
        "python_version": str(version),
        "uv": _uv_version(),
        "exclude_newer": exclude_newer,
        "seconds": round(time.perf_counter() - started, 1),
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    # Written last: its presence is what makes the folder a finished environment.
    (folder / "complete.json").write_text(json.dumps(record, indent=2) + "\n")
    log(f"Environment {spec.hash}: ready in {record['seconds']} s")


def resolve_lock(
    spec: EnvSpec, lines: list[str], folder: Path, uv_args: list[str], run: Callable[[list[str]], None]
) -> None:
    """`folder/requirements.lock` from the requirement lines, with uv (`run(command)` runs it in `folder` and raises
    on failure). One resolution; or, for an environment with a later `pip install --upgrade` (spec.overrides), two,
    as pip installed them: the first install's requirements, then the upgrade's on their own, whose versions replace
    the first's (pip installs an upgrade over what other packages pin, and only warns), merged into one lock that
    is installed with --no-deps. One resolution of both would refuse what the image holds."""
    uv_bin = _uv_bin()
    compile_command = [uv_bin, "pip", "compile", "--no-header", *uv_args]
    if not spec.overrides:
        (folder / "requirements.in").write_text("\n".join(lines) + "\n")
        run([*compile_command[:3], "requirements.in", "-o", "requirements.lock", *compile_command[3:]])
        return
    upgraded = {canonicalize_name(Requirement(line).name) for line in spec.overrides}
    first = [line for line in lines if line.startswith("-") or _line_name(line) not in upgraded]
    options = [line for line in lines if line.startswith("-")]
    (folder / "requirements.in").write_text("\n".join(first) + "\n")
    (folder / "upgrade.in").write_text("\n".join([*options, *spec.overrides]) + "\n")
    run([*compile_command[:3], "requirements.in", "-o", "first.lock", *compile_command[3:]])
    run([*compile_command[:3], "upgrade.in", "-o", "upgrade.lock", *compile_command[3:]])
    merged = dict(_lock_entries((folder / "first.lock").read_text()))
    merged.update(_lock_entries((folder / "upgrade.lock").read_text()))
    (folder / "requirements.lock").write_text("".join(f"{line}\n" for line in merged.values()))


def _line_name(line: str) -> str | None:
    try:
        return canonicalize_name(Requirement(line).name)
    except InvalidRequirement:
        return None


def _lock_entries(text: str):
    """(name, pinned line) for each package of a uv pip compile lock."""
    for line in text.splitlines():
        if line and not line.startswith((" ", "#", "-")):
            yield _line_name(line.split(" ;")[0]) or line, line


def _pin_latest(
    spec: EnvSpec, exclude_newer: str | None, python: str, cache_root: Path, log: Callable[[str], None]
) -> list[str]:
    """The requirements as handed to uv: each `name=={{latest-pypi-version}}` of a curated environment pinned to the
    newest release as of its date (the release its image got the day it was built; left unpinned, the resolver is
    free to backtrack to a years-old one)."""
    texts = [r.text for r in spec.requirements]
    names = [r.name for r in spec.requirements if r.name in spec.latest_as_of and r.text == r.name]
    if not names or not exclude_newer:
        return texts
    index = release_dates.index_url(spec.pip_options)
    try:
        pins = release_dates.latest_as_of(names, exclude_newer, python=python, index=index, cache_dir=cache_root)
    except AmlLocalError as err:
        log(f"WARNING: {err}; {', '.join(names)} left unpinned")
        return texts
    log(
        f"Environment {spec.hash}: the newest releases as of {exclude_newer} ({{{{latest-pypi-version}}}}): "
        + ", ".join(f"{name}=={version}" for name, version in pins.items())
    )
    return [f"{text}=={pins[text]}" if text in pins else text for text in texts]


def _resolution_date(spec: EnvSpec, cache_root: Path, log: Callable[[str], None]) -> str | None:
    """The date the environment resolves as of (uv's --exclude-newer): the override setting, the curated asset's
    date, else the newest release date among its exact pins (release_dates.py); None for today's releases."""
    if spec.exclude_newer or spec.exclude_newer_origin:
        if spec.exclude_newer:
            log(f"Environment {spec.hash}: resolving as of {spec.exclude_newer} ({spec.exclude_newer_origin})")
        return spec.exclude_newer
    pins = release_dates.exact_pins(spec.requirements)
    index = release_dates.index_url(spec.pip_options)
    try:
        found = release_dates.newest(pins, index=index, cache_dir=cache_root)
    except AmlLocalError as err:
        log(f"WARNING: {err}; resolving with today's releases")
        return None
    if found is None:
        log(f"Environment {spec.hash}: no exact pin to date it by; resolving with today's releases")
        return None
    moment, pin = found
    # The end of that day (UTC): every file of the release is in, whatever second of the day it was uploaded.
    date = normalized_date(moment[:10], "release date")
    log(
        f"Environment {spec.hash}: resolving as of {date}, the release of its newest exact pin {pin} "
        f"(override: {EXCLUDE_NEWER_VARIABLE}=YYYY-MM-DD or none)"
    )
    return date


def _uv_version() -> str:
    with contextlib.suppress(importlib.metadata.PackageNotFoundError):
        return importlib.metadata.version("uv")
    return "unknown"


def _run_uv(
    command: list[str], folder: Path, build_log: Path, log: Callable[[str], None], spec: EnvSpec, python_version: str
) -> None:
    with open(build_log, "a") as record:
        record.write("$ " + shlex.join(command) + "\n")
        process = subprocess.Popen(
            command,
            cwd=folder,
            env=_uv_env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        output = []
        for line in process.stdout:
            line = line.rstrip("\n")
            output.append(line)
            record.write(line + "\n")
            log(f"  {line}")
        code = process.wait()
    if code != 0:
        locked = (folder / "requirements.lock").read_text() if (folder / "requirements.lock").is_file() else ""
        raise AmlLocalError(_uv_failure(output, spec, python_version, failed_log(folder), locked))


_CAUSE = re.compile(r"^(?:cause:|caused by:|╰─▶|├─▶)\s*(.*)$", re.IGNORECASE)
_HEAD = re.compile(r"^(?:error:|×)\s*(.*)$", re.IGNORECASE)
_FAILED_DIST = re.compile(
    r"Failed to (?:build|download|download and build|install|prepare distributions)[^`]*`([^`]+)`"
)
_NO_COMPILER = re.compile(
    r"(unable to execute '?(gcc|cc|g\+\+)|(gcc|cc|g\+\+|clang): (command )?not found"
    r"|No such file or directory: '(gcc|cc|g\+\+)'|Python\.h: No such file|Microsoft Visual C\+\+ .* is required"
    r"|could not find a C compiler)",
    re.IGNORECASE,
)


def _uv_failure(
    output: list[str], spec: EnvSpec, python_version: str = "", build_log: Path | None = None, locked: str = ""
) -> str:
    """uv's error as one line: the requirement it is about (as written, with its file), why (not on the index, no
    such version, no release for this Python, no wheel for this Python and its build from source failed, needs a
    compiler), uv's own words and the build's last error line. uv's whole output is in build.log and the job's log."""
    text = "\n".join(output)
    head, causes, build_errors = "", [], []
    in_build_output = False  # after a "[stderr]"/"[stdout]" line: a build's own output, indented under uv's cause
    for line in output:
        stripped = line.strip()
        if not stripped or stripped.startswith("hint:"):
            continue
        if stripped in ("[stderr]", "[stdout]"):
            in_build_output = True
            continue
        if in_build_output and line.startswith("         "):
            if re.search(r"\berror\b", stripped, re.IGNORECASE):
                build_errors.append(stripped)
            continue
        in_build_output = False
        if not head and _HEAD.match(stripped):
            head = _HEAD.match(stripped)[1]
        elif head and _CAUSE.match(stripped):
            causes.append(_CAUSE.match(stripped)[1])
        elif causes and line.startswith(" "):  # uv wraps a long cause onto indented lines
            causes[-1] += " " + stripped
    reason = ": ".join(part for part in (head, *causes) if part) or (output[-1].strip() if output else "uv failed")
    why = _why(text, python_version)
    detail = re.sub(r"\s+", " ", reason)
    if build_errors:
        detail += f"; the build's last error: {build_errors[-1][:240]}"
    tail = f" (uv's full output: {build_log})" if build_log else ""
    failed = _FAILED_DIST.search(text)
    requirement = _failed_requirement(text, spec)
    if failed and (requirement is None or requirement.name != _dist_name(failed[1])):
        # A dependency, not one of the environment's own requirements: named as uv resolved it, with what needs it.
        needed_by = _needed_by(locked, _dist_name(failed[1]))
        via = f" (needed by {', '.join(needed_by)})" if needed_by else ""
        return (
            f"environment {spec.name} ({spec.source}): cannot install {failed[1]}{via}: "
            f"{why + ': ' if why else ''}{detail}{tail}"
        )
    if requirement is None:
        return f"environment {spec.name} ({spec.source}): cannot be built: {why + ': ' if why else ''}{detail}{tail}"
    where = (
        requirement.origin if requirement.origin == spec.source else f"{requirement.origin} (environment {spec.source})"
    )
    return f"{where}: cannot install {requirement.text}: {why + ': ' if why else ''}{detail}{tail}"


def _why(text: str, python_version: str) -> str:
    python = f"python {python_version}" if python_version else "this python"
    if "was not found in the package registry" in text or "not found in the provided package locations" in text:
        return "not on the index"
    if _NO_COMPILER.search(text):
        return "it has no wheel for this machine and building it needs a compiler or headers this machine lacks"
    if re.search(r"Failed to (?:download and )?build", text):
        return f"no wheel for {python} on this platform, and building it from source failed"
    if re.search(r"requires-python|Python (?:>|<|=|!)|the (?:requested|current) Python version", text):
        return f"no release for {python}"
    if re.search(r"there is no version of|there are no versions of|only .* (?:is|are) available", text):
        return "no such version on the index"
    return ""


def _dist_name(text: str) -> str:
    """`ruamel-yaml==0.15.89` -> "ruamel-yaml" (canonical)."""
    return canonicalize_name(re.split(r"[=<>!~ @\[;]", text.strip(), maxsplit=1)[0])


def _needed_by(locked: str, name: str) -> list[str]:
    """What pulled `name` in, from uv pip compile's `# via` annotations in the lock."""
    lines = locked.splitlines()
    for index, line in enumerate(lines):
        if line and not line.startswith(" ") and _dist_name(line) == name:
            via = []
            for follow in lines[index + 1 :]:
                if not follow.startswith(" "):
                    break
                entry = follow.strip().removeprefix("#").strip().removeprefix("via").strip()
                if entry and not entry.startswith("-r"):
                    via.append(entry)
            return via
    return []


def _failed_requirement(text: str, spec: EnvSpec) -> PipRequirement | None:
    """The spec's requirement uv's failure is about: the distribution uv failed to build or fetch, else the one
    named first in its text."""
    named = [r for r in spec.requirements if r.name is not None]
    failed = _FAILED_DIST.search(text)
    if failed:
        for requirement in named:
            if requirement.name == _dist_name(failed[1]):
                return requirement
    positions = []
    for requirement in named:
        name_pattern = "[-_.]".join(re.escape(part) for part in requirement.name.split("-"))
        found = re.search(rf"(?<![\w.-]){name_pattern}(?![\w-])", text, re.IGNORECASE)
        if found:
            positions.append((found.start(), requirement))
    return min(positions, key=lambda p: p[0])[1] if positions else None
