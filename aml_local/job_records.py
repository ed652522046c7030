"""A job's record as it lies on disk: $AML_LOCAL_HOME/jobs/<name>/job.json (what the job is), runner.json (the
process driving it, while it runs), outputs/<name>/ (its named outputs), and the MLflow run holding its status.

Read by the job verbs and by the assets that take a job's output (`model create --path azureml://jobs/...`, a job
input bound to another job's output); written by the job kinds. Reading never writes: a job whose driver died is
*shown* Failed at once, and recorded Failed in the store by the one process that watches the driver
(`python -m aml_local.job_records --settle JOB_DIR`, started by jobs/runner.py's `driving`)."""

import json
import sys
import time
from pathlib import Path

from aml_local import AmlLocalError, processes, store

# A job that was just submitted has no driver for a moment (the runner process is starting): it is shown Starting
# for this long before a missing driver counts as a failure.
STARTING_GRACE_S = 60
DRIVER_DIED = "the local runner process ended without recording a result"
# The states of a job whose driver is still at work (Preparing: its environment is being built, as Azure builds the
# image; azure-ai-ml's JobStatus lists it).
ACTIVE_STATES = ("Starting", "Preparing", "Running")
# `job archive` sets this tag on the job's run and `job restore` removes it: azure-ai-ml's JobOperations.archive /
# restore set the job's properties.is_archived, and `job list` shows active jobs only unless asked (ListViewType).
TAG_ARCHIVED = "aml.archived"
# Every job's default output: its run's artifacts, what `azureml://jobs/<name>/outputs/artifacts/paths/<path>` names
# (as Azure ML's docs register a job's model: `az ml model create --path azureml://jobs/$RUN/outputs/artifacts/
# paths/model/`, and the Keras tutorial's Model(path="azureml://jobs/{best_run}/outputs/artifacts/paths/outputs/
# model/")), declared or not.
ARTIFACTS = "artifacts"


def job_dir(name: str) -> Path:
    return store.jobs_dir() / name


def runner_file(folder: Path) -> Path:
    return Path(folder) / "runner.json"


def write_spec(folder: Path, spec: dict):
    store.write_json(Path(folder) / "job.json", spec)


def read_spec(name: str) -> dict:
    folder = job_dir(name)
    try:
        return json.loads((folder / "job.json").read_text())
    except (OSError, ValueError):
        raise AmlLocalError(f"job {name!r}: its record in {folder} is missing or unreadable") from None


def exists(name: str) -> bool:
    if job_dir(name).exists():
        return True
    try:
        store.find_job_run(name)
    except AmlLocalError:
        return False
    return True


def status_and_run(run, folder: Path):
    """(status, message, run) of the job an MLflow run records, with the run they were read from; a Starting/Running
    job whose driver is gone is Failed. The driver records the job's end before it removes runner.json and exits, so
    when `run` says the job is active and the driver is found gone, the run is read again (a record read just before
    that end, with the driver found gone just after, would show a finished job Failed); a Starting job's pid file that
    appeared meanwhile is looked at again; still active then, the driver died without recording an end."""
    recorded = run.data.tags.get(store.TAG_STATUS, "NotStarted")
    if recorded not in ACTIVE_STATES or processes.alive_from_file(runner_file(folder)):
        return recorded, run.data.tags.get(store.TAG_STATUS_MESSAGE), run
    run = store.client().get_run(run.info.run_id)
    recorded, message = run.data.tags.get(store.TAG_STATUS, "NotStarted"), run.data.tags.get(store.TAG_STATUS_MESSAGE)
    if recorded not in ACTIVE_STATES:
        return recorded, message, run
    # The runner writes runner.json when it starts and removes it only after recording the end.
    pid_file = runner_file(folder)
    age = time.time() - (run.info.start_time or 0) / 1000
    if recorded == "Starting" and not pid_file.exists() and age < STARTING_GRACE_S:
        return recorded, message, run
    # A driver that wrote its pid file since the first look is up: not a dead one (seen under load, a batch job
    # streamed as Failed while it started, then ran to Completed).
    if processes.alive_from_file(pid_file):
        return recorded, message, run
    run = store.client().get_run(run.info.run_id)  # or it recorded its end and left since the second look
    recorded, message = run.data.tags.get(store.TAG_STATUS, "NotStarted"), run.data.tags.get(store.TAG_STATUS_MESSAGE)
    if recorded not in ACTIVE_STATES:
        return recorded, message, run
    return "Failed", DRIVER_DIED, run


