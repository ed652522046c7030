"""Sweep and pipeline jobs run by aml-local: trials as child jobs, early termination read from the metrics they
log to MLflow, failures, limits, cancellation, and pipelines binding one node's outputs to the next's inputs.

Most tests use a tiny trial script (no TensorFlow) whose metric follows from its parameters, so which trials a
policy stops is known in advance; the slow ones run src/train.py for real."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest

from aml_local import cli, store
from aml_local.jobs import sweep
from aml_local.jobs import verbs as job

REPO = Path(__file__).resolve().parents[1]

TRIAL_SCRIPT = """
import json, math, os, sys, time
quality, mode, epochs, pause, out = float(sys.argv[1]), sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), sys.argv[5]
with open(os.path.join(out, "pid.json"), "w") as f:
    json.dump({"pid": os.getpid(), "threads": os.environ.get("TF_NUM_INTRAOP_THREADS"),
               "sweep_env": os.environ.get("AZUREML_SWEEP_quality")}, f)
import mlflow  # after the pid is written: a trial stopped while MLflow loads is still found
with mlflow.start_run():
    for epoch in range(1, epochs + 1):
        if mode == "crash" and epoch == 2:
            print("trial crashed on purpose", flush=True)
            sys.exit(3)
        value = float("nan") if mode == "nan" and epoch == 2 else quality * (1 - 0.5 ** epoch)
        mlflow.log_metric("acc", value, step=epoch)
        time.sleep(pause)
    if mode == "hang":
        time.sleep(600)
with open(os.path.join(out, "result.json"), "w") as f:
    json.dump({"quality": quality}, f)
print("trial done", quality, flush=True)
"""

SWEEP = """\
$schema: https://azuremlschemas.azureedge.net/latest/sweepJob.schema.json
type: sweep
experiment_name: tiny-sweep
compute: azureml:cpu-cluster
trial:
  code: src
  command: >-
    python trial.py ${{search_space.quality}} ${{search_space.mode}} ${{inputs.epochs}} ${{inputs.pause}}
    ${{outputs.model}}
  environment: azureml:tiny-env@latest
inputs:
  epochs: 6
  pause: 0.6
outputs:
  model:
    type: uri_folder
search_space:
  quality:
    type: choice
    values: [0.9, 0.3, 0.95, 0.5]
  mode:
    type: choice
    values: [ok]
sampling_algorithm: grid
objective:
  goal: maximize
  primary_metric: acc
limits:
  max_total_trials: 10
  max_concurrent_trials: 2
early_termination:
  type: bandit
  slack_factor: 0.1
  evaluation_interval: 1
  delay_evaluation: 1
