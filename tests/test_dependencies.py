"""pyproject.toml is the one place that pins dependencies; the Azure conda files must agree with it."""

import pathlib
import re
import tomllib

import yaml

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
GROUPS = PROJECT["optional-dependencies"]
# Which pyproject groups each Azure environment's conda file must carry, exactly.
CONDA_FILES = {
    "environments/train.conda.yaml": ("train", "azure"),
    "environments/train-gpu.conda.yaml": ("train", "azure"),
    "environments/inference.conda.yaml": ("serve",),
}


def _pins(requirements):
    pins = {}
    for line in requirements:
        match = re.fullmatch(r"([A-Za-z0-9_.-]+)(\[[a-z0-9_,-]+\])?==([A-Za-z0-9_.+-]+)", line.strip())
        assert match, f"not pinned exactly (name==version): {line!r}"
        name = match[1].lower().replace("_", "-")
        # The GPU image takes TensorFlow's CUDA build; it must be the same release as tensorflow-cpu.
        pins["tensorflow-cpu" if name == "tensorflow" else name] = match[3]
    return pins


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
        for name, version in _pins(requirements).items():
            assert versions.setdefault(name, version) == version, f"{name} pinned twice differently ({group})"


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


def test_installed_versions_match_the_pins():
    from importlib.metadata import PackageNotFoundError, version

    for group in ("train", "serve", "local", "dev"):
        for name, pinned in _pins(GROUPS[group]).items():
            try:
                assert version(name) == pinned, f"{name}: installed {version(name)}, pinned {pinned}"
            except PackageNotFoundError:
                raise AssertionError(f"{name} is pinned in [{group}] but not installed: run make setup") from None


def test_azure_only_extras_stay_out_of_the_local_venv():
    from importlib.metadata import PackageNotFoundError, version

    for name in _pins(GROUPS["azure"]):
        try:
            version(name)
        except PackageNotFoundError:
            continue
        raise AssertionError(f"{name} is Azure-only (it conflicts with azure-ai-ml's pins) but is installed here")
