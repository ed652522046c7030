"""aml-local's model registry: `model create/show/list` from a folder, a job's output and a run's artifact."""

import json
import os
import pathlib
import shutil
import stat
import textwrap

import pytest

from aml_local import cli, store
from aml_local.jobs import verbs as job

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODEL_YML = os.path.join(REPO_ROOT, "endpoints", "model.yml")
MLMODEL = "flavors:\n  python_function:\n    loader_module: mlflow.keras\n    python_version: 3.11.9\n"


@pytest.fixture
def model_folder(tmp_path):
    """An MLflow-shaped model folder (MLmodel at its top); its contents are never loaded here."""
    folder = tmp_path / "source" / "model"
    (folder / "data").mkdir(parents=True)
    (folder / "MLmodel").write_text(MLMODEL)
    (folder / "data" / "weights.bin").write_bytes(b"\x00\x01weights")
    return folder


def run_cli(capsys, *argv):
    code = cli.main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def create(capsys, *argv):
    code, out, err = run_cli(capsys, "model", "create", "--file", MODEL_YML, *argv)
    assert code == 0, err
    return json.loads(out)


def test_a_folder_is_copied_into_the_store_and_versions_count_up(home, model_folder, capsys):
    first = create(capsys, "--path", str(model_folder))
    assert (first["name"], first["version"], first["type"]) == ("mnist-mlp", "1", "mlflow_model")
    assert first["id"] == "azureml:/local/models/mnist-mlp/versions/1"
    assert first["path"] == str(home / "models/mnist-mlp/1/model")
    assert first["properties"]["aml_local.model_dir"] == str(home / "models/mnist-mlp/1")
    assert first["flavors"]["python_function"]["loader_module"] == "mlflow.keras"
    assert set(first["creation_context"]) >= {"created_at", "created_by", "created_by_type"}
    stored = home / "models/mnist-mlp/1/model/data/weights.bin"
    assert stored.read_bytes() == b"\x00\x01weights"
    assert not stored.stat().st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH), "a registered file is read-only"

    # The registered copy does not follow the source: later edits and deletion change nothing.
    (model_folder / "data" / "weights.bin").write_bytes(b"changed")
    shutil.rmtree(model_folder)
    assert stored.read_bytes() == b"\x00\x01weights"


def test_versions_auto_increment_explicit_ones_are_kept_and_latest_is_the_newest(home, model_folder, capsys):
    assert create(capsys, "--path", str(model_folder))["version"] == "1"
    assert create(capsys, "--path", str(model_folder))["version"] == "2"
    assert create(capsys, "--path", str(model_folder), "--version", "7")["version"] == "7"
    assert create(capsys, "--path", str(model_folder))["version"] == "8"

    code, _, err = run_cli(capsys, "model", "create", "-f", MODEL_YML, "--path", str(model_folder), "--version", "7")
    assert code == 1 and "version 7 already exists" in err and err.count("\n") == 1

    code, out, _ = run_cli(capsys, "model", "show", "-n", "mnist-mlp", "--label", "latest", "--query", "version")
    assert (code, json.loads(out)) == (0, "8")
    code, out, _ = run_cli(capsys, "model", "show", "-n", "mnist-mlp", "--version", "2", "-o", "tsv", "--query", "path")
    assert out.strip() == str(home / "models/mnist-mlp/2/model")
    code, out, _ = run_cli(capsys, "model", "list", "-n", "mnist-mlp", "--query", "[].version", "-o", "tsv")
    assert out.split() == ["8", "7", "2", "1"]
    code, out, _ = run_cli(capsys, "model", "list", "--query", "[].[name, version]", "-o", "json")
    assert json.loads(out) == [["mnist-mlp", "8"]]
    # Each Azure version is an MLflow model version in the local registry.
    versions = store.client().search_model_versions("name = 'mnist-mlp'")
    assert sorted(v.tags["aml.version"] for v in versions) == ["1", "2", "7", "8"]