"""


@pytest.fixture
def project(tmp_path, project_environments):
    root = tmp_path / "project"
    (root / "src").mkdir(parents=True)
    (root / "pyproject.toml").write_text("[project]\nname = 'tiny'\n")
    project_environments(root)
    (root / "src" / "trial.py").write_text(TRIAL_SCRIPT)
    return root


def write(project, text, name="sweep.yml"):
    path = project / name
    path.write_text(text)
    return path


def run_cli(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def trials_of(name):
    return {t["name"]: t for t in job.list_jobs(parent_job_name=name)}


def params_of(trial_name):
    return store.client().get_run(job.show(trial_name)["properties"]["mlflow.runId"]).data.params


def test_grid_sweep_stops_the_weak_trials_and_picks_the_best(home, project, capsys):
    # Three points: each trial is two processes importing MLflow (its runner and its command), and one weak trial
    # shows the early termination as well as two would.
    spec = write(project, SWEEP.replace("[0.9, 0.3, 0.95, 0.5]", "[0.9, 0.3, 0.95]"))
    code, out, err = run_cli(capsys, "job", "create", "-f", spec, "--stream", "-n", "sw")
    assert code == 0, err
    shown = job.show("sw")
    assert shown["type"] == "sweep" and shown["status"] == "Completed"
    trials = trials_of("sw")
    assert len(trials) == 3  # the grid has 3 points, fewer than max_total_trials
    quality = {name: float(params_of(name)["quality"]) for name in trials}
    assert sorted(quality.values()) == [0.3, 0.9, 0.95]
    best = max(quality, key=quality.get)
    assert shown["properties"]["best_child_run_id"] == best
    assert float(shown["properties"]["score"]) == pytest.approx(0.95 * (1 - 0.5**6))
    # 0.3 falls below best/(1+0.1) from the first interval it shares with a stronger trial; 0.9 never does.
    for name, q in quality.items():
        status, message = trials[name]["status"], trials[name]["properties"].get("aml_local.status_message", "")
        if q < 0.6:
            assert status == "Canceled", (name, q)
            assert "early termination at interval" in message and "Bandit" in message
        else:
            assert status == "Completed", (name, q, message)
    assert shown["properties"]["aml_local.trial_counts"] == {"Canceled": 1, "Completed": 2}
    # Trials are child runs with their sampled values as params; each got its share of the cores.
    client = store.client()
    parent_run = shown["properties"]["mlflow.runId"]
    for name in trials:
        run = client.get_run(job.show(name)["properties"]["mlflow.runId"])
        assert run.data.tags["mlflow.parentRunId"] == parent_run
        assert set(run.data.params) == {"quality", "mode"}
        written = json.loads((home / "jobs" / name / "outputs/model/pid.json").read_text())
        assert written["threads"] == str(max(1, len(os.sched_getaffinity(0)) // 2))
        assert float(written["sweep_env"]) == quality[name]
    # The sweep's outputs are the best trial's.
    model = Path(shown["outputs"]["model"]["path"])
    assert json.loads((model / "result.json").read_text()) == {"quality": 0.95}
    artifacts = {a.path for a in client.list_artifacts(parent_run)}
    assert {"trials.md", "trials.json", "sweep_chart.png"} <= artifacts
    assert f"new best: {best}" in out and "| trial | status |" in out
    # A later job can read the sweep's output by its azureml:// URI, as a pipeline or `model create` would.
    from aml_local.assets import data

    assert data.local_path("m", "azureml://jobs/sw/outputs/model", project).resolve() == model.resolve()


def test_a_crashing_trial_and_a_nan_metric_fail_while_the_sweep_completes(home, project, capsys):
    body = SWEEP.replace("values: [0.9, 0.3, 0.95, 0.5]", "values: [0.9]").replace(
        "values: [ok]", "values: [ok, crash, nan]"
    )
    # A parameter the command does not use is a warning, not an error: this sweep runs with one.
    body = body.replace("search_space:\n", "search_space:\n  unused:\n    type: choice\n    values: [1]\n")
    spec = write(project, body.replace("type: bandit", "type: median_stopping").replace("  slack_factor: 0.1\n", ""))
    code, _, err = run_cli(capsys, "job", "create", "-f", spec, "--stream", "-n", "sw")
    assert code == 0, err
    assert "WARNING: search_space.unused: unused is not used in trial.command" in err
    trials = trials_of("sw")
    by_mode = {params_of(name)["mode"]: trials[name] for name in trials}
    assert by_mode["ok"]["status"] == "Completed"
    assert by_mode["crash"]["status"] == "Failed"
    assert "exited with code 3" in by_mode["crash"]["properties"]["aml_local.status_message"]
    assert by_mode["nan"]["status"] == "Failed"
    assert "acc=NaN at interval 2" in by_mode["nan"]["properties"]["aml_local.status_message"]
    shown = job.show("sw")
    assert shown["status"] == "Completed" and shown["properties"]["best_child_run_id"] == by_mode["ok"]["name"]


@pytest.mark.slow
def test_trial_timeout_and_max_total_trials(home, project, capsys, monkeypatch):
    # 60 s is the shortest trial_timeout: the SDK raises anything shorter to 60, as the service needs. The streamed
    # driver runs in this process on a clock of its own: as fast as ours until both trials have written their pids
    # (each runner and command import MLflow first: seconds, more on a loaded machine), then 20 times as fast, so the
    # minute ends a few seconds after the trials are up, however long they took to start.
    pid_files = home / "jobs"
    fast_since = []

    def clock():
        now = time.monotonic()
        if not fast_since and len(list(pid_files.glob("sw_*/outputs/model/pid.json"))) == 2:
            fast_since.append(now)
        return now if not fast_since else fast_since[0] + (now - fast_since[0]) * 20

    monkeypatch.setattr(sweep, "clock", clock)
    body = (
        SWEEP.replace("values: [ok]", "values: [hang]")
        .replace("[0.9, 0.3, 0.95, 0.5]", "[0.9]")
        .replace("max_total_trials: 10", "max_total_trials: 2\n  trial_timeout: 5")
        .replace("sampling_algorithm: grid", "sampling_algorithm: random")
    )
    started = time.monotonic()
    code, _, err = run_cli(capsys, "job", "create", "-f", write(project, body), "--stream", "-n", "sw")
    assert time.monotonic() - started < 60  # the two trials run at once, and the sweep's minute passes quicker
    assert code == 1 and "no trial completed" in err and job.show("sw")["status"] == "Failed"
    trials = trials_of("sw")
    assert len(trials) == 2
    for trial in trials.values():
        assert trial["status"] == "Canceled"
        assert "trial_timeout: still running after 60 s" in trial["properties"]["aml_local.status_message"]
        pid = json.loads((Path(job.show(trial["name"])["outputs"]["model"]["path"]) / "pid.json").read_text())["pid"]
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


@pytest.mark.parametrize("how", ["sigterm-detached", "ctrl-c-stream"])
def test_canceling_a_sweep_stops_every_trial_process(home, project, capsys, how):
    body = SWEEP.replace("values: [ok]", "values: [hang]").replace("[0.9, 0.3, 0.95, 0.5]", "[0.9, 0.91, 0.92]")
    spec = write(project, body)
    create = ["job", "create", "-f", str(spec), "-n", "sw", "-o", "none"]
    if how == "ctrl-c-stream":
        # A terminal's Ctrl-C signals the whole foreground process group: start one of our own to do the same.
        env = {**os.environ, "AML_LOCAL_HOME": str(home)}
        command = [sys.executable, "-m", "aml_local", *create, "--stream"]
        proc = subprocess.Popen(
            command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
        )
    else:
        # job create returns at once, the sweep left to its detached driver (a process of its own either way): run
        # here, as `job cancel` below, since neither command's own process is what this case is about.
        code, _, err = run_cli(capsys, *create)
        assert code == 0, err
        proc = None
    pid_files = []
    deadline = time.monotonic() + 60
    while len(pid_files) < 2 and time.monotonic() < deadline:
        time.sleep(0.5)
        pid_files = sorted(home.glob("jobs/sw_*/outputs/model/pid.json"))
    assert len(pid_files) == 2, _why_no_trials(proc, home / "jobs/sw/runner.log")
    trial_pids = [json.loads(p.read_text())["pid"] for p in pid_files]
    if how == "ctrl-c-stream":
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(timeout=60)
    else:
        code, out, err = run_cli(capsys, "job", "cancel", "-n", "sw")
        assert (code, out) == (0, ""), err  # az ml job cancel prints nothing (ml_job_cancel returns None)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and any(_alive(pid) for pid in trial_pids):
        time.sleep(0.5)
    assert not any(_alive(pid) for pid in trial_pids)
    shown = job.show("sw")
    assert shown["status"] == "Canceled", shown["properties"].get("aml_local.status_message")
    for trial in trials_of("sw").values():
        assert trial["status"] == "Canceled"
        assert "the sweep was canceled" in trial["properties"]["aml_local.status_message"]
        run = store.client().get_run(trial["properties"]["mlflow.runId"])
        assert run.info.status == "KILLED"


def _why_no_trials(proc, driver_log):
    """What the `job create --stream` process (proc), or else the detached driver, said, for a failure message."""
    if proc is None:
        return driver_log.read_text()[-2000:] if driver_log.exists() else "trials did not start"
    return proc.stderr.read().decode() if proc.poll() is not None else "trials did not start"


def _alive(pid):
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (("${{search_space.mode}}", "${{search_space.moode}}"), "moode"),
        (("sampling_algorithm: grid", "sampling_algorithm: bayesian"), "early_termination"),
        (("slack_factor: 0.1", "slack_factor: 0.1\n  slack_amount: 0.2"), "slack"),
    ],
)
def test_what_azure_rejects_is_rejected_before_anything_runs(home, project, capsys, change, expected):
    code, _, err = run_cli(capsys, "job", "create", "-f", write(project, SWEEP.replace(*change)), "-n", "sw")
    assert code == 1, err
    assert err.startswith("ERROR: ") and expected in err and "Traceback" not in err
    assert not (home / "jobs" / "sw").exists()


PIPELINE = """\
$schema: https://azuremlschemas.azureedge.net/latest/pipelineJob.schema.json
type: pipeline
experiment_name: tiny-pipeline
settings:
  default_compute: azureml:cpu-cluster
