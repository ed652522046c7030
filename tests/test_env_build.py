"""The environment engine (aml_local/assets/env_build.py): environment YAML -> EnvSpec -> a Python that has it.

Real specs and real uv builds (PyPI through uv's cache), no mocks. The packages the builds pin are checked against
the project venv first, so each test proves what it says whatever the venv holds.
"""

import fcntl
import importlib.metadata
import json
import os
import re
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest
from azure.ai.ml import load_environment
from azure.ai.ml.entities import Environment

from aml_local import AmlLocalError
from aml_local.assets import env_build

REPO = Path(__file__).resolve().parents[1]
# A small pure-Python wheel with a __version__, pinned to an old release (toolz 0.11.2 is from 2021).
OLD_PACKAGE, OLD_VERSION = "toolz", "0.11.2"
AZUREML_IMAGE = "mcr.microsoft.com/azureml/openmpi5.0-ubuntu24.04:latest"
FIXTURE_IMAGES = {
    "images": {
        "mcr.microsoft.com/azureml/openmpi5.0-ubuntu24.04": {
            "tags": ["latest"],
            "python": "3.12",
            "packages": [],
            "source": "test fixture",
        },
        "example.azurecr.io/minimal-inference": {
            "tags": ["1"],
            "python": "3.11",
            "packages": ["six"],
            "source": "test fixture",
        },
    }
}


def project_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


@pytest.fixture
def base_images(tmp_path) -> Path:
    path = tmp_path / "base_images.json"
    path.write_text(json.dumps(FIXTURE_IMAGES))
    return path


def write_environment(folder: Path, pip: list[str], python: str = "3.11", image: str = AZUREML_IMAGE) -> Path:
    """An environment YAML and its conda file, as a user would write them for Azure."""
    folder.mkdir(parents=True, exist_ok=True)
    dependencies = "\n".join(f"      - {line}" for line in pip)
    (folder / "conda.yaml").write_text(
        "name: test\nchannels:\n  - conda-forge\n"
        f"dependencies:\n  - python={python}\n  - pip\n  - pip:\n{dependencies}\n"
    )
    (folder / "env.yml").write_text(f"name: test-env\nimage: {image}\nconda_file: conda.yaml\n")
    return folder / "env.yml"


def spec_of(env_file: Path, base_images: Path) -> env_build.EnvSpec:
    return env_build.spec_from_environment(load_environment(env_file), source=str(env_file), base_images=base_images)


def run_python(prepared: env_build.Prepared, code: str) -> subprocess.CompletedProcess:
    """`python -c CODE` as a job's command runs it: through bash, in a layer of its own over the prepared
    environment, removed after."""
    with tempfile.TemporaryDirectory() as folder:
        layer = prepared.layer(Path(folder) / "layer")
        base = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp")}
        env = layer.process_env(base)
        command = ["bash", "-c", f"python -c {code!r}"]
        return subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("name", ["train.yml", "inference.yml"])
def test_the_projects_environments_run_in_the_project_venv_with_no_build(name, tmp_path, base_images):
    env_file = REPO / "environments" / name
    spec = spec_of(env_file, base_images)
    logged = []
    started = time.perf_counter()
    prepared = env_build.prepare(spec, cache_root=tmp_path / "envs", log=logged.append)
    seconds = time.perf_counter() - started
    print(f"{name}: fast path in {seconds * 1000:.1f} ms")
    assert prepared.location == env_build.PROJECT_VENV and prepared.python == sys.executable
    assert prepared.venv == sys.prefix  # the lower layer of each run's: never run in itself
    assert prepared.built is False and not (tmp_path / "envs").exists()
    assert seconds < 0.5, f"the fast path took {seconds:.3f} s"
    assert prepared.as_dict()["path"] == "project venv" and prepared.as_dict()["environment_hash"] == spec.hash
    assert spec.python == "==3.11.*" and logged == []
    skipped = [s for s in spec.skipped if s.startswith("azureml-mlflow")]
    if name == "train.yml":
        # The workspace-only package is named, skipped, and its MLflow client kept.
        assert len(skipped) == 1 and "only inside an Azure ML workspace" in skipped[0]
        assert "mlflow-skinny" in [r.text for r in spec.requirements]
        assert any(note.startswith("skipped azureml-mlflow") for note in prepared.notes)
    else:
        assert skipped == []


