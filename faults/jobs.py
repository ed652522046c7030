"""The job scenarios: a killed `aml-local job create --stream` (command job and sweep), jobs and model versions
created at once, a hanging sweep ended by trial_timeout. Their jobs are tiny (no TensorFlow, so they start in a
second), and each writes its pid where the scenario can find it."""

import contextlib
import json
import sqlite3
import subprocess
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

from aml_local import processes
from faults.aml import Aml, wait_until
from faults.checks import Check, judge

# A trial or job command: writes its pid into the output folder, logs a metric, then sleeps `seconds` (a hang). The
# pid comes before MLflow's import (a second or two of CPU): the scenarios that wait for the pid need not wait for it.
WORKER = """
import json, os, sys, time
seconds, out = float(sys.argv[1]), sys.argv[2]
with open(os.path.join(out, "pid.json"), "w") as f:
    json.dump({"pid": os.getpid()}, f)
import mlflow
with mlflow.start_run():
    mlflow.log_metric("acc", 0.5, step=1)
    time.sleep(seconds)
print("done", flush=True)
"""

COMMAND_JOB = """\
$schema: https://azuremlschemas.azureedge.net/latest/commandJob.schema.json
type: command
experiment_name: soak-faults
compute: azureml:cpu-cluster
code: src
command: python worker.py ${{inputs.seconds}} ${{outputs.out}}
environment: azureml:tiny-env@latest
inputs:
  seconds: 1
outputs:
  out:
    type: uri_folder
"""

SWEEP_JOB = """\
$schema: https://azuremlschemas.azureedge.net/latest/sweepJob.schema.json
type: sweep
experiment_name: soak-faults
compute: azureml:cpu-cluster
trial:
  code: src
  command: python worker.py ${{search_space.seconds}} ${{outputs.out}}
  environment: azureml:tiny-env@latest
outputs:
  out:
    type: uri_folder
search_space:
  seconds:
    type: choice
    values: [SECONDS]
sampling_algorithm: grid
objective:
  goal: maximize
  primary_metric: acc
limits:
  max_total_trials: TRIALS
  max_concurrent_trials: TRIALS
  TIMEOUT_LINE
"""


# The environment the specs name (environments/tiny-env.yml, found as the project's own): it asks only for mlflow,
# which the project venv has, so the jobs run there with no build.
TINY_ENVIRONMENT = """\
name: tiny-env
image: mcr.microsoft.com/azureml/openmpi5.0-ubuntu24.04:latest
conda_file: tiny-env.conda.yaml
"""
TINY_CONDA = """\
name: tiny-env
dependencies:
  - pip
  - pip:
      - mlflow
"""


def write_project(folder: Path) -> dict[str, Path]:
    """The worker script, its environment and a factory of specs in folder; returns {"command": spec path,
    "folder": folder}."""
    (folder / "src").mkdir(parents=True, exist_ok=True)
    (folder / "src" / "worker.py").write_text(textwrap.dedent(WORKER).lstrip())
    (folder / "environments").mkdir(exist_ok=True)
    (folder / "environments" / "tiny-env.yml").write_text(TINY_ENVIRONMENT)
    (folder / "environments" / "tiny-env.conda.yaml").write_text(TINY_CONDA)
    command = folder / "command.yml"
    command.write_text(COMMAND_JOB)
    return {"command": command, "folder": folder}


def sweep_spec(folder: Path, name: str, trials: int, seconds: float, trial_timeout: int | None = None) -> Path:
    """A grid sweep of `trials` identical hanging trials (seconds each); trial_timeout when given (>= 60)."""
    values = ", ".join(str(seconds + i / 1000) for i in range(trials))  # distinct values: one trial each
    text = SWEEP_JOB.replace("SECONDS", values).replace("TRIALS", str(trials))
    text = text.replace("TIMEOUT_LINE", f"trial_timeout: {trial_timeout}" if trial_timeout else "")
    path = folder / f"{name}.yml"
    path.write_text("\n".join(line for line in text.splitlines() if line.strip()) + "\n")
    return path


# ---------------------------------------------------------------------------------------------------------------
# The scenarios.


def job_process(aml: Aml, name: str) -> tuple[int, float] | None:
    """(pid, start time) of a running job's process, from the pid file it wrote; None before it has written one."""
    path = aml.home / "jobs" / name / "outputs" / "out" / "pid.json"
    with contextlib.suppress(OSError, ValueError):
        pid = json.loads(path.read_text())["pid"]
        return pid, processes.start_time(pid)
    return None


def job_processes(aml: Aml, names: list[str], timeout: float) -> list[tuple[int, float]]:
    """The processes of every named job, once all of them run."""
    return wait_until(
        lambda: all(found := [job_process(aml, name) for name in names]) and found,
        timeout,
        f"the processes of jobs {names} starting",
    )


def trials_running(aml: Aml, sweep: str, count: int, timeout: float) -> list[str]:
    """The names of the sweep's trials, once `count` of them run."""
    started = time.monotonic()

    def trials():
        listed = aml.read("job", "list", "--parent-job-name", sweep, "-o", "json", check=False)
        names = [t["name"] for t in json.loads(listed)] if listed is not None else []
        return names if len(names) >= count else None

    names = wait_until(trials, timeout, f"{count} trials of sweep {sweep} starting", interval=0.5)
    job_processes(aml, names, timeout - (time.monotonic() - started))
    return names


def _status(aml: Aml, name: str) -> str:
    return aml.read("job", "show", "-n", name, "--query", "status", "-o", "tsv").strip()


