"""Write aml_local/assets/curated_environments.json, the catalog of the azureml registry's curated environments,
from a snapshot of Azure/azureml-assets (each `assets/**/environments/<name>/`: asset.yaml, spec.yaml,
environment.yaml, context/Dockerfile and usually context/conda_dependencies.yaml).

For each environment: its registry name (the key) and workspace alias (AzureML-<name>), spec.yaml's description and
tags, the python version (the conda file's `python=`, else the Dockerfile's `conda create ... python=X`, else the
image's, from its name), the image (the final stage's FROM, template tags like {{latest-image-tag}} stripped), the
conda packages and pip requirements the job's Python environment gets, whether it is a GPU environment, its
runtime when that is not Python, and the date it resolves as of (the snapshot's date).

What the job's environment gets, read as a build would apply it, in order: the conda file (where the Dockerfile runs
`conda env create -f` with it, else first: azureml-assets keeps it beside a Dockerfile that may inline the same
list), the Dockerfile's `conda create`/`conda install` specs, and its `pip install` lines (requirements files in the
build context read), each later install of a package replacing the earlier one as pip does (`pip install --upgrade
'distributed>=2026.1.0'` after `distributed~=2021.10.0`), `pip uninstall` removing it. Only installs into the job's
Python count: the environment the Dockerfile creates (`conda create -p $PREFIX`, then `conda run -p $PREFIX pip`,
or a plain `pip` once $PREFIX/bin is first on PATH), else the image's own (`ptca` in an ACPT image, the base one
otherwise); installs into another (`/opt/miniconda/bin/pip`, `conda run -n base`, `pip --target`) are counted and
left out. `name=={{latest-pypi-version}}` ("the newest release when the image was built") is kept as it is written:
the engine pins it to the newest release as of the catalog's date (env_spec.py).
A per-command `--index-url` becomes an `--extra-index-url` (one requirements file cannot scope an index to some
packages). Other RUN commands (apt-get, wget, make, ...) are summarised as counts.

Unless --no-resolve, every environment is then resolved with uv as a dry run (`uv pip compile` of the EnvSpec the
engine builds from the entry, `--python-version` of the interpreter the engine would choose on this machine,
`--python-platform linux`, `--exclude-newer` the snapshot's date), two at a time, and the outcome is recorded per
environment (resolved with a package count, or failed with uv's reason in one line). With --no-resolve, a recorded
resolution is kept where the entry's EnvSpec is unchanged (same hash), else "not checked".

Usage: python tools/curated_catalog.py --assets ../shared/azureml-assets [--output FILE] [--no-resolve]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import io
import json
import os
import posixpath
import re
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from dockerfile_parse import DockerfileParser
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from aml_local import AmlLocalError  # noqa: E402
from aml_local.assets import curated, env_build, environment  # noqa: E402
from aml_local.assets.env_sources import shell_commands  # noqa: E402  (a Dockerfile RUN read as the engine reads it)
from aml_local.assets.env_spec import CONDA_TO_PYPI, EXCLUDE_NEWER_VARIABLE, PIP_OPTIONS_WITH_VALUE  # noqa: E402

DEFAULT_OUTPUT = REPO_ROOT / "aml_local" / "assets" / "curated_environments.json"
REPOSITORY = "https://github.com/Azure/azureml-assets"
RESOLVE_WORKERS = 2
RESOLVE_TIMEOUT_S = 1800
REASON_CHARS = 600
# uv's words when an index, a URL or a git repository could not be fetched (not the environment's fault).
NETWORK_FAILURE = re.compile(r"dns error|error sending request|Request failed after \d+ retries|Git operation failed")
TEMPLATE_PIN = re.compile(r"\s*(?:==|~=|>=)\s*\{\{\s*latest-pypi-version(?P<pre>:pre)?\s*\}\}")
LATEST_PIN = "=={{latest-pypi-version}}"
TEMPLATE_TAG = re.compile(r":\{\{.*\}\}$")

# The runtime of an environment that is not a Python one, with why (the snapshot's files, then Azure's docs).
RUNTIMES = {
    "designer-r": (
        "R",
        "the designer's R environment: spec.yaml describes it as 'AzureML Designer R image', and the designer's "
        "Execute R Script component runs its R code in it (CRAN R, "
        "https://learn.microsoft.com/azure/machine-learning/component-reference/execute-r-script); its definition "
        "here installs python 3.12.8 and azureml-designer-classic-modules (which drives the component) and no R "
        "itself, so R must come from the machine",
    ),
}

# Retired curated names that Azure's examples and docs still use, each mapped to a successor in the catalog.
# basis "documented": Azure's own change or notice names that successor; "our reading": the chain of documented
# replacements ends in an environment the registry no longer has, and the successor is our choice (the note says why).
RETIRED = {
    "AzureML-tensorflow-2.12-cuda11": {
        "successor": "tensorflow-2.16-cuda11",
        "basis": "documented",
        "note": (
            "azureml-examples moved off it when it reached end of life ('Curated environment tensorflow-2.12-cuda11 "
            "reaches EOL, so upgrade it to use later environment 2.16 version'), to the TensorFlow 2.16 CUDA 11 "
            "environment its jobs name (AzureML-tensorflow-2.16-cuda11@latest); azureml-assets removed 2.11 and "
            "2.12. Still used as AzureML-tensorflow-2.12-cuda11@latest by the interactive-jobs how-to"
        ),
        "sources": [
            "https://github.com/Azure/azureml-examples/pull/3268",
            "https://github.com/Azure/azureml-assets/pull/2992",
            "https://github.com/Azure/azureml-examples/blob/ab9a9be1d060946abc8d55d94f337e5d23564c83/cli/jobs/"
            "single-step/tensorflow/mnist/job.yml",
            "https://learn.microsoft.com/azure/machine-learning/how-to-interactive-jobs",
        ],
    },
    "AzureML-tensorflow-2.4-ubuntu18.04-py37-cuda11-gpu": {
        "successor": "tensorflow-2.16-cuda11",
        "basis": "our reading",
        "note": (
            "azureml-examples' Ubuntu 18.04 retirement mapped it to tensorflow-2.5-ubuntu20.04-py38-cuda11-gpu, "
            "which the registry no longer has; its TensorFlow jobs now name AzureML-tensorflow-2.16-cuda11@latest, "
            "the CUDA 11 line of the registry's TensorFlow environments, which we take"
        ),
        "sources": [
            "https://github.com/Azure/azureml-examples/pull/1806",
            "https://github.com/Azure/azureml-examples/blob/d29d2b11d95ac42177cb263ff8b5b6b080da2a08/cli/jobs/"
            "single-step/tensorflow/mnist-distributed/job.yml",
            "https://github.com/Azure/azureml-examples/blob/ab9a9be1d060946abc8d55d94f337e5d23564c83/cli/jobs/"
            "single-step/tensorflow/mnist/job.yml",
        ],
    },
    "AzureML-tensorflow-2.5-ubuntu20.04-py38-cuda11-gpu": {
        "successor": "tensorflow-2.16-cuda11",
        "basis": "our reading",
        "note": (
            "the Ubuntu 20.04 successor of tensorflow-2.4 in azureml-examples' retirement of 18.04, itself retired; "
            "as for tensorflow-2.4, the registry's TensorFlow 2.16 CUDA 11 environment"
        ),
        "sources": ["https://github.com/Azure/azureml-examples/pull/1806"],
    },
    "AzureML-lightgbm-3.2-ubuntu18.04-py37-cpu": {
        "successor": "lightgbm-3.3",
        "basis": "documented",
        "note": (
            "azureml-assets brought the LightGBM environment back as lightgbm-3.2-ubuntu18.04-py37-cpu and renamed "
            "it lightgbm-3.3 in review (LightGBM 3.3, the registry's naming convention). Still named by "
            "azureml-examples' cli/jobs/single-step/lightgbm/iris/job.yml and the curated-environments article"
        ),
        "sources": [
            "https://github.com/Azure/azureml-assets/pull/538",
            "https://github.com/Azure/azureml-examples/blob/5d823bd580bae61f80e94008081835505bf1abcd/cli/jobs/"
            "single-step/lightgbm/iris/job.yml",
            "https://github.com/MicrosoftDocs/azure-docs/blob/main/articles/machine-learning/"
            "resource-curated-environments.md",
        ],
    },
    "AzureML-sklearn-0.24-ubuntu18.04-py37-cpu": {
        "successor": "sklearn-1.0",
        "basis": "documented",
        "note": (
            "azureml-examples' scikit-learn iris job went from azureml:AzureML-sklearn-0.24-ubuntu18.04-py37-cpu:9 "
            "to azureml://registries/azureml/environments/sklearn-1.0/labels/latest (by way of "
            "sklearn-1.0-ubuntu20.04-py38-cpu, which azureml-examples then replaced with the registry's sklearn-1.0)"
        ),
        "sources": [
            "https://github.com/Azure/azureml-examples/blob/0ea3eff2abaeee4bd819c4a97158da992154f044/cli/jobs/"
            "single-step/scikit-learn/iris/job.yml",
            "https://github.com/Azure/azureml-examples/blob/b95de0945ad8a922933ece2aea2ec95517d5c2f8/cli/jobs/"
            "single-step/scikit-learn/iris/job.yml",
            "https://github.com/Azure/azureml-examples/pull/1806",
            "https://github.com/Azure/azureml-examples/pull/3059",
        ],
    },
    "AzureML-sklearn-0.24-ubuntu18.04-py37-cuda11-gpu": {
        "successor": "sklearn-1.0",
        "basis": "documented",
        "note": (
            "deprecated in 2021 with no Ubuntu 20.04 GPU successor; azure-ai-ml's tests moved to "
            "AzureML-sklearn-1.0-ubuntu20.04-py38-cpu, since replaced by the registry's sklearn-1.0"
        ),
        "sources": [
            "https://github.com/Azure/azure-sdk-for-python/pull/29249",
            "https://github.com/Azure/azureml-examples/pull/3059",
        ],
    },
    "AzureML-sklearn-1.0-ubuntu20.04-py38-cpu": {
        "successor": "sklearn-1.0",
        "basis": "documented",
        "note": (
            "azureml-examples: 'Deprecated environment includes azureml:AzureML-sklearn-1.0-ubuntu20.04-py38-cpu:* "
            "... New valid environment is azureml://registries/azureml/environments/sklearn-1.0/labels/latest'"
        ),
        "sources": [
            "https://github.com/Azure/azureml-examples/pull/3059",
            "https://github.com/Azure/azureml-examples/pull/3071",
        ],
    },
    "AzureML-pytorch-1.10-ubuntu18.04-py38-cuda11-gpu": {
        "successor": "acpt-pytorch-1.13-cuda11.7",
        "basis": "our reading",
        "note": (
            "azureml-examples mapped it to pytorch-1.11-ubuntu20.04-py38-cuda11-gpu, since removed from "
            "azureml-assets; Azure's curated-environments article points PyTorch work to Azure Container for "
            "PyTorch (ACPT), and acpt-pytorch-1.13-cuda11.7 is the registry's last PyTorch 1.x one, which we take"
        ),
        "sources": [
            "https://github.com/Azure/azureml-examples/pull/1806",
            "https://github.com/Azure/azureml-assets/pull/740",
            "https://github.com/MicrosoftDocs/azure-docs/blob/main/articles/machine-learning/"
            "resource-curated-environments.md",
        ],
    },
    "AzureML-pytorch-1.9-ubuntu18.04-py37-cuda11-gpu": {
        "successor": "acpt-pytorch-1.13-cuda11.7",
        "basis": "our reading",
        "note": "as AzureML-pytorch-1.10-ubuntu18.04-py38-cuda11-gpu (azureml-examples mapped both to pytorch-1.11)",
        "sources": [
            "https://github.com/Azure/azureml-examples/pull/1806",
            "https://github.com/MicrosoftDocs/azure-docs/blob/main/articles/machine-learning/"
            "resource-curated-environments.md",
        ],
    },
    "AzureML-pytorch-1.8-ubuntu18.04-py37-cuda11-gpu": {
        "successor": "acpt-pytorch-1.13-cuda11.7",
        "basis": "our reading",
        "note": "listed beside pytorch-1.10 by the curated-environments article; as AzureML-pytorch-1.10-...",
        "sources": [
            "https://github.com/MicrosoftDocs/azure-docs/blob/main/articles/machine-learning/"
            "resource-curated-environments.md"
        ],
    },
    "AzureML-pytorch-1.7-ubuntu18.04-py37-cuda11-gpu": {
        "successor": "acpt-pytorch-1.13-cuda11.7",
        "basis": "our reading",
        "note": "listed beside pytorch-1.10 by the curated-environments article; as AzureML-pytorch-1.10-...",
        "sources": [
            "https://github.com/MicrosoftDocs/azure-docs/blob/main/articles/machine-learning/"
            "resource-curated-environments.md"
        ],
    },
    "AzureML-pytorch-1.11-ubuntu20.04-py38-cuda11-gpu": {
        "successor": "acpt-pytorch-1.13-cuda11.7",
        "basis": "our reading",
        "note": "the Ubuntu 20.04 successor of pytorch-1.9/1.10, removed from azureml-assets; as those",
        "sources": [
            "https://github.com/Azure/azureml-examples/pull/1806",
            "https://github.com/Azure/azureml-assets/pull/740",
        ],
    },
    "AzureML-minimal-ubuntu18.04-py37-cpu-inference": {
        "successor": "minimal-py311-inference",
        "basis": "our reading",
        "note": (
            "azureml-examples mapped it to minimal-ubuntu20.04-py38-cpu-inference, which azureml-assets removed with "
            "the other Ubuntu 20.04 inference environments; minimal-py311-inference is the registry's CPU minimal "
            "inference environment now, which we take"
        ),
        "sources": [
            "https://github.com/Azure/azureml-examples/pull/1806",
            "https://github.com/Azure/azureml-assets/pull/3795",
            "https://learn.microsoft.com/azure/machine-learning/concept-prebuilt-docker-images-inference",
        ],
    },
    "AzureML-minimal-ubuntu20.04-py38-cpu-inference": {
        "successor": "minimal-py311-inference",
        "basis": "our reading",
        "note": "deprecated in azureml-examples and removed from azureml-assets with the Ubuntu 20.04 inference "
        "environments; the registry's CPU minimal inference environment now is minimal-py311-inference",
        "sources": [
            "https://github.com/Azure/azureml-examples/pull/3332",
            "https://github.com/Azure/azureml-assets/pull/3795",
        ],
    },
}

ABOUT = [
    "The azureml registry's curated environments (azureml://registries/azureml/environments/<name>, in a workspace",
    "azureml:AzureML-<name>), written by tools/curated_catalog.py from a snapshot of Azure/azureml-assets: do not edit",
    "by hand; run `python tools/curated_catalog.py --assets <snapshot>` (--no-resolve to skip the uv check).",
    "Per environment: python (the conda file's python=, else the Dockerfile's conda create, else the image's name),",
    "image (the final stage's FROM, template tag stripped), conda and pip (what the job's Python environment gets, in",
    "build order, a later install of a package replacing the earlier: the conda file, the Dockerfile's conda create /",
    "conda install / pip install lines; name=={{latest-pypi-version}} kept: pinned to the newest release as of",
    "exclude_newer when the environment is built), pip_options (index",
    "lines), gpu, runtime (null: Python), source (the folder in azureml-assets) and source_commit.",
    "exclude_newer: every environment resolves as of the snapshot's commit date, since the snapshot is what was",
    "current then: its unpinned requirements get what PyPI had on that day, not today's releases, its",
    "{{latest-pypi-version}} ones the newest release of that day, and the exact pins it names all existed by then.",
    "resolution: `uv pip compile` of the EnvSpec the engine builds from the entry (conda names mapped, workspace-only",
    "and GPU-only packages left out as env_spec.py says), with --python-version of the interpreter the engine chose",
    "on the machine that wrote this, --python-platform linux and --exclude-newer exclude_newer: resolved (packages",
    "in the lock) or failed (uv's reason, one line): a conflict or a missing release fails a local build anywhere;",
    "a host uv could not reach (download.pytorch.org, github.com, ...) is the network of the machine that wrote this.",
    "retired: names Azure's examples and docs still use, each run as its successor, with the basis (documented: Azure",
    "names the successor; our reading: our choice at the end of a documented chain), a note and sources.",
]


# ---------------------------------------------------------------------------------------------------------------
# Reading one environment


@dataclasses.dataclass
class Item:
    kind: str  # "conda" or "pip"
    text: str
    origin: str
    bare: bool = False  # a name with no version, extras or URL
    override: bool = False  # from a Dockerfile's `pip install --upgrade`: pip takes it over earlier pins


@dataclasses.dataclass
class State:
    """What the job's Python environment ends up with, folded in build order."""

    items: dict = dataclasses.field(default_factory=dict)  # key -> Item, first-seen order
    pip_options: list = dataclasses.field(default_factory=list)
    notes: list = dataclasses.field(default_factory=list)
    replaced: list = dataclasses.field(default_factory=list)
    python: tuple | None = None  # (version, origin): the conda file's
    dockerfile_python: tuple | None = None  # the Dockerfile's conda create's

    def put(self, key, item: Item, *, upgrade: bool = True) -> None:
        """A later install of a package replaces the earlier one, as pip does, except a bare name installed without
        --upgrade: pip then keeps what is installed ("Requirement already satisfied")."""
        old = self.items.get(key)
        if old is not None and item.bare and not upgrade:
            return
        if old is not None and old.text != item.text:
            self.replaced.append(f"{old.text} -> {item.text}")
        self.items[key] = item

    def remove(self, key, why: str) -> None:
        if self.items.pop(key, None) is not None:
            self.notes.append(why)

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)


