"""pyproject.toml is the one place that pins dependencies; requirements.lock pins the whole local tree from it (make
lock), and the Azure conda files must agree with both. The Azure-only group stays out of the lock and the local venv."""

import ast
import functools
import itertools
import pathlib
import re
import sys
import tomllib
from importlib.metadata import PackageNotFoundError, distribution, packages_distributions, version

import yaml
from packaging.requirements import Requirement

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
PROJECT = PYPROJECT["project"]
# [project] dependencies (aml-local's run time) as a group beside the extras.
GROUPS = {"runtime": PROJECT["dependencies"], **PROJECT["optional-dependencies"]}
LOCAL_GROUPS = ("runtime", "train", "serve", "batch", "dev")  # what requirements.lock resolves (make lock)
# Conflict with the project's pins (azure-ai-ml's, numpy's): only in the Azure images.
AZURE_ONLY_GROUPS = ("azure", "azure-batch")
LOCK = REPO_ROOT / "requirements.lock"
# Which pyproject groups each Azure environment's conda file must carry, exactly.
CONDA_FILES = {
    "environments/train.conda.yaml": ("train", "azure"),
    "environments/train-gpu.conda.yaml": ("train", "azure"),
    "environments/inference.conda.yaml": ("serve",),
    "environments/batch.conda.yaml": ("batch", "azure-batch"),
}


def _name(name):
    return re.sub(r"[-_.]+", "-", name).lower()  # PEP 503


def _pins(requirements):
    pins = {}
    for line in requirements:
        match = re.fullmatch(r"([A-Za-z0-9_.-]+)(\[[a-z0-9_,-]+\])?==([A-Za-z0-9_.+-]+)", line.strip())
        assert match, f"not pinned exactly (name==version): {line!r}"
        name = _name(match[1])
        # The GPU image takes TensorFlow's CUDA build; it must be the same release as tensorflow-cpu.
        pins["tensorflow-cpu" if name == "tensorflow" else name] = match[3]
    return pins


def _lock():
    """requirements.lock as {name: (version, [hashes])}: uv's format, one `name==version \\` line then its hashes."""
    entries = {}
    current = None
    for line in LOCK.read_text().splitlines():
        if match := re.fullmatch(r"([A-Za-z0-9_.-]+)==(\S+) \\", line):
            current = _name(match[1])
            entries[current] = (match[2], [])
        elif match := re.fullmatch(r"\s+--hash=(sha256:[0-9a-f]{64})( \\)?", line):
            entries[current][1].append(match[1])
        else:
            assert not line.strip() or line.lstrip().startswith("#"), f"requirements.lock: unexpected line {line!r}"
    return entries


def _azure_only():
    """The pins of every Azure-only group together."""
    return {name: pin for group in AZURE_ONLY_GROUPS for name, pin in _pins(GROUPS[group]).items()}


def _conda_pip(path):
    spec = yaml.safe_load((REPO_ROOT / path).read_text())
    for item in spec["dependencies"]:
        if isinstance(item, dict) and "pip" in item:
            return item["pip"]
    raise AssertionError(f"{path} has no pip section")


def _conda_python(path):
    spec = yaml.safe_load((REPO_ROOT / path).read_text())
    return next(d.split("=", 1)[1] for d in spec["dependencies"] if isinstance(d, str) and d.startswith("python="))


def test_every_dependency_is_pinned_exactly():
    for group, requirements in GROUPS.items():
        assert requirements, group
        _pins(requirements)


def test_groups_agree_with_each_other():
    versions = {}
    for group, requirements in GROUPS.items():
        for name, version_ in _pins(requirements).items():
            assert versions.setdefault(name, version_) == version_, f"{name} pinned twice differently ({group})"


def test_conda_files_carry_exactly_the_pinned_groups():
    for path, groups in CONDA_FILES.items():
        expected = {}
        for group in groups:
            expected.update(_pins(GROUPS[group]))
        assert _pins(_conda_pip(path)) == expected, path


def test_conda_python_matches_the_project_python():
    # requires-python is ">=3.11,<3.12": the images must run the same minor version.
    for path in CONDA_FILES:
        assert _conda_python(path) == "3.11", path
    assert PROJECT["requires-python"] == ">=3.11,<3.12"


def test_the_lock_pins_every_package_with_hashes():
    lock = _lock()
    assert len(lock) > 100, "requirements.lock holds the whole tree (make lock)"
    for name, (_, hashes) in lock.items():
        assert hashes, f"{name} has no hash in requirements.lock"


def test_the_lock_holds_what_builds_this_project():
    # make setup installs this project with --no-build-isolation: the locked setuptools must meet [build-system].
    lock = _lock()
    for requirement in map(Requirement, PYPROJECT["build-system"]["requires"]):
        name = _name(requirement.name)
        assert name in lock, f"{name} ([build-system]) is not in requirements.lock: pin it in [dev]"
        assert requirement.specifier.contains(lock[name][0]), f"requirements.lock has {name}=={lock[name][0]}"


