"""Where an EnvSpec comes from: an `azure.ai.ml.entities.Environment` (its conda file, its image, its build
context's Dockerfile) or a curated Azure environment's name (curated_environments.json).

- image + conda_file: Azure creates a new conda environment from the conda file on top of the image
  (`conda env create -p /azureml-envs/azureml_<hash> -f ...`, see
  https://azure.github.io/azureml-cheatsheets/docs/cheatsheets/python/v1/docker-build), so only the conda file's
  packages are in it: the image's own Python packages are recorded, not added. An image alone runs the image's
  Python with the packages base_images.json lists for it; an image not listed there runs in the project venv
  with a WARNING (its packages are unknown). A build context: its Dockerfile's final stage `FROM` image, and
  what its `RUN pip install` / `conda env create -f` / `conda install` lines install (files resolved in the
  context, by path or by base name, since `COPY x .` is the common way in).
- A conda `python` entry sets the version; without one, the image's Python (base_images.json), else the
  project's (our choice: conda would pick its newest).
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
from aml_local.assets.env_spec import PIP_INDEX_OPTIONS, PIP_OPTIONS_WITH_VALUE, EnvSpec, SpecBuilder

BASE_IMAGES_FILE = Path(__file__).resolve().parent / "base_images.json"
CURATED_FILE = Path(__file__).resolve().parent / "curated_environments.json"
_CURATED_WORKSPACE = re.compile(r"^azureml:(?P<name>AzureML-[^:@/]+)(?::(?P<version>[^:@/]+)|@(?P<label>[^:@/]+))?$")
_CURATED_REGISTRY = re.compile(
    r"^azureml://registries/azureml/environments/(?P<name>[^/]+)(?:/versions/(?P<version>[^/]+)|/labels/(?P<label>[^/]+))?/?$"
)


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
    builder = SpecBuilder(name=str(getattr(env, "name", None) or "inline"), source=str(source))
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
    builder = SpecBuilder(name=reference, source=str(source))
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


def _read_build_context(env, build, builder: SpecBuilder, images: dict) -> None:
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
            f"read and its image {parser.baseimage} is not in base_images.json; it runs in the project venv"
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