@dataclasses.dataclass
class Context:
    """The build context, and where COPY put its files in the image."""

    root: Path
    copies: list = dataclasses.field(default_factory=list)  # (image path, context path, is a folder), in order

    def find(self, name: str, cwd: str = "/", *, folder: bool = False) -> Path | None:
        image_path = posixpath.normpath(name if name.startswith("/") else posixpath.join(cwd, name))
        for dest, source, is_dir in reversed(self.copies):
            if is_dir and (image_path == dest or image_path.startswith(dest.rstrip("/") + "/")):
                candidate = source / posixpath.relpath(image_path, dest)
            elif image_path == dest:
                candidate = source
            else:
                continue
            if candidate.exists():
                return candidate
        if folder:
            return None
        # Not COPYed where it is read from (a renamed or absolute copy we missed): by its name in the context.
        for candidate in (self.root / name.lstrip("/"), self.root / Path(name).name):
            if candidate.is_file():
                return candidate
        return None

    def copy(self, value: str, workdir: str, variables: dict) -> None:
        try:
            parts = json.loads(value) if value.lstrip().startswith("[") else shlex.split(value)
        except ValueError:
            return
        if any(p.startswith("--from") for p in parts):
            return
        paths = [expand(p, variables) for p in parts if not p.startswith("--")]
        if len(paths) < 2:
            return
        *sources, dest = paths
        dest_dir = dest.endswith("/") or dest in (".", "./") or len(sources) > 1
        dest = posixpath.normpath(dest if dest.startswith("/") else posixpath.join(workdir, dest))
        for source in sources:
            local = (self.root / source).resolve()
            if not str(local).startswith(str(self.root.resolve())) or not local.exists():
                continue
            if local.is_dir():
                self.copies.append((dest, local, True))
            else:
                self.copies.append((posixpath.join(dest, local.name) if dest_dir else dest, local, False))


