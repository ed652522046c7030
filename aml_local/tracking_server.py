"""An MLflow tracking server over the local store, for jobs that run in a venv built from their environment.

A job's MLflow client normally talks to the store directly (`sqlite:///<home>/mlflow.db`). A built venv has the
environment's own mlflow (or mlflow-skinny, which azureml-mlflow brings), often another version than the project's,
and MLflow refuses a database whose schema another version migrated. So those jobs talk to the store over REST, as
Azure ML's jobs do with the workspace's tracking service: one `mlflow server` per AML_LOCAL_HOME, started from the
project venv on first need over the same sqlite store and artifact folder, bound to 127.0.0.1 on a free port, and
reused by later jobs. Its pid, start time and port are recorded in <home>/mlflow-server.json; a server that died
(or a pid the system gave to another program) is started again. It runs detached from the job that started it
(its own session, not that job's child), so stopping a job never stops it.

It stops by itself once idle. It is started through a small supervisor (`python -m aml_local.tracking_server
--serve PORT IDLE_S`, the recorded pid, leading the process group) that runs `mlflow server` as its child and
looks every few seconds for a reason to keep it: a job of this store running (a runner.json under <home>/jobs/
naming a live process, as job_records reads it), a request (see `_requests_seen`), or a hand-out (`uri()` gave its
URI out, which keeps it for the idle time at least). After IDLE_S seconds with none, it removes the record under
the store's "mlflow-server" lock (the one `uri()` holds to hand a server out: so a server is either handed out and
kept for the idle time, or gone from the record and never handed out again), then stops mlflow's processes and
exits; the next job that needs one starts one again. It also stops when its store folder is removed.

The idle time is AML_LOCAL_TRACKING_IDLE_S, 300 s by default: a start costs the next job seconds of mlflow import
on an idle machine and up to a minute on a busy one (spent `Preparing`), and jobs come in bursts (edit, resubmit,
a notebook's next cell, a sweep's trials, which keep it busy anyway) whose gaps are mostly a few minutes; a server
holds about 0.5 GB, so a store left alone gives it back five minutes after its last job, where before it was held
until the machine restarted. `aml-local tracking-server show` shows it; `aml-local tracking-server stop` (or
`python -m aml_local.tracking_server --stop`, or `stop()`) stops it now.
"""

import contextlib
import datetime
import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import psutil

from aml_local import AmlLocalError, job_records, processes, store

RECORD_NAME = "mlflow-server.json"
LOG_NAME = "mlflow-server.log"
LOCK_NAME = "mlflow-server"
# Starting it imports mlflow's FastAPI app: seconds on an idle machine, a minute on a busy 2-core one.
START_TIMEOUT_S = 300.0
IDLE_VARIABLE = "AML_LOCAL_TRACKING_IDLE_S"
DEFAULT_IDLE_S = 300.0  # why 300 s: the module's docstring
# Started through this one-line launcher, which exits at once: the supervisor is then nobody's child (not the job
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


def idle_limit() -> float:
    """Seconds a server may stay idle before it stops: AML_LOCAL_TRACKING_IDLE_S, else DEFAULT_IDLE_S."""
    text = os.environ.get(IDLE_VARIABLE, "").strip()
    if not text:
        return DEFAULT_IDLE_S
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise AmlLocalError(f"{IDLE_VARIABLE}={text!r}: give a positive number of seconds")
    return value


def _poll_s(idle_s: float) -> float:
    """How often the supervisor looks: a few times per idle time, at most every 2 s."""
    return min(2.0, max(0.25, idle_s / 4))


