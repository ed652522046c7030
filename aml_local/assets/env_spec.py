"""An environment's requirements as data: `EnvSpec` (what the venv is built from, and its hash: the cache key), the
requirements it is made of, and `SpecBuilder`, which reads conda files and pip lines into one.

- conda match specs (https://docs.conda.io/projects/conda/en/latest/user-guide/concepts/pkg-search.html and the
  canonical form in https://conda.github.io/rattler/py-rattler/match_spec/): `numpy=1.26` and `numpy 1.26` are
  fuzzy (`==1.26.*`), `numpy==1.26` is exact, ranges and `~=` are kept, a build string is dropped; `|` (or) is
  refused. Conda names that differ on PyPI are mapped by CONDA_TO_PYPI, conda-only system packages
  (CONDA_ONLY) are skipped with a note; any other conda name is taken as the PyPI name (our choice: conda-forge
  names Python packages as PyPI does, with the exceptions listed).
- Packages that only work inside an Azure workspace (WORKSPACE_ONLY) are skipped locally with a note, and what
  they bring that works here (azureml-mlflow's MLflow client, mlflow-skinny) is kept, so `import mlflow` behaves
  as it does on Azure.
- GPU-only packages, one rule (`gpu_rule`), since this machine has no GPU: a framework's GPU build becomes the CPU
  build of the same version (an extra that only adds CUDA libraries is dropped: `tensorflow[and-cuda]==2.16.2` ->
  `tensorflow==2.16.2`; a GPU twin package is renamed: `tensorflow-gpu`, `onnxruntime-gpu`, `faiss-gpu`,
  `paddlepaddle-gpu`); a package that is only CUDA or a GPU kernel library (nvidia-*, cuda-*, cupy-cuda*,
  tensorrt*, horovod, nccl*, flash-attn, apex) is left out. Each gives a one-line note, which `job show` shows.
- `exclude_newer`: the date the environment resolves as of (uv's `--exclude-newer`), so a requirement without an
  exact pin gets what was current when the environment's pins were, not today's release (see env_build.py).

Errors are `AmlLocalError`, one line naming the file and the entry.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import hashlib
import json
import os
import re
import shutil
from pathlib import Path

import yaml
from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.utils import canonicalize_name

from aml_local import AmlLocalError

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

# GPU-only extras (the CUDA libraries a framework's wheel pulls in) and GPU twins with a CPU build of the same
# version on PyPI. Anything else GPU-only is left out (GPU_ONLY_PATTERN).
GPU_EXTRAS = frozenset({"and-cuda", "cuda", "gpu", "cuda11", "cuda12", "cuda11x", "cuda12x"})
GPU_TWINS = {
    "tensorflow-gpu": "tensorflow",
    "onnxruntime-gpu": "onnxruntime",
    "faiss-gpu": "faiss-cpu",
    "paddlepaddle-gpu": "paddlepaddle",
}
GPU_ONLY_PATTERN = re.compile(r"^(nvidia-.*|cuda-.*|cupy-cuda.*|tensorrt.*|horovod|nccl.*|flash-attn|apex)$")
# Images for another runtime than Python: what runs them, and how to install it here (Debian and Ubuntu packages).
RUNTIMES = {
    "R": ("Rscript", "apt-get install r-base-core"),
    "Java": ("java", "apt-get install default-jre-headless"),
    "Julia": ("julia", "https://julialang.org/downloads/ , so that julia is on PATH"),
}
_RUNTIME_IMAGES = (
    (re.compile(r"(^|/)(rocker/.*|r-base|r-ver|rstudio|tidyverse|verse|geospatial|shiny|r-apt|mro-base)$"), "R"),
    (re.compile(r"(^|/)(openjdk|eclipse-temurin|amazoncorretto|ibmjava|ibm-semeru-runtimes|.*-jdk|.*-jre)$"), "Java"),
    (re.compile(r"(^|/)julia$"), "Julia"),
)
# The setting that overrides an environment's resolution date: a date (YYYY-MM-DD or RFC 3339), or "none" for
# today's releases.
EXCLUDE_NEWER_VARIABLE = "AML_LOCAL_EXCLUDE_NEWER"

LATEST_TEMPLATE = re.compile(r"\s*==\s*\{\{\s*latest-pypi-version\s*\}\}")
_CONDA_OPERATORS = ("==", ">=", "<=", "!=", "~=", ">", "<")
PIP_OPTIONS_WITH_VALUE = frozenset(
    {
        "-r", "--requirement", "-c", "--constraint", "-e", "--editable", "-i", "--index-url", "--extra-index-url",
        "-f", "--find-links", "-t", "--target", "--prefix", "--root", "--platform", "--python-version",
        "--implementation", "--abi", "--src", "--upgrade-strategy", "--progress-bar", "--cache-dir", "--log",
        "--proxy", "--retries", "--timeout", "--exists-action", "--trusted-host", "--cert", "--client-cert",
        "--only-binary", "--no-binary", "--global-option", "--config-settings", "-C", "--root-user-action",
    }
)  # fmt: skip
PIP_INDEX_OPTIONS = frozenset({"-i", "--index-url", "--extra-index-url", "-f", "--find-links"})
_RAW_PREFIXES = ("git+", "hg+", "svn+", "bzr+", "http://", "https://", "file:")


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
    image_info: dict | None = None  # base_images.json's entry for the image
    bare: bool = False  # an image whose contents are unknown: its Python and pip, nothing else (as on Azure)
    runtime: str | None = None  # a non-Python runtime the image is for ("R", "Java", "Julia"): found at create
    exclude_newer: str | None = None  # resolve as of this date (RFC 3339); None: from the exact pins at build
    exclude_newer_origin: str = ""
    latest_as_of: tuple[str, ...] = ()  # names pinned to their newest release as of exclude_newer when built
    overrides: tuple[str, ...] = ()  # uv --override lines: a Dockerfile's later `pip install --upgrade`
    skipped: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()

    @property
    def hash(self) -> str:
        material = {
            "python": self.python,
            "requirements": sorted(r.text for r in self.requirements),
            "pip_options": list(self.pip_options),
        }
        if self.exclude_newer or self.exclude_newer_origin:
            material["exclude_newer"] = [self.exclude_newer, self.exclude_newer_origin]
        if self.bare:
            material["bare"] = True
        if self.latest_as_of:
            material["latest_as_of"] = sorted(self.latest_as_of)
        if self.overrides:
            material["overrides"] = list(self.overrides)
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
            "bare": self.bare,
            "runtime": self.runtime,
            "exclude_newer": self.exclude_newer,
            "exclude_newer_origin": self.exclude_newer_origin,
            "latest_as_of": list(self.latest_as_of),
            "overrides": list(self.overrides),
            "skipped": list(self.skipped),
            "notes": list(self.notes),
            "warnings": list(self.warnings),
            "hash": self.hash,
        }

    def to_record(self) -> dict:
        """All of the spec as JSON data, for a job's record: `from_record` gives the same spec (and hash) back."""
        record = dataclasses.asdict(self)
        record["requirements"] = [
            {"text": r.text, "origin": r.origin, "raw": r.parsed is None} for r in self.requirements
        ]
        return record

    @classmethod
    def from_record(cls, record: dict) -> EnvSpec:
        fields = dict(record)
        fields["requirements"] = tuple(
            PipRequirement(text=r["text"], origin=r["origin"], parsed=None if r["raw"] else Requirement(r["text"]))
            for r in record["requirements"]
        )
        for name in ("pip_options", "skipped", "notes", "warnings", "latest_as_of", "overrides"):
            fields[name] = tuple(record.get(name) or ())
        return cls(**fields)