def conda_key(spec: str) -> tuple[str, str] | None:
    name = re.match(r"[A-Za-z0-9_.\-]+", spec.split("::", 1)[-1].strip())
    if not name:
        return None
    return ("pkg", canonicalize_name(CONDA_TO_PYPI.get(name[0].lower(), name[0])))


def add_conda_spec(state: State, spec: str, origin: str, *, python_slot: str = "python") -> None:
    spec = spec.strip()
    key = conda_key(spec)
    if key is None:
        state.note(f"{origin}: conda spec {spec!r} is not one we read; not used")
        return
    if key[1] == "python":
        version = re.sub(r"^python\s*=?=?\s*", "", spec.split("::", 1)[-1].strip()).split("=")[0].strip()
        if version:
            setattr(state, python_slot, (version, f"{origin} ({spec})"))
        return
    bare = not re.search(r"[=<>!~ ]", spec.split("::", 1)[-1])
    state.put(key, Item("conda", spec, origin, bare), upgrade=not bare)


def add_pip_line(state: State, line: str, origin: str, context: Context, cwd: str = "/") -> None:
    """One requirement line (a requirements file's or a conda file's pip: entry)."""
    line = line.strip()
    if not line or line.startswith("#"):
        return
    line = re.split(r"\s+#", line, maxsplit=1)[0].strip()
    if line.startswith("-"):
        option, _, value = line.partition(" ") if " " in line else line.partition("=")
        value = value.strip()
        if option in ("-r", "--requirement"):
            read_requirements_file(state, value, origin, context, cwd)
        elif option in ("-i", "--index-url", "--extra-index-url"):
            add_index(state, option, value, origin)
        elif option in ("-f", "--find-links"):
            add_find_links(state, value)
        else:
            state.note(f"{origin}: pip option {line!r} is not used locally")
        return
    add_requirement(state, line, origin, upgrade=True)


