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
  prints; `Prepared.process_env(base_env)` is the environment for the user's command.
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
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

import uv
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from aml_local import AmlLocalError
from aml_local.assets.env_sources import BASE_IMAGES_FILE, CURATED_FILE, curated_name, spec_from_environment
from aml_local.assets.env_spec import EnvSpec, PipRequirement

# The API the nouns use, whichever module of the engine defines it.
__all__ = [
    "BASE_IMAGES_FILE", "CURATED_FILE", "PROJECT_VENV", "EnvSpec", "Prepared", "curated_name", "prepare",
    "spec_from_environment",
]  # fmt: skip

PROJECT_VENV = "project venv"


@dataclasses.dataclass
class Prepared:
    """The Python a job or deployment runs in, and what `show` records of it."""

    python: str  # the interpreter: replaces sys.executable for the user's command
    python_version: str
    environment_hash: str
    location: str  # the cache folder, or "project venv"
    venv: str | None  # the venv folder (VIRTUAL_ENV), None on the project venv
    built: bool  # this call built it (False: fast path or reused)
    seconds: float
    notes: list[str]
    warnings: list[str]

    def as_dict(self) -> dict:
        return {
            "python": self.python,
            "python_version": self.python_version,
            "environment_hash": self.environment_hash,
            "path": self.location,
            "built": self.built,
            "prepare_seconds": round(self.seconds, 3),
            "notes": list(self.notes),
            "warnings": list(self.warnings),
        }

    def process_env(self, base: Mapping[str, str]) -> dict[str, str]:
        """`base` with this Python first on PATH (`python`, `pip` and console scripts are the environment's)
        and VIRTUAL_ENV set as `activate` sets it; PYTHONHOME dropped, as `activate` drops it."""
        return process_env(self.python, self.venv, base)


def process_env(python: str, venv: str | None, base: Mapping[str, str]) -> dict[str, str]:
    """Prepared.process_env for a recorded (python, venv) pair: a deployment's server is started again from its
    record."""
    env = {k: v for k, v in base.items() if k != "PYTHONHOME"}
    env["PATH"] = os.pathsep.join([str(Path(python).parent), base.get("PATH", os.defpath)])
    if venv:
        env["VIRTUAL_ENV"] = venv
    elif sys.prefix != sys.base_prefix:
        env["VIRTUAL_ENV"] = sys.prefix
    return env


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
            venv=None,
            built=False,
            seconds=time.perf_counter() - started,
            notes=[*notes, *extra_notes],
            warnings=warnings,
        )

    if spec.run_in_project:
        return in_project()
    interpreter, warning = _choose_interpreter(spec)
    if warning:
        warnings.append(warning)
        log(warning)
    if interpreter.path == project.path:
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
            shutil.rmtree(folder, ignore_errors=True)
            raise
    return True


def _build(spec: EnvSpec, interpreter: _Interpreter, folder: Path, log: Callable[[str], None]) -> None:
    started = time.perf_counter()
    log(
        f"Environment {spec.hash}: building a venv for {spec.name} ({spec.source}) with python {interpreter.version} "
        f"and {len(spec.requirements)} requirement(s) in {folder}"
    )
    (folder / "spec.json").write_text(json.dumps(spec.as_dict(), indent=2) + "\n")
    lines = [*spec.pip_options, *(r.text for r in spec.requirements)]
    (folder / "requirements.in").write_text("\n".join(lines) + "\n")
    build_log = folder / "build.log"
    uv_bin = _uv_bin()
    # Resolve first: a requirement that cannot be met fails here, before a venv exists or anything runs.
    compile_command = [
        uv_bin, "pip", "compile", "requirements.in", "-o", "requirements.lock", "--python", interpreter.path,
        "--no-header",
    ]  # fmt: skip
    if spec.requirements:
        _run_uv(compile_command, folder, build_log, log, spec)
    else:
        (folder / "requirements.lock").write_text("")
    venv_command = [uv_bin, "venv", "venv", "--python", interpreter.path, "--seed", "--no-project"]
    _run_uv(venv_command, folder, build_log, log, spec)
    if spec.requirements:
        # No --compile-bytecode (uv's default): compiling all of scipy takes longer than the build itself on this
        # machine; the first import writes the bytecode it needs into the cached venv, once.
        install = [uv_bin, "pip", "install", "--python", str(folder / "venv" / "bin" / "python")]
        _run_uv([*install, "-r", "requirements.lock"], folder, build_log, log, spec)
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
        "seconds": round(time.perf_counter() - started, 1),
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    # Written last: its presence is what makes the folder a finished environment.
    (folder / "complete.json").write_text(json.dumps(record, indent=2) + "\n")
    log(f"Environment {spec.hash}: ready in {record['seconds']} s")


def _uv_version() -> str:
    with contextlib.suppress(importlib.metadata.PackageNotFoundError):
        return importlib.metadata.version("uv")
    return "unknown"


def _run_uv(command: list[str], folder: Path, build_log: Path, log: Callable[[str], None], spec: EnvSpec) -> None:
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
        raise AmlLocalError(_uv_failure(output, spec))


def _uv_failure(output: list[str], spec: EnvSpec) -> str:
    """uv's error as one line naming the requirement it is about (as written), its file, and uv's reason."""
    text = "\n".join(output)
    head, causes = "", []
    for line in output:
        stripped = line.strip()
        if not head and re.match(r"^(error:|×)", stripped, re.IGNORECASE):
            head = re.sub(r"^(error:|×)\s*", "", stripped, flags=re.IGNORECASE)
        elif head and stripped and not stripped.startswith("hint:"):
            causes.append(re.sub(r"^(cause:|caused by:|╰─▶)\s*", "", stripped))
    reason = ": ".join(part for part in (head, " ".join(causes)) if part)
    reason = re.sub(r"\s+", " ", reason or (output[-1].strip() if output else "uv failed with no output"))
    # The requirement named first in uv's text is the one the failure is about.
    positions = []
    for requirement in spec.requirements:
        if requirement.name is None:
            continue
        name_pattern = "[-_.]".join(re.escape(part) for part in requirement.name.split("-"))
        pattern = re.compile(rf"(?<![\w.-]){name_pattern}(?![\w-])", re.IGNORECASE)
        found = pattern.search(text)
        if found:
            positions.append((found.start(), requirement))
    if not positions:
        return f"environment {spec.name} ({spec.source}): cannot be built: {reason}"
    requirement = min(positions, key=lambda p: p[0])[1]
    where = (
        requirement.origin if requirement.origin == spec.source else f"{requirement.origin} (environment {spec.source})"
    )
    return f"{where}: cannot install {requirement.text}: {reason}"