inputs:
  greeting: hello
outputs:
  report:
    type: uri_folder
jobs:
  sweep_step:
    type: sweep
    trial: ./trial-component.yml
    inputs:
      epochs: 3
    search_space:
      quality:
        type: choice
        values: [0.4, 0.8]
    sampling_algorithm: grid
    objective:
      goal: maximize
      primary_metric: acc
    limits:
      max_total_trials: 2
      max_concurrent_trials: 2
  report_step:
    type: command
    component: ./report-component.yml
    inputs:
      model: ${{parent.jobs.sweep_step.outputs.model}}
      greeting: ${{parent.inputs.greeting}}
    outputs:
      report: ${{parent.outputs.report}}
"""

TRIAL_COMPONENT = """\
$schema: https://azuremlschemas.azureedge.net/latest/commandComponent.schema.json
name: tiny_trial
version: "1"
type: command
inputs:
  quality:
    type: number
    default: 0.1
  mode:
    type: string
    default: ok
  epochs:
    type: integer
    default: 9
  pause:
    type: number
    default: 0
outputs:
  model:
    type: uri_folder
code: src
environment: azureml:tiny-env@latest
command: python trial.py ${{inputs.quality}} ${{inputs.mode}} ${{inputs.epochs}} ${{inputs.pause}} ${{outputs.model}}
"""

REPORT_COMPONENT = """\
$schema: https://azuremlschemas.azureedge.net/latest/commandComponent.schema.json
name: tiny_report
version: "1"
type: command
inputs:
  model:
    type: uri_folder
  greeting:
    type: string