def add_index(state: State, option: str, value: str, origin: str) -> None:
    line = f"--extra-index-url {value}"
    if line not in state.pip_options:
        state.pip_options.append(line)
    if option != "--extra-index-url":
        state.note(
            f"{origin}: {option} {value} applies to that one install there; here it is an --extra-index-url (one "
            "requirements file cannot scope an index to some packages)"
        )


def add_find_links(state: State, value: str) -> None:
    if f"--find-links {value}" not in state.pip_options:
        state.pip_options.append(f"--find-links {value}")


def add_requirement(state: State, text: str, origin: str, *, upgrade: bool, override: bool = False) -> None:
    template = TEMPLATE_PIN.search(text)
    if template and template["pre"]:
        state.note(f"{origin}: {text}: the newest release, pre-releases included, when the image was built")
    text = TEMPLATE_PIN.sub("", text).strip()
    if text.startswith(("git+", "hg+", "svn+", "bzr+", "http://", "https://", "file:")):
        state.put(("raw", text), Item("pip", text, origin))
        return
    if "$" in text:
        state.note(f"{origin}: pip install {text!r} names a build variable we do not know; not used")
        return
    try:
        requirement = Requirement(text)
    except InvalidRequirement:
        state.note(f"{origin}: pip install argument {text!r} is not a requirement we can read; not used")
        return
    if requirement.url:
        state.put(("raw", text), Item("pip", text, origin))
        return
    bare = not requirement.specifier and not requirement.extras and requirement.marker is None
    key = ("pkg", canonicalize_name(requirement.name))
    written = str(requirement)
    if template and not template["pre"] and bare:
        # Kept as azureml-assets writes it: the engine pins it to the newest release as of the catalog's date
        # (env_spec.LATEST_TEMPLATE), as the image got the newest release the day it was built.
        written = f"{written}{LATEST_PIN}"
    state.put(key, Item("pip", written, origin, bare, override), upgrade=upgrade)


def read_requirements_file(state: State, name: str, origin: str, context: Context, cwd: str = "/") -> None:
    path = context.find(name, cwd)
    if path is None or not path.is_file():
        state.note(f"{origin}: requirements file {name} is not in the build context; not read")
        return
    where = str(path.relative_to(context.root.parent))
    for line in path.read_text().splitlines():
        add_pip_line(state, line, where, context)


def read_local_package(state: State, name: str, origin: str, context: Context, cwd: str) -> None:
    """`pip install .` / `-e .`: a package of the build context whose setup.py reads its requirements.txt gives
    those requirements; any other local tree (one the build cloned, one we cannot read) is left out."""
    folder = context.find(name, cwd, folder=True)
    if folder is None or not folder.is_dir():
        state.note(
            f"{origin}: pip install {name} ({posixpath.join(cwd, name)}): a source tree the build fetches, "
            "not in the build context; not used"
        )
        return
    setup, requirements = folder / "setup.py", folder / "requirements.txt"
    if setup.is_file() and requirements.is_file() and "requirements.txt" in setup.read_text():
        state.note(
            f"{origin}: pip install {name}: the build context's own package, whose setup.py takes its "
            "dependencies from requirements.txt: those are read, its code is not installed"
        )
        read_requirements_file(state, str(requirements.relative_to(context.root)), origin, context)
    else:
        state.note(f"{origin}: pip install {name}: a package of the build context; its dependencies are not read")


