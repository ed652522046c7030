"""The pieces of issue 21 that need no build, no job and no network (the fast tier): a run's layer over an
environment (assets/env_layer.py), what an image's name says (its Python, its runtime), the GPU rule, which pins
date an environment (release_dates.py), and uv's failures told as their cause (env_build.py). The real jobs, builds
and deployments are in test_isolation.py."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from azure.ai.ml.entities import BuildContext, Environment
from packaging.requirements import Requirement

from aml_local import AmlLocalError
from aml_local.assets import env_build, env_layer, release_dates
from aml_local.assets.env_spec import EXCLUDE_NEWER_VARIABLE, PipRequirement, SpecBuilder


def in_layer(layer: env_layer.Layer, code: str) -> str:
    env = layer.process_env({"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp")})
    answer = subprocess.run(["bash", "-c", f"python -c {code!r}"], env=env, capture_output=True, text=True, timeout=60)
    assert answer.returncode == 0, answer.stderr
    return answer.stdout.strip()


def test_a_layer_over_the_project_venv_is_the_runs_prefix_and_reads_the_venv_under_it(tmp_path):
    layer = env_layer.make(sys.prefix, tmp_path / "layer")
    seen = json.loads(
        in_layer(
            layer,
            "import json, sys, sysconfig, shutil, mlflow, aml_local; print(json.dumps({'prefix': sys.prefix, "
            "'purelib': sysconfig.get_paths()['purelib'], 'pip': shutil.which('pip'), 'mlflow': mlflow.__file__}))",
        )
    )
    site = tmp_path / "layer" / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"
    # What pip installs goes to the layer (its purelib, its bin/pip); what the run imports still comes from below.
    assert seen["prefix"] == str(tmp_path / "layer") and seen["purelib"] == str(site)
    assert seen["pip"] == str(tmp_path / "layer" / "bin" / "pip")
    assert seen["mlflow"].startswith(sys.prefix + "/")
    # Console scripts run the layer's python, never the venv's own (which would install into it).
    assert (tmp_path / "layer" / "bin" / "pip").read_text().splitlines()[0] == f"#!{layer.python}"
    assert layer.pycache is None  # the project venv's bytecode is compiled at make setup
    env_layer.remove(layer.venv)
    assert not (tmp_path / "layer").exists()


def test_a_layer_over_a_cached_environment_compiles_into_the_cache_beside_it(tmp_path):
    cached = tmp_path / "cache" / "abc"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(cached / "venv")], check=True)
    (cached / "complete.json").write_text("{}")
    layer = env_layer.make(cached / "venv", tmp_path / "layer")
    assert layer.pycache == str(cached / "pycache")
    assert layer.process_env({"PATH": "/usr/bin"})["PYTHONPYCACHEPREFIX"] == str(cached / "pycache")
    assert in_layer(layer, "import sys; print(sys.prefix)") == str(tmp_path / "layer")


@pytest.mark.parametrize(
    ("image", "python", "runtime"),
    [
        ("library/python:3.11.6", "==3.11.*", None),
        ("python:3.8-slim", "==3.8.*", None),
        ("mcr.microsoft.com/azureml/minimal-ubuntu20.04-py39-cpu-inference:latest", "==3.9.*", None),
        ("rocker/r-ver:4.3.1", None, "R"),
        ("eclipse-temurin:21", None, "Java"),
    ],
)
def test_an_images_name_says_its_python_and_its_runtime(image, python, runtime):
    builder = SpecBuilder("env", "env.yml")
    builder.set_image(image, {})
    assert (builder.image_python and f"=={builder.image_python}.*", builder.runtime) == (python, runtime)


def test_a_dockerfile_from_python_3_8_asks_for_3_8_and_its_other_run_lines_are_named(tmp_path):
    context = tmp_path / "context"
    context.mkdir()
    (context / "Dockerfile").write_text(
        "FROM python:3.8\nRUN apt-get update && apt-get install -y libgomp1\nRUN pip install six==1.16.0\n"
    )
    spec = env_build.spec_from_environment(
        Environment(name="docker", build=BuildContext(path=str(context))), source=str(tmp_path / "env.yml")
    )
    assert spec.python == "==3.8.*" and [r.text for r in spec.requirements] == ["six==1.16.0"]
    assert any("2 RUN command(s) other than pip/conda installs are not run locally" in note for note in spec.notes)
    assert any("apt-get install -y libgomp1" in note for note in spec.notes)


def test_gpu_packages_follow_one_rule_each_with_a_note():
    builder = SpecBuilder("gpu", "env.yml")
    for text in ("tensorflow[and-cuda]==2.16.2", "onnxruntime-gpu>=1.17", "nvidia-cudnn-cu12", "horovod[tensorflow]"):
        builder.add_requirement(Requirement(text), origin="conda.yaml")
    spec = builder.finish()
    assert [r.text for r in spec.requirements] == ["tensorflow==2.16.2", "onnxruntime>=1.17"]
    assert len(spec.skipped) == 2 and all("GPU-only" in line for line in spec.skipped)
    assert len(spec.notes) == 2 and all("the CPU build of the same version" in note for note in spec.notes)


def test_which_pins_date_an_environment():
    requirements = [
        PipRequirement(text=t, origin="c", parsed=Requirement(t))
        for t in ("scikit-learn==1.2.2.*", "numpy", "pandas>=1.5", "joblib==1.2.*", "six==1.16.0")
    ]
    assert release_dates.exact_pins(requirements) == [("scikit-learn", "1.2.2"), ("six", "1.16.0")]


def test_the_override_setting_dates_every_environment_and_changes_its_hash(monkeypatch):
    def spec():
        builder = SpecBuilder("env", "env.yml")
        builder.add_requirement(Requirement("numpy"), origin="c")
        return builder.finish()

    monkeypatch.delenv(EXCLUDE_NEWER_VARIABLE, raising=False)
    plain = spec()
    monkeypatch.setenv(EXCLUDE_NEWER_VARIABLE, "2024-05-01")
    dated = spec()
    monkeypatch.setenv(EXCLUDE_NEWER_VARIABLE, "none")
    today = spec()
    assert dated.exclude_newer == "2024-05-01T23:59:59Z" and today.exclude_newer is None
    assert len({plain.hash, dated.hash, today.hash}) == 3
    monkeypatch.setenv(EXCLUDE_NEWER_VARIABLE, "May 2024")
    with pytest.raises(AmlLocalError, match="AML_LOCAL_EXCLUDE_NEWER=May 2024: 'May 2024': expected a date"):
        spec()


# uv's own words (uv 0.13, NO_COLOR) for a build that failed, as the job's log keeps them.
BUILD_FAILED = """\
Resolved 1 package in 300ms
   Building numpy==1.19.5
