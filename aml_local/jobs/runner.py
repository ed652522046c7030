"""Runs one local job's processes: its command once, or once per worker with TF_CONFIG for
`distribution: type: tensorflow`. Used in the foreground by `job create --stream`, and detached
(`python -m aml_local.jobs.runner JOB_DIR`) by `job create`, as Azure ML runs a job while the CLI returns."""

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from aml_local import job_records, processes, store


class Canceled(Exception):
    """Raised in the process that drives a job when it gets SIGTERM, SIGINT or SIGHUP; the message is the signal."""


_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


@contextlib.contextmanager
def driving(job_dir: Path):
    """While this process drives the job in job_dir: runner.json names it (so `job show` can tell a running job
    from one whose driver died) and the cancel signals raise Canceled. Yields `hold()`, which ignores further
    signals: call it before recording the end, so a second Ctrl-C cannot interrupt that."""

    def cancel(signum, _frame):
        raise Canceled(signal.Signals(signum).name)

    def hold():
        for sig in _SIGNALS:
            signal.signal(sig, signal.SIG_IGN)

    previous = {sig: signal.signal(sig, cancel) for sig in _SIGNALS}
    pid_file = job_records.runner_file(job_dir)
    processes.write_pid_file(pid_file)
    # Should this process be killed before it records the end, its watchdog records Failed (the one writer of that).
    settle = [sys.executable, "-m", "aml_local.job_records", "--settle", str(job_dir)]
    watchdog = processes.guard(then=settle, sentinel=pid_file)
    try:
        yield hold
    finally:
        hold()
        pid_file.unlink(missing_ok=True)
        processes.release([watchdog])
        for sig, handler in previous.items():
            signal.signal(sig, handler)


PARENT_POLL_S = 1.0


def _follow_parent(job_dir: Path, parent_job_name: str, stop: threading.Event):
    """A sweep's trial (or a pipeline's node) runs under its own runner; when the parent's driver ends without
    stopping it (killed), cancel this job rather than let it run on unsupervised."""
    parent_runner = job_records.runner_file(job_records.job_dir(parent_job_name))
    while not stop.wait(PARENT_POLL_S):
        if processes.alive_from_file(parent_runner):
            continue
        reason = {"status": "Canceled", "message": f"its parent job {parent_job_name} ended without stopping it"}
        (job_dir / "cancel.json").write_text(json.dumps(reason))
        os.kill(os.getpid(), signal.SIGTERM)  # the Canceled path: stop the processes, record the reason
        return


def _free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def process_count(distribution) -> int:
    """How many processes run the command: one per TensorFlow worker, else one."""
    distribution = distribution or {}
    return int(distribution.get("worker_count") or 1) if distribution.get("type") == "tensorflow" else 1