def read_conda_file(state: State, path: Path, context: Context) -> None:
    where = str(path.relative_to(context.root.parent))
    conda = yaml.safe_load(path.read_text()) or {}
    for entry in conda.get("dependencies") or []:
        if isinstance(entry, dict):
            for line in entry.get("pip") or []:
                add_pip_line(state, str(line), where, context)
        else:
            add_conda_spec(state, str(entry), where)


# --- the Dockerfile -------------------------------------------------------------------------------------------


def expand(text: str, variables: dict) -> str:
    def value(match):
        name = match["braced"] or match["plain"]
        if name in variables:
            return variables[name]
        return match["default"] if match["default"] is not None else match[0]

    pattern = r"\$\{(?P<braced>\w+)(?::-(?P<default>[^}]*))?\}|\$(?P<plain>[A-Za-z_]\w*)"
    return re.sub(pattern, value, text)


PREFIX_WORDS = {"do", "then", "else", "elif", "if", "while", "until", "!", "{", "(", "sudo", "env", "time", "nohup"}
# Shell syntax and builtins: not programs a build runs.
SHELL_WORDS = {
    "fi", "done", "esac", "case", "for", "in", "}", ")", "true", "false", "exit", "set", "export", "cd", "echo",
    "printf", "[", "[[", "test", "command", "source", ".", "return", "unset", "local", "read", "shift", "eval",
}  # fmt: skip


def strip_prefix(words: list[str]) -> list[str]:
    index = 0
    while index < len(words):
        word = words[index].lstrip("(")
        if word in PREFIX_WORDS or word == "" or re.fullmatch(r"[A-Za-z_]\w*=.*", word):
            index += 1
            continue
        break
    return [words[index].lstrip("("), *words[index + 1 :]] if index < len(words) else []


@dataclasses.dataclass
class Command:
    verb: str  # pip-install, pip-uninstall, conda-create, conda-env-create, conda-install, cd, other
    target: str  # "PATH", "prefix:/x", "env:name"
    args: list
    program: str
    line: int = 0
    cwd: str = "/"


def classify(argv: list[str]) -> Command:
    words = strip_prefix(argv)
    if not words:
        return Command("other", "PATH", [], "")
    if words[0] == "cd":
        return Command("cd", "PATH", words[1:2], "cd")
    target = "PATH"
    base = os.path.basename(words[0])
    if base in ("conda", "mamba", "micromamba") and len(words) > 1 and words[1] == "run":
        index = 2
        while index < len(words) and words[index].startswith("-"):
            option, equals, inline = words[index].partition("=")
            if option in ("-p", "--prefix", "-n", "--name"):
                value = inline if equals else (words[index + 1] if index + 1 < len(words) else "")
                target = f"prefix:{value.rstrip('/')}" if option in ("-p", "--prefix") else f"env:{value}"
                index += 1 if equals else 2
            else:
                index += 1
        words = strip_prefix(words[index:])
        if not words:
            return Command("other", target, [], "conda")
        base = os.path.basename(words[0])
    executable = words[0]
    pip_args = None
    if re.fullmatch(r"python[\d.]*", base) and words[1:3] == ["-m", "pip"]:
        pip_args = words[3:]
    elif re.fullmatch(r"pip[\d.]*", base):
        pip_args = words[1:]
    if pip_args is not None:
        if "/" in executable and target == "PATH":
            target = f"prefix:{Path(executable).parent.parent}"
        verb = pip_args[0] if pip_args else ""
        if verb in ("install", "uninstall"):
            return Command(f"pip-{verb}", target, pip_args[1:], "pip")
        return Command("other", target, pip_args, "pip")
    if base in ("conda", "mamba", "micromamba") and len(words) > 1:
        rest = words[1:]
        found = conda_target(rest) or "PATH"
        if rest[:1] == ["create"]:
            return Command("conda-create", found, rest[1:], "conda")
        if rest[:2] in (["env", "create"], ["env", "update"]):
            return Command("conda-env-create", found, rest[2:], "conda")
        if rest[:1] == ["install"]:
            return Command("conda-install", found, rest[1:], "conda")
        return Command("other", target, rest, "conda")
    return Command("other", target, words[1:], base)


def conda_target(args: list[str]) -> str | None:
    for index, word in enumerate(args):
        option, equals, inline = word.partition("=")
        if option in ("-p", "--prefix", "-n", "--name"):
            value = inline if equals else (args[index + 1] if index + 1 < len(args) else "")
            return f"prefix:{value.rstrip('/')}" if option in ("-p", "--prefix") else f"env:{value}"
    return None


def conda_specs(args: list[str]) -> tuple[list[str], list[str]]:
    """(match specs, files) of a conda create/install argument list."""
    specs, files, skip = [], [], None
    for word in args:
        if skip:
            if skip == "file":
                files.append(word)
            skip = None
        elif word in ("-c", "--channel", "-n", "--name", "-p", "--prefix"):
            skip = "value"
        elif word in ("-f", "--file"):
            skip = "file"
        elif not word.startswith("-"):
            specs.append(word)
    return specs, files


def pip_arguments(args: list[str]) -> tuple[list[str], list[tuple[str, str]], set[str]]:
    """(requirement words, (option, value) pairs, flags) of a pip install argument list."""
    words, options, flags, index = [], [], set(), 0
    while index < len(args):
        word = args[index]
        if word.startswith("-"):
            option, equals, inline = word.partition("=")
            takes_value = option in PIP_OPTIONS_WITH_VALUE
            value = inline if equals else (args[index + 1] if takes_value and index + 1 < len(args) else "")
            if takes_value:
                options.append((option, value))
            else:
                flags.add(option)
            index += 1 if equals or not takes_value else 2
            continue
        words.append(word)
        index += 1
    return words, options, flags


def final_stage(parser: DockerfileParser) -> tuple[str, list[dict], dict]:
    """(the final FROM image, its instructions, the ARG defaults declared before the first FROM)."""
    image, stage, global_args, seen_from = "", [], {}, False
    for instruction in parser.structure:
        kind, value = instruction["instruction"], instruction["value"]
        if kind == "FROM":
            seen_from = True
            image = re.split(r"\s+[Aa][Ss]\s+", value.strip())[0].strip()
            image = next((w for w in image.split() if not w.startswith("--")), image)
            stage = []
        elif not seen_from and kind == "ARG":
            name, _, default = value.strip().partition("=")
            global_args[name.strip()] = default.strip().strip('"')
        else:
            stage.append(instruction)
    return image, stage, global_args