outputs:
  report:
    type: uri_folder
code: src
environment: azureml:tiny-env@latest
command: >-
  python -c "import json, shutil, sys; shutil.copy(sys.argv[1] + '/result.json', sys.argv[3] + '/best.json');
  open(sys.argv[3] + '/greeting.txt', 'w').write(sys.argv[2])"
  ${{inputs.model}} ${{inputs.greeting}} ${{outputs.report}}
"""


def write_pipeline(project, pipeline=PIPELINE, report=REPORT_COMPONENT):
    write(project, TRIAL_COMPONENT, "trial-component.yml")
    write(project, report, "report-component.yml")
    return write(project, pipeline, "pipeline.yml")


def test_pipeline_runs_a_sweep_node_then_a_step_on_its_best_output(home, project, capsys):
    spec = write_pipeline(project)
    code, out, err = run_cli(capsys, "job", "create", "-f", spec, "--stream", "-n", "pl")
    assert code == 0, err
    shown = job.show("pl")
    assert shown["type"] == "pipeline" and shown["status"] == "Completed"
    assert {n: j["status"] for n, j in shown["jobs"].items()} == {"sweep_step": "Completed", "report_step": "Completed"}
    assert set(trials_of("pl")) == {"pl_sweep_step", "pl_report_step"}
    # A pipeline's children as azure-ai-ml returns them from run history: base jobs, no type, inputs or outputs,
    # the node's name as display_name, the experiment's id as experiment_name (aml_local/jobs/verbs.py cites it).
    children = trials_of("pl")
    experiment_id = store.client().get_experiment_by_name(shown["experiment_name"]).experiment_id
    for node, child in (("sweep_step", children["pl_sweep_step"]), ("report_step", children["pl_report_step"])):
        assert not {"type", "inputs", "outputs", "parent_job_name", "$schema"} & set(child)
        assert child["display_name"] == node and child["experiment_name"] == experiment_id
        assert job.show(child["name"]) == child | {"status": child["status"]}
    assert children["pl_sweep_step"]["properties"]["best_child_run_id"].startswith("pl_sweep_step_")
    # The sweep's values filled the component's inputs of the same names; its other inputs kept their defaults
    # or the node's values (epochs 3, not the component's 9).
    trial_names = sorted(trials_of("pl_sweep_step"))
    assert [job.show(t)["inputs"]["quality"] for t in trial_names] == ["0.4", "0.8"]
    assert all(job.show(t)["inputs"]["epochs"] == "3" for t in trial_names)
    report = Path(shown["outputs"]["report"]["path"])
    assert json.loads((report / "best.json").read_text()) == {"quality": 0.8}
    assert (report / "greeting.txt").read_text() == "hello"
    assert "[report_step]" not in out or "node report_step" in out


def test_a_failed_node_stops_its_dependants_and_names_itself(home, project, capsys):
    """The sweep node's every trial (its one) crashes: the sweep fails, as any sweep where no trial completes does
    (test_trial_timeout_and_max_total_trials ends another so), and the pipeline with it."""
    failing = PIPELINE.replace("values: [0.4, 0.8]", "values: [0.4]").replace(
        "    inputs:\n      epochs: 3\n", "    inputs:\n      epochs: 3\n      mode: crash\n"
    )
    code, _, err = run_cli(capsys, "job", "create", "-f", write_pipeline(project, failing), "--stream", "-n", "pl")
    assert code == 1
    assert "node sweep_step failed" in err
    shown = job.show("pl")
    assert shown["status"] == "Failed"
    assert shown["jobs"]["sweep_step"]["status"] == "Failed"
    assert shown["jobs"]["report_step"]["status"] == "NotStarted"
    (trial,) = trials_of("pl_sweep_step").values()
    assert trial["status"] == "Failed" and "exited with code 3" in trial["properties"]["aml_local.status_message"]
    node = job.show("pl_sweep_step")
    assert node["status"] == "Failed" and "no trial completed" in node["properties"]["aml_local.status_message"]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (("sweep_step.outputs.model", "nowhere.outputs.model"), "no node named 'nowhere'"),
        (("sweep_step.outputs.model", "sweep_step.outputs.modell"), "has no output 'modell'"),
        (("parent.inputs.greeting", "parent.inputs.greting"), "has no input 'greting'"),
    ],
)
def test_bad_pipeline_bindings_are_named(home, project, capsys, change, expected):
    code, _, err = run_cli(capsys, "job", "create", "-f", write_pipeline(project, PIPELINE.replace(*change)))
    assert code == 1
    assert expected in err and err.count("\n") == 1, err


@pytest.mark.slow
def test_a_real_sweep_of_train_py_stops_a_hopeless_trial(home, small_mnist_dir, tmp_path, capsys, project_environments):
    """train.py itself as the trial: a learning rate far too small falls behind and is stopped."""
    # The quick sweep's trial, cut down: one small network, a good and a hopeless learning rate, judged every epoch.
    quick = (REPO / "jobs/sweep-quick.yml").read_text()
    trial = quick[quick.index("trial:") : quick.index("inputs:")].replace("code: ../src", f"code: {REPO / 'src'}")
    spec = tmp_path / "real-sweep.yml"
    project_environments(tmp_path)
    spec.write_text(
        "$schema: https://azuremlschemas.azureedge.net/latest/sweepJob.schema.json\ntype: sweep\n"
        + trial
        + textwrap.dedent(
            f"""\
            inputs:
              mnist: {{type: uri_folder, path: {small_mnist_dir}}}
              momentum: 0.9
              epochs: 12
              seed: 1
              validation_size: 1000
            outputs:
              model: {{type: mlflow_model}}
              checkpoints: {{type: uri_folder}}
            search_space:
              batch_size: {{type: choice, values: [64]}}
              first_layer_neurons: {{type: choice, values: [64]}}
              second_layer_neurons: {{type: choice, values: [16]}}
              learning_rate: {{type: choice, values: [0.05, 0.00001]}}
            sampling_algorithm: grid
            objective: {{goal: maximize, primary_metric: validation_acc}}
            limits: {{max_total_trials: 2, max_concurrent_trials: 2}}
            early_termination: {{type: bandit, slack_factor: 0.1, evaluation_interval: 1, delay_evaluation: 1}}
            """
        )
    )
    argv = ["job", "create", "-f", spec, "--stream", "-n", "real"]
    code, _, err = run_cli(capsys, *argv)
    assert code == 0, err[-2000:]
    trials = trials_of("real")
    by_lr = {float(params_of(name)["learning_rate"]): trials[name] for name in trials}
    assert by_lr[0.05]["status"] == "Completed"
    assert by_lr[0.00001]["status"] == "Canceled"
    assert "early termination" in by_lr[0.00001]["properties"]["aml_local.status_message"]
    shown = job.show("real")
    assert shown["properties"]["best_child_run_id"] == by_lr[0.05]["name"]
    assert (Path(shown["outputs"]["model"]["path"]) / "MLmodel").is_file()


# The shape of azureml-examples' cli/jobs/pipelines-with-components/pipeline_with_hyperparameter_sweep (written
# anew here, with a stand-in script): a remote uri_file input, booleans and strings, uniform and choice, a
# minimized metric, outputs with mode: upload, an output left empty, and a step reading two sweep outputs.
FOREIGN_PIPELINE = """\
$schema: https://azuremlschemas.azureedge.net/latest/pipelineJob.schema.json
type: pipeline
display_name: pipeline_with_hyperparameter_sweep
description: Tune hyperparameters with a sweep node, then predict with the best model
settings:
    default_compute: azureml:cpu-cluster