class SpecBuilder:
    def __init__(self, name: str, source: str):
        self.name, self.source = name, source
        self.python: str | None = None
        self.python_origin = "not given"
        self.requirements: list[PipRequirement] = []
        self.pip_options: list[str] = []
        self.image: str | None = None
        self.image_info: dict | None = None
        self.image_python: str | None = None  # the Python an image's name or tag says it runs (python:3.8, py38)
        self.bare = False
        self.runtime: str | None = None
        self.exclude_newer: str | None = None
        self.exclude_newer_origin = ""
        self.latest_as_of: list[str] = []
        self.overrides: list[str] = []
        self.skipped: list[str] = []
        self.notes: list[str] = []
        self.warnings: list[str] = []

    def unknown(self, note: str) -> None:
        """An image whose contents are unknown: as on Azure, its Python and pip and nothing else."""
        self.bare = True
        self.notes.append(note)

    def add_overrides(self, lines, *, origin: str) -> None:
        """Requirements that replace any other's pin on the same package (uv's --override), as a Dockerfile's later
        `pip install --upgrade` installs over what earlier packages pin; through the same rules as requirements
        (GPU-only and workspace-only packages left out)."""
        for line in lines:
            try:
                requirement = self.gpu_rule(Requirement(LATEST_TEMPLATE.sub("", str(line))), origin)
            except InvalidRequirement as err:
                raise AmlLocalError(f"{origin}: override {line!r}: {err}") from None
            if requirement is not None and canonicalize_name(requirement.name) not in WORKSPACE_ONLY:
                self.overrides.append(_normalized(requirement))

    def set_exclude_newer(self, date: str | None, origin: str) -> None:
        """Resolve as of `date` (YYYY-MM-DD or RFC 3339; the end of that day for a bare date)."""
        if date:
            self.exclude_newer, self.exclude_newer_origin = normalized_date(date, origin), origin

    def set_image(self, image: str | None, images: dict) -> None:
        if not image:
            return
        self.image = image
        repository, tag = _split_image(image)
        self.image_info = images.get(repository)
        self.image_python = _python_of_image(repository, tag)
        self.runtime = self.runtime or _runtime_of_image(repository)
        if self.image_info is not None and tag and tag not in self.image_info.get("tags", [tag]):
            self.notes.append(f"image {image}: tag {tag} is not among the tags base_images.json lists")

    def add_image_packages(self) -> None:
        origin = f"base_images.json:{self.image}"
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
        # azureml-assets writes "name=={{latest-pypi-version}}", filled in with the newest release at publish time:
        # pinned to the newest release as of the environment's date when it is built (env_build._pin_latest).
        if LATEST_TEMPLATE.search(line):
            line = LATEST_TEMPLATE.sub("", line)
            with contextlib.suppress(InvalidRequirement):
                self.latest_as_of.append(canonicalize_name(Requirement(line).name))
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
        elif option in PIP_INDEX_OPTIONS or option == "--pre":
            self.pip_options.append(f"{option} {value}".strip())
        else:
            self.notes.append(f"{origin}: pip option {line!r} is not used locally")

    def _add_raw(self, line: str, origin: str) -> None:
        self.requirements.append(PipRequirement(text=line, origin=origin, parsed=None))

    def add_requirement(self, requirement: Requirement, *, origin: str) -> None:
        requirement = self.gpu_rule(requirement, origin)
        if requirement is None:
            return
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

    def _check_runtime(self) -> None:
        """A non-Python image runs when its runtime is on this machine; else it is refused now, at create, rather
        than dying later on `command not found`."""
        executable, install = RUNTIMES[self.runtime]
        found = shutil.which(executable)
        if found is None:
            raise AmlLocalError(
                f"{self.source}: environment {self.name}: image {self.image or self.name} runs {self.runtime}, and "
                f"this machine has no {executable} on PATH; install it ({install}) or run this job on Azure"
            )
        self.notes.append(f"{self.runtime} image: its runtime is this machine's {found}, with no packages of the image")
        self.bare = True

    def gpu_rule(self, requirement: Requirement, origin: str) -> Requirement | None:
        """The CPU build of a GPU framework requirement, None for a GPU-only package; a note either way."""
        name = canonicalize_name(requirement.name)
        written = str(requirement)
        if GPU_ONLY_PATTERN.match(name):
            self.skipped.append(f"{written} ({origin}): GPU-only, and this machine has no GPU")
            return None
        changed = Requirement(written)
        if name in GPU_TWINS:
            changed.name = GPU_TWINS[name]
        gpu_extras = {e for e in changed.extras if e.lower() in GPU_EXTRAS}
        changed.extras -= gpu_extras
        if changed.name == requirement.name and not gpu_extras:
            return requirement
        self.notes.append(f"{origin}: {written} -> {changed}: the CPU build of the same version (no GPU here)")
        return changed

    def finish(self) -> EnvSpec:
        override = os.environ.get(EXCLUDE_NEWER_VARIABLE, "").strip()
        if override.lower() == "none":
            self.exclude_newer, self.exclude_newer_origin = None, f"{EXCLUDE_NEWER_VARIABLE}=none: today's releases"
        elif override:
            self.set_exclude_newer(override, f"{EXCLUDE_NEWER_VARIABLE}={override}")
        if self.python is None and self.image_info and self.image_info.get("python"):
            self.set_python(_conda_version(str(self.image_info["python"])), f"base_images.json:{self.image}")
        if self.python is None and self.image_python:
            self.set_python(f"=={self.image_python}.*", f"image {self.image}")
        if self.runtime:
            self._check_runtime()
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
            bare=self.bare,
            runtime=self.runtime,
            exclude_newer=self.exclude_newer,
            exclude_newer_origin=self.exclude_newer_origin,
            latest_as_of=tuple(
                n for n in dict.fromkeys(self.latest_as_of) if any(r.name == n for r in self.requirements)
            ),
            overrides=tuple(dict.fromkeys(self.overrides)),
            skipped=tuple(self.skipped),
            notes=tuple(self.notes),
            warnings=tuple(self.warnings),
        )