@pytest.mark.slow
def test_a_package_the_project_venv_lacks_builds_a_venv_with_the_version_asked_then_reuses_it(tmp_path, base_images):
    assert project_version(OLD_PACKAGE) != OLD_VERSION, f"the project venv has {OLD_PACKAGE}=={OLD_VERSION} itself"
    spec = spec_of(write_environment(tmp_path / "env", [f"{OLD_PACKAGE}=={OLD_VERSION}"]), base_images)
    cache_root = tmp_path / "envs"
    logged = []
    started = time.perf_counter()
    first = env_build.prepare(spec, cache_root=cache_root, log=logged.append)
    build_seconds = time.perf_counter() - started
    assert first.built is True and first.location == str(cache_root / spec.hash)
    assert first.python == str(cache_root / spec.hash / "venv" / "bin" / "python")
    assert (cache_root / spec.hash / "complete.json").is_file()
    assert any("building a venv" in line for line in logged) and any("Installed" in line for line in logged)
    assert any(f"{OLD_PACKAGE}==" in note for note in first.notes)  # why the project venv would not do
    result = run_python(first, f"import {OLD_PACKAGE}, sys; print({OLD_PACKAGE}.__version__, {OLD_PACKAGE}.__file__)")
    assert result.returncode == 0, result.stderr
    version, module_file = result.stdout.split()
    assert version == OLD_VERSION and module_file.startswith(str(cache_root / spec.hash / "venv"))
    assert run_python(first, "import pip").returncode == 0  # pip is there, as in a conda environment

    logged.clear()
    started = time.perf_counter()
    again = env_build.prepare(spec, cache_root=cache_root, log=logged.append)
    reuse_seconds = time.perf_counter() - started
    print(f"first build {build_seconds:.2f} s, reuse {reuse_seconds * 1000:.1f} ms")
    assert again.built is False and again.python == first.python
    assert logged == [f"Environment {spec.hash}: reusing {cache_root / spec.hash}"]
    assert reuse_seconds < 0.5


def test_without_the_package_the_job_gets_pythons_no_module_named_error(tmp_path, base_images):
    assert project_version(OLD_PACKAGE) is None, f"the project venv has {OLD_PACKAGE}; this test needs it absent"
    numpy_pin = f"numpy=={project_version('numpy')}"
    spec = spec_of(write_environment(tmp_path / "env", [numpy_pin]), base_images)
    prepared = env_build.prepare(spec, cache_root=tmp_path / "envs", log=lambda line: None)
    assert prepared.location == env_build.PROJECT_VENV
    result = run_python(prepared, f"import {OLD_PACKAGE}")
    assert result.returncode == 1 and f"No module named '{OLD_PACKAGE}'" in result.stderr