jobs:
  sweep_step:
    type: sweep
    inputs:
      data:
        type: uri_file
        path: wasbs://datasets@azuremlexamples.blob.core.windows.net/iris.csv
      degree: 3
      gamma: "scale"
      shrinking: False
      tol: 0.001
    outputs:
      model_output:
        type: uri_folder
        mode: upload
      test_data:
        type: uri_folder
        mode: upload
    sampling_algorithm: random
    trial: ./fit.yml
    search_space:
      c_value:
        type: uniform
        min_value: 0.5
        max_value: 0.9
      kernel:
        type: choice
        values: ["rbf", "linear", "poly"]
    objective:
      goal: minimize
      primary_metric: training_loss
    limits:
      max_total_trials: 2
      max_concurrent_trials: 2
      timeout: 7200
  predict_step:
    type: command
    inputs:
      model: ${{parent.jobs.sweep_step.outputs.model_output}}
      test_data: ${{parent.jobs.sweep_step.outputs.test_data}}
    outputs:
      predict_result:
    component: ./predict.yml
"""

FOREIGN_FIT = """\
$schema: https://azuremlschemas.azureedge.net/latest/commandComponent.schema.json
type: command
name: fit_model
version: 1
inputs:
  data:
    type: uri_folder
  c_value:
    type: number
    default: 1.0
  kernel:
    type: string
    default: rbf
  degree:
    type: integer
    default: 3
  gamma:
    type: string
    default: scale
  shrinking:
    type: boolean
    default: true
  tol:
    type: number
    default: 1e-3