def test_name_and_path_flags_work_without_a_file(home, model_folder, capsys):
    weights = model_folder / "data" / "weights.bin"
    code, out, err = run_cli(capsys, "model", "create", "--name", "weights", "--path", str(weights), "-o", "json")
    assert code == 0, err
    shown = json.loads(out)
    assert (shown["name"], shown["version"], shown["type"]) == ("weights", "1", "custom_model")
    assert (home / "models/weights/1/weights.bin").read_bytes() == b"\x00\x01weights"


def _producer_job(tmp_path, model_folder, body_extra=""):
    """A command job whose output `model` is a copy of model_folder (as train.py would write one)."""
    project = tmp_path / "project"
    project.mkdir(exist_ok=True)
    spec = project / "producer.yml"
    spec.write_text(
        textwrap.dedent(
            f"""
            $schema: https://azuremlschemas.azureedge.net/latest/commandJob.schema.json
            experiment_name: registry
            code: .
            command: cp -r ${{{{inputs.source}}}}/. ${{{{outputs.model}}}} {body_extra}
            inputs:
              source:
                type: uri_folder
                path: {model_folder}
            outputs:
              model:
                type: mlflow_model
            environment: azureml:mnist-train@latest
            compute: azureml:cpu-cluster
            """
        )
    )
    return spec


def test_a_jobs_output_is_registered_by_its_azureml_uri_and_outlives_the_job(
    home, tmp_path, model_folder, capsys, project_environments
):
    project_environments(tmp_path / "project")
    with open(os.devnull, "w") as quiet:
        produced = job.create(_producer_job(tmp_path, model_folder), name="producer", stream=True, echo=quiet)
    assert produced["status"] == "Completed"
    shown = create(capsys, "--path", "azureml://jobs/producer/outputs/model")
    assert shown["job_name"] == "producer"
    assert shown["properties"]["aml_local.source"] == "azureml://jobs/producer/outputs/model"
    registered = store.client().search_model_versions("name = 'mnist-mlp'")[0]
    assert registered.run_id == produced["properties"]["mlflow.runId"]

    shutil.rmtree(home / "jobs" / "producer")
    assert (home / "models/mnist-mlp/1/model/MLmodel").read_text() == MLMODEL

    code, _, err = run_cli(capsys, "model", "create", "-f", MODEL_YML, "--path", "azureml://jobs/nobody/outputs/model")
    assert code == 1 and "no local job named 'nobody'" in err


def test_a_jobs_missing_output_or_unfinished_job_is_refused(home, tmp_path, model_folder, capsys, project_environments):
    project_environments(tmp_path / "project")
    with open(os.devnull, "w") as quiet:
        job.create(_producer_job(tmp_path, model_folder), name="ok", stream=True, echo=quiet)
        failed = job.create(_producer_job(tmp_path, model_folder, "&& exit 4"), name="broke", stream=True, echo=quiet)
    assert failed["status"] == "Failed"
    code, _, err = run_cli(capsys, "model", "create", "-f", MODEL_YML, "--path", "azureml://jobs/ok/outputs/weights")
    assert code == 1 and "job ok has no output 'weights' (outputs: model, artifacts)" in err
    code, _, err = run_cli(capsys, "model", "create", "-f", MODEL_YML, "--path", "azureml://jobs/broke/outputs/model")
    assert code == 1 and "job broke is Failed" in err and err.count("\n") == 1


def test_run_artifacts_register_by_the_artifacts_output(home, tmp_path, model_folder, capsys, project_environments):
    # azureml://jobs/<job>/outputs/artifacts/paths/<path>: what the job wrote to ./outputs, uploaded when it ended, with
    # no `artifacts` output declared (Azure ML's Keras tutorial registers its best trial's model so).
    project_environments(tmp_path / "project")
    spec = _producer_job(tmp_path, model_folder, f"&& mkdir -p outputs && cp -r {model_folder} outputs/model")
    with open(os.devnull, "w") as quiet:
        job.create(spec, name="writer", stream=True, echo=quiet)
    path = "azureml://jobs/writer/outputs/artifacts/paths/outputs/model/"
    shown = create(capsys, "--path", path)
    assert shown["properties"]["aml_local.source"] == path
    assert (home / "models/mnist-mlp/1/model/MLmodel").read_text() == MLMODEL