def _healthy(port: int, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(f"{_url(port)}/health", timeout=timeout) as answer:
            return answer.status == 200
    except (OSError, urllib.error.URLError):
        return False


def _read_record(path: Path) -> dict | None:
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def _running() -> dict | None:
    """The recorded server, if it is still that process and answers."""
    record = _read_record(_record_path())
    if record and processes.alive(record.get("pid"), record.get("started")) and _healthy(record["port"]):
        return record
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def uri(log: Callable[[str], None] = lambda line: None) -> str:
    """The tracking URI of this home's server (`http://127.0.0.1:<port>`), started first when it is not running.
    Handing it out counts as activity: the server then stays up for the idle time at least (and for as long as a
    job of this store runs), since its supervisor decides to stop under this same lock."""
    with store.locked(LOCK_NAME):
        record = _running()
        if record is None:
            record = _start(log)
        else:
            record["active"] = time.time()
            store.write_json(_record_path(), record)
    return _url(record["port"])


def _start(log: Callable[[str], None]) -> dict:
    idle_s = idle_limit()
    stale = _record_path()
    with contextlib.suppress(OSError, ValueError, KeyError):
        old = json.loads(stale.read_text())
        if processes.alive(old.get("pid"), old.get("started")):
            processes.stop_group(old["pid"], grace=5)  # alive but not answering: replaced
    stale.unlink(missing_ok=True)
    port = _free_port()
    supervisor = [sys.executable, "-m", "aml_local.tracking_server", "--serve", str(port), repr(idle_s)]
    # MLflow's server also starts a job-execution worker (huey) by default: nothing here uses it.
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", "AML_LOCAL_HOME": str(store.home())}
    env.pop("MLFLOW_TRACKING_URI", None)
    log(f"Starting the MLflow tracking server for jobs in built environments on {_url(port)} (once per store)")
    log_path = store.home() / LOG_NAME
    launched = subprocess.run(
        [sys.executable, "-c", _LAUNCHER, str(log_path), *supervisor],
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
    record.update(idle_limit_s=idle_s, active=time.time())
    store.write_json(_record_path(), record)
    log(f"MLflow tracking server ready on {_url(port)} after {time.monotonic() - started:.1f} s")
    return record


def stop() -> bool:
    """Stop this home's server, if one is running; whether one was."""
    with store.locked(LOCK_NAME):
        record = _read_record(_record_path())
        if record is None:
            return False
        running = processes.alive(record.get("pid"), record.get("started"))
        if running:
            processes.stop_group(record["pid"], grace=10)  # the supervisor, mlflow and its workers: one group
        _record_path().unlink(missing_ok=True)
        return running


def running_jobs(jobs_dir: Path | None = None) -> int:
    """How many jobs of the store are running: their runner.json names a live process (job_records' test)."""
    folder = store.jobs_dir() if jobs_dir is None else jobs_dir
    return sum(processes.alive_from_file(job_records.runner_file(f.parent)) for f in folder.glob("*/runner.json"))


def _whole(seconds: float | None) -> float | int | None:
    return int(seconds) if isinstance(seconds, float) and seconds.is_integer() else seconds


def show() -> dict:
    """This home's server as `aml-local tracking-server show` prints it."""
    record = _read_record(_record_path())
    if not record or not processes.alive(record.get("pid"), record.get("started")):
        return {"running": False, "store": str(store.home()), "idle_limit_seconds": _whole(idle_limit())}
    jobs = running_jobs()
    active = record.get("active") or record["started"]
    return {
        "running": True,
        "store": str(store.home()),
        "pid": record["pid"],
        "port": record["port"],
        "uri": _url(record["port"]),
        "started": datetime.datetime.fromtimestamp(record["started"], datetime.UTC).isoformat(timespec="seconds"),
        "running_jobs": jobs,
        "idle_seconds": 0 if jobs else max(0, round(time.time() - active)),
        "idle_limit_seconds": _whole(record.get("idle_limit_s")),
        "answers": _healthy(record["port"]),
        "log": record.get("log"),
    }


# ---------------------------------------------------------------------------------------------------------------
# The supervisor: python -m aml_local.tracking_server --serve PORT IDLE_S (started by _start, never by hand)


class _Stopped(Exception):
    """A stop signal reached the supervisor."""


def _raise_stopped(signum, _frame):
    raise _Stopped(signal.Signals(signum).name)


def _server_command(port: int) -> list[str]:
    return [
        sys.executable, "-m", "mlflow", "server",
        "--backend-store-uri", store.tracking_uri(),
        "--artifacts-destination", str(store.artifact_root()),
        "--serve-artifacts",
        "--host", "127.0.0.1",
        "--port", str(port),
        "--workers", "1",
    ]  # fmt: skip


def _die_with_parent() -> Callable[[], None] | None:
    """For the `mlflow server` child: SIGTERM when the supervisor dies, however it dies (SIGKILL included); it then
    passes the signal on to its uvicorn (mlflow's _run_server forwards SIGTERM), so nothing outlives the supervisor.
    Linux's prctl(PR_SET_PDEATHSIG); elsewhere none (stop() stops the whole group either way)."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    libc, parent = ctypes.CDLL(None, use_errno=True), os.getpid()

    def preexec():
        libc.prctl(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG
        if os.getppid() != parent:  # the supervisor died before that took hold
            os._exit(1)

    return preexec


def _remember(server: subprocess.Popen, tree: dict[int, psutil.Process]):
    """Add the server's processes (mlflow's CLI, its uvicorn) to `tree`, kept so that one whose parent has
    already exited is still stopped."""
    with contextlib.suppress(psutil.Error):
        root = psutil.Process(server.pid)
        for process in (root, *root.children(recursive=True)):
            tree.setdefault(process.pid, process)


def _connections_open(tree: dict[int, psutil.Process], port: int) -> bool:
    """Whether the server holds a connection on its port (a request in flight, or a client's kept-alive one)."""
    for process in list(tree.values()):
        try:
            connections = process.net_connections(kind="tcp")
        except psutil.Error:
            continue
        if any(c.laddr and c.laddr.port == port and c.status != psutil.CONN_LISTEN for c in connections):
            return True
    return False


def _log_size() -> int:
    with contextlib.suppress(OSError):
        return os.fstat(sys.stdout.fileno()).st_size
    return 0


def _requests_seen(tree: dict[int, psutil.Process], port: int, size: list[int]) -> bool:
    """Whether a request arrived since the last look. Two signs, either enough, neither needing a proxy in front
    of the server or anything from the job: the server's log grew (its uvicorn writes one access line per request,
    in MLflow's uvicorn log config, into the log that is this process's stdout: so a request between two looks,
    however short, is seen), or a connection is open on its port (a request still in flight, a long artifact
    upload, or a client's kept-alive connection, which uvicorn closes after 5 s idle: seen even were the access
    lines ever dropped). `size` holds the log's size at the last look."""
    now = _log_size()
    grew, size[0] = now != size[0], now
    return grew or _connections_open(tree, port)


def _stop_tree(server: subprocess.Popen, tree: dict[int, psutil.Process], grace: float = 10.0):
    """SIGTERM to the server's processes, SIGKILL to those left after `grace` seconds."""
    _remember(server, tree)
    left = [p for p in tree.values() if p.is_running()]
    for process in left:
        with contextlib.suppress(psutil.Error):
            process.terminate()
    _, left = psutil.wait_procs(left, timeout=grace)
    for process in left:
        with contextlib.suppress(psutil.Error):
            process.kill()
    psutil.wait_procs(left, timeout=5)
    with contextlib.suppress(OSError, subprocess.TimeoutExpired):
        server.wait(timeout=1)


def _mark_active(record_path: Path, me: int, now: float):
    """Record when this server was last busy (what `show` reads), if the record is still this server's."""
    with store.locked(LOCK_NAME):
        record = _read_record(record_path)
        if record and record.get("pid") == me:
            store.write_json(record_path, {**record, "active": now})


def _retire(record_path: Path, me: int, busy_at: float, idle_s: float) -> str | None:
    """Remove this idle server's record under the lock that uri() hands servers out under, so that it is never
    handed out again; why it stops, or None when uri() handed it out meanwhile (it then stays)."""
    with store.locked(LOCK_NAME):
        record = _read_record(record_path)
        if record is None or record.get("pid") != me:
            return "no longer recorded (replaced or stopped)"
        idle_for = time.time() - max(busy_at, record.get("active", 0))
        if idle_for < idle_s:
            return None
        record_path.unlink(missing_ok=True)
        return f"idle for {idle_for:.0f} s (limit {idle_s:g} s)"


def _serve(port: int, idle_s: float):
    """Run `mlflow server` on `port` until it has been idle for `idle_s` seconds (see the module's docstring)."""
    home, record_path, jobs_dir, me = store.home(), _record_path(), store.jobs_dir(), os.getpid()
    tree: dict[int, psutil.Process] = {}
    poll, size, began = _poll_s(idle_s), [_log_size()], time.time()
    busy_at, recorded, server, why = began, False, None, None
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, _raise_stopped)
    try:
        server = subprocess.Popen(_server_command(port), stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent())
        while why is None:
            time.sleep(poll)
            if server.poll() is not None:
                why = f"mlflow server exited with code {server.returncode}"
                break
            if not home.is_dir():
                why = "its store folder was removed"
                break
            _remember(server, tree)
            now = time.time()
            # Requests first, every time: that look also notes the log's size for the next one.
            busy = _requests_seen(tree, port, size) or running_jobs(jobs_dir) > 0
            busy_at = now if busy else busy_at
            record = _read_record(record_path)
            mine = record is not None and record.get("pid") == me
            if not (recorded or mine):
                # uri() writes the record once the server answers, holding the lock meanwhile: wait, without the
                # lock (a server that exits now must be seen to exit); a start whose caller died is given up.
                if now - began > START_TIMEOUT_S + idle_s:
                    why = "never recorded (its start was given up)"
                continue
            recorded = True
            if mine and busy and now - record.get("active", 0) >= poll:
                _mark_active(record_path, me, now)
            elif not mine or now - max(busy_at, record.get("active", 0)) >= idle_s:
                why = _retire(record_path, me, busy_at, idle_s)
    except _Stopped as signame:
        why = f"stopped by {signame}"
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)
        print(f"[aml-local] MLflow tracking server on {_url(port)}: {why or 'supervisor failed'}; stopping", flush=True)
        if server is not None:
            _stop_tree(server, tree)


if __name__ == "__main__":
    # python -m aml_local.tracking_server --stop: stop the server of AML_LOCAL_HOME (or the default store).
    if sys.argv[1:] == ["--stop"]:
        print("stopped" if stop() else "not running")
    elif sys.argv[1:2] == ["--serve"] and len(sys.argv) == 4:
        _serve(int(sys.argv[2]), float(sys.argv[3]))
    else:
        sys.exit("usage: python -m aml_local.tracking_server --stop")
