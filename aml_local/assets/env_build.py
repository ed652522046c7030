"""What a job's or deployment's environment YAML asks for, and a Python that has it: the project venv or a uv venv.

Public API (the nouns call these two, then run the user's command with `Prepared.python`):

- `spec_from_environment(env, *, source, base_images=BASE_IMAGES_FILE, curated=CURATED_FILE) -> EnvSpec`
  `env` is an `azure.ai.ml.entities.Environment` (from `load_environment`, or a job's inline `environment:`),
  or a curated reference string (`azureml:AzureML-<name>:<version>`, `azureml:AzureML-<name>@latest`,
  `azureml://registries/azureml/environments/<name>/versions/<n>` or `.../labels/latest`). `source` is the file
  the environment came from (named in errors). The EnvSpec holds the Python version asked (a PEP 440 specifier),
  the pip requirements (conda packages mapped to PyPI names, the conda `pip:` list, or a build context's
  Dockerfile installs), the base image and what base-images.json says it brings, the notes and warnings, and
  `hash`, a stable hash of the resolved spec (the cache key).
- `prepare(spec, *, cache_root, log) -> Prepared`: the project venv when it already has every requirement
  (fast path, no uv, a few milliseconds), else a venv built by uv in `cache_root/<hash>/venv` and reused.
  `log(line)` receives the build's progress and every WARNING line, once. `Prepared.as_dict()` is what `show`
  prints; `Prepared.process_env(base_env)` is the environment for the user's command.
- `curated_name(reference) -> str | None`: the curated environment a reference string names, or None.

Errors are `AmlLocalError`, one line. How Azure does it, and where we chose:

- image + conda_file: Azure creates a new conda environment from the conda file on top of the image
  (`conda env create -p /azureml-envs/azureml_<hash> -f ...`, see
  https://azure.github.io/azureml-cheatsheets/docs/cheatsheets/python/v1/docker-build), so only the conda file's
  packages are in it: the image's own Python packages are recorded, not added. An image alone runs the image's
  Python with the packages base-images.json lists for it; an image not listed there runs in the project venv
  with a WARNING (its packages are unknown). A build context: its Dockerfile's final stage `FROM` image, and
  what its `RUN pip install` / `conda env create -f` / `conda install` lines install (files resolved in the
  context, by path or by base name, since `COPY x .` is the common way in).
- conda match specs (https://docs.conda.io/projects/conda/en/latest/user-guide/concepts/pkg-search.html and the
  canonical form in https://conda.github.io/rattler/py-rattler/match_spec/): `numpy=1.26` and `numpy 1.26` are
  fuzzy (`==1.26.*`), `numpy==1.26` is exact, ranges and `~=` are kept, a build string is dropped; `|` (or) is
  refused. Conda names that differ on PyPI are mapped by CONDA_TO_PYPI, conda-only system packages
  (CONDA_ONLY) are skipped with a note; any other conda name is taken as the PyPI name (our choice: conda-forge
  names Python packages as PyPI does, with the exceptions listed).
- Packages that only work inside an Azure workspace (WORKSPACE_ONLY) are skipped locally with a note, and what
  they bring that works here (azureml-mlflow's MLflow client, mlflow-skinny) is kept, so `import mlflow` behaves
  as it does on Azure.
- A conda `python` entry sets the version; without one, the image's Python (base-images.json), else the
  project's (our choice: conda would pick its newest). A version this machine lacks: the nearest one here
  (same major, closest minor, the newer on a tie), with a one-line WARNING. Interpreters are uv's
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
import hashlib
import importlib.metadata
import io
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
import yaml
from dockerfile_parse import DockerfileParser
from packaging.markers import default_environment
from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from aml_local import AmlLocalError

REPO_ROOT = Path(__file__).resolve().parents[2]
BASE_IMAGES_FILE = REPO_ROOT / "environments" / "base-images.json"
CURATED_FILE = Path(__file__).resolve().parent / "curated_environments.json"
PROJECT_VENV = "project venv"

# Packages that cannot work outside an Azure ML workspace, with what they bring that does work here (kept).
# azureml-mlflow: an MLflow tracking/registry plugin for azureml:// URIs, which only a workspace serves (and its
# pins clash with the project's mlflow, see pyproject.toml's azure group); it depends on mlflow-skinny, the MLflow
# client a script imports as `mlflow` (uv pip compile of azureml-mlflow==1.62.0.post6 lists it "via azureml-mlflow").
WORKSPACE_ONLY: dict[str, tuple[str, ...]] = {"azureml-mlflow": ("mlflow-skinny",)}

# Conda package names whose PyPI name differs (conda-forge feedstock name -> PyPI project).
CONDA_TO_PYPI = {
    "pytorch": "torch",
    "pytorch-cpu": "torch",
    "py-xgboost": "xgboost",
    "py-xgboost-cpu": "xgboost",
    "matplotlib-base": "matplotlib",
    "pytables": "tables",
    "msgpack-python": "msgpack",
    "py-opencv": "opencv-python",
    "opencv": "opencv-python",
    "python-graphviz": "graphviz",
    "pyqt": "PyQt5",
    "tensorflow-base": "tensorflow",
    "lightgbm-cpu": "lightgbm",
}
# Conda packages that are not Python packages (compilers, system and CUDA libraries, the interpreter's own
# dependencies): nothing to install from PyPI; a uv venv uses the machine's.
CONDA_ONLY = frozenset(
    {
        "bzip2", "ca-certificates", "cudatoolkit", "cuda-toolkit", "cuda-nvcc", "cudnn", "gcc", "gxx", "git",
        "ld_impl_linux-64", "libffi", "libgcc", "libgcc-ng", "libgomp", "libstdcxx-ng", "make", "mpich", "nccl",
        "ncurses", "nodejs", "openmpi", "openssl", "readline", "sqlite", "tk", "tzdata", "xz", "zlib",
    }
)  # fmt: skip

_CONDA_OPERATORS = ("==", ">=", "<=", "!=", "~=", ">", "<")
_PIP_OPTIONS_WITH_VALUE = frozenset(
    {
        "-r", "--requirement", "-c", "--constraint", "-e", "--editable", "-i", "--index-url", "--extra-index-url",
        "-f", "--find-links", "-t", "--target", "--prefix", "--root", "--platform", "--python-version",
        "--implementation", "--abi", "--src", "--upgrade-strategy", "--progress-bar", "--cache-dir", "--log",
        "--proxy", "--retries", "--timeout", "--exists-action", "--trusted-host", "--cert", "--client-cert",
        "--only-binary", "--no-binary", "--global-option", "--config-settings", "-C", "--root-user-action",
    }
)  # fmt: skip
_PIP_INDEX_OPTIONS = frozenset({"-i", "--index-url", "--extra-index-url", "-f", "--find-links"})
_RAW_PREFIXES = ("git+", "hg+", "svn+", "bzr+", "http://", "https://", "file:")
_CURATED_WORKSPACE = re.compile(r"^azureml:(?P<name>AzureML-[^:@/]+)(?::(?P<version>[^:@/]+)|@(?P<label>[^:@/]+))?$")
_CURATED_REGISTRY = re.compile(
    r"^azureml://registries/azureml/environments/(?P<name>[^/]+)(?:/versions/(?P<version>[^/]+)|/labels/(?P<label>[^/]+))?/?$"
)


@dataclasses.dataclass(frozen=True)
class PipRequirement:
    """One requirement as it will be handed to uv, and the file it was written in (for errors)."""

    text: str  # normalized: canonical name, sorted extras, sorted specifiers, marker; or a raw URL line
    origin: str
    parsed: Requirement | None  # None for a raw line (a VCS or URL requirement, an editable path)

    @property
    def name(self) -> str | None:
        return canonicalize_name(self.parsed.name) if self.parsed else None


@dataclasses.dataclass(frozen=True)
class EnvSpec:
    """What an environment asks for. `hash` is the cache key: it covers what the venv is built from."""

    name: str
    source: str
    python: str | None  # a PEP 440 specifier for the interpreter ("==3.11.*"), None when nothing says
    python_origin: str
    requirements: tuple[PipRequirement, ...]
    pip_options: tuple[str, ...] = ()  # index / find-links lines for uv
    image: str | None = None
    image_info: dict | None = None  # base-images.json's entry for the image
    run_in_project: bool = False  # nothing to build from (unknown curated name or image): the project venv
    skipped: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()

    @property
    def hash(self) -> str:
        if self.run_in_project:
            material = {"run_in_project": self.name}
        else:
            material = {
                "python": self.python,
                "requirements": sorted(r.text for r in self.requirements),
                "pip_options": list(self.pip_options),
            }
        digest = hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()
        return digest[:32]

    def as_dict(self) -> dict:
        return {
            "name": self.name,
            "source": self.source,
            "python": self.python,
            "python_origin": self.python_origin,
            "requirements": [r.text for r in self.requirements],
            "pip_options": list(self.pip_options),
            "image": self.image,
            "image_known": self.image_info is not None,
            "run_in_project": self.run_in_project,
            "skipped": list(self.skipped),
            "notes": list(self.notes),
            "warnings": list(self.warnings),
            "hash": self.hash,
        }


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
        env = {k: v for k, v in base.items() if k != "PYTHONHOME"}
        bin_dir = str(Path(self.python).parent)
        env["PATH"] = os.pathsep.join([bin_dir, base.get("PATH", os.defpath)])
        if self.venv:
            env["VIRTUAL_ENV"] = self.venv
        elif sys.prefix != sys.base_prefix:
            env["VIRTUAL_ENV"] = sys.prefix
        return env


# ---------------------------------------------------------------------------------------------------------------
# From an Environment (or a curated name) to an EnvSpec


def curated_name(reference: str) -> str | None:
    """`azureml:AzureML-sklearn-1.5@latest` -> "AzureML-sklearn-1.5"; a registry URI -> its name; else None."""
    text = reference.strip()
    match = _CURATED_WORKSPACE.match(text) or _CURATED_REGISTRY.match(text)
    return match["name"] if match else None


def spec_from_environment(
    env, *, source: str, base_images: Path = BASE_IMAGES_FILE, curated: Path = CURATED_FILE
) -> EnvSpec:
    if isinstance(env, str):
        return _spec_from_curated(env, source=source, curated=curated)
    builder = _SpecBuilder(name=str(getattr(env, "name", None) or "inline"), source=str(source))
    images = _load_base_images(base_images)
    conda_file = getattr(env, "conda_file", None)
    build = getattr(env, "build", None)
    if build is not None and getattr(build, "path", None):
        _read_build_context(env, build, builder, images)
    elif env.image:
        builder.set_image(env.image, images)
        if conda_file is not None:
            conda_path = getattr(env, "_conda_file_path", None)
            builder.read_conda(conda_file, origin=str(conda_path or source), base_dir=_dir_of(conda_path, source))
            if builder.image_info and builder.image_info.get("packages"):
                builder.notes.append(
                    f"image {env.image}: its own packages are not in the conda environment Azure builds from "
                    "conda_file, so they are not added"
                )
        elif builder.image_info is not None:
            builder.add_image_packages()
        else:
            builder.unknown(
                f"environment {builder.name} ({source}): image {env.image} is not in {base_images.name}, so its "
                "packages are unknown; it runs in the project venv"
            )
    else:
        raise AmlLocalError(
            f"{source}: environment {builder.name}: expected image (with an optional conda_file) or build"
        )
    return builder.finish()


def _spec_from_curated(reference: str, *, source: str, curated: Path) -> EnvSpec:
    name = curated_name(reference)
    if name is None:
        raise AmlLocalError(
            f"{source}: environment {reference!r}: expected a curated environment (azureml:AzureML-<name>:<version>, "
            "azureml:AzureML-<name>@latest or azureml://registries/azureml/environments/<name>/...); a registered "
            "environment is resolved to its YAML first"
        )
    table = json.loads(curated.read_text())
    entry_name, entry = _find_curated(table["environments"], name)
    builder = _SpecBuilder(name=reference, source=str(source))
    if entry is None:
        builder.unknown(
            f"curated environment {reference} ({source}) is not in {curated.name}: its packages are unknown, so it "
            "runs in the project venv"
        )
        return builder.finish()
    origin = f"{curated.name}:{entry_name}"
    builder.notes.append(
        f"curated {reference}: package set of azureml-assets {entry['source']} at commit {entry['source_commit'][:12]} "
        "(one definition per name; versions are not told apart)"
    )
    builder.set_image(entry.get("image"), {})
    builder.read_conda(
        {"dependencies": [f"python={entry['python']}", *entry.get("conda", []), {"pip": entry.get("pip", [])}]},
        origin=origin,
        base_dir=None,
    )
    return builder.finish()


def _find_curated(environments: dict, name: str) -> tuple[str, dict | None]:
    for entry_name, entry in environments.items():
        names = {entry_name.lower(), *(alias.lower() for alias in entry.get("aliases", []))}
        if name.lower() in names:
            return entry_name, entry
    return name, None


def _load_base_images(path: Path) -> dict:
    if not path.exists():
        return {}
    try:
        return json.loads(path.read_text()).get("images", {})
    except (ValueError, AttributeError) as err:
        raise AmlLocalError(f"{path}: expected JSON {{'images': {{...}}}} ({err})") from None


def _dir_of(path, source) -> Path | None:
    if path:
        return Path(path).parent
    return Path(source).parent if source else None


class _SpecBuilder:
    def __init__(self, name: str, source: str):
        self.name, self.source = name, source
        self.python: str | None = None
        self.python_origin = "not given"
        self.requirements: list[PipRequirement] = []
        self.pip_options: list[str] = []
        self.image: str | None = None
        self.image_info: dict | None = None
        self.run_in_project = False
        self.skipped: list[str] = []
        self.notes: list[str] = []
        self.warnings: list[str] = []

    def unknown(self, warning: str) -> None:
        self.run_in_project = True
        self.warnings.append(warning)

    def set_image(self, image: str | None, images: dict) -> None:
        if not image:
            return
        self.image = image
        repository, tag = _split_image(image)
        self.image_info = images.get(repository)
        if self.image_info is not None and tag and tag not in self.image_info.get("tags", [tag]):
            self.notes.append(f"image {image}: tag {tag} is not among the tags base-images.json lists")

    def add_image_packages(self) -> None:
        origin = f"base-images.json:{self.image}"
        for text in self.image_info.get("packages", []):
            self.add_pip_line(text, origin=origin, base_dir=None)

    def set_python(self, spec: str, origin: str) -> None:
        self.python, self.python_origin = spec, origin

    def read_conda(self, conda, *, origin: str, base_dir: Path | None) -> None:
        if isinstance(conda, (str, os.PathLike)):
            path = Path(conda)
            if base_dir is not None and not path.is_absolute():
                path = base_dir / path
            origin, base_dir = str(path), path.parent
            conda = _read_yaml(path)
        if not isinstance(conda, dict):
            raise AmlLocalError(f"{origin}: expected a conda environment file (a mapping with dependencies:)")
        dependencies = conda.get("dependencies") or []
        if not isinstance(dependencies, list):
            raise AmlLocalError(f"{origin}: dependencies: expected a list")
        for index, entry in enumerate(dependencies):
            if isinstance(entry, dict) and set(entry) == {"pip"}:
                for line in entry["pip"] or []:
                    self.add_pip_line(str(line), origin=origin, base_dir=base_dir)
            elif isinstance(entry, str):
                self.add_conda_spec(entry, origin=origin, where=f"dependencies[{index}]")
            else:
                raise AmlLocalError(
                    f"{origin}: dependencies[{index}]: expected a conda package (e.g. numpy=1.26) or a pip: list, "
                    f"got {entry!r}"
                )

    def add_conda_spec(self, text: str, *, origin: str, where: str) -> None:
        name, version = _parse_conda_spec(text, origin=origin, where=where)
        key = name.lower()
        if key == "python":
            if version:
                self.set_python(version, f"{origin} ({text})")
            return
        if key == "pip":
            if version:
                self.notes.append(f"{origin}: conda {text}: the venv gets the pip uv seeds, not this version")
            return
        if key in CONDA_ONLY:
            self.skipped.append(f"{text} ({origin}): a conda-only system package, nothing to install from PyPI")
            return
        pypi = CONDA_TO_PYPI.get(key, name)
        if pypi != name:
            self.notes.append(f"{origin}: conda package {name} is {pypi} on PyPI")
        self.add_requirement(Requirement(f"{pypi}{version}"), origin=origin)

    def add_pip_line(self, line: str, *, origin: str, base_dir: Path | None) -> None:
        line = _strip_comment(line)
        if not line:
            return
        if line.startswith("-"):
            self._add_pip_option(line, origin=origin, base_dir=base_dir)
            return
        if line.startswith(_RAW_PREFIXES) or line.startswith((".", "/")):
            self._add_raw(_absolute_path_line(line, base_dir), origin)
            return
        # azureml-assets writes "name=={{latest-pypi-version}}", filled in with the newest release at publish time.
        line = re.sub(r"\s*==\s*\{\{\s*latest-pypi-version\s*\}\}", "", line)
        try:
            requirement = Requirement(line)
        except InvalidRequirement as err:
            raise AmlLocalError(f"{origin}: pip requirement {line!r}: {err}") from None
        if requirement.url:
            self._add_raw(line, origin)
            return
        self.add_requirement(requirement, origin=origin)

    def _add_pip_option(self, line: str, *, origin: str, base_dir: Path | None) -> None:
        option, _, value = line.partition(" ") if " " in line else line.partition("=")
        value = value.strip()
        if option in ("-r", "--requirement"):
            path = Path(value) if base_dir is None else base_dir / value
            for included in _read_text(path, origin).splitlines():
                self.add_pip_line(included, origin=str(path), base_dir=path.parent)
        elif option in ("-e", "--editable"):
            self._add_raw(f"-e {_absolute_path_line(value, base_dir)}", origin)
        elif option in _PIP_INDEX_OPTIONS or option == "--pre":
            self.pip_options.append(f"{option} {value}".strip())
        else:
            self.notes.append(f"{origin}: pip option {line!r} is not used locally")

    def _add_raw(self, line: str, origin: str) -> None:
        self.requirements.append(PipRequirement(text=line, origin=origin, parsed=None))

    def add_requirement(self, requirement: Requirement, *, origin: str) -> None:
        name = canonicalize_name(requirement.name)
        if name in WORKSPACE_ONLY:
            kept = WORKSPACE_ONLY[name]
            self.skipped.append(
                f"{requirement} ({origin}): works only inside an Azure ML workspace; skipped locally"
                + (f", keeping what it brings: {', '.join(kept)}" if kept else "")
            )
            for text in kept:
                if not any(r.name == canonicalize_name(text) for r in self.requirements):
                    self.requirements.append(PipRequirement(text=text, origin=origin, parsed=Requirement(text)))
            return
        # A name brought in for a skipped package gives way to the environment's own requirement of it.
        self.requirements = [r for r in self.requirements if not (r.name == name and r.text == name)]
        self.requirements.append(PipRequirement(text=_normalized(requirement), origin=origin, parsed=requirement))

    def finish(self) -> EnvSpec:
        if self.python is None and self.image_info and self.image_info.get("python"):
            self.set_python(_conda_version(str(self.image_info["python"])), f"base-images.json:{self.image}")
        if self.python is not None:
            try:
                SpecifierSet(self.python)
            except InvalidSpecifier:
                raise AmlLocalError(f"{self.python_origin}: python {self.python!r}: not a version") from None
        return EnvSpec(
            name=self.name,
            source=self.source,
            python=self.python,
            python_origin=self.python_origin,
            requirements=tuple(self.requirements),
            pip_options=tuple(dict.fromkeys(self.pip_options)),
            image=self.image,
            image_info=self.image_info,
            run_in_project=self.run_in_project,
            skipped=tuple(self.skipped),
            notes=tuple(self.notes),
            warnings=tuple(self.warnings),
        )


def _read_build_context(env, build, builder: _SpecBuilder, images: dict) -> None:
    context = Path(build.path)
    if not context.is_absolute():
        context = Path(getattr(env, "base_path", None) or Path(builder.source).parent) / context
    dockerfile = context / (getattr(build, "dockerfile_path", None) or "Dockerfile")
    if str(build.path).startswith(("http://", "https://", "azureml:")) or not dockerfile.is_file():
        builder.unknown(
            f"environment {builder.name} ({builder.source}): build context {build.path} has no local Dockerfile "
            f"({dockerfile}); it runs in the project venv"
        )
        return
    parser = DockerfileParser(fileobj=io.BytesIO(dockerfile.read_bytes()))
    origin = str(dockerfile)
    commands: list[list[str]] = []
    for instruction in parser.structure:
        if instruction["instruction"] == "FROM":
            commands = []  # only the final stage ends up in the image
        elif instruction["instruction"] == "RUN":
            commands.extend(_shell_commands(instruction["value"]))
    builder.set_image(parser.baseimage, images)
    installs_found = False
    for argv in commands:
        installs_found |= _apply_install_command(argv, builder, context=context, origin=origin)
    if builder.image_info is not None:
        builder.add_image_packages()
    elif not installs_found:
        builder.unknown(
            f"environment {builder.name} ({builder.source}): {dockerfile} installs no Python packages that we "
            f"read and its image {parser.baseimage} is not in base-images.json; it runs in the project venv"
        )


def _shell_commands(value: str) -> list[list[str]]:
    """A RUN value as simple commands (argv lists): JSON form, or shell form split at && ; || |."""
    if value.lstrip().startswith("["):
        with contextlib.suppress(ValueError):
            argv = json.loads(value)
            if isinstance(argv, list):
                return [[str(a) for a in argv]]
    lexer = shlex.shlex(value, posix=True, punctuation_chars=";&|")
    lexer.whitespace_split = True
    commands, current = [], []
    try:
        for token in lexer:
            if token and set(token) <= set(";&|"):
                if current:
                    commands.append(current)
                current = []
            else:
                current.append(token)
    except ValueError:  # an unbalanced quote: nothing we can read
        return []
    if current:
        commands.append(current)
    return commands


def _apply_install_command(argv: list[str], builder: _SpecBuilder, *, context: Path, origin: str) -> bool:
    words = [w for w in argv if w != "sudo"]
    # `python -m pip install`, `pip3 install`, `conda run -p X pip install`: find "pip ... install".
    for index, word in enumerate(words):
        base = os.path.basename(word)
        if re.fullmatch(r"pip3?(\.\d+)?", base) and index + 1 < len(words) and words[index + 1] == "install":
            _apply_pip_install(words[index + 2 :], builder, context=context, origin=origin)
            return True
        if base in ("conda", "mamba", "micromamba") and index + 1 < len(words):
            rest = words[index + 1 :]
            if rest[:2] in (["env", "create"], ["env", "update"]) or rest[:1] == ["create"]:
                files = [rest[i + 1] for i, w in enumerate(rest[:-1]) if w in ("-f", "--file")]
                for name in files:
                    path = _in_context(name, context)
                    if path is None:
                        builder.notes.append(f"{origin}: {name} is not in the build context; not read")
                    else:
                        builder.read_conda(str(path), origin=str(path), base_dir=None)
                return bool(files)
            if rest[:1] == ["install"]:
                specs, skip_next = [], False
                for w in rest[1:]:
                    if skip_next:
                        skip_next = False
                    elif w in ("-c", "--channel", "-n", "--name", "-p", "--prefix"):
                        skip_next = True
                    elif not w.startswith("-"):
                        specs.append(w)
                for spec in specs:
                    builder.add_conda_spec(spec, origin=origin, where="conda install")
                return bool(specs)
    return False


def _apply_pip_install(args: list[str], builder: _SpecBuilder, *, context: Path, origin: str) -> None:
    index = 0
    while index < len(args):
        word = args[index]
        if word.startswith("-"):
            option, _, inline = word.partition("=")
            value = inline or (args[index + 1] if option in _PIP_OPTIONS_WITH_VALUE and index + 1 < len(args) else "")
            index += 1 if inline or option not in _PIP_OPTIONS_WITH_VALUE else 2
            if option in ("-r", "--requirement"):
                path = _in_context(value, context)
                if path is None:
                    builder.notes.append(f"{origin}: {value} is not in the build context; not read")
                else:
                    builder.add_pip_line(f"-r {path.name}", origin=str(path), base_dir=path.parent)
            elif option in _PIP_INDEX_OPTIONS:
                builder.pip_options.append(f"{option} {value}")
            continue
        try:
            builder.add_pip_line(word, origin=origin, base_dir=context)
        except AmlLocalError:  # e.g. "$PACKAGES" from a build argument we do not know
            builder.notes.append(f"{origin}: pip install argument {word!r} is not a requirement we can read; not used")
        index += 1


def _in_context(name: str, context: Path) -> Path | None:
    for candidate in (context / name.lstrip("/"), context / Path(name).name):
        if candidate.is_file():
            return candidate
    return None


def _split_image(image: str) -> tuple[str, str | None]:
    image = image.split("@", 1)[0]
    last = image.rsplit("/", 1)[-1]
    if ":" in last:
        repository, tag = image.rsplit(":", 1)
        return repository, tag
    return image, None


def _parse_conda_spec(text: str, *, origin: str, where: str) -> tuple[str, str]:
    """A conda match spec -> (name, PEP 440 specifier text, possibly empty)."""
    spec = text.strip()
    if "::" in spec:
        spec = spec.split("::", 1)[1]  # channel::name
    match = re.match(r"^([A-Za-z0-9_.\-]+)\s*(.*)$", spec)
    if not match or "[" in spec or "|" in spec:
        raise AmlLocalError(
            f"{origin}: {where}: conda package {text!r}: expected name, name=version, name==version or a range "
            "(e.g. numpy=1.26, numpy>=1.26,<2)"
        )
    name, rest = match[1], match[2].strip()
    if not rest:
        return name, ""
    if rest.startswith("=") and not rest.startswith("=="):
        version = rest[1:].split("=", 1)[0].strip()  # name=version=build
    else:
        version = rest.split()[0]  # "name version build" or "name>=1,<2"
    try:
        return name, _conda_version(version)
    except InvalidSpecifier:
        raise AmlLocalError(f"{origin}: {where}: conda package {text!r}: version {version!r} is not one") from None


def _conda_version(version: str) -> str:
    parts = []
    for part in version.split(","):
        part = part.strip()
        if part.startswith(_CONDA_OPERATORS):
            parts.append(part)
        elif part.endswith("*"):
            parts.append(f"=={part}" if part.endswith(".*") else f"=={part[:-1].rstrip('.')}.*")
        else:
            parts.append(f"=={part}.*")  # conda's "=1.26" and bare "1.26" are fuzzy
    result = ",".join(parts)
    SpecifierSet(result)  # raises InvalidSpecifier
    return result


def _normalized(requirement: Requirement) -> str:
    extras = f"[{','.join(sorted(requirement.extras))}]" if requirement.extras else ""
    marker = f"; {requirement.marker}" if requirement.marker else ""
    return f"{canonicalize_name(requirement.name)}{extras}{requirement.specifier}{marker}"


def _strip_comment(line: str) -> str:
    line = line.strip()
    if line.startswith("#"):
        return ""
    return re.split(r"\s+#", line, maxsplit=1)[0].strip()


def _absolute_path_line(line: str, base_dir: Path | None) -> str:
    if base_dir is not None and line.startswith("."):
        return str((base_dir / line).resolve())
    return line


def _read_yaml(path: Path):
    try:
        return yaml.safe_load(_read_text(path, str(path)))
    except yaml.YAMLError as err:
        raise AmlLocalError(f"{path}: not valid YAML ({str(err).splitlines()[0]})") from None


def _read_text(path: Path, origin: str) -> str:
    try:
        return path.read_text()
    except OSError as err:
        raise AmlLocalError(f"{origin}: cannot read {path} ({err.strerror})") from None


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
