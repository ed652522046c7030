"""A run's own writable layer over a read-only environment, as a fresh container is over its image on Azure.

Every job, sweep trial, pipeline node and inference server runs in a layer of its own: a venv made in a few
milliseconds whose site-packages chain to the environment's (the cached venv built from the environment, a bare venv
for an image whose contents are unknown, or the project venv where it already has every requirement). The layer is
what the run's `python`, `pip` and console scripts are, and its sys.prefix: `pip install` in a job's command installs
into the layer, never into the environment under it, and the layer is removed with the run, so the next run starts
from the environment as built ("Azure Machine Learning uses the environment specification to create the Docker
container that your training or scoring code runs in", https://learn.microsoft.com/azure/machine-learning/
how-to-use-environments; that what a run installs goes with its container is our reading of a container's life).

How the layer is made (the mechanism `python -m venv --system-site-packages` uses, with the environment's venv in the
place of the system's site-packages):
- `pyvenv.cfg` whose `home` is the environment's base interpreter, and `bin/python` a link to that interpreter:
  Python then takes the layer as sys.prefix and its `lib/pythonX.Y/site-packages` as the first site directory;
- in that site-packages, one .pth file that adds the environment's site-packages after it with `site.addsitedir`
  (its own .pth files, editable installs among them, are processed as usual): the layer's packages come first, so a
  package a run upgrades shadows the environment's, and pip leaves the environment's copy alone ("Not uninstalling
  ... outside environment");
- the environment's console scripts (`pip` first of all) copied into the layer's bin with their `#!` line pointing
  at the layer's python; a script that would run the environment's python directly would install into it.

Bytecode: a run over a venv built into the environment cache compiles what it imports into the cache's `pycache`
folder beside that venv (PYTHONPYCACHEPREFIX), not into the venv; the project venv's bytecode is compiled when it is
installed (make setup).

Writes the layer cannot stop: a process running as root can write anywhere it names. What it stops is every
default write (pip, `python -m pip`, uv pip with VIRTUAL_ENV, site.USER_SITE is off in a venv).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import sys
from pathlib import Path

LOWER_PTH = "_aml_local_environment.pth"
# A venv in the environment cache is <cache>/<hash>/venv, finished when <cache>/<hash>/complete.json exists.
CACHED_MARKER = "complete.json"
# The #! line of a console script names its interpreter in its first line, or (uv's and pip's trampoline for long
# paths) in the `exec` line after a `#!/bin/sh` one: the first few hundred bytes hold it either way.
SHEBANG_SPAN = 512


@dataclasses.dataclass(frozen=True)
class Layer:
    """A run's layer: its python, its folder (VIRTUAL_ENV), and the environment venv under it."""

    python: str
    venv: str
    lower: str
    pycache: str | None = None  # PYTHONPYCACHEPREFIX for a run over a cached environment

    def process_env(self, base) -> dict[str, str]:
        """`base` with this layer activated, as `activate` does: its bin first on PATH, VIRTUAL_ENV set,
        PYTHONHOME dropped; and where bytecode goes."""
        env = {k: v for k, v in base.items() if k not in ("PYTHONHOME", "VIRTUAL_ENV", "PYTHONPYCACHEPREFIX")}
        env["PATH"] = os.pathsep.join([str(Path(self.python).parent), base.get("PATH", os.defpath)])
        env["VIRTUAL_ENV"] = self.venv
        if self.pycache:
            env["PYTHONPYCACHEPREFIX"] = self.pycache
        return env


def venv_of(python: str) -> Path | None:
    """The venv folder an interpreter path belongs to (bin/python's parent's parent with a pyvenv.cfg), or None for
    a base interpreter."""
    folder = Path(python).parent.parent
    return folder if (folder / "pyvenv.cfg").is_file() else None


def _config(venv: Path) -> dict[str, str]:
    values = {}
    for line in (venv / "pyvenv.cfg").read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep:
            values[key.strip()] = value.strip()
    return values


def _site_packages(venv: Path) -> Path:
    found = sorted(venv.glob("lib/python3*/site-packages"))
    if not found:
        raise FileNotFoundError(f"{venv}: no lib/python3*/site-packages")
    return found[0]


def make(lower: Path | str, folder: Path | str) -> Layer:
    """A fresh layer in `folder` (made anew if it exists) over the venv `lower`."""
    lower, folder = Path(lower), Path(folder)
    if folder.exists():
        shutil.rmtree(folder)
    config = _config(lower)
    lower_site = _site_packages(lower)
    lower_python = lower / "bin" / "python"
    base = Path(os.path.realpath(lower_python))
    bin_dir = folder / "bin"
    site_dir = folder / "lib" / lower_site.parent.name / "site-packages"
    site_dir.mkdir(parents=True)
    bin_dir.mkdir()
    version = config.get("version_info") or config.get("version") or ""
    (folder / "pyvenv.cfg").write_text(
        f"home = {base.parent}\ninclude-system-site-packages = false\nversion = {version}\naml-local-lower = {lower}\n"
    )
    python = bin_dir / "python"
    python.symlink_to(base)
    for alias in {"python3", lower_site.parent.name}:  # python3, python3.X
        (bin_dir / alias).symlink_to("python")
    (site_dir / LOWER_PTH).write_text(f"import site; site.addsitedir({str(lower_site)!r})\n")
    _copy_scripts(lower / "bin", bin_dir, lower_python, python)
    pycache = lower.parent / "pycache" if (lower.parent / CACHED_MARKER).is_file() else None
    return Layer(python=str(python), venv=str(folder), lower=str(lower), pycache=str(pycache) if pycache else None)


def _copy_scripts(lower_bin: Path, bin_dir: Path, lower_python: Path, python: Path) -> None:
    """The environment's console scripts, pointing at the layer's python; anything else (binaries, scripts for
    another interpreter) linked as it is."""
    own = {str(lower_python).encode(), str(lower_python.parent / "python3").encode()}
    own |= {str(p).encode() for p in lower_bin.glob("python3.*")}
    for entry in os.scandir(lower_bin):
        target = bin_dir / entry.name
        if target.exists() or target.is_symlink() or entry.name.startswith(("python", "activate", "Activate")):
            continue
        if not entry.is_file():
            continue
        with open(entry.path, "rb") as handle:
            head = handle.read(SHEBANG_SPAN)
        if head.startswith(b"#!") and any(name in head for name in own):
            text = Path(entry.path).read_bytes()
            head_new = head
            for name in sorted(own, key=len, reverse=True):
                head_new = head_new.replace(name, str(python).encode())
            target.write_bytes(head_new + text[len(head) :])
            target.chmod(0o755)
        else:
            target.symlink_to(entry.path)


def remove(folder: Path | str | None) -> None:
    """Remove a run's layer (what the run installed goes with it)."""
    if folder:
        shutil.rmtree(folder, ignore_errors=True)


def project_venv() -> Path:
    """The venv this tool runs in (a layer's lower when it has every requirement)."""
    return Path(sys.prefix)