def env_pairs(value: str) -> dict:
    text = value.strip()
    first = text.split(None, 1)
    if len(first) == 2 and "=" not in first[0]:
        return {first[0]: first[1].strip().strip('"')}
    try:
        tokens = shlex.split(text)
    except ValueError:
        return {}
    return dict(token.split("=", 1) for token in tokens if "=" in token)


def python_from_image(image: str) -> str | None:
    match = re.search(r"[-_/:]py(3)(\d{1,2})(?=[-_.:]|$)", image) or re.search(r"python:(3)\.(\d{1,2})", image)
    return f"{match[1]}.{match[2]}" if match else None


ACPT = re.compile(r"/acpt/")
BASE_PREFIXES = {"/opt/miniconda", "/opt/conda", "/usr/local", "/usr"}
UPGRADE_FLAGS = {"-U", "--upgrade", "--force-reinstall", "-I", "--ignore-installed"}


def dockerfile_steps(stage: list[dict], variables: dict, context: Context) -> tuple[list[Command], int]:
    """The final stage's RUN commands, in order, with variables expanded as they stood there, the working folder
    each ran in (WORKDIR, then `cd`), and COPY recorded in `context`."""
    steps, runs, workdir = [], 0, "/"
    for instruction in stage:
        kind, value = instruction["instruction"], instruction["value"]
        if kind == "ARG":
            name, _, default = value.strip().partition("=")
            variables.setdefault(name.strip(), expand(default.strip().strip('"'), variables))
        elif kind == "ENV":
            for key, val in env_pairs(value).items():
                variables[key] = expand(val, variables)
        elif kind == "WORKDIR":
            workdir = posixpath.normpath(posixpath.join(workdir, expand(value.strip(), variables)))
        elif kind in ("COPY", "ADD"):
            context.copy(value, workdir, variables)
        elif kind == "RUN":
            runs += 1
            cwd = workdir
            for argv in shell_commands(value):
                command = classify([expand(word, variables) for word in argv])
                if command.verb == "cd":
                    cwd = posixpath.normpath(posixpath.join(cwd, command.args[0])) if command.args else "/root"
                    continue
                command.target = expand(command.target, variables)
                command.line, command.cwd = instruction["startline"] + 1, cwd
                steps.append(command)
    return steps, runs


def read_dockerfile(state: State, dockerfile: Path, context: Context, conda_file: Path | None, summary: dict) -> str:
    """Fold the Dockerfile's installs into `state`; returns the final stage's image (tag template stripped)."""
    where = str(dockerfile.relative_to(context.root.parent))
    parser = DockerfileParser(fileobj=io.BytesIO(dockerfile.read_bytes()))
    image, stage, variables = final_stage(parser)
    image = expand(image, variables)
    variables = dict(variables)
    steps, summary["run_instructions"] = dockerfile_steps(stage, variables, context)
    created = next((c.target for c in steps if c.verb in ("conda-create", "conda-env-create")), None)
    if created:
        job_targets, summary["job_environment"] = {created}, created.split(":", 1)[1]
    elif ACPT.search(image):
        job_targets = {"PATH", "env:ptca", "prefix:/opt/conda/envs/ptca"}
        summary["job_environment"] = "ptca, the ACPT image's"
    else:
        job_targets = {"PATH", "env:base", *(f"prefix:{p}" for p in BASE_PREFIXES)}
        summary["job_environment"] = "the image's own Python"
    if conda_file is not None and not any(c.verb == "conda-env-create" and conda_specs(c.args)[1] for c in steps):
        read_conda_file(state, conda_file, context)  # beside the Dockerfile, not run by it: first
    created_yet, other_programs, elsewhere, reads = not created, {}, [], 0
    for command in steps:
        origin = f"{where}:{command.line}"
        if command.verb in ("conda-create", "conda-env-create") and command.target == created:
            created_yet = True
        if command.verb == "other":
            if re.fullmatch(r"[A-Za-z][\w.+-]*", command.program) and command.program not in SHELL_WORDS:
                other_programs[command.program] = other_programs.get(command.program, 0) + 1
            continue
        into_job = command.target in job_targets or (command.target == "PATH" and created_yet)
        elsewhere_flags = {"--target", "-t", "--prefix", "--root", "--user"} & {
            a.partition("=")[0] for a in command.args
        }
        if not into_job or (command.verb == "pip-install" and elsewhere_flags):
            to = command.target.split(":", 1)[-1] if command.target != "PATH" else "the base Python"
            to = f"a {min(elsewhere_flags)} folder" if command.verb == "pip-install" and elsewhere_flags else to
            elsewhere.append(f"{origin} ({command.verb.replace('-', ' ')} into {to})")
            continue
        reads += 1
        read_command(state, command, origin, context)
    summary["installs_read"] = reads
    summary["installs_elsewhere"] = len(elsewhere)
    summary["other_commands"] = dict(sorted(other_programs.items()))
    if elsewhere:
        shown = "; ".join(elsewhere[:4]) + (f"; and {len(elsewhere) - 4} more" if len(elsewhere) > 4 else "")
        state.note(f"{len(elsewhere)} install(s) go into another Python of the image, not the job's: {shown}")
    if created and not re.search(re.escape(created.split(":", 1)[1]) + r"/bin", variables.get("PATH", "")):
        state.note(f"the environment it creates ({created.split(':', 1)[1]}) is not first on PATH in the image")
    return TEMPLATE_TAG.sub("", image)


