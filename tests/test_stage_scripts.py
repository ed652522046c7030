"""The serving stage scripts, run for real with AML_BACKEND=local: register a finished local job's model, deploy
it, invoke it, tear it down; and the clear failures around them."""

import json
import os
import pathlib
import subprocess
import sys
import textwrap

import numpy as np
import psutil
import pytest

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
SCRIPTS = REPO_ROOT / "scripts"
VENV_BIN = pathlib.Path(sys.executable).parent
SAMPLE_REQUEST = REPO_ROOT / "endpoints" / "sample-request.json"


@pytest.fixture
def env(tmp_path):
    """The environment a user of the scripts has: the venv on PATH, the local backend, a private store."""
    variables = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "AML_", "ENDPOINT_NAME"))}
    variables.update(
        AML_BACKEND="local",
        AML_LOCAL_HOME=str(tmp_path / "home"),
        PATH=f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
    )
    return variables


def run(env, *argv, timeout=300):
    return subprocess.run(
        [str(a) for a in argv], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def aml_local(env, *argv):
    result = run(env, VENV_BIN / "aml-local", *argv)
    assert result.returncode == 0, result.stderr
    return result.stdout


def sample_label(small_mnist_dir):
    """The label of endpoints/sample-request.json's image when the test data holds it (real MNIST does)."""
    sys.path.insert(0, str(REPO_ROOT / "src"))
    import mnist_data

    sample = np.asarray(json.loads(SAMPLE_REQUEST.read_text())["data"][0])
    data = mnist_data.load_mnist(small_mnist_dir)
    images = data.test_images.reshape(len(data.test_images), -1) / 255.0
    matches = np.flatnonzero(np.abs(images - sample).max(axis=1) < 1e-3)
    return int(data.test_labels[matches[0]]) if len(matches) else None


@pytest.fixture
def finished_job(env, tmp_path, trained_model_dir):
    """A completed local command job whose `model` output is a trained model, as a training job leaves one."""
    spec = tmp_path / "project" / "producer.yml"
    spec.parent.mkdir()
    spec.write_text(
        textwrap.dedent(
            f"""
            $schema: https://azuremlschemas.azureedge.net/latest/commandJob.schema.json
            experiment_name: stage-scripts
            code: .
            command: cp -r ${{{{inputs.trained}}}}/. ${{{{outputs.model}}}}
            inputs:
              trained:
                type: uri_folder
                path: {trained_model_dir}
            outputs:
              model:
                type: mlflow_model
            environment: azureml:mnist-train@latest
            compute: azureml:cpu-cluster
            """
        )
    )
    aml_local(env, "job", "create", "--file", spec, "--name", "trained_job", "--stream")
    return "trained_job"


def test_the_scripts_are_shellcheck_clean():
    scripts = sorted(SCRIPTS.glob("*.sh"))
    result = subprocess.run(
        [str(VENV_BIN / "shellcheck"), *map(str, scripts)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stdout


@pytest.mark.slow
def test_register_deploy_invoke_teardown(env, finished_job, small_mnist_dir):
    registered = run(env, SCRIPTS / "register.sh", finished_job)
    assert registered.returncode == 0, registered.stderr
    assert registered.stdout.splitlines() == ["model:   mnist-mlp", "version: 1"]
    shown = json.loads(aml_local(env, "model", "show", "-n", "mnist-mlp", "--version", "1"))
    assert shown["job_name"] == finished_job

    deployed = run(env, SCRIPTS / "deploy.sh", "--set", "environment_variables.WORKER_COUNT=1")
    assert deployed.returncode == 0, deployed.stderr
    lines = dict(line.split(":", 1) for line in deployed.stdout.splitlines())
    assert lines["endpoint"].strip() == "mnist-endpoint"
    assert lines["scoring URI"].strip().startswith("http://127.0.0.1:")
    record = json.loads(aml_local(env, "online-deployment", "show", "-n", "blue", "-e", "mnist-endpoint"))
    master = psutil.Process(int(record["properties"]["aml_local.pid"]))
    processes = [master, *master.children(recursive=True)]

    again = run(env, SCRIPTS / "deploy.sh")
    assert again.returncode != 0 and "deployment blue already exists on endpoint mnist-endpoint" in again.stderr

    invoked = run(env, SCRIPTS / "invoke.sh")
    assert invoked.returncode == 0, invoked.stderr
    prediction = invoked.stdout.splitlines()[-1]
    label = sample_label(small_mnist_dir)
    if label is not None:
        assert prediction == f"prediction: {label}"
    assert prediction.split(": ")[1] in set("0123456789")
    missing = run(env, SCRIPTS / "invoke.sh", "no-such-request.json")
    assert missing.returncode != 0 and "no such request file: no-such-request.json" in missing.stderr

    keys = json.loads(aml_local(env, "online-endpoint", "get-credentials", "-n", "mnist-endpoint")).values()
    for result in (registered, deployed, again, invoked, missing):
        assert not any(key in result.stdout + result.stderr for key in keys), "a script printed a key"

    torn_down = run(env, SCRIPTS / "teardown.sh")
    assert torn_down.returncode == 0, torn_down.stderr
    assert torn_down.stdout.strip() == "deleted endpoint mnist-endpoint"
    assert all(not p.is_running() or p.status() == psutil.STATUS_ZOMBIE for p in processes)
    again = run(env, SCRIPTS / "teardown.sh")
    assert again.returncode == 0 and "does not exist (local): nothing to delete" in again.stderr
    after = run(env, SCRIPTS / "invoke.sh")
    assert after.returncode != 0 and "online endpoint 'mnist-endpoint' not found" in after.stderr


@pytest.mark.slow
def test_register_takes_a_sweeps_model_from_its_best_trial(env, tmp_path, trained_model_dir):
    code = tmp_path / "project" / "code"
    code.mkdir(parents=True)
    (code / "trial.py").write_text(
        "import shutil, sys, mlflow\n"
        "score, source, out = float(sys.argv[1]), sys.argv[2], sys.argv[3]\n"
        "with mlflow.start_run():\n"
        "    mlflow.log_metric('score', score)\n"
        "shutil.copytree(source, out, dirs_exist_ok=True)\n"
    )
    spec = code.parent / "sweep.yml"
    spec.write_text(
        textwrap.dedent(
            f"""
            $schema: https://azuremlschemas.azureedge.net/latest/sweepJob.schema.json
            type: sweep
            experiment_name: stage-scripts
            compute: azureml:cpu-cluster
            trial:
              code: ./code
              command: python trial.py ${{{{search_space.score}}}} ${{{{inputs.trained}}}} ${{{{outputs.model}}}}
              environment: azureml:mnist-train@latest
            inputs:
              trained:
                type: uri_folder
                path: {trained_model_dir}
            outputs:
              model:
                type: mlflow_model
            search_space:
              score:
                type: choice
                values: [1, 3]
            sampling_algorithm: grid
            objective:
              goal: maximize
              primary_metric: score
            limits:
              max_total_trials: 2
              max_concurrent_trials: 1
            """
        )
    )
    aml_local(env, "job", "create", "--file", spec, "--name", "sweep_job", "--stream")
    best = aml_local(env, "job", "show", "-n", "sweep_job", "--query", "properties.best_child_run_id", "-o", "tsv")
    registered = run(env, SCRIPTS / "register.sh", "sweep_job")
    assert registered.returncode == 0, registered.stderr
    assert f"sweep sweep_job: registering the model of its best trial, {best.strip()}" in registered.stderr
    shown = json.loads(aml_local(env, "model", "show", "-n", "mnist-mlp", "--label", "latest"))
    assert shown["job_name"] == best.strip() and shown["job_name"].startswith("sweep_job")


def test_register_names_a_missing_job_and_needs_one(env):
    missing = run(env, SCRIPTS / "register.sh", "no_such_job", timeout=120)
    assert missing.returncode != 0
    assert "no job named no_such_job (local)" in missing.stderr and "Traceback" not in missing.stderr
    assert missing.stdout == ""
    usage = run(env, SCRIPTS / "register.sh", timeout=60)
    assert usage.returncode != 0 and "usage: scripts/register.sh JOB_NAME" in usage.stderr


@pytest.mark.slow
def test_register_refuses_a_job_that_did_not_complete(env, tmp_path):
    spec = tmp_path / "project" / "failing.yml"  # the job's code folder: not the one holding the store
    spec.parent.mkdir()
    spec.write_text(
        "$schema: https://azuremlschemas.azureedge.net/latest/commandJob.schema.json\n"
        "code: .\ncommand: exit 3\noutputs:\n  model:\n    type: mlflow_model\n"
        "environment: azureml:mnist-train@latest\ncompute: azureml:cpu-cluster\n"
    )
    created = run(env, VENV_BIN / "aml-local", "job", "create", "-f", spec, "-n", "failed_job", "--stream")
    assert created.returncode == 1
    refused = run(env, SCRIPTS / "register.sh", "failed_job", timeout=120)
    assert refused.returncode != 0 and "job failed_job is Failed" in refused.stderr


def test_the_backend_must_be_local_or_azure(env):
    env["AML_BACKEND"] = "gcp"
    result = run(env, SCRIPTS / "teardown.sh", timeout=60)
    assert result.returncode != 0 and "AML_BACKEND must be 'local' or 'azure' (got 'gcp')" in result.stderr