outputs:
  model_output:
    type: uri_folder
  test_data:
    type: uri_folder
code: ./fit-src
environment: azureml:tiny-env@latest
command: >-
  python fit.py --data ${{inputs.data}} --C ${{inputs.c_value}} --kernel ${{inputs.kernel}}
  --degree ${{inputs.degree}} --gamma ${{inputs.gamma}} --shrinking ${{inputs.shrinking}} --tol ${{inputs.tol}}
  --model_output ${{outputs.model_output}} --test_data ${{outputs.test_data}}
"""

FOREIGN_FIT_SCRIPT = """
import argparse, json, mlflow
p = argparse.ArgumentParser()
for name in ("--data", "--kernel", "--gamma", "--shrinking", "--model_output", "--test_data"):
    p.add_argument(name)
p.add_argument("--C", type=float); p.add_argument("--degree", type=int); p.add_argument("--tol", type=float)
a = p.parse_args()
rows = open(a.data).read().split()
with mlflow.start_run():
    for step in range(3):
        mlflow.log_metric("training_loss", a.C / (step + 1), step=step)
json.dump(vars(a), open(a.model_output + "/model.json", "w"))
open(a.test_data + "/rows.txt", "w").write("\\n".join(rows))
"""

FOREIGN_PREDICT = """\
$schema: https://azuremlschemas.azureedge.net/latest/commandComponent.schema.json
name: predict_component
version: 3
type: command
inputs:
  model:
    type: mlflow_model
  test_data:
    type: uri_folder
