"""Runs one local job's processes: its command once, or once per worker with TF_CONFIG for
`distribution: type: tensorflow`. Used in the foreground by `job create --stream`, and detached
(`python -m aml_local.runner JOB_DIR`) by `job create`, as Azure ML runs a job while the CLI returns."""

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

from aml_local import store


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
    (job_dir / "runner.json").write_text(json.dumps({"pid": os.getpid(), "started": _start_time()}))
    try:
        yield hold
    finally:
        hold()
        (job_dir / "runner.json").unlink(missing_ok=True)
        for sig, handler in previous.items():
            signal.signal(sig, handler)


# Run by a watchdog process per job process group (see _guard): it blocks on a pipe that only the driver holds open.
# The pipe closes when the driver ends, however it ends (SIGKILL included); then what is left of the group is
# stopped: SIGTERM, and SIGKILL after the grace period.
_WATCHDOG = """
import os, signal, sys, time
pgid, fd, grace = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
while os.read(fd, 1):
    pass
def alive():
    try:
        os.killpg(pgid, 0)
        return True
    except OSError:
        return False
if alive():
    os.killpg(pgid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while alive() and time.monotonic() < deadline:
        time.sleep(0.1)
    if alive():
        os.killpg(pgid, signal.SIGKILL)
"""
PARENT_POLL_S = 1.0


def _guard(pgid: int, grace: float = 10.0) -> tuple[subprocess.Popen, int]:
    """Start the watchdog for one process group: (its process, the pipe's write end, to close when the group has
    ended). A job's command runs in its own session, so without this a killed driver would leave it running."""
    read_end, write_end = os.pipe()
    try:
        watchdog = subprocess.Popen(
            [sys.executable, "-c", _WATCHDOG, str(pgid), str(read_end), str(grace)],
            pass_fds=(read_end,),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # a Ctrl-C in the driver's terminal must not stop the watchdog first
        )
    finally:
        os.close(read_end)
    return watchdog, write_end


def _release_guards(guards):
    for _, write_end in guards:
        with contextlib.suppress(OSError):
            os.close(write_end)
    for watchdog, _ in guards:
        with contextlib.suppress(subprocess.TimeoutExpired):
            watchdog.wait(timeout=15)


def _follow_parent(job_dir: Path, parent_job_name: str, stop: threading.Event):
    """A sweep's trial (or a pipeline's node) runs under its own runner; when the parent's driver ends without
    stopping it (killed), cancel this job rather than let it run on unsupervised."""
    import psutil

    runner_file = job_dir.parent / parent_job_name / "runner.json"
    while not stop.wait(PARENT_POLL_S):
        try:
            info = json.loads(runner_file.read_text())
            parent = psutil.Process(info["pid"])
            if abs(parent.create_time() - info["started"]) < 1 and parent.status() != psutil.STATUS_ZOMBIE:
                continue
        except (OSError, ValueError, KeyError, psutil.Error):
            pass
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


def _start_time():
    import psutil

    return psutil.Process().create_time()


def log_paths(job_dir: Path, processes: int):
    logs = job_dir / "logs" / "user_logs"
    if processes == 1:
        return [logs / "std_log.txt"]
    return [logs / f"std_log_process_{i}.txt" for i in range(processes)]


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


def _stop(processes, sig=signal.SIGTERM, grace=10.0):
    """Stop every process group (a worker's own children included), then SIGKILL what lingers."""
    for proc in processes:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)
    deadline = time.monotonic() + grace
    for proc in processes:
        try:
            proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _run_processes(spec, envs, paths, echo, processes, pumps, last_lines, guards) -> tuple[str, str | None]:
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
        processes.append(proc)
        guards.append(_guard(proc.pid))
        prefix = f"[worker {index}] " if len(envs) > 1 else ""
        pump_args = (proc.stdout, log_path, echo, prefix, last_lines[index])
        pump = threading.Thread(target=_pump, args=pump_args, daemon=True)
        pump.start()
        pumps.append(pump)
    # Wait for all; the first failure stops the others, as one failed node fails an Azure job.
    while True:
        codes = [p.poll() for p in processes]
        failed = [(i, c) for i, c in enumerate(codes) if c not in (None, 0)]
        if failed:
            index, code = failed[0]
            _stop(processes)
            for pump in pumps:
                pump.join(timeout=5)
            where = f" (process {index})" if len(processes) > 1 else ""
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

    processes, pumps, guards = [], [], []
    last_lines = [[""] for _ in envs]  # each process's last output line: usually its own error message
    status, message = "Failed", None
    parent_gone = threading.Event()
    with driving(job_dir) as hold:
        if spec.get("parent_job_name"):
            follow = (job_dir, spec["parent_job_name"], parent_gone)
            threading.Thread(target=_follow_parent, args=follow, daemon=True).start()
        try:
            store.set_status(run_id, "Running")
            status, message = _run_processes(spec, envs, paths, echo, processes, pumps, last_lines, guards)
        except Canceled as signame:
            _stop(processes)
            status, message = "Canceled", f"canceled by {signame}"
            # A sweep that stops a trial says why (early termination, trial_timeout, a NaN metric) in cancel.json.
            with contextlib.suppress(OSError, ValueError, KeyError):
                reason = json.loads((job_dir / "cancel.json").read_text())
                status, message = reason["status"], reason["message"]
        except Exception as err:
            _stop(processes)
            status, message = "Failed", f"aml-local could not run the job: {err}"
        finally:
            hold()
            parent_gone.set()  # stops the parent-following thread (it sleeps in Event.wait)
            for pump in pumps:
                pump.join(timeout=5)
            _release_guards(guards)
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
