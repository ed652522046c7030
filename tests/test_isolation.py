"""Every run in an environment of its own (issue 21), with real jobs, real builds and a real deployment, no mocks:

- a job's `pip install` lands in the job's own layer over its environment (assets/env_layer.py): the job imports
  what it installed, the project venv and the cached environment are unchanged, and the next job in the same
  environment cannot import it, as with a fresh container on Azure; for an image whose contents are unknown
  (its Python and pip, nothing else) and for a curated environment;
- the whole curated catalog: a job in AzureML-lightgbm-3.3 imports lightgbm;
- non-Python images: an R image is refused at create when there is no R, and runs with the machine's R when there is;
- resolved as Azure would have built it: unpinned requirements resolve as of the newest exact pin's release date
  (scikit-learn 1.2.2 gets a numpy 1.x, as in azureml-examples' inference-schema sample), which `job show` shows;
  a deployment shaped like that sample (python 3.10, azureml-inference-server-http 0.7.6 with its gunicorn 20.1,
  inference-schema decorators) answers its sample input.

One store for the module. The environments are built into the machine's own environment cache, as a user's jobs
are: these tests are about what a run may do to an environment, not about building one (test_env_build.py builds
into empty caches), and a second run of the suite on the same machine reuses them, as a user's second job does.
"""

import http.client
import json
import os
import subprocess
import sys
import textwrap
import time
import urllib.parse
from pathlib import Path

import pytest

from aml_local import cli, store, tracking_server
from aml_local.assets import environment
from aml_local.assets.env_spec import EXCLUDE_NEWER_VARIABLE
from aml_local.endpoints.online import records

FIGLET = "pyfiglet==1.0.2"
# What a job's second command prints: which of these it can import, and from where (JSON on one line).
PROBE = """\
import importlib, json, sys
found = {}
for name in sys.argv[1:]:
    try:
        module = importlib.import_module(name)
        found[name] = getattr(module, "__version__", "?")
    except ImportError:
        found[name] = None
print("PROBE " + json.dumps({"prefix": sys.prefix, "python": sys.version.split()[0], "found": found}))
"""


@pytest.fixture(scope="module")
def project(tmp_path_factory, seed_store):
    root = tmp_path_factory.mktemp("isolation")
    seed_store(root / ".aml-local")
    (root / "pyproject.toml").write_text("[project]\nname = 'issue21'\n")
    (root / "src").mkdir()
    (root / "src" / "probe.py").write_text(PROBE)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AML_LOCAL_HOME", str(root / ".aml-local"))
        patch.delenv(environment.CACHE_VARIABLE, raising=False)
        patch.delenv("AML_LOCAL_PORT", raising=False)
        patch.delenv("MLFLOW_TRACKING_URI", raising=False)
        patch.delenv(EXCLUDE_NEWER_VARIABLE, raising=False)
        yield root
        tracking_server.stop()
        for endpoint in records.endpoints_dir().glob("*/endpoint.json"):
            cli.main(["online-endpoint", "delete", "-n", endpoint.parent.name, "--yes"])