def read_command(state: State, command: Command, origin: str, context: Context) -> None:
    if command.verb in ("conda-create", "conda-install", "conda-env-create"):
        specs, files = conda_specs(command.args)
        for name in files:
            path = context.find(name, command.cwd)
            if path is None:
                state.note(f"{origin}: conda file {name} is not in the build context; not read")
            else:
                read_conda_file(state, path, context)
        for spec in specs:
            add_conda_spec(state, spec, origin, python_slot="dockerfile_python")
    elif command.verb == "pip-install":
        words, options, flags = pip_arguments(command.args)
        upgrade = bool(flags & UPGRADE_FLAGS)
        for option, value in options:
            if option in ("-r", "--requirement"):
                read_requirements_file(state, value, origin, context, command.cwd)
            elif option in ("-i", "--index-url", "--extra-index-url"):
                add_index(state, option, value, origin)
            elif option in ("-f", "--find-links"):
                add_find_links(state, value)
            elif option in ("-e", "--editable"):
                read_local_package(state, value, origin, context, command.cwd)
            elif option in ("-c", "--constraint"):
                state.note(f"{origin}: pip constraints file {value}: not used")
        if "--no-deps" in flags and words:
            state.note(f"{origin}: pip install --no-deps {' '.join(words)}: resolved with its dependencies here")
        for word in words:
            if word.startswith((".", "/")):
                read_local_package(state, word, origin, context, command.cwd)
            else:
                # A later `pip install --upgrade` (or `--no-deps`) installs over whatever an earlier install's
                # packages pin (pip only warns): resolved after the first install, as the image got it.
                add_requirement(state, word, origin, upgrade=upgrade, override=upgrade or "--no-deps" in flags)
    elif command.verb == "pip-uninstall":
        for word in command.args:
            if not word.startswith("-"):
                state.remove(("pkg", canonicalize_name(word)), f"{origin}: pip uninstall {word}: removed")


def read_environment(folder: Path, assets: Path, commit: str, date: str) -> tuple[str, dict]:
    asset = yaml.safe_load((folder / "asset.yaml").read_text())
    spec = yaml.safe_load((folder / asset.get("spec", "spec.yaml")).read_text()) or {}
    extra = yaml.safe_load((folder / asset.get("extra_config", "environment.yaml")).read_text()) or {}
    name = str(asset["name"])
    image_config = extra.get("image") or {}
    context = folder / (image_config.get("context") or {}).get("dir", "context")
    dockerfile = context / (image_config.get("context") or {}).get("dockerfile", "Dockerfile")
    conda_file = context / "conda_dependencies.yaml"
    state = State()
    build = Context(root=context)
    summary: dict = {"path": str(dockerfile.relative_to(assets))}
    image = read_dockerfile(state, dockerfile, build, conda_file if conda_file.is_file() else None, summary)
    python, python_origin = state.python or state.dockerfile_python or (None, None)
    if state.python and state.dockerfile_python and state.python[0] != state.dockerfile_python[0]:
        state.note(f"python {state.python[0]} ({state.python[1]}) and {state.dockerfile_python[1]} differ")
    if python is None:
        python = python_from_image(image)
        python_origin = f"the image's name ({image})" if python else "not stated by the definition or its image"
    if summary["job_environment"].startswith("ptca") or summary["job_environment"] == "the image's own Python":
        state.note("the image's own Python packages are not listed (only what this Dockerfile adds to them)")
    if state.replaced:
        state.note("a later install replaces an earlier one, as pip does: " + "; ".join(state.replaced))
    runtime = None
    if name in RUNTIMES:
        runtime, why = RUNTIMES[name]
        state.note(f"runtime {runtime}: {why}")
    tags = {str(k): str(v) for k, v in (spec.get("tags") or {}).items()}
    gpu = "GPU" in tags or bool(re.search(r"cuda|cu\d{3}|gpu", f"{name} {image}", re.IGNORECASE))
    published = image_config.get("name")
    entry = {
        "aliases": [f"{curated.WORKSPACE_PREFIX}{name}"],
        "categories": [str(c) for c in asset.get("categories") or []],
        "conda": [i.text for i in state.items.values() if i.kind == "conda"],
        "description": " ".join(str(spec.get("description") or "").split()),
        "dockerfile": summary,
        "exclude_newer": date,
        "gpu": gpu,
        "image": image,
        "notes": state.notes,
        "pip": [i.text for i in state.items.values() if i.kind == "pip"],
        "pip_options": state.pip_options,
        "overrides": [i.text for i in state.items.values() if i.kind == "pip" and i.override],
        "published_image": f"mcr.microsoft.com/{published}" if published else None,
        "python": python,
        "python_origin": python_origin,
        "runtime": runtime,
        "source": str(folder.relative_to(assets)),
        "source_commit": commit,
        "tags": tags,
    }
    return name, entry


def read_snapshot(assets: Path) -> tuple[str, str]:
    text = (assets / "SOURCE.md").read_text()
    match = re.search(r"commit\s+([0-9a-f]{40})\s*\((\d{4}-\d{2}-\d{2})\)", text)
    if not match:
        raise SystemExit(f"{assets / 'SOURCE.md'}: expected 'commit <40 hex digits> (YYYY-MM-DD)'")
    return match[1], match[2]


def build_catalog(assets: Path) -> dict:
    commit, date = read_snapshot(assets)
    environments = {}
    for asset_file in sorted(assets.glob("assets/**/environments/*/asset.yaml")):
        if (yaml.safe_load(asset_file.read_text()) or {}).get("type") != "environment":
            continue
        name, entry = read_environment(asset_file.parent, assets, commit, date)
        if name in environments:
            raise SystemExit(f"{asset_file}: environment {name} is defined twice")
        environments[name] = entry
    for retired, record in RETIRED.items():
        if record["successor"] not in environments:
            raise SystemExit(f"retired {retired}: successor {record['successor']} is not in the snapshot")
    return {
        "_about": ABOUT,
        "environments": environments,
        "retired": RETIRED,
        "snapshot": {
            "date": date,
            "environments": len(environments),
            "repository": REPOSITORY,
            "what": f"azureml-assets at commit {commit[:12]} (each environment's source_commit), files unchanged",
        },
    }


# ---------------------------------------------------------------------------------------------------------------
# Resolution with uv


def python_spec(name: str, entry: dict):
    """The EnvSpec the engine builds from the entry, for its Python packages: an environment whose runtime is not
    Python (R) is refused by the engine where that runtime is missing, so its packages are checked without it."""
    reference = f"azureml://registries/azureml/environments/{name}/labels/latest"
    return curated.spec_for_entry(reference, name, {**entry, "runtime": None}, source=name, origin=f"catalog:{name}")


def spec_hash(spec) -> str:
    """The EnvSpec's hash as recorded: with its name beside it, so that no secret scanner takes it for a key."""
    return f"{spec.hash} (EnvSpec.hash)"