error: Failed to build `numpy==1.19.5`
  cause: The build backend returned an error
  cause: Call to `setuptools.build_meta:__legacy__.build_wheel` failed (exit status: 1)

         [stderr]
         numpy/core/src/multiarray/scalartypes.c.src:2982:16: error: too few arguments to function '_Py_HashDouble'
         error: Command "gcc -O3 -c scalartypes.c" failed with exit status 1

hint: Build failures usually indicate a problem with the package or the build environment
"""
NOT_ON_INDEX = """\
error: No solution found when resolving dependencies
  cause: Because nonexistent-pkg-zzq was not found in the package registry and you require nonexistent-pkg-zzq==1.0, we can conclude that your requirements are unsatisfiable.
"""  # noqa: E501


def test_a_failed_build_names_the_package_that_failed_and_why():
    builder = SpecBuilder("env", "env.yml")
    for text in ("matplotlib==3.4.3", "scikit-learn==1.2.2", "numpy==1.19.5"):
        builder.add_requirement(Requirement(text), origin="conda.yaml")
    spec = builder.finish()
    message = env_build._uv_failure(BUILD_FAILED.splitlines(), spec, "3.11", Path("/cache/abc/build.log"))
    assert message.startswith(
        "conda.yaml (environment env.yml): cannot install numpy==1.19.5: no wheel for python 3.11 on this platform, "
        "and building it from source failed: Failed to build `numpy==1.19.5`"
    )
    assert 'the build\'s last error: error: Command "gcc -O3 -c scalartypes.c" failed' in message
    assert message.endswith("(uv's full output: /cache/abc/build.log)") and "\n" not in message
    other = SpecBuilder("env", "env.yml")
    other.add_requirement(Requirement("nonexistent-pkg-zzq==1.0"), origin="conda.yaml")
    message = env_build._uv_failure(NOT_ON_INDEX.splitlines(), other.finish(), "3.11")
    assert message.startswith(
        "conda.yaml (environment env.yml): cannot install nonexistent-pkg-zzq==1.0: not on the index"
    )


def test_a_dependency_that_failed_to_build_is_named_with_what_needs_it():
    builder = SpecBuilder("sklearn-1.5", "job.yml")
    for text in ("matplotlib~=3.5.0", "azureml-core"):
        builder.add_requirement(Requirement(text), origin="curated_environments.json:sklearn-1.5")
    output = BUILD_FAILED.replace("numpy==1.19.5", "ruamel-yaml==0.15.89").splitlines()
    locked = "azureml-core==1.30.0\n    # via -r requirements.in\nruamel-yaml==0.15.89\n    # via azureml-core\n"
    message = env_build._uv_failure(output, builder.finish(), "3.10", Path("/cache/failed/abc.build.log"), locked)
    assert message.startswith(
        "environment sklearn-1.5 (job.yml): cannot install ruamel-yaml==0.15.89 (needed by azureml-core): no wheel for "
        "python 3.10 on this platform, and building it from source failed"
    )
    assert "matplotlib" not in message


@pytest.mark.parametrize(
    ("entry", "python", "installs"),
    [
        ({"filename": "pkg-1.0-py3-none-any.whl"}, "3.8", True),
        ({"filename": "pkg-1.0-py3-none-any.whl", "requires-python": ">=3.9"}, "3.8", False),
        ({"filename": "pkg-1.0-cp310-cp310-manylinux_2_17_x86_64.whl"}, "3.9", False),
        ({"filename": "pkg-1.0-cp38-abi3-manylinux_2_17_x86_64.whl"}, "3.11", True),
        ({"filename": "pkg-1.0.tar.gz", "requires-python": ">=3.7"}, "3.10", True),
    ],
)
def test_the_newest_release_as_of_a_date_is_one_that_installs_on_the_environments_python(entry, python, installs):
    # What pip did the day the image was built: the newest release that installs on its Python.
    assert release_dates._installs_on(entry, python) is installs
