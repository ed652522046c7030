"""Where an EnvSpec comes from: an `azure.ai.ml.entities.Environment` (its conda file, its image, its build
context's Dockerfile) or a curated Azure environment's name (curated_environments.json).

- image + conda_file: Azure creates a new conda environment from the conda file on top of the image
  (`conda env create -p /azureml-envs/azureml_<hash> -f ...`, see
  https://azure.github.io/azureml-cheatsheets/docs/cheatsheets/python/v1/docker-build), so only the conda file's
  packages are in it: the image's own Python packages are recorded, not added. An image alone runs the image's
  Python with the packages base_images.json lists for it; an image not listed there is what it is on Azure with
  packages we cannot know: its Python (the version its name or tag gives, `python:3.11.6`, `...-py38-...`) and pip,
  nothing else. A build context: its Dockerfile's final stage `FROM` image, and what its `RUN pip install` /
  `conda env create -f` / `conda install` lines install (files resolved in the context, by path or by base name,
  since `COPY x .` is the common way in); its other RUN lines are listed in a note, not run.
- An image for another runtime (R, Java, Julia: env_spec.RUNTIMES) runs with this machine's runtime, and is refused
  at create when the machine has none.
- A conda `python` entry sets the version; without one, the image's Python (base_images.json, or its name or
  tag), else the project's (our choice: conda would pick its newest).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shlex
from pathlib import Path

from dockerfile_parse import DockerfileParser

from aml_local import AmlLocalError

# The curated environments (their names, catalog and EnvSpec) are curated.py's.
from aml_local.assets.curated import CURATED_FILE, spec_for
from aml_local.assets.env_spec import PIP_INDEX_OPTIONS, PIP_OPTIONS_WITH_VALUE, EnvSpec, SpecBuilder

BASE_IMAGES_FILE = Path(__file__).resolve().parent / "base_images.json"


def spec_from_environment(
    env, *, source: str, base_images: Path = BASE_IMAGES_FILE, curated: Path = CURATED_FILE
) -> EnvSpec:
    if isinstance(env, str):
        return spec_for(env, source=source, catalog=curated)
    # The SDK names an inline environment CliV2AnonymousEnvironment: "inline" says what it is.
    name = getattr(env, "name", None)
    builder = SpecBuilder(
        name=str(name if name and name != "CliV2AnonymousEnvironment" else "inline"), source=str(source)
    )
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
                "packages are unknown: as on Azure, a job gets its Python and pip and nothing else"
            )
    else:
        raise AmlLocalError(
            f"{source}: environment {builder.name}: expected image (with an optional conda_file) or build"
        )
    return builder.finish()


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


def _read_build_context(env, build, builder: SpecBuilder, images: dict) -> None:
    context = Path(build.path)
    if not context.is_absolute():
        context = Path(getattr(env, "base_path", None) or Path(builder.source).parent) / context
    dockerfile = context / (getattr(build, "dockerfile_path", None) or "Dockerfile")
    if str(build.path).startswith(("http://", "https://", "azureml:")) or not dockerfile.is_file():
        raise AmlLocalError(
            f"{builder.source}: environment {builder.name}: build context {build.path} has no local Dockerfile "
            f"({dockerfile}); a build context must be a local folder with a Dockerfile to be built here"
        )
        return
    parser = DockerfileParser(fileobj=io.BytesIO(dockerfile.read_bytes()))
    origin = str(dockerfile)
    commands: list[list[str]] = []
    for instruction in parser.structure:
        if instruction["instruction"] == "FROM":
            commands = []  # only the final stage ends up in the image
        elif instruction["instruction"] == "RUN":
            commands.extend(shell_commands(instruction["value"]))
    builder.set_image(parser.baseimage, images)
    installs_found = False
    not_applied = []
    for argv in commands:
        applied = _apply_install_command(argv, builder, context=context, origin=origin)
        installs_found |= applied
        if not applied and argv:
            not_applied.append(shlex.join(argv)[:80])
    if not_applied:
        builder.notes.append(
            f"{origin}: {len(not_applied)} RUN command(s) other than pip/conda installs are not run locally: "
            + "; ".join(not_applied)
        )
    if builder.image_info is not None:
        builder.add_image_packages()
    elif not installs_found:
        builder.unknown(
            f"environment {builder.name} ({builder.source}): {dockerfile} installs no Python packages that we "
            f"read and its image {parser.baseimage} is not in base_images.json: as on Azure, a job gets its "
            "Python and pip and nothing else"
        )


def shell_commands(value: str) -> list[list[str]]:
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


def _apply_install_command(argv: list[str], builder: SpecBuilder, *, context: Path, origin: str) -> bool:
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


def _apply_pip_install(args: list[str], builder: SpecBuilder, *, context: Path, origin: str) -> None:
    index = 0
    while index < len(args):
        word = args[index]
        if word.startswith("-"):
            option, _, inline = word.partition("=")
            value = inline or (args[index + 1] if option in PIP_OPTIONS_WITH_VALUE and index + 1 < len(args) else "")
            index += 1 if inline or option not in PIP_OPTIONS_WITH_VALUE else 2
            if option in ("-r", "--requirement"):
                path = _in_context(value, context)
                if path is None:
                    builder.notes.append(f"{origin}: {value} is not in the build context; not read")
                else:
                    builder.add_pip_line(f"-r {path.name}", origin=str(path), base_dir=path.parent)
            elif option in PIP_INDEX_OPTIONS:
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