def _worker_envs(spec):
    """One environment per process: Azure ML's variables, MLflow attached to the job's run, and
    TF_CONFIG on 127.0.0.1 ports for each TensorFlow worker."""
    base = dict(os.environ)
    base.update(spec["environment_variables"])
    base.update(
        {
            "AZUREML_RUN_ID": spec["name"],
            "MLFLOW_TRACKING_URI": store.tracking_uri(),
            "MLFLOW_RUN_ID": spec["mlflow_run_id"],
            "MLFLOW_EXPERIMENT_ID": spec["experiment_id"],
            "AML_LOCAL_HOME": str(store.home()),
            "PYTHONUNBUFFERED": "1",
            # `python` in the command means this environment's interpreter, as the job's image would.
            "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
        }
    )
    workers = process_count(spec.get("distribution"))
    if workers == 1:
        return [base]
    # Split the cores between the workers so they do not fight over them.
    threads = str(max(1, (os.cpu_count() or 1) // workers))
    addresses = [f"127.0.0.1:{port}" for port in _free_ports(workers)]
    envs = []
    for index in range(workers):
        env = dict(base)
        env.setdefault("TF_NUM_INTRAOP_THREADS", threads)
        env.setdefault("OMP_NUM_THREADS", threads)
        env["TF_CONFIG"] = json.dumps({"cluster": {"worker": addresses}, "task": {"type": "worker", "index": index}})
        envs.append(env)
    return envs


def log_paths(job_dir: Path, procs: int):
    logs = job_dir / "logs" / "user_logs"
    if procs == 1:
        return [logs / "std_log.txt"]
    return [logs / f"std_log_process_{i}.txt" for i in range(procs)]


class EventLog:
    """A driver's own lines (a sweep's or a pipeline's events), timestamped, in the job's std_log.txt where
    `job stream` reads them, and echoed when the job is streamed."""

    def __init__(self, job_dir: Path, kind: str, echo=None):
        path = log_paths(job_dir, 1)[0]
        path.parent.mkdir(parents=True, exist_ok=True)
        self.file = open(path, "a")  # noqa: SIM115 - closed by close()
        self.kind, self.echo = kind, echo

    def say(self, text):
        line = f"[{self.kind} {time.strftime('%H:%M:%S')}] {text}\n"
        for stream in (self.file, self.echo):
            if stream is not None:
                stream.write(line)
                stream.flush()

    def close(self):
        self.file.close()


def _pump(stream, log_path, echo, prefix, last_line):
    with open(log_path, "ab") as log:
        for line in iter(stream.readline, b""):
            log.write(line)
            log.flush()
            text = line.decode(errors="replace")
            if text.strip():
                last_line[0] = text.strip()
            if echo is not None:
                echo.write(prefix + text)
                echo.flush()


def _stop(procs, grace=10.0):
    """Stop every process group (a worker's own children included) within one grace period."""
    for proc in procs:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    for proc in procs:
        processes.stop_group(proc.pid, grace=max(0.1, deadline - time.monotonic()))
        proc.wait()


def _run_processes(spec, envs, paths, echo, procs, pumps, last_lines, guards) -> tuple[str, str | None]:
    """Start the command once per environment and wait: (status, message). Fills the lists as it goes, so the
    caller can stop the processes if a signal interrupts."""
    for index, (env, log_path) in enumerate(zip(envs, paths, strict=True)):
        proc = subprocess.Popen(
            ["bash", "-c", spec["resolved_command"]],
            cwd=spec["code_dir"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        procs.append(proc)
        guards.append(processes.guard(proc.pid))
        prefix = f"[worker {index}] " if len(envs) > 1 else ""
        pump_args = (proc.stdout, log_path, echo, prefix, last_lines[index])
        pump = threading.Thread(target=_pump, args=pump_args, daemon=True)
        pump.start()
        pumps.append(pump)
    # Wait for all; the first failure stops the others, as one failed node fails an Azure job.
    while True:
        codes = [p.poll() for p in procs]
        failed = [(i, c) for i, c in enumerate(codes) if c not in (None, 0)]
        if failed:
            index, code = failed[0]
            _stop(procs)
            for pump in pumps:
                pump.join(timeout=5)
            where = f" (process {index})" if len(procs) > 1 else ""
            last = last_lines[index][0][:300]
            message = f"the command{where} exited with code {code}" + (f"; its last line: {last}" if last else "")
            return "Failed", message
        if all(c == 0 for c in codes):
            return "Completed", None
        time.sleep(0.2)


def run(job_dir: Path, echo=None) -> str:
    """Run the job in job_dir to its end; returns its final Azure ML status."""
    job_dir = Path(job_dir)
    spec = json.loads((job_dir / "job.json").read_text())
    run_id = spec["mlflow_run_id"]
    envs = _worker_envs(spec)
    paths = log_paths(job_dir, len(envs))
    paths[0].parent.mkdir(parents=True, exist_ok=True)

    procs, pumps, guards = [], [], []
    last_lines = [[""] for _ in envs]  # each process's last output line: usually its own error message
    status, message = "Failed", None
    parent_gone = threading.Event()
    with driving(job_dir) as hold:
        if spec.get("parent_job_name"):
            follow = (job_dir, spec["parent_job_name"], parent_gone)
            threading.Thread(target=_follow_parent, args=follow, daemon=True).start()
        try:
            store.set_status(run_id, "Running")
            status, message = _run_processes(spec, envs, paths, echo, procs, pumps, last_lines, guards)
        except Canceled as signame:
            _stop(procs)
            status, message = "Canceled", f"canceled by {signame}"
            # A sweep that stops a trial says why (early termination, trial_timeout, a NaN metric) in cancel.json.
            with contextlib.suppress(OSError, ValueError, KeyError):
                reason = json.loads((job_dir / "cancel.json").read_text())
                status, message = reason["status"], reason["message"]
        except Exception as err:
            _stop(procs)
            status, message = "Failed", f"aml-local could not run the job: {err}"
        finally:
            hold()
            parent_gone.set()  # stops the parent-following thread (it sleeps in Event.wait)
            for pump in pumps:
                pump.join(timeout=5)
            processes.release(guards)
            store.set_status(run_id, status, message)
    if message and echo is not None:
        echo.write(f"{spec['name']}: {status}: {message}\n")
        echo.flush()
    return status


def main(argv=None):
    job_dir = Path((argv or sys.argv[1:])[0])
    status = run(job_dir)
    return 0 if status == "Completed" else 1


if __name__ == "__main__":
    sys.exit(main())
