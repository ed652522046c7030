"""jobs/train.yml and jobs/train-distributed.yml run end to end through the aml-local console script,
exactly as a user types them (with --set to keep them short), and land in the local MLflow store."""

import gzip
import json
import pathlib
import subprocess
import sys

import pytest

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
AML_LOCAL = str(pathlib.Path(sys.executable).parent / "aml-local")

pytestmark = pytest.mark.slow


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("AML_LOCAL_HOME", str(tmp_path / "aml-local"))
    monkeypatch.setenv("CI", "true")
    return tmp_path / "aml-local"


def aml_local(*args, timeout=600):
    return subprocess.run(
        [AML_LOCAL, *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout, check=False
    )


def test_train_yml_streams_to_completion_and_records_everything(env, small_mnist_dir):
    result = aml_local(
        "job", "create", "--file", "jobs/train.yml", "--stream", "--name", "train_e2e",
        "--set", "inputs.epochs=2", "--set", "inputs.validation_size=1000", "--set", "inputs.learning_rate=0.1",
        "--set", f"inputs.mnist.path={small_mnist_dir}",
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "epoch 1/2" in result.stdout and "epoch 2/2" in result.stdout
    shown = json.loads(result.stdout[result.stdout.rindex("\n{") :])
    assert shown["status"] == "Completed" and shown["experiment_name"] == "mnist"
    assert shown["inputs"]["batch_size"] == "64" and shown["inputs"]["epochs"] == "2"

    model_dir = pathlib.Path(shown["outputs"]["model"]["path"])
    assert (model_dir / "MLmodel").is_file()
    assert json.loads((model_dir / "test_metrics.json").read_text())["test_acc"] > 0.85
    assert (pathlib.Path(shown["outputs"]["checkpoints"]["path"]) / "checkpoint.npz").is_file()

    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{env / 'mlflow.db'}")
    run_id = shown["properties"]["mlflow.runId"]
    history = client.get_metric_history(run_id, "validation_acc")
    assert [m.step for m in sorted(history, key=lambda m: m.step)] == [1, 2]
    run = client.get_run(run_id)
    assert run.data.params["batch_size"] == "64" and "test_acc" in run.data.metrics
    artifacts = {a.path for a in client.list_artifacts(run_id)}
    assert {"confusion_matrix.png", "model"} <= artifacts

    listed = aml_local("job", "list", "--query", "[].{name:name,status:status}", "-o", "tsv")
    assert listed.stdout.split() == ["train_e2e", "Completed"]


def test_a_job_on_corrupt_data_fails_with_the_data_error_in_its_log(env, tmp_path, small_mnist_dir):
    broken = tmp_path / "broken"
    broken.mkdir()
    for path in small_mnist_dir.glob("*.gz"):
        (broken / path.name).write_bytes(path.read_bytes())
    (broken / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(b"\x00\x00\x08\x01" + b"\x00" * 20))
    result = aml_local(
        "job", "create", "-f", "jobs/train.yml", "--stream", "-n", "broken_data",
        "--set", f"inputs.mnist.path={broken}",
    )  # fmt: skip
    assert result.returncode == 1
    assert "t10k-labels-idx1-ubyte.gz" in result.stdout  # train.py's own one-line error, streamed
    assert "Traceback" not in result.stdout
    assert "ended Failed: the command exited with code 2; its last line: error: " in result.stderr
    assert "t10k-labels-idx1-ubyte.gz" in result.stderr


def test_bad_job_input_is_refused_before_anything_runs(env, tmp_path):
    result = aml_local("job", "create", "-f", "jobs/train.yml", "--set", f"inputs.mnist.path={tmp_path}/missing")
    assert result.returncode == 1
    assert result.stderr.startswith("ERROR: input mnist:") and result.stderr.count("\n") == 1
    result = aml_local("job", "create", "-f", "jobs/train.yml", "--set", "inputs.epoch=3")
    assert result.returncode == 1 and "has no input 'epoch'" in result.stderr


def test_distributed_yaml_trains_on_two_local_workers(env, small_mnist_dir):
    result = aml_local(
        "job", "create", "--file", "jobs/train-distributed.yml", "--stream", "--name", "dist_e2e",
        "--set", "inputs.epochs=1", "--set", "inputs.validation_size=1000",
        "--set", f"inputs.mnist.path={small_mnist_dir}",
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "[worker 0] epoch 1/1" in result.stdout and "[worker 1] epoch 1/1" in result.stdout
    shown = json.loads(result.stdout[result.stdout.rindex("\n{") :])
    assert shown["distribution"]["worker_count"] == 2
    assert (pathlib.Path(shown["outputs"]["model"]["path"]) / "MLmodel").is_file()