class UvFailed(Exception):
    """uv exited non-zero; its output (stdout and stderr) is the argument."""


def resolve(name: str, entry: dict) -> dict:
    """The engine's resolution of the entry (env_build.resolve_lock, the same uv commands a build runs), as a dry
    run for linux x86_64 with the python the engine chose here: resolved with the package count, or why not."""
    spec = python_spec(name, entry)
    record = {"spec_hash": spec_hash(spec), "uv": env_build._uv_version()}
    interpreter, _warning = env_build._choose_interpreter(spec)
    record["python"] = f"{interpreter.version.major}.{interpreter.version.minor}"
    as_of = ["--exclude-newer", spec.exclude_newer] if spec.exclude_newer else []
    uv_args = ["--python", interpreter.path, "--python-version", record["python"], "--python-platform", "linux", *as_of]
    with tempfile.TemporaryDirectory(prefix="curated-") as folder:

        def run(command: list[str]) -> None:
            result = subprocess.run(
                command, cwd=folder, env=env_build._uv_env(), capture_output=True, text=True,
                timeout=RESOLVE_TIMEOUT_S, stdin=subprocess.DEVNULL,
            )  # fmt: skip
            if result.returncode != 0:
                raise UvFailed(result.stderr + "\n" + result.stdout)

        # What the engine hands uv when it builds the environment ({{latest-pypi-version}} pinned as of its date).
        requirements = env_build._pin_latest(
            spec, spec.exclude_newer, record["python"], environment.cache_root(), lambda line: None
        )
        try:
            env_build.resolve_lock(spec, [*spec.pip_options, *requirements], Path(folder), uv_args, run)
        except subprocess.TimeoutExpired:
            return record | {
                "outcome": "failed",
                "packages": 0,
                "reason": f"uv did not finish in {RESOLVE_TIMEOUT_S} s",
            }
        except UvFailed as failed:
            reason = uv_reason(str(failed).splitlines(), spec, record["python"])
            if len(reason) > REASON_CHARS:
                reason = reason[: REASON_CHARS - 1].rstrip() + "…"
            return record | {"outcome": "failed", "packages": 0, "reason": reason}
        lock = Path(folder, "requirements.lock").read_text().splitlines()
        packages = sum(1 for line in lock if line and not line[0].isspace() and not line.startswith(("#", "-")))
        return record | {"outcome": "resolved", "packages": packages, "reason": None}


def uv_reason(output: list[str], spec, python: str) -> str:
    """env_build's one line for a failed resolution (the requirement and why), without the file it names (the
    catalog entry), and, where uv's explanation is a chain, its conclusion: the requirement that conflicts."""
    reason = env_build._uv_failure(output, spec, python)
    reason = reason[reason.index("cannot ") :] if "cannot " in reason else reason
    if NETWORK_FAILURE.search("\n".join(output)):
        reason = f"a host uv could not reach from the machine that wrote this: {reason}"
    explanation = " ".join(line.strip() for line in output if line.strip() and not line.strip().startswith("hint:"))
    start = max(explanation.rfind("And because "), explanation.rfind("Because "))
    end = re.search(r"(?:unsatisfiable|cannot be used)\.", explanation[start:]) if start >= 0 else None
    if end and explanation[start : start + end.end()] not in reason:
        reason = f"{reason.rstrip(':')} ... {explanation[start : start + end.end()]}"
    # "one of: protobuf>=3.20.3,<4.21.0 protobuf>4.21.0,<4.21.1 ...": the first alternative and a count.
    reason = re.sub(
        r"(?P<first>[\w.-]+[<>=!~]\S*)(?P<more>(?: [\w.-]+[<>=!~]\S*){2,})",
        lambda m: f"{m['first']} (or {len(m['more'].split())} more ranges)",
        reason,
    )
    return re.sub(r"\s+", " ", reason)


def resolve_all(environments: dict, log) -> None:
    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(max_workers=RESOLVE_WORKERS) as pool:
        futures = {pool.submit(resolve, name, entry): name for name, entry in environments.items()}
        for done, future in enumerate(concurrent.futures.as_completed(futures), 1):
            name = futures[future]
            try:
                environments[name]["resolution"] = future.result()
            except AmlLocalError as err:
                environments[name]["resolution"] = {"outcome": "failed", "packages": 0, "reason": str(err)}
            outcome = environments[name]["resolution"]
            log(
                f"[{done}/{len(futures)} {time.perf_counter() - started:.0f} s] {name}: {outcome['outcome']}"
                + (
                    f" ({outcome['packages']} packages)"
                    if outcome["outcome"] == "resolved"
                    else f": {outcome['reason']}"
                )
            )


def keep_recorded(environments: dict, previous: dict) -> None:
    for name, entry in environments.items():
        spec = python_spec(name, entry)
        recorded = ((previous.get("environments") or {}).get(name) or {}).get("resolution")
        if recorded and recorded.get("spec_hash") == spec_hash(spec):
            entry["resolution"] = recorded
        else:
            entry["resolution"] = {"outcome": "not checked", "spec_hash": spec_hash(spec)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--assets", required=True, type=Path, help="the azureml-assets snapshot (with SOURCE.md)")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help=f"default: {DEFAULT_OUTPUT}")
    parser.add_argument("--no-resolve", action="store_true", help="skip the uv check (keep what is recorded)")
    args = parser.parse_args(argv)
    os.environ.pop(EXCLUDE_NEWER_VARIABLE, None)  # the catalog's dates, not this shell's override
    started = time.perf_counter()
    catalog = build_catalog(args.assets.resolve())
    environments = catalog["environments"]
    if args.no_resolve:
        previous = json.loads(args.output.read_text()) if args.output.is_file() else {}
        keep_recorded(environments, previous)
    else:
        resolve_all(environments, lambda line: print(line, file=sys.stderr, flush=True))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(catalog, indent=2, sort_keys=True, ensure_ascii=False) + "\n")
    outcomes = [e["resolution"]["outcome"] for e in environments.values()]
    counts = ", ".join(f"{outcomes.count(o)} {o}" for o in sorted(set(outcomes)))
    print(
        f"{args.output}: {len(environments)} environments ({counts}), {len(catalog['retired'])} retired names, "
        f"in {time.perf_counter() - started:.0f} s",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