outputs:
  predict_result:
    type: uri_folder
code: ./fit-src
environment: azureml:tiny-env@latest
command: >-
  cp ${{inputs.model}}/model.json ${{inputs.test_data}}/rows.txt ${{outputs.predict_result}}/
"""


def test_a_pipeline_shaped_like_azureml_examples_runs_with_a_local_data_path(
    home, tmp_path, capsys, project_environments
):
    root = tmp_path / "foreign"
    (root / "fit-src").mkdir(parents=True)
    # azureml-examples' components name the curated sklearn-1.5 environment, which would now be built with its
    # whole package set; an environment the project venv satisfies keeps this test about the pipeline's shape
    # (environments are tested in test_environments.py).
    project_environments(root)
    (root / "fit-src/fit.py").write_text(FOREIGN_FIT_SCRIPT)
    for name, text in (("pipeline.yml", FOREIGN_PIPELINE), ("fit.yml", FOREIGN_FIT), ("predict.yml", FOREIGN_PREDICT)):
        (root / name).write_text(text)
    iris = tmp_path / "iris.csv"
    iris.write_text("5.1,3.5,1.4,0.2,setosa\n4.9,3.0,1.4,0.2,setosa\n")
    spec = root / "pipeline.yml"
    # The remote file has no local copy: the error says so and how to give one.
    code, _, err = run_cli(capsys, "job", "create", "-f", spec, "--stream", "-n", "foreign")
    assert code == 1 and "has no local copy" in err and "wasbs://" in err
    assert "path=<file>" in err  # a uri_file input: a file, not a folder
    code, _, err = run_cli(
        capsys, "job", "create", "-f", spec, "--stream", "-n", "foreign",
        "--set", f"jobs.sweep_step.inputs.data.path={iris}",
    )  # fmt: skip
    assert code == 0, err
    shown = job.show("foreign")
    assert shown["status"] == "Completed"
    trials = trials_of("foreign_sweep_step")
    assert len(trials) == 2
    c_values = {name: float(job.show(name)["inputs"]["c_value"]) for name in trials}
    best = job.show("foreign_sweep_step")["properties"]["best_child_run_id"]
    assert best == min(c_values, key=c_values.get)  # minimize: the smallest C logs the smallest loss
    # A pipeline's child shows no outputs (as on Azure); its output is downloaded, as a user would.
    job.download("foreign_predict_step", output_name="predict_result", download_path=tmp_path / "got")
    result = tmp_path / "got/named-outputs/predict_result"
    fitted = json.loads((result / "model.json").read_text())
    assert fitted["C"] == c_values[best] and fitted["shrinking"] == "false" and fitted["gamma"] == "scale"
    assert fitted["kernel"] in ("rbf", "linear", "poly") and fitted["degree"] == 3
    assert (result / "rows.txt").read_text().splitlines()[0].endswith("setosa")
