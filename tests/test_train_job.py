"""jobs/train.yml and jobs/train-distributed.yml run end to end (with --set to keep them short) and land in the local
MLflow store; given the same inputs, the two train the same model. jobs/train.yml runs through the aml-local console
script, exactly as a user types it (conftest's train_job); the others run `job create` in this process, where the
command's own process start-up is not what they are about (the jobs' commands are processes either way)."""

import contextlib
import gzip
import json
import pathlib

import numpy as np
import pytest
from conftest import SHORT_TRAINING

from aml_local import cli

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow


@pytest.fixture
def env(tmp_path, monkeypatch, seed_store):
    seed_store(tmp_path / "aml-local")
    monkeypatch.setenv("AML_LOCAL_HOME", str(tmp_path / "aml-local"))
    monkeypatch.setenv("CI", "true")
    return tmp_path / "aml-local"


def mlflow_client(home):
    from mlflow.tracking import MlflowClient  # here, not at import: collecting the tests must not load MLflow

    return MlflowClient(tracking_uri=f"sqlite:///{home / 'mlflow.db'}")


def here(capsys, *argv):
    """The same command in this process (exit code, stdout, stderr), where its own process start-up is not what a
    test is about: each `aml-local job` process spends seconds importing the SDK and MLflow."""
    with contextlib.chdir(REPO_ROOT):
        code = cli.main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_train_yml_streams_to_completion_and_records_everything(train_job, capsys, monkeypatch):
    """conftest's train_job: `aml-local job create --file jobs/train.yml --stream` with SHORT_TRAINING."""
    assert train_job["returncode"] == 0, train_job["stdout"][-3000:] + train_job["stderr"][-3000:]
    shown, home = train_job["shown"], train_job["home"]
    assert "epoch 1/2" in train_job["stdout"] and "epoch 2/2" in train_job["stdout"]
    assert shown["status"] == "Completed" and shown["experiment_name"] == "mnist"
    assert shown["inputs"]["batch_size"] == "64" and shown["inputs"]["epochs"] == "2"

    model_dir = pathlib.Path(shown["outputs"]["model"]["path"])
    assert (model_dir / "MLmodel").is_file()
    assert json.loads((model_dir / "test_metrics.json").read_text())["test_acc"] > 0.85
    assert (pathlib.Path(shown["outputs"]["checkpoints"]["path"]) / "checkpoint.npz").is_file()

    client = mlflow_client(home)
    run_id = shown["properties"]["mlflow.runId"]
    history = client.get_metric_history(run_id, "validation_acc")
    assert [m.step for m in sorted(history, key=lambda m: m.step)] == [1, 2]
    run = client.get_run(run_id)
    assert run.data.params["batch_size"] == "64" and "test_acc" in run.data.metrics
    artifacts = {a.path for a in client.list_artifacts(run_id)}
    assert {"confusion_matrix.png", "model"} <= artifacts

    monkeypatch.setenv("AML_LOCAL_HOME", str(home))
    code, listed, _ = here(capsys, "job", "list", "--query", "[].{name:name,status:status}", "-o", "tsv")
    assert code == 0 and listed.split() == ["train_e2e", "Completed"]


def test_a_job_on_corrupt_data_fails_with_the_data_error_in_its_log(env, tmp_path, small_mnist_dir, capsys):
    broken = tmp_path / "broken"
    broken.mkdir()
    for path in small_mnist_dir.glob("*.gz"):
        (broken / path.name).write_bytes(path.read_bytes())
    (broken / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(b"\x00\x00\x08\x01" + b"\x00" * 20))
    code, out, err = here(
        capsys, "job", "create", "-f", "jobs/train.yml", "--stream", "-n", "broken_data",
        "--set", f"inputs.mnist.path={broken}",
    )  # fmt: skip
    assert code == 1
    assert "t10k-labels-idx1-ubyte.gz" in out  # train.py's own one-line error, streamed
    assert "Traceback" not in out
    assert "ended Failed: the command exited with code 2; its last line: error: " in err
    assert "t10k-labels-idx1-ubyte.gz" in err


def test_bad_job_input_is_refused_before_anything_runs(env, tmp_path, capsys):
    code, _, err = here(capsys, "job", "create", "-f", "jobs/train.yml", "--set", f"inputs.mnist.path={tmp_path}/x")
    assert code == 1
    assert err.startswith("ERROR: input mnist:") and err.count("\n") == 1
    code, _, err = here(capsys, "job", "create", "-f", "jobs/train.yml", "--set", "inputs.epoch=3")
    assert code == 1 and "has no input 'epoch'" in err


def test_distributed_yaml_trains_on_two_workers_like_one_process_and_only_the_chief_writes(
    env, small_mnist_dir, train_job, capsys
):
    sets = [a for pair in (*SHORT_TRAINING, f"inputs.mnist.path={small_mnist_dir}") for a in ("--set", pair)]
    code, out, err = here(capsys, "job", "create", "--file", "jobs/train-distributed.yml", "--stream", "--name",
                          "dist_e2e", *sets)  # fmt: skip
    assert code == 0, out[-3000:] + err[-3000:]
    shown = json.loads(out[out.rindex("\n{") :])
    assert shown["distribution"]["worker_count"] == 2
    workers = [[line for line in out.splitlines() if line.startswith(f"[worker {i}] ")] for i in (0, 1)]
    assert "[worker 0] epoch 2/2" in "\n".join(workers[0]) and "[worker 1] epoch 2/2" in "\n".join(workers[1])
    # Both get the same output folders, as on Azure ML; the non-chief must not write into them.
    assert "not kept (not the chief)" in workers[1][-1] and "not kept" not in "\n".join(workers[0])
    model, checkpoints = (pathlib.Path(shown["outputs"][name]["path"]) for name in ("model", "checkpoints"))
    assert (model / "MLmodel").is_file()
    with np.load(checkpoints / "checkpoint.npz") as saved:
        assert json.loads(str(saved["meta"]))["epoch"] == 2

    client = mlflow_client(env)
    experiment = client.get_experiment_by_name("mnist").experiment_id
    (run,) = client.search_runs(experiment)  # one run: the job's, which only the chief logs into
    assert run.info.run_id == shown["properties"]["mlflow.runId"]
    assert sorted(m.step for m in client.get_metric_history(run.info.run_id, "validation_acc")) == [1, 2]
    # --batch-size is the global batch, split across the workers: the same SGD steps as jobs/train.yml's one process
    # given the same inputs (conftest's train_job).
    distributed = json.loads((model / "test_metrics.json").read_text())
    single = json.loads(
        (pathlib.Path(train_job["shown"]["outputs"]["model"]["path"]) / "test_metrics.json").read_text()
    )
    assert distributed["test_acc"] == pytest.approx(single["test_acc"], abs=0.005)