def run_cli(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def job_file(project: Path, name: str, command: str, environment_text: str) -> Path:
    path = project / f"{name}.yml"
    path.write_text(
        "$schema: https://azuremlschemas.azureedge.net/latest/commandJob.schema.json\n"
        f"experiment_name: issue21\ncode: src\ncommand: >-\n  {command}\nenvironment: {environment_text}\n"
    )
    return path


def run_job(capsys, project: Path, name: str, command: str, environment_text: str) -> dict:
    code, out, err = run_cli(capsys, "job", "create", "-f", job_file(project, name, command, environment_text),
                             "--name", name, "--stream")  # fmt: skip
    shown = json.loads(run_cli(capsys, "job", "show", "-n", name)[1])
    shown["_exit"], shown["_out"], shown["_err"] = code, out, err
    return shown


def probe_of(shown: dict) -> dict:
    lines = [line for line in shown["_out"].splitlines() if line.startswith("PROBE ")]
    assert len(lines) == 1, shown["_out"] + shown["_err"]
    return json.loads(lines[0].removeprefix("PROBE "))


def freeze(python: str) -> list[str]:
    answer = subprocess.run([python, "-m", "pip", "freeze", "--all"], capture_output=True, text=True, timeout=120)
    assert answer.returncode == 0, answer.stderr
    return sorted(answer.stdout.splitlines())


def install_then_probe(capsys, project: Path, name: str, environment_text: str, *modules: str):
    """Job 1 pip-installs pyfiglet and imports it; job 2, in the same environment, probes what it can import."""
    first = run_job(
        capsys, project, f"{name}_install", f"pip install -q {FIGLET} && python probe.py pyfiglet", environment_text
    )
    assert first["status"] == "Completed", first["_err"] + first["_out"]
    installed = probe_of(first)
    second = run_job(capsys, project, f"{name}_next", f"python probe.py pyfiglet pip {' '.join(modules)}",
                     environment_text)  # fmt: skip
    assert second["status"] == "Completed", second["_err"] + second["_out"]
    return first, installed, second, probe_of(second)


@pytest.mark.slow
def test_an_unknown_images_job_installs_into_its_own_layer_and_the_next_job_starts_clean(project, capsys):
    before = freeze(sys.executable)
    _, installed, second, probed = install_then_probe(
        capsys, project, "image", "\n  image: library/python:3.11.6", "numpy", "mlflow", "aml_local"
    )
    # The job imported what it installed, from its own layer: the job's folder, removed when it ended.
    assert installed["found"] == {"pyfiglet": "1.0.2"}
    assert installed["prefix"] == str(store.jobs_dir() / "image_install" / "layer")
    assert not Path(installed["prefix"]).exists()
    # The tool's venv is exactly as it was, and the next job starts from the image as it is: its Python (3.11, as
    # the tag asks) and pip, nothing else: neither pyfiglet, nor anything of the project venv.
    assert freeze(sys.executable) == before
    assert probed["found"]["pyfiglet"] is None and probed["found"]["pip"] is not None
    assert (
        probed["found"]["numpy"] is None and probed["found"]["mlflow"] is None and probed["found"]["aml_local"] is None
    )
    assert probed["python"].startswith("3.11.")
    ran_in = second["properties"]["aml_local.environment"]
    assert ran_in["path"] != "project venv" and Path(ran_in["path"]).parent == environment.cache_root()
    assert any("library/python:3.11.6 is not in base_images.json" in note for note in ran_in["notes"])


@pytest.mark.slow
def test_a_curated_environments_job_installs_into_its_own_layer_and_the_cached_environment_is_unchanged(
    project, capsys
):
    before = freeze(sys.executable)
    _, installed, second, probed = install_then_probe(
        capsys, project, "curated", "azureml:AzureML-sklearn-1.5@latest", "sklearn", "aml_local"
    )
    assert installed["found"] == {"pyfiglet": "1.0.2"} and freeze(sys.executable) == before
    ran_in = second["properties"]["aml_local.environment"]
    cached_python = ran_in["python"]
    assert Path(ran_in["path"]).parent == environment.cache_root()
    assert not any(line.lower().startswith("pyfiglet") for line in freeze(cached_python))
    assert probed["found"]["pyfiglet"] is None and probed["found"]["aml_local"] is None
    assert probed["found"]["sklearn"].startswith("1.5.") and probed["python"].startswith("3.10.")
    # Resolved as of the curated snapshot's date, which job show gives.
    assert ran_in["resolved_as_of"].startswith("2026-07-23")


@pytest.mark.slow
def test_a_job_in_the_curated_lightgbm_environment_imports_lightgbm(project, capsys):
    shown = run_job(capsys, project, "lgbm", "python probe.py lightgbm sklearn", "azureml:AzureML-lightgbm-3.3@latest")
    assert shown["status"] == "Completed", shown["_err"] + shown["_out"]
    found = probe_of(shown)["found"]
    assert found["lightgbm"] is not None and found["lightgbm"].split(".")[0] == "4" and found["sklearn"] is not None


def without(executable: str) -> str:
    """PATH with no folder that has `executable`."""
    folders = os.environ["PATH"].split(os.pathsep)
    return os.pathsep.join(f for f in folders if not (Path(f) / executable).exists())


def test_an_r_image_is_refused_at_create_when_this_machine_has_no_r(project, capsys, monkeypatch):
    monkeypatch.setenv("PATH", without("Rscript"))
    started = time.perf_counter()
    code, out, err = run_cli(
        capsys,
        "job",
        "create",
        "-f",
        job_file(project, "r_none", "Rscript -e 'cat(6*7)'", "\n  image: rocker/r-ver:4.3.1"),
    )
    seconds = time.perf_counter() - started
    print(f"refused in {seconds:.2f} s")
    assert code == 1 and out == ""
    assert "image rocker/r-ver:4.3.1 runs R, and this machine has no Rscript on PATH" in err
    assert "apt-get install r-base-core" in err and "Traceback" not in err
    assert not (store.jobs_dir() / "r_none").exists()


@pytest.mark.slow
def test_an_r_image_runs_with_this_machines_r(project, capsys, monkeypatch, tmp_path):
    # This machine's R, played by a script named Rscript (the job's command is what the image's R would run).
    bin_dir = tmp_path / "r-bin"
    bin_dir.mkdir()
    (bin_dir / "Rscript").write_text('#!/bin/sh\necho "R says: $*"\n')
    (bin_dir / "Rscript").chmod(0o755)
    monkeypatch.setenv("PATH", os.pathsep.join([str(bin_dir), without("Rscript")]))
    shown = run_job(capsys, project, "r_here", "Rscript -e 'cat(6*7)'", "\n  image: rocker/r-ver:4.3.1")
    assert shown["status"] == "Completed", shown["_err"] + shown["_out"]
    assert "R says: -e cat(6*7)" in shown["_out"]
    notes = shown["properties"]["aml_local.environment"]["notes"]
    assert any(note.startswith(f"R image: its runtime is this machine's {bin_dir / 'Rscript'}") for note in notes)


# A deployment shaped like azureml-examples' cli/endpoints/online/managed/inference-schema: its conda file pins
# scikit-learn 1.2.2, azureml-inference-server-http 0.7.6 and inference-schema 1.4 and leaves numpy and pandas
# unpinned (resolved with today's releases, numpy 2 breaks scikit-learn 1.2.2: "numpy.dtype size changed").
INFERENCE_SCHEMA_CONDA = """\
name: infschema
channels:
  - conda-forge
dependencies:
  - python=3.10
  - scikit-learn=1.2.2
  - numpy
  - pandas
  - pip:
    - joblib
    - azureml-inference-server-http==0.7.6
    - inference-schema==1.4
"""
TRAIN_IRIS = """\
import sys, joblib, numpy
from sklearn.linear_model import LogisticRegression
x = numpy.array([[5.1, 3.5, 1.4, 0.2], [4.9, 3.0, 1.4, 0.2], [6.4, 3.2, 4.5, 1.5], [6.9, 3.1, 4.9, 1.5],
                 [7.2, 3.2, 6.0, 1.8], [6.3, 3.3, 6.0, 2.5]])
y = numpy.array([0, 0, 1, 1, 2, 2])
joblib.dump(LogisticRegression(max_iter=1000).fit(x, y), sys.argv[1] + "/iris.pkl")
print("NUMPY", numpy.__version__)
"""
SCORE_STANDARD = """\
import glob, os
import joblib
import numpy as np
from inference_schema.parameter_types.standard_py_parameter_type import StandardPythonParameterType
from inference_schema.schema_decorators import input_schema, output_schema

CATEGORIES = np.array(["Setosa", "Versicolor", "Virginica"])


def init():
    global model
    model = joblib.load(glob.glob(os.path.join(os.environ["AZUREML_MODEL_DIR"], "**", "iris.pkl"), recursive=True)[0])


@input_schema(param_name="sepal_length", param_type=StandardPythonParameterType([7.2]))
@input_schema(param_name="sepal_width", param_type=StandardPythonParameterType([3.2]))
@input_schema(param_name="petal_length", param_type=StandardPythonParameterType([6.0]))
@input_schema(param_name="petal_width", param_type=StandardPythonParameterType([1.8]))
@output_schema(output_type=StandardPythonParameterType({"Category": ["Virginica"]}))
def run(sepal_length, sepal_width, petal_length, petal_width):
    rows = np.array([sepal_length, sepal_width, petal_length, petal_width]).T
    return {"Category": CATEGORIES[model.predict(rows)].tolist(), "numpy": np.__version__}
"""


@pytest.mark.slow
def test_an_inference_schema_deployment_resolves_as_of_its_pins_and_answers_its_sample_input(project, capsys):
    (project / "infschema").mkdir()
    (project / "infschema" / "env.yml").write_text(INFERENCE_SCHEMA_CONDA)
    (project / "src" / "train_iris.py").write_text(TRAIN_IRIS)
    (project / "src" / "score_standard.py").write_text(SCORE_STANDARD)
    inline = (
        "\n  image: mcr.microsoft.com/azureml/minimal-ubuntu20.04-py39-cpu-inference\n  conda_file: infschema/env.yml"
    )
    train = job_file(project, "iris_train", "python train_iris.py ${{outputs.model}}", inline)
    train.write_text(train.read_text() + "outputs:\n  model:\n    type: custom_model\n")
    code, out, err = run_cli(capsys, "job", "create", "-f", train, "--name", "iris_train", "--stream")
    shown = json.loads(run_cli(capsys, "job", "show", "-n", "iris_train")[1])
    assert shown["status"] == "Completed", err + out
    # numpy as of scikit-learn 1.2.2's release (the newest exact pin, 2023-03): a 1.x, not today's 2.x.
    assert "NUMPY 1." in out
    ran_in = shown["properties"]["aml_local.environment"]
    assert ran_in["resolved_as_of"].startswith("2023-03-") and ran_in["python_version"].startswith("3.10.")
    uri = "azureml://jobs/iris_train/outputs/model"
    assert run_cli(capsys, "model", "create", "-n", "iris", "-v", "1", "--type", "custom_model", "--path", uri)[0] == 0

    (project / "endpoint.yml").write_text("name: infschema-endpoint\nauth_mode: key\n")
    assert run_cli(capsys, "online-endpoint", "create", "-f", project / "endpoint.yml")[0] == 0
    deployment = project / "deployment-standard.yml"
    deployment.write_text(
        textwrap.dedent(
            """\
            $schema: https://azuremlschemas.azureedge.net/latest/managedOnlineDeployment.schema.json
            name: infsrv-standard
            endpoint_name: infschema-endpoint
            model: azureml:iris:1
            code_configuration:
              code: src
              scoring_script: score_standard.py
            environment:
              image: mcr.microsoft.com/azureml/minimal-ubuntu20.04-py39-cpu-inference
              conda_file: infschema/env.yml
            instance_type: Standard_DS3_v2
            instance_count: 1
            """
        )
    )
    code, out, err = run_cli(capsys, "online-deployment", "create", "-f", deployment, "--all-traffic")
    assert code == 0, err
    shown = json.loads(run_cli(capsys, "online-endpoint", "show", "-n", "infschema-endpoint")[1])
    key = json.loads(run_cli(capsys, "online-endpoint", "get-credentials", "-n", "infschema-endpoint")[1])["primaryKey"]
    address = urllib.parse.urlparse(shown["scoring_uri"])
    connection = http.client.HTTPConnection(address.hostname, address.port, timeout=60)
    # The sample's own request (sample-inputs/standard.json): four named lists, one value per flower.
    body = json.dumps(
        {"sepal_length": [7.2, 4.2], "sepal_width": [3.2, 3.5], "petal_length": [6.0, 1.0], "petal_width": [1.8, 3.0]}
    )
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    connection.request("POST", address.path, body, headers)
    answer = connection.getresponse()
    payload = json.loads(answer.read())
    assert answer.status == 200, payload
    assert payload["Category"] == ["Virginica", "Setosa"] and payload["numpy"].startswith("1.")
    assert answer.getheader("x-ms-server-version") == "azmlinfsrv/0.7.6"
