"""The `job` verbs: `job create/show/list/stream/cancel/download/archive/restore`, for the job YAML that `az ml job
create` takes.

The YAML is parsed by azure.ai.ml's own load_job (so what the CLI rejects is rejected here, with the SDK's message)
and dispatched on its `type` to the kind registered for it (jobs/command.py, sweep.py, pipeline.py); a job is
recorded as an MLflow run in the local store, and runs here with inputs mapped to local folders and outputs written
under the job's folder.
"""

import shutil
import sys
import time
from pathlib import Path

from aml_local import AmlLocalError, job_records, processes, store
from aml_local.jobs import common, kinds, runner

# What `az ml job download` and `job show` accept as ended (azure-ai-ml's JobStatus terminal states).
ENDED = store.TERMINAL_STATES

# A child job as azure-ai-ml returns it from run history: `job list --parent-job-name` maps each child run to a
# _BaseJob (operations/_job_operations.py list -> _run_operations.get_run_children; entities/_job/job.py
# _from_rest_object; entities/_job/base_job.py), and `job show` of a pipeline's child falls back to the same
# (_job_operations.get -> _is_pipeline_child_job). Only these fields, none of type, inputs, outputs, code, command,
# environment or parent_job_name; experiment_name holds the experiment's id (_schema/job/base_job.py).
CHILD_FIELDS = (
    "compute",
    "creation_context",
    "description",
    "display_name",
    "experiment_name",
    "id",
    "name",
    "properties",
    "services",
    "status",
    "tags",
)


def create(file, name=None, set_pairs=(), stream=False, echo=None) -> dict:
    """`job create --file`: load the YAML, hand it to its kind, and show the job."""
    echo = echo or sys.stdout
    job = common.load(file, set_pairs)
    kind = kinds.get(getattr(job, "type", None), file)
    spec = kind.create(job, file, name=name, set_pairs=set_pairs, stream=stream, echo=echo)
    return show(spec["name"])


def show(name) -> dict:
    run = store.find_job_run(name)  # first: an unknown name is "not found" (exit 3), as az says
    job_dir = job_records.job_dir(name)
    spec = job_records.read_spec(name)
    # The run as the status was read from it: what a sweep adds (its best trial) agrees with the status shown.
    status, message, run = job_records.status_and_run(run, job_dir)
    kind = kinds.get(spec["type"])
    result = {
        "$schema": kind.schema,
        "compute": spec["compute"],
        "creation_context": {
            "created_at": spec["created_at"],
            "created_by": spec["created_by"],
            "created_by_type": "User",
        },
        "description": spec["description"],
        "display_name": spec["display_name"],
        "experiment_name": spec["experiment_name"],
        "id": f"azureml:/local/jobs/{name}",
        "inputs": spec["inputs"],
        "name": name,
        "outputs": spec["outputs"],
        "properties": {"mlflow.runId": spec["mlflow_run_id"], "aml_local.job_dir": str(job_dir)},
        "services": {
            "Studio": {"endpoint": common.studio_url(spec), "type": "Studio"},
            "Tracking": {"endpoint": store.tracking_uri(), "type": "Tracking"},
        },
        "status": status,
        "tags": spec["tags"],
        "type": spec["type"],
    }
    if kind.add_to_show:
        kind.add_to_show(result, spec, run)
    if spec.get("parent_job_name"):
        result["parent_job_name"] = spec["parent_job_name"]
    if message:
        result["properties"]["aml_local.status_message"] = message
    if _is_pipeline_child(spec):
        return _as_child(result, spec)
    return {k: v for k, v in dict(sorted(result.items())).items() if v is not None}


def _is_pipeline_child(spec) -> bool:
    parent = spec.get("parent_job_name")
    return bool(parent) and job_records.read_spec(parent)["type"] == "pipeline"


def _as_child(shown: dict, spec: dict) -> dict:
    """A job as azure-ai-ml's run-history view of a child job shows it (CHILD_FIELDS)."""
    child = {k: shown[k] for k in CHILD_FIELDS if shown.get(k) is not None}
    child["experiment_name"] = spec["experiment_id"]
    child["tags"] = child.get("tags") or {}
    return child


def list_jobs(parent_job_name=None, max_results=50, include_archived=False, archived_only=False) -> list[dict]:
    """Newest first. A parent's children come from its run's children whatever the view, as azure-ai-ml's
    JobOperations.list goes to run history for them (get_run_children) and ignores list_view_type; other jobs are
    listed in the view --include-archived/--archived-only ask for (active only by default)."""
    archived = None if include_archived else bool(archived_only)
    _check_view(include_archived, archived_only)
    parent = store.find_job_run(parent_job_name).info.run_id if parent_job_name else None
    jobs = []
    for run in job_records.runs(parent, max_results, None if parent else archived):
        name = run.data.tags[store.TAG_NAME]
        try:
            shown = show(name)
            jobs.append(_as_child(shown, job_records.read_spec(name)) if parent else shown)
        except AmlLocalError:
            continue  # a run whose job folder was removed by hand
    return jobs


def _check_view(include_archived, archived_only):
    if include_archived and archived_only:
        # azext_mlv2 custom/utils.py get_list_view_type (exit 1).
        raise AmlLocalError("Cannot provide both archived-only and include-archived.")