def test_a_runs_artifact_is_registered_by_its_runs_uri(home, model_folder, capsys):
    client = store.client()
    run = client.create_run(store.experiment_id("registry"))
    client.log_artifacts(run.info.run_id, str(model_folder), artifact_path="model")
    client.set_terminated(run.info.run_id)

    shown = create(capsys, "--path", f"runs:/{run.info.run_id}/model")
    assert shown["properties"]["aml_local.source"] == f"runs:/{run.info.run_id}/model"
    assert (home / "models/mnist-mlp/1/model/data/weights.bin").read_bytes() == b"\x00\x01weights"
    assert not list(home.glob("aml-local-model-*")), "the download folder is removed"

    code, _, err = run_cli(capsys, "model", "create", "-f", MODEL_YML, "--path", "runs:/0123abcd/model")
    assert code == 1 and "no run '0123abcd'" in err
    code, _, err = run_cli(capsys, "model", "create", "-f", MODEL_YML, "--path", f"runs:/{run.info.run_id}/nothing")
    assert code == 1 and "has no artifact 'nothing'" in err and err.count("\n") == 1


@pytest.mark.parametrize(
    ("yaml_change", "argv", "expected"),
    [
        (("path:", "pathh:"), [], "pathh: Unknown field"),
        (("type: mlflow_model", "type: onnx_model"), [], "type: Value 'onnx_model' passed is not in set"),
        (None, ["--path", "https://example.invalid/model"], "not on this machine"),
        (None, ["--path", "/nonexistent/model"], "/nonexistent/model does not exist"),
        (None, ["--name", "bad name"], "name 'bad name'"),
        (None, ["--version", "1/2"], "version '1/2'"),
    ],
)
def test_bad_input_gives_one_line_and_exit_1(home, tmp_path, model_folder, capsys, yaml_change, argv, expected):
    text = pathlib.Path(MODEL_YML).read_text().replace("../outputs/model", str(model_folder))
    if yaml_change:
        text = text.replace(*yaml_change)
    spec = tmp_path / "model.yml"
    spec.write_text(text)
    code, out, err = run_cli(capsys, "model", "create", "--file", str(spec), *argv)
    assert code == 1, err
    assert expected in err
    assert err.startswith("ERROR: ") and err.count("\n") == 1 and out == ""


def test_mlflow_model_type_needs_an_mlmodel_and_unknown_models_are_named(home, model_folder, capsys):
    (model_folder / "MLmodel").unlink()
    code, _, err = run_cli(capsys, "model", "create", "-f", MODEL_YML, "--path", str(model_folder))
    assert code == 1 and "needs an MLmodel file" in err
    # A version asked for by number is a GET: az's exit code 3 when it is not there (tests/test_cli.py).
    code, _, err = run_cli(capsys, "model", "show", "-n", "nothing", "--version", "1")
    assert code == 3 and "model 'nothing' not found" in err
    create(capsys, "--path", str(model_folder), "--type", "custom_model")
    code, _, err = run_cli(capsys, "model", "show", "-n", "mnist-mlp", "--version", "9")
    assert code == 3 and "mnist-mlp:9 not found (versions: 1)" in err
    code, _, err = run_cli(capsys, "model", "show", "-n", "mnist-mlp", "--label", "production")
    assert code == 1 and "only the label 'latest'" in err
    code, _, err = run_cli(capsys, "model", "create", "--path", str(model_folder))
    assert code == 1 and "give --file, or --name and --path" in err