def current_status(name: str) -> tuple[str, str | None]:
    """(status, message) of the job named `name`."""
    return status_and_run(store.find_job_run(name), job_dir(name))[:2]


def runs(parent_run_id=None, max_results=50, archived: bool | None = False):
    """The jobs' runs, newest first, as store.job_runs finds them: `archived` True keeps archived jobs only, False
    active ones only, None both; max_results None is every one (az's --all-results)."""
    filters = [f"tags.`{store.TAG_NAME}` != ''"]
    if parent_run_id:
        filters.append(f"tags.`{store.TAG_PARENT}` = '{parent_run_id}'")
    if archived is not None:
        filters.append(f"tags.`{TAG_ARCHIVED}` " + ("= 'true'" if archived else "IS NULL"))
    found, token = [], None
    while True:
        wanted = 1000 if max_results is None else min(1000, max_results - len(found))
        page = store.client().search_runs(
            store.all_experiment_ids(),
            filter_string=" and ".join(filters),
            max_results=wanted,
            order_by=["attributes.start_time DESC"],
            page_token=token,
        )
        found.extend(page)
        token = page.token
        if not token or (max_results is not None and len(found) >= max_results):
            return found


def set_archived(name: str, archived: bool) -> None:
    run_id = store.find_job_run(name).info.run_id  # first: an unknown name is "not found" (exit 3)
    if archived:
        store.client().set_tag(run_id, TAG_ARCHIVED, "true")
    elif TAG_ARCHIVED in store.client().get_run(run_id).data.tags:
        store.client().delete_tag(run_id, TAG_ARCHIVED)


def output_folder(name: str, output: str, field: str) -> Path:
    """The folder of a job's named output, for an `azureml://jobs/<name>/outputs/<output>` reference in `field`."""
    folder = job_dir(name)
    if not (folder / "job.json").is_file():
        raise AmlLocalError(f"{field}: no local job named {name!r}")
    spec = read_spec(name)
    outputs = spec.get("outputs") or {}
    if output == ARTIFACTS and (outputs.get(output) or {}).get("path") is None:
        return artifacts_folder(spec["mlflow_run_id"])
    if output not in outputs:
        known = ", ".join([*outputs, ARTIFACTS] if ARTIFACTS not in outputs else outputs)
        raise AmlLocalError(f"{field}: job {name} has no output {output!r} (outputs: {known})")
    return Path(outputs[output]["path"])


def artifacts_folder(run_id: str) -> Path:
    """A job's run artifacts: what it wrote to ./outputs and ./logs, uploaded when it ended (jobs/runner.py). Every
    experiment aml-local makes has a file: artifact location."""
    from mlflow.utils.file_utils import local_file_uri_to_path

    return Path(local_file_uri_to_path(store.client().get_run(run_id).info.artifact_uri))


def settle(folder: Path):
    """Record Failed for a job whose driver ended without recording its end (killed): the one writer of that."""
    folder = Path(folder)
    if processes.alive_from_file(runner_file(folder)):
        return
    try:
        spec = json.loads((folder / "job.json").read_text())
        run = store.client().get_run(spec["mlflow_run_id"])
    except (OSError, ValueError, KeyError):
        return
    if run.data.tags.get(store.TAG_STATUS) in ACTIVE_STATES:
        store.set_status(spec["mlflow_run_id"], "Failed", DRIVER_DIED)
    runner_file(folder).unlink(missing_ok=True)


if __name__ == "__main__":
    # python -m aml_local.job_records --settle JOB_DIR (run by a driver's watchdog once the driver has ended).
    if sys.argv[1:2] == ["--settle"] and len(sys.argv) == 3:
        settle(Path(sys.argv[2]))