CHILD = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    from azure.ai.ml import load_environment
    from aml_local.assets import env_build
    env_file, base_images, cache_root = sys.argv[1:4]
    spec = env_build.spec_from_environment(load_environment(env_file), source=env_file, base_images=Path(base_images))
    prepared = env_build.prepare(spec, cache_root=Path(cache_root), log=lambda line: print(line, flush=True))
    print("RESULT " + json.dumps(prepared.as_dict()), flush=True)
    """
)


@pytest.mark.slow
def test_two_processes_preparing_the_same_environment_build_it_once(tmp_path, base_images):
    env_file = write_environment(tmp_path / "env", [f"{OLD_PACKAGE}=={OLD_VERSION}"])
    spec = spec_of(env_file, base_images)
    cache_root = tmp_path / "envs"
    cache_root.mkdir()
    child_env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    # Hold the build lock ourselves until both processes are waiting on it, so they truly contend.
    with open(cache_root / f"{spec.hash}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        children = [
            subprocess.Popen(
                [sys.executable, "-c", CHILD, str(env_file), str(base_images), str(cache_root)],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                env=child_env,
            )
            for _ in range(2)
        ]
        outputs = [[], []]
        for child, output in zip(children, outputs, strict=True):
            for line in child.stdout:
                output.append(line.rstrip("\n"))
                if line.startswith("Waiting for another process"):
                    break
            assert output and output[-1].startswith("Waiting for another process"), "\n".join(output)
        fcntl.flock(lock, fcntl.LOCK_UN)
    results = []
    for child, output in zip(children, outputs, strict=True):
        output.extend(line.rstrip("\n") for line in child.stdout)
        assert child.wait(timeout=300) == 0, "\n".join(output)
        results.append(json.loads(next(line for line in output if line.startswith("RESULT "))[len("RESULT ") :]))
    assert sorted(r["built"] for r in results) == [False, True]  # one built it, the other waited and reused it
    assert results[0]["python"] == results[1]["python"]
    assert sum(any("building a venv" in line for line in output) for output in outputs) == 1
    assert any("built by another process" in line for line in outputs[[r["built"] for r in results].index(False)])
    prepared = env_build.prepare(spec, cache_root=cache_root, log=lambda line: None)
    assert prepared.built is False
    assert run_python(prepared, f"import {OLD_PACKAGE}; print({OLD_PACKAGE}.__version__)").stdout.strip() == OLD_VERSION


@pytest.mark.slow
def test_a_half_built_environment_from_a_killed_build_is_discarded_and_rebuilt(tmp_path, base_images):
    spec = spec_of(write_environment(tmp_path / "env", [f"{OLD_PACKAGE}=={OLD_VERSION}"]), base_images)
    folder = tmp_path / "envs" / spec.hash
    # What a build killed half-way leaves: a folder with a venv in it, and no complete.json.
    (folder / "venv" / "bin").mkdir(parents=True)
    (folder / "venv" / "half-written").write_text("x")
    logged = []
    prepared = env_build.prepare(spec, cache_root=tmp_path / "envs", log=logged.append)
    assert f"Environment {spec.hash}: discarding an incomplete build in {folder}" in logged
    assert prepared.built is True and not (folder / "venv" / "half-written").exists()
    assert run_python(prepared, f"import {OLD_PACKAGE}; print({OLD_PACKAGE}.__version__)").stdout.strip() == OLD_VERSION


def test_an_unresolvable_pin_fails_before_anything_runs_in_one_line(tmp_path, base_images):
    env_file = write_environment(tmp_path / "env", ["six", f"{OLD_PACKAGE}==999.0.0"])
    spec = spec_of(env_file, base_images)
    with pytest.raises(AmlLocalError) as raised:
        env_build.prepare(spec, cache_root=tmp_path / "envs", log=lambda line: None)
    message = str(raised.value)
    assert "\n" not in message
    assert message.startswith(f"{env_file.parent / 'conda.yaml'} (environment {env_file}): ")
    assert f"cannot install {OLD_PACKAGE}==999.0.0" in message and "no version of" in message
    assert not (tmp_path / "envs" / spec.hash).exists()  # nothing half-built is left behind


@pytest.mark.slow
def test_a_python_version_this_machine_lacks_uses_the_nearest_with_one_warning(tmp_path, base_images):
    spec = spec_of(write_environment(tmp_path / "env", [f"{OLD_PACKAGE}=={OLD_VERSION}"], python="3.99"), base_images)
    logged = []
    prepared = env_build.prepare(spec, cache_root=tmp_path / "envs", log=logged.append)
    warnings = [line for line in logged if line.startswith("WARNING")]
    assert warnings == prepared.warnings and len(warnings) == 1
    assert re.fullmatch(
        rf"WARNING: python 3\.99 \(.*conda\.yaml \(python=3\.99\)\) is not on this machine \(it has [\d., ]+\); "
        rf"using the nearest, python {re.escape(prepared.python_version)}",
        warnings[0],
    )
    result = run_python(prepared, f"import platform, {OLD_PACKAGE}; print(platform.python_version())")
    assert result.stdout.strip() == prepared.python_version


@pytest.mark.slow
def test_a_venv_with_scikit_learn_1_7_0_builds_and_imports_that_version(tmp_path, base_images):
    # The deployment check of issue 15 relies on it; the project venv has another version (or none).
    assert project_version("scikit-learn") != "1.7.0"
    spec = spec_of(write_environment(tmp_path / "env", ["scikit-learn==1.7.0"]), base_images)
    started = time.perf_counter()
    prepared = env_build.prepare(spec, cache_root=tmp_path / "envs", log=lambda line: None)
    seconds = time.perf_counter() - started
    print(f"scikit-learn 1.7.0 venv in {seconds:.1f} s (project venv: {project_version('scikit-learn')})")
    assert prepared.built is True
    result = run_python(prepared, "import sklearn; print(sklearn.__version__)")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "1.7.0"


@pytest.mark.parametrize(
    "reference",
    [
        "azureml:AzureML-sklearn-1.5@latest",
        "azureml:AzureML-sklearn-1.5:41",
        "azureml://registries/azureml/environments/sklearn-1.5/labels/latest",
        "azureml://registries/azureml/environments/sklearn-1.5/versions/41",
    ],
)
def test_a_curated_name_resolves_to_its_package_set(reference):
    spec = env_build.spec_from_environment(reference, source="job.yml")
    table = json.loads(env_build.CURATED_FILE.read_text())["environments"]["sklearn-1.5"]
    assert spec.python == f"=={table['python']}.*" and not spec.bare and spec.warnings == ()
    texts = [r.text for r in spec.requirements]
    assert {"scikit-learn~=1.5.0", "numpy~=1.22.0", "pandas~=1.5.3", "azureml-core", "mlflow-skinny"} <= set(texts)
    assert "azureml-mlflow" not in texts and any(s.startswith("azureml-mlflow") for s in spec.skipped)
    assert any(table["source"] in note for note in spec.notes)
    assert spec.hash == env_build.spec_from_environment("azureml:AzureML-sklearn-1.5@latest", source="x.yml").hash


def test_the_curated_table_names_its_sources():
    # The whole catalog, its generation and the retired names: tests/test_curated_catalog.py.
    table = json.loads(env_build.CURATED_FILE.read_text())["environments"]
    assert {"sklearn-1.5", "sklearn-1.0", "tensorflow-2.16-cuda11", "minimal-py311-inference"} <= set(table)
    for name, entry in table.items():
        assert entry["source"].startswith("assets/") and "/environments/" in entry["source"]
        assert re.fullmatch(r"[0-9a-f]{40}", entry["source_commit"])
        if entry["runtime"]:  # refused where its runtime (R) is missing: tests/test_curated_catalog.py
            continue
        spec = env_build.spec_from_environment(
            f"azureml://registries/azureml/environments/{name}/labels/latest", source="x"
        )
        assert spec.requirements and spec.python == (f"=={entry['python']}.*" if entry["python"] else spec.python)
        for alias in entry["aliases"]:
            assert env_build.spec_from_environment(f"azureml:{alias}@latest", source="x").hash == spec.hash


def test_an_unknown_curated_name_is_a_one_line_error_naming_the_catalog():
    with pytest.raises(AmlLocalError) as raised:
        env_build.spec_from_environment("azureml:AzureML-pytorch-9.9-cuda99:3", source="job.yml")
    message = str(raised.value)
    assert message.startswith(
        "job.yml: environment azureml:AzureML-pytorch-9.9-cuda99:3: AzureML-pytorch-9.9-cuda99 is not in the "
        "azureml registry's catalog of "
    )
    assert "aml-local environment list --registry-name azureml" in message and "\n" not in message


def test_a_registered_name_is_not_taken_for_a_curated_one():
    with pytest.raises(AmlLocalError, match=r"^job\.yml: environment 'azureml:mnist-train@latest': expected a curated"):
        env_build.spec_from_environment("azureml:mnist-train@latest", source="job.yml")


def test_conda_packages_become_pypi_requirements(tmp_path, base_images):
    conda = {
        "dependencies": [
            "python=3.11",
            "pip=23.3",
            "numpy=1.26",
            "conda-forge::scipy>=1.10,<2",
            "pytorch==2.1.0",
            "pandas 2.2",
            "matplotlib-base=3.8.*=py311h_0",
            "cudatoolkit=11.8",
            {"pip": ["Scikit_Learn == 1.5.2", "# a comment", "requests>=2; python_version >= '3'"]},
        ]
    }
    spec = env_build.spec_from_environment(Environment(image=AZUREML_IMAGE, conda_file=conda), source="env.yml")
    assert [r.text for r in spec.requirements] == [
        "numpy==1.26.*",
        "scipy<2,>=1.10",
        "torch==2.1.0",
        "pandas==2.2.*",
        "matplotlib==3.8.*",
        "scikit-learn==1.5.2",
        'requests>=2; python_version >= "3"',
    ]
    assert spec.python == "==3.11.*" and [s.split(" ")[0] for s in spec.skipped] == ["cudatoolkit=11.8"]
    with pytest.raises(AmlLocalError, match=r"^env\.yml: dependencies\[0\]: conda package 'numpy=1\.1\|1\.2'"):
        env_build.spec_from_environment(
            Environment(image=AZUREML_IMAGE, conda_file={"dependencies": ["numpy=1.1|1.2"]}), source="env.yml"
        )


def test_an_image_brings_its_packages_only_without_a_conda_file(tmp_path, base_images):
    image_only = env_build.spec_from_environment(
        Environment(image="example.azurecr.io/minimal-inference:1"), source="env.yml", base_images=base_images
    )
    assert [r.text for r in image_only.requirements] == ["six"] and image_only.python == "==3.11.*"
    with_conda = env_build.spec_from_environment(
        Environment(image="example.azurecr.io/minimal-inference:1", conda_file={"dependencies": ["tabulate"]}),
        source="env.yml",
        base_images=base_images,
    )
    assert [r.text for r in with_conda.requirements] == ["tabulate"]
    assert any("not in the conda environment Azure builds" in note for note in with_conda.notes)
    unknown = env_build.spec_from_environment(
        Environment(image="example.azurecr.io/unknown:2"), source="env.yml", base_images=base_images
    )
    # As on Azure: its Python and pip, nothing else (never the project venv), with a note saying why.
    assert unknown.bare and unknown.requirements == () and unknown.warnings == ()
    assert any("example.azurecr.io/unknown:2 is not in base_images.json" in note for note in unknown.notes)


def test_a_build_context_is_read_from_its_dockerfile(tmp_path, base_images):
    context = tmp_path / "docker-context"
    context.mkdir()
    (context / "requirements.txt").write_text(
        "tabulate==0.8.10  # pinned\n--extra-index-url https://example.org/simple\n"
    )
    (context / "Dockerfile").write_text(
        "FROM python:3.12 AS builder\nRUN pip install ignored-by-the-final-stage\n"
        "FROM example.azurecr.io/minimal-inference:1\nCOPY requirements.txt .\n"
        f"RUN pip install --no-cache-dir -r requirements.txt && \\\n    pip install '{OLD_PACKAGE}=={OLD_VERSION}'\n"
    )
    (tmp_path / "env.yml").write_text("name: from-context\nbuild:\n  path: docker-context\n")
    spec = spec_of(tmp_path / "env.yml", base_images)
    assert spec.image == "example.azurecr.io/minimal-inference:1" and spec.python == "==3.11.*"
    assert [r.text for r in spec.requirements] == ["tabulate==0.8.10", f"{OLD_PACKAGE}=={OLD_VERSION}", "six"]
    assert spec.pip_options == ("--extra-index-url https://example.org/simple",)
    assert spec.requirements[0].origin == str(context / "requirements.txt")


def test_the_hash_is_the_resolved_spec_not_the_file_it_came_from(tmp_path, base_images):
    one = spec_of(write_environment(tmp_path / "a", ["tabulate==0.8.10", "six"]), base_images)
    same = spec_of(write_environment(tmp_path / "b", ["six", "Tabulate == 0.8.10"]), base_images)
    other = spec_of(write_environment(tmp_path / "c", ["six", "tabulate==0.8.9"]), base_images)
    other_python = spec_of(write_environment(tmp_path / "d", ["six", "tabulate==0.8.10"], python="3.12"), base_images)
    assert one.hash == same.hash and len({one.hash, other.hash, other_python.hash}) == 3
    assert re.fullmatch(r"[0-9a-f]{32}", one.hash)