def normalized_date(text: str, origin: str) -> str:
    """A date as uv's --exclude-newer takes it (RFC 3339, UTC); a bare YYYY-MM-DD is the end of that day."""
    text = str(text).strip()
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
            day = datetime.date.fromisoformat(text)
            return f"{day.isoformat()}T23:59:59Z"
        moment = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise AmlLocalError(f"{origin}: {text!r}: expected a date, YYYY-MM-DD or RFC 3339") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _python_of_image(repository: str, tag: str | None) -> str | None:
    """major.minor of the Python an image is for, when its name or tag says so: `python:3.11.6`, `python:3.8-slim`,
    `...-py38-...`, `minimal-py312-inference`; else None."""
    base = repository.rsplit("/", 1)[-1]
    if base in ("python", "pypy") and tag:
        match = re.match(r"^(\d)\.(\d+)", tag)
        if match:
            return f"{match[1]}.{match[2]}"
    match = re.search(r"(?:^|[-_.])py(?:thon)?-?(\d)\.?(\d{1,2})(?=$|[-_.])", f"{base}:{tag or ''}".replace(":", "-"))
    return f"{match[1]}.{match[2]}" if match else None


def _runtime_of_image(repository: str) -> str | None:
    for pattern, runtime in _RUNTIME_IMAGES:
        if pattern.search(repository.lower()):
            return runtime
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