def test_the_lock_has_the_pyproject_pins_of_the_local_groups():
    lock = _lock()
    for group in LOCAL_GROUPS:
        for name, pinned in _pins(GROUPS[group]).items():
            assert name in lock, f"{name} ([{group}]) is missing from requirements.lock: run make lock"
            assert lock[name][0] == pinned, f"{name}: requirements.lock has {lock[name][0]}, [{group}] pins {pinned}"


def test_conda_files_agree_with_the_lock():
    # Azure's images install the conda files; the local venv installs the lock: the same version of every package
    # they share. The Azure-only group is not in the lock (next test) and is checked against pyproject above.
    lock = _lock()
    azure_only = _azure_only()
    for path in CONDA_FILES:
        for name, pinned in _pins(_conda_pip(path)).items():
            if name in azure_only:
                continue
            assert name in lock, f"{path}: {name} is not in requirements.lock"
            assert lock[name][0] == pinned, f"{path}: {name}=={pinned}, requirements.lock has {lock[name][0]}"


def test_the_azure_only_group_stays_out_of_the_lock_and_agrees_with_the_conda_files():
    lock = _lock()
    assert all(GROUPS[group] for group in AZURE_ONLY_GROUPS)
    for name in _azure_only():
        assert name not in lock, f"{name} is Azure-only (it conflicts with the project's pins) but is in the lock"
    for path, groups in CONDA_FILES.items():
        conda = _pins(_conda_pip(path))
        for group in set(groups) & set(AZURE_ONLY_GROUPS):
            azure_only = _pins(GROUPS[group])
            assert {name: conda.get(name) for name in azure_only} == azure_only, path


def test_makefile_installs_the_locked_uv():
    # make setup bootstraps uv with pip, then syncs the lock, which holds uv too: the same version, or each
    # setup would swap uv under itself.
    match = re.search(r"^UV_VERSION := (\S+)$", (REPO_ROOT / "Makefile").read_text(), re.MULTILINE)
    assert match, "Makefile has no UV_VERSION"
    assert match[1] == _lock()["uv"][0]


def test_installed_versions_match_the_lock():
    for name, (locked, _) in _lock().items():
        try:
            installed = version(name)
        except PackageNotFoundError:
            raise AssertionError(f"{name} is in requirements.lock but not installed: run make setup") from None
        assert installed == locked, f"{name}: installed {installed}, requirements.lock has {locked}"


def test_azure_only_extras_stay_out_of_the_local_venv():
    for name in _azure_only():
        try:
            version(name)
        except PackageNotFoundError:
            continue
        raise AssertionError(f"{name} is Azure-only (it conflicts with azure-ai-ml's pins) but is installed here")


def _imported_modules(path):
    """Every module a file imports (module level or inside a function) or runs as `python -m NAME`."""
    modules = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            modules.add(node.module)
        elif isinstance(node, ast.List | ast.Tuple):
            items = [item.value if isinstance(item, ast.Constant) else None for item in node.elts]
            modules.update(m for flag, m in itertools.pairwise(items) if flag == "-m" and isinstance(m, str))
    return modules


@functools.cache
def _top_level_providers() -> dict:
    return packages_distributions()


@functools.cache
def _files_of(name: str) -> tuple[str, ...]:
    return tuple(str(f) for f in distribution(name).files or ())


@functools.cache
def _providers(module):
    """The installed distributions whose files hold module (namespace packages such as azure.* need the full name)."""
    path = module.replace(".", "/")
    candidates = _top_level_providers().get(module.split(".")[0], [])
    providers = set()
    for name in candidates:
        files = _files_of(name)
        if any(f == f"{path}.py" or f.startswith(f"{path}/") or re.fullmatch(rf"{path}\.[^/]+\.so", f) for f in files):
            providers.add(_name(name))
    return providers


# Files of the package that aml_local never imports: a deployment's scoring script, copied into it and run in the
# deployment's environment (the MLflow model's requirements): by its inference server (online, with
# azureml-inference-server-http) or by a batch scoring job's workers.
RUN_IN_A_DEPLOYMENT = {"aml_local/endpoints/online/mlflow_score.py", "aml_local/endpoints/batch/mlflow_driver.py"}


def test_runtime_dependencies_cover_every_module_aml_local_imports():
    first_party = {"aml_local", *PYPROJECT["tool"]["setuptools"]["py-modules"]}
    declared = set(_pins(GROUPS["runtime"]))
    files = [
        p
        for p in sorted((REPO_ROOT / "aml_local").rglob("*.py"))
        if p.relative_to(REPO_ROOT).as_posix() not in RUN_IN_A_DEPLOYMENT
    ]
    assert len(files) > 10
    missing = {}
    for path in files:
        for module in _imported_modules(path):
            top = module.split(".")[0]
            if top in sys.stdlib_module_names or top in first_party:
                continue
            providers = _providers(module)
            assert providers, f"{path.relative_to(REPO_ROOT)} imports {module}, which no installed distribution holds"
            if not providers & declared:
                missing.setdefault(module, set()).add(f"{path.relative_to(REPO_ROOT)} ({', '.join(sorted(providers))})")
    assert not missing, f"imported by aml_local but not in [project] dependencies: {missing}"
