"""Tiny job and sweep specs for the fault checks (bench/soak.py, tests/test_faults.py): no TensorFlow, so they
start in a second; each process writes its pid where the check can find it."""

import textwrap
from pathlib import Path

# A trial or job command: writes its pid into the output folder, logs a metric, then sleeps `seconds` (a hang).
WORKER = """
import json, os, sys, time, mlflow
seconds, out = float(sys.argv[1]), sys.argv[2]
with open(os.path.join(out, "pid.json"), "w") as f:
    json.dump({"pid": os.getpid()}, f)
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