def set_archived(name, archived: bool, command: str) -> None:
    """`job archive` / `job restore`. A pipeline's child is refused, with azure-ai-ml's PipelineChildJobError
    (azure/ai/ml/exceptions.py; JobOperations._archive_or_restore raises it for a pipeline child job)."""
    store.find_job_run(name)  # first: an unknown name is "not found" (exit 3), as az says
    if _is_pipeline_child(job_records.read_spec(name)):
        raise AmlLocalError(
            f"job {command} is not supported on pipeline child job {name}, please use this command on pipeline parent"
            f" job {job_records.read_spec(name)['parent_job_name']}."
        )
    job_records.set_archived(name, archived)


def stream(name, echo=None, poll=0.5) -> dict:
    """Follow a job's logs until it ends, like `az ml job stream`."""
    echo = echo or sys.stdout
    job = show(name)
    job_dir = Path(job["properties"]["aml_local.job_dir"])
    # From the job's record: a pipeline's child shows no distribution (as on Azure), yet runs one process per rank.
    spec = job_records.read_spec(name)
    paths = runner.job_log_paths(job_dir, spec)
    label = runner.process_label(spec.get("distribution"))
    offsets = [0] * len(paths)
    echo.write(f"RunId: {name}\nWeb View: {job['services']['Studio']['endpoint']}\n\n")
    while True:
        status = show(name)["status"]
        for i, path in enumerate(paths):
            if path.exists():
                with open(path, "rb") as handle:
                    handle.seek(offsets[i])
                    chunk = handle.read()
                offsets[i] += len(chunk)
                prefix = f"[{label} {i}] " if len(paths) > 1 else ""
                for line in chunk.decode(errors="replace").splitlines(keepends=True):
                    echo.write(prefix + line)
        echo.flush()
        if status in store.TERMINAL_STATES:
            break
        time.sleep(poll)
    echo.write(f"\nExecution Summary\n=================\nRunId: {name}\nStatus: {status}\n\n")
    echo.flush()
    return show(name)


def cancel(name) -> dict:
    job = show(name)
    if job["status"] in store.TERMINAL_STATES:
        raise AmlLocalError(f"job {name} has already ended ({job['status']})")
    if not processes.terminate_from_file(job_records.runner_file(Path(job["properties"]["aml_local.job_dir"]))):
        raise AmlLocalError(f"job {name}: its runner is not running here (started with --stream elsewhere?)")
    for _ in range(100):
        if show(name)["status"] in store.TERMINAL_STATES:
            break
        time.sleep(0.2)
    return show(name)


def download(name, output_name=None, download_path=None, all_outputs=False):
    """`az ml job download`, laid out as azure-ai-ml's JobOperations.download lays it out
    (azure/ai/ml/operations/_job_operations.py, 1.35): with --output-name X, that output in
    <download-path>/named-outputs/X; otherwise the run's artifacts (its default artifact store: ./outputs as
    outputs/, ./logs as logs/, the job's log as user_logs/, and what the job logged with MLflow) in
    <download-path>/artifacts, and with --all every named output too. A sweep downloads its best trial's, and then
    its own artifacts into hd-artifacts."""
    # From the job's record: a pipeline's child shows neither its type nor its outputs (as on Azure).
    spec = job_records.read_spec(name)
    status, _ = job_records.current_status(name)
    if status not in ENDED:
        raise AmlLocalError(f"job {name} is {status}: download is allowed only once it has ended")
    target = Path(download_path or ".")
    artifact_folder = "artifacts"
    best = show(name)["properties"].get("best_child_run_id") if spec["type"] == "sweep" else None
    if best:
        download(best, output_name=output_name, download_path=target, all_outputs=all_outputs)
        if output_name:
            return
        artifact_folder, all_outputs = "hd-artifacts", False  # only the sweep's own artifacts, as the SDK does
    outputs = spec.get("outputs") or {}
    if output_name:
        if output_name not in outputs:
            raise AmlLocalError(
                f"--output-name {output_name}: job {name} has no such output "
                f"(outputs: {', '.join(sorted(outputs)) or 'none'})"
            )
        if not _copy_output(outputs[output_name], target / "named-outputs" / output_name):
            raise AmlLocalError(
                f"--output-name {output_name}: job {name} wrote nothing there ({outputs[output_name].get('path')})"
            )
        return
    _download_artifacts(spec["mlflow_run_id"], target / artifact_folder)
    if all_outputs:
        for output in sorted(outputs):  # the SDK skips an output it cannot find; so do we
            _copy_output(outputs[output], target / "named-outputs" / output)


def _copy_output(output: dict, target: Path) -> bool:
    source = Path(output.get("path") or "")
    if not source.exists():
        return False
    if source.is_dir():
        shutil.copytree(source, target, dirs_exist_ok=True)
    else:
        target.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target / source.name)
    return True


def _download_artifacts(run_id: str, target: Path):
    """The run's artifacts: a folder of the local store (every experiment aml-local creates has a file: artifact
    location), copied."""
    from mlflow.utils.file_utils import local_file_uri_to_path

    target.mkdir(parents=True, exist_ok=True)
    source = Path(local_file_uri_to_path(store.client().get_run(run_id).info.artifact_uri))
    if source.is_dir():
        shutil.copytree(source, target, dirs_exist_ok=True)
