"""Where local state lives: one folder (AML_LOCAL_HOME; by default <repo>/.aml-local in a source checkout, else
.aml-local in the current folder) holding the MLflow sqlite store that plays the workspace's job history and model
registry, and one folder per job."""

import contextlib
import fcntl
import json
import os
from pathlib import Path

from aml_local import AmlLocalError, ResourceNotFound

REPO_ROOT = Path(__file__).resolve().parents[1]

# Tags on the MLflow run that records a job. Azure ML's job name is the run's identity there;
# MLflow picks its own run ids, so the name is kept as a tag and as the run name.
TAG_NAME = "aml.job_name"
TAG_STATUS = "aml.status"
TAG_TYPE = "aml.job_type"
TAG_STATUS_MESSAGE = "aml.status_message"
TAG_PARENT = "mlflow.parentRunId"

TERMINAL_STATES = ("Completed", "Failed", "Canceled", "NotResponding")
_MLFLOW_END_STATE = {"Completed": "FINISHED", "Failed": "FAILED", "Canceled": "KILLED"}


def home() -> Path:
    path = Path(os.environ.get("AML_LOCAL_HOME") or _default_home()).resolve()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise AmlLocalError(f"AML_LOCAL_HOME {path}: cannot create it ({err.strerror})") from None
    return path


def _default_home() -> Path:
    """A source checkout (pyproject.toml beside the package) keeps one store at its root, wherever in it a script
    runs; an installed package (in site-packages) has no such root, so it uses the current folder's, as git does
    with .git: our choice, Azure ML has no local store."""
    if (REPO_ROOT / "pyproject.toml").is_file():
        return REPO_ROOT / ".aml-local"
    return Path.cwd() / ".aml-local"


def tracking_uri() -> str:
    return f"sqlite:///{home() / 'mlflow.db'}"


def artifact_root() -> Path:
    return home() / "mlartifacts"


def jobs_dir() -> Path:
    return home() / "jobs"


@contextlib.contextmanager
def locked(name="store"):
    """Serialise the few read-modify-write steps two aml-local commands could race on."""
    with open(home() / f".{name}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# The one MLflow client, for the store of the current AML_LOCAL_HOME: (tracking URI, client). A process that switches
# homes (the tests do, per test) replaces it rather than keeping a client, and its sqlite engine, per home.
_cached_client = None


def client():
    """The MLflow client on the local store (created, and its schema migrated, on first use)."""
    global _cached_client
    uri = tracking_uri()
    if _cached_client is None or _cached_client[0] != uri:
        import logging

        from mlflow.tracking import MlflowClient

        # MLflow and alembic log every schema migration of a new sqlite store at INFO: noise for users.
        for logger in ("mlflow", "alembic"):
            logging.getLogger(logger).setLevel(logging.WARNING)

        with locked():
            fresh = MlflowClient(tracking_uri=uri)
            fresh.search_experiments(max_results=1)
        _cached_client = (uri, fresh)
    return _cached_client[1]


def experiment_id(name: str) -> str:
    with locked():
        experiment = client().get_experiment_by_name(name)
        if experiment is not None:
            return experiment.experiment_id
        location = (artifact_root() / name).as_uri()
        return client().create_experiment(name, artifact_location=location)


def all_experiment_ids() -> list[str]:
    return [e.experiment_id for e in client().search_experiments()]


def find_job_run(name: str):
    runs = client().search_runs(
        all_experiment_ids(), filter_string=f"tags.`{TAG_NAME}` = '{_quote(name)}'", max_results=1
    )
    if not runs:
        raise ResourceNotFound(f"job {name!r} not found in the local store {home()}")
    return runs[0]


def job_runs(parent_run_id=None, max_results=50):
    filters = [f"tags.`{TAG_NAME}` != ''"]
    if parent_run_id:
        filters.append(f"tags.`{TAG_PARENT}` = '{parent_run_id}'")
    return client().search_runs(
        all_experiment_ids(),
        filter_string=" and ".join(filters),
        max_results=max_results,
        order_by=["attributes.start_time DESC"],
    )


def write_json(path: Path, data):
    """Write JSON whole, then rename: a command reading it at the same moment never sees half a record."""
    partial = Path(path).with_name(f".{Path(path).name}.partial")
    partial.write_text(json.dumps(data, indent=2))
    partial.replace(path)


def set_status(run_id: str, status: str, message: str | None = None):
    # The status tag last: whoever reads it (`job show`, a sweep's driver, a test) finds its message and the MLflow
    # run's end already written.
    if message:
        client().set_tag(run_id, TAG_STATUS_MESSAGE, message[:4000])
    if status in _MLFLOW_END_STATE:
        client().set_terminated(run_id, _MLFLOW_END_STATE[status])
    client().set_tag(run_id, TAG_STATUS, status)


def _quote(value: str) -> str:
    return value.replace("'", "''")
