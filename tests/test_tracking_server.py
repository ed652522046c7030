"""A store's MLflow tracking server (aml_local/tracking_server.py) stops by itself once idle: while a job of the store
runs, or requests come, it stays; after the store's last job ends it is gone, with every process it started (the
supervisor, mlflow's CLI, its uvicorn), within the idle time and a few seconds; `aml-local tracking-server stop`
stops it at once; and `uri()` starts a new one when a job needs it again.

A real server (a start is a few seconds of mlflow import) with a 3 s idle time; a running job is what the store
recognises as one: its folder's runner.json naming a live process (here, this one), as the job runner writes it."""

import itertools
import json
import subprocess
import sys
import time
import urllib.request

import psutil
import pytest

from aml_local import AmlLocalError, cli, job_records, processes, store, tracking_server

IDLE_S = 3
# A stop may come this much after the idle time: the supervisor looks every IDLE_S/4 s, and uvicorn shuts down.
SLACK_S = 5


@pytest.fixture
def server_home(home, monkeypatch):
    monkeypatch.setenv(tracking_server.IDLE_VARIABLE, str(IDLE_S))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    yield home
    tracking_server.stop()


def record() -> dict:
    return json.loads((store.home() / tracking_server.RECORD_NAME).read_text())


def server_processes() -> list[psutil.Process]:
    """The recorded supervisor and every process under it."""
    supervisor = psutil.Process(record()["pid"])
    return [supervisor, *supervisor.children(recursive=True)]


def running(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def left_over(started: list[psutil.Process], port: int) -> list[str]:
    """What is still running of `started`, and any other process still serving `--port <port>` (an orphaned
    uvicorn or gunicorn worker would be one)."""
    left = {p.pid: " ".join(p.cmdline()) for p in started if running(p)}
    for process in psutil.process_iter(["cmdline"]):
        argv = process.info["cmdline"] or []
        if any(a == "--port" and b == str(port) for a, b in itertools.pairwise(argv)) and running(process):
            left[process.pid] = " ".join(argv)
    return [f"{pid}: {line}" for pid, line in left.items()]


def seconds_until_gone(started: list[psutil.Process], port: int, within: float) -> float:
    began = time.monotonic()
    while left_over(started, port):
        assert time.monotonic() - began < within, f"still running after {within} s: {left_over(started, port)}"
        time.sleep(0.2)
    return time.monotonic() - began


def health(uri: str) -> bytes:
    with urllib.request.urlopen(f"{uri}/health", timeout=5) as answer:
        return answer.read()


def run_cli(capsys, *argv) -> dict:
    assert cli.main(list(argv)) == 0
    return json.loads(capsys.readouterr().out)


def test_a_running_job_or_requests_keep_the_server_and_it_is_gone_within_the_idle_time_after_the_last_job(
    server_home, capsys
):
    uri = tracking_server.uri()
    port, first = record()["port"], server_processes()
    assert any("uvicorn" in " ".join(p.cmdline()) for p in first), [p.cmdline() for p in first]

    # Requests keep it: one a second, for longer than the idle time.
    until = time.monotonic() + IDLE_S + 1
    while time.monotonic() < until:
        assert health(uri) == b"OK"
        time.sleep(1)
    assert all(running(p) for p in first)

    # A running job keeps it, with no request at all.
    job = server_home / "jobs" / "a_running_job"
    job.mkdir(parents=True)
    processes.write_pid_file(job_records.runner_file(job))
    time.sleep(IDLE_S + 1)
    assert all(running(p) for p in first)
    shown = run_cli(capsys, "tracking-server", "show")
    assert shown["running"] and shown["pid"] == first[0].pid and shown["uri"] == uri and shown["port"] == port
    assert shown["running_jobs"] == 1 and shown["idle_seconds"] == 0 and shown["idle_limit_seconds"] == IDLE_S

    # The job ends: the server is gone within the idle time (not before it), and nothing of it is left.
    job_records.runner_file(job).unlink()
    took = seconds_until_gone(first, port, within=IDLE_S + SLACK_S)
    assert took >= IDLE_S - 1, f"stopped {took:.1f} s after the last job ended: before the idle time"
    assert not (server_home / tracking_server.RECORD_NAME).exists()
    assert run_cli(capsys, "tracking-server", "show")["running"] is False
    assert "idle for" in (server_home / tracking_server.LOG_NAME).read_text()

    # The next job that needs one starts a new one...
    again = tracking_server.uri()
    second, second_port = server_processes(), record()["port"]
    assert second[0].pid != first[0].pid and health(again) == b"OK"

    # ...which `aml-local tracking-server stop` stops at once, with everything under it.
    assert run_cli(capsys, "tracking-server", "stop") == {"store": str(server_home), "stopped": True}
    seconds_until_gone(second, second_port, within=1)
    assert run_cli(capsys, "tracking-server", "stop")["stopped"] is False
    stopped = subprocess.run(
        [sys.executable, "-m", "aml_local.tracking_server", "--stop"], capture_output=True, text=True, check=True
    )
    assert stopped.stdout.strip() == "not running"


def test_the_idle_time_must_be_a_positive_number_of_seconds(monkeypatch):
    monkeypatch.delenv(tracking_server.IDLE_VARIABLE, raising=False)
    assert tracking_server.idle_limit() == tracking_server.DEFAULT_IDLE_S
    monkeypatch.setenv(tracking_server.IDLE_VARIABLE, "0.5")
    assert tracking_server.idle_limit() == 0.5
    for bad in ("0", "-3", "soon", "nan", "inf"):
        monkeypatch.setenv(tracking_server.IDLE_VARIABLE, bad)
        with pytest.raises(AmlLocalError, match=tracking_server.IDLE_VARIABLE):
            tracking_server.idle_limit()