def killed_driver(aml: Aml, project: dict[str, Path], kind: str) -> Check:
    """A sweep (kind "sweep") or a command job ("command job") started with `job create --stream`, whose aml-local
    process is SIGKILLed once its jobs run: every job process ends within 30 s, the job shows Failed, and a sweep's
    trials Canceled, saying their parent ended without stopping them."""
    if kind == "sweep":
        name, spec, extra = "killed_sweep", sweep_spec(project["folder"], "killed", trials=2, seconds=600), ()
    else:
        name, spec, extra = "killed_job", project["command"], ("--set", "inputs.seconds=600")
    driver = aml.start("job", "create", "-f", spec, "-n", name, "--stream", "-o", "none", *extra)
    try:
        children = trials_running(aml, name, 2, timeout=120) if kind == "sweep" else [name]
        running = job_processes(aml, children, timeout=120)
    finally:
        driver.kill()  # SIGKILL: no handler runs, nothing is recorded by the driver itself
        driver.wait()
    killed_at = time.monotonic()
    wait_until(lambda: not any(processes.alive(*p) for p in running), 30)
    gone_after = time.monotonic() - killed_at
    left = [pid for pid, started in running if processes.alive(pid, started)]
    status = _status(aml, name)
    trials = [aml.read_json("job", "show", "-n", child) for child in children] if kind == "sweep" else []
    trial_states = sorted(t["status"] for t in trials)
    figure = (
        f"{kind}: SIGKILL of the streaming aml-local: {len(running) - len(left)}/{len(running)} processes gone in "
        f"{gone_after:.1f} s; status {status}" + (f", trials {trial_states}" if trials else "")
    )
    said = f"its parent job {name} ended without stopping it"
    criteria = {
        "every job process ended within 30 s": not left,
        "the job shows Failed": status == "Failed",
        "its trials show Canceled": all(t["status"] == "Canceled" for t in trials),
        f"its trials say {said!r}": all(said in t["properties"].get("aml_local.status_message", "") for t in trials),
    }
    return judge(f"jobs: killed driver ({kind})", figure, criteria)


def concurrent_commands(aml: Aml, project: dict[str, Path], also_listed: tuple[str, ...] = ()) -> Check:
    """Two command jobs and two `model create` of one name started at once: every command exits 0, both jobs
    complete, the versions are 1 and 2, the MLflow database passes PRAGMA integrity_check, and every job is listed
    (those named in also_listed too: e.g. a sweep running meanwhile)."""
    model_source = project["folder"] / "model-src"
    model_source.mkdir(exist_ok=True)
    (model_source / "weights.txt").write_text("not a real model\n")
    jobs = ("faults_a", "faults_b")
    model = ("model", "create", "-n", "faults-model", "--path", model_source, "--type", "custom_model", "-o", "none")
    commands = [*(("job", "create", "-f", project["command"], "-n", job, "--stream", "-o", "none") for job in jobs)]
    started = [aml.start(*command, stderr=subprocess.PIPE, waited_for=True) for command in [*commands, model, model]]
    errors = [process.communicate(timeout=300)[1] for process in started]
    codes = [process.returncode for process in started]
    statuses = [_status(aml, job) for job in jobs]
    models = aml.read_json("model", "list", "-n", "faults-model") if not any(codes) else []
    versions = sorted(m["version"] for m in models)
    with contextlib.closing(sqlite3.connect(aml.home / "mlflow.db")) as connection:
        integrity = connection.execute("PRAGMA integrity_check").fetchone()[0]
    expected = {*jobs, *also_listed}
    listed = {j["name"] for j in aml.read_json("job", "list")} & expected
    what = "2 jobs + 2 model creates" + (" during a sweep" if also_listed else "")
    figure = (
        f"{what}: exits {codes}, jobs {statuses}, model versions {versions}, sqlite {integrity}, "
        f"listed {len(listed)}/{len(expected)}"
    )
    criteria = {
        "every command exits 0": codes == [0, 0, 0, 0],
        "both jobs Completed": statuses == ["Completed", "Completed"],
        "model versions 1 and 2": versions == ["1", "2"],
        "the database is intact": integrity == "ok",
        "every job listed": listed == expected,
    }
    return judge("jobs: concurrent commands", figure, criteria, problems=[e.strip()[-150:] for e in errors if e][:1])


def trial_timeout(aml: Aml, project: dict[str, Path], meanwhile: Callable[[str], list[Check]]) -> list[Check]:
    """A sweep of two trials that hang for 10 minutes, with trial_timeout 60 (the shortest the SDK allows): both end
    Canceled with no process left. meanwhile(the sweep's name) runs while they hang; its checks come first."""
    name = "hanging_sweep"
    hanging = sweep_spec(project["folder"], "hanging", trials=2, seconds=600, trial_timeout=60)
    started = time.monotonic()
    sweep = aml.start("job", "create", "-f", hanging, "-n", name, "--stream", "-o", "none", stderr=subprocess.PIPE)
    try:
        trials = trials_running(aml, name, 2, timeout=120)
        running = job_processes(aml, trials, timeout=10)
        checks = meanwhile(name)
        sweep.communicate(timeout=240)
    finally:
        if sweep.poll() is None:
            sweep.kill()
            sweep.wait()
    states = sorted(_status(aml, trial) for trial in trials)
    alive = [pid for pid, start in running if processes.alive(pid, start)]
    elapsed = time.monotonic() - started
    figure = f"2 hanging trials, trial_timeout 60: {states} after {elapsed:.0f} s, processes left {len(alive)}"
    criteria = {"both Canceled": states == ["Canceled", "Canceled"], "no process left": not alive}
    return [*checks, judge("jobs: trial_timeout ends a hang", figure, criteria)]
