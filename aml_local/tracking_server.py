"""An MLflow tracking server over the local store, for jobs that run in a venv built from their environment.

A job's MLflow client normally talks to the store directly (`sqlite:///<home>/mlflow.db`). A built venv has the
environment's own mlflow (or mlflow-skinny, which azureml-mlflow brings), often another version than the project's,
and MLflow refuses a database whose schema another version migrated. So those jobs talk to the store over REST, as
Azure ML's jobs do with the workspace's tracking service: one `mlflow server` per AML_LOCAL_HOME, started from the
project venv on first need over the same sqlite store and artifact folder, bound to 127.0.0.1 on a free port, and
reused by later jobs. Its pid, start time and port are recorded in <home>/mlflow-server.json; a server that died
(or a pid the system gave to another program) is started again. It runs detached from the job that started it
(its own session, not that job's child), so stopping a job never stops it; `stop()` does, and so does
`python -m aml_local.tracking_server --stop`.
"""

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from aml_local import AmlLocalError, processes, store

RECORD_NAME = "mlflow-server.json"
LOG_NAME = "mlflow-server.log"
# Starting it imports mlflow's FastAPI app: seconds on an idle machine, a minute on a busy 2-core one.
START_TIMEOUT_S = 300.0
# Started through this one-line launcher, which exits at once: the server is then nobody's child (not the job
# runner's, whose process tree a sweep may kill) and has its own session.
_LAUNCHER = (
    "import subprocess, sys\n"
    "log = open(sys.argv[1], 'ab')\n"
    "p = subprocess.Popen(sys.argv[2:], stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,"
    " start_new_session=True)\n"
    "print(p.pid)\n"
)


def _record_path() -> Path:
    return store.home() / RECORD_NAME


def _url(port: int) -> str:
    return f"http://127.0.0.1:{port}"


def _healthy(port: int, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(f"{_url(port)}/health", timeout=timeout) as answer:
            return answer.status == 200
    except (OSError, urllib.error.URLError):
        return False


def _running() -> dict | None:
    """The recorded server, if it is still that process and answers."""
    try:
        record = json.loads(_record_path().read_text())
    except (OSError, ValueError):
        return None
    if processes.alive(record.get("pid"), record.get("started")) and _healthy(record["port"]):
        return record
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def uri(log: Callable[[str], None] = lambda line: None) -> str:
    """The tracking URI of this home's server (`http://127.0.0.1:<port>`), started first when it is not running."""
    with store.locked("mlflow-server"):
        record = _running()
        if record is None:
            record = _start(log)
    return _url(record["port"])


def _start(log: Callable[[str], None]) -> dict:
    stale = _record_path()
    with contextlib.suppress(OSError, ValueError, KeyError):
        old = json.loads(stale.read_text())
        if processes.alive(old.get("pid"), old.get("started")):
            processes.stop_group(old["pid"], grace=5)  # alive but not answering: replaced
    stale.unlink(missing_ok=True)
    port = _free_port()
    command = [
        sys.executable, "-m", "mlflow", "server",
        "--backend-store-uri", store.tracking_uri(),
        "--artifacts-destination", str(store.artifact_root()),
        "--serve-artifacts",
        "--host", "127.0.0.1",
        "--port", str(port),
        "--workers", "1",
    ]  # fmt: skip
    # MLflow's server also starts a job-execution worker (huey) by default: nothing here uses it.
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    env.pop("MLFLOW_TRACKING_URI", None)
    log(f"Starting the MLflow tracking server for jobs in built environments on {_url(port)} (once per store)")
    log_path = store.home() / LOG_NAME
    launched = subprocess.run(
        [sys.executable, "-c", _LAUNCHER, str(log_path), *command],
        capture_output=True, text=True, env=env, timeout=60, check=False,
    )  # fmt: skip
    try:
        pid = int(launched.stdout.strip())
    except ValueError:
        raise AmlLocalError(f"the MLflow tracking server did not start: {launched.stderr.strip()[-300:]}") from None
    record = {"pid": pid, "started": processes.start_time(pid), "port": port, "log": str(log_path)}
    started = time.monotonic()
    while not _healthy(port):
        if not processes.alive(pid, record["started"]):
            raise AmlLocalError(f"the MLflow tracking server exited before it answered; its log: {log_path}")
        if time.monotonic() - started > START_TIMEOUT_S:
            processes.stop_group(pid, grace=5)
            raise AmlLocalError(f"the MLflow tracking server did not answer within {START_TIMEOUT_S:.0f} s: {log_path}")
        time.sleep(0.25)
    store.write_json(_record_path(), record)
    log(f"MLflow tracking server ready on {_url(port)} after {time.monotonic() - started:.1f} s")
    return record


def stop() -> bool:
    """Stop this home's server, if one is running; whether one was."""
    with store.locked("mlflow-server"):
        try:
            record = json.loads(_record_path().read_text())
        except (OSError, ValueError):
            return False
        running = processes.alive(record.get("pid"), record.get("started"))
        if running:
            processes.stop_group(record["pid"], grace=10)
        _record_path().unlink(missing_ok=True)
        return running


if __name__ == "__main__":
    # python -m aml_local.tracking_server --stop: stop the server of AML_LOCAL_HOME (or the default store).
    if sys.argv[1:] == ["--stop"]:
        print("stopped" if stop() else "not running")
    else:
        sys.exit("usage: python -m aml_local.tracking_server --stop")
