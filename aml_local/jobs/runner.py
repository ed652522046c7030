"""Runs one local job's processes: its command once, or once per worker with TF_CONFIG for
`distribution: type: tensorflow`, or once per rank for `distribution: type: pytorch` and `mpi` (with the variables
Azure ML's launcher gives each rank, see _rank_env). Used in the foreground by `job create --stream`, and detached
(`python -m aml_local.jobs.runner JOB_DIR`) by `job create`, as Azure ML runs a job while the CLI returns.

Before the command starts, the job's environment is prepared (assets/environment.py): the project venv when it has
every requirement, else a venv built from the environment (its progress in the job's log, the job `Preparing` as
on Azure while its image builds); a requirement that cannot be installed fails the job there, before its command
runs. The command runs in a layer of its own over that environment (assets/env_layer.py: its `python` and `pip`
first on PATH, what it installs kept in the layer and removed with it, as a container's writes are); the runner
itself stays in the project's Python. A job in a built venv logs to MLflow over REST (aml_local/tracking_server.py),
since its mlflow may be another version than the store's. When the command ends, `./outputs` and `./logs` (and the
job's own log) become the run's artifacts, as Azure uploads them ("any files that were written out to the ./outputs
or ./logs folders during a run" are in the run record:
https://rdrr.io/cran/azuremlsdk/man/download_files_from_run.html), and `upload` outputs are moved into place."""

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from aml_local import AmlLocalError, job_records, processes, store, tracking_server
from aml_local.assets import env_layer, environment


class Canceled(Exception):
    """Raised in the process that drives a job when it gets SIGTERM, SIGINT or SIGHUP; the message is the signal."""


_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


class Signals:
    """The cancel signals while a process drives a job. Immediate (the default): a signal raises Canceled wherever
    the process is, right for a runner that mostly waits on its command. Deferred: a signal is noted, and Canceled
    is raised from `sleep()` only, so a driver that writes to the store between its sleeps (a sweep) is never
    interrupted in the middle of a write (a SQLite transaction cut short leaves the store's session unusable, and
    the cancel then ends as Failed)."""

    def __init__(self, deferred: bool):
        self.deferred = deferred
        self.pending: str | None = None
        self.sleeping = False

    def on_signal(self, signum, _frame):
        self.pending = signal.Signals(signum).name
        if not self.deferred or self.sleeping:
            raise Canceled(self.pending)

    def sleep(self, seconds: float):
        """time.sleep that raises Canceled for a signal noted before it or arriving during it."""
        self.sleeping = True  # first: a signal landing between the check below and the sleep then raises too
        try:
            if self.pending:
                raise Canceled(self.pending)
            time.sleep(seconds)
        finally:
            self.sleeping = False

    def hold(self):
        """Ignore further signals: call it before recording the end, so a second Ctrl-C cannot interrupt that."""
        for sig in _SIGNALS:
            signal.signal(sig, signal.SIG_IGN)


@contextlib.contextmanager
def driving(job_dir: Path, deferred: bool = False):
    """While this process drives the job in job_dir: runner.json names it (so `job show` can tell a running job
    from one whose driver died) and the cancel signals raise Canceled (see Signals). Yields the Signals."""
    signals = Signals(deferred)
    previous = {sig: signal.signal(sig, signals.on_signal) for sig in _SIGNALS}
    pid_file = job_records.runner_file(job_dir)
    processes.write_pid_file(pid_file)
    # Should this process be killed before it records the end, its watchdog records Failed (the one writer of that).
    settle = [sys.executable, "-m", "aml_local.job_records", "--settle", str(job_dir)]
    watchdog = processes.guard(then=settle, sentinel=pid_file)
    try:
        yield signals
    finally:
        signals.hold()
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


# The distribution types that run here. Azure ML starts one process per rank itself for pytorch and mpi (no
# torchrun, no mpirun in the job's command): "Azure ML constructs the full MPI launch command (mpirun) behind the
# scenes", and for PyTorch "You don't need to use a launcher utility like torch.distributed.launch"
# (https://learn.microsoft.com/azure/machine-learning/how-to-train-distributed-gpu, MicrosoftDocs/azure-docs
# articles/machine-learning/how-to-train-distributed-gpu.md). Here the runner is that launcher.
DISTRIBUTIONS = ("tensorflow", "pytorch", "mpi")
PER_RANK = ("pytorch", "mpi")


def process_count(distribution, resources=None) -> int:
    """How many processes run the command: one per TensorFlow worker; for pytorch and mpi, one per rank:
    resources.instance_count x process_count_per_instance (each 1 when not given: "If process_count_per_instance
    isn't specified, Azure Machine Learning will by default launch one process per node", how-to-train-distributed-gpu
    above); else one."""
    distribution = distribution or {}
    if distribution.get("type") == "tensorflow":
        return int(distribution.get("worker_count") or 1)
    if distribution.get("type") in PER_RANK:
        instances = int((resources or {}).get("instance_count") or 1)
        return instances * int(distribution.get("process_count_per_instance") or 1)
    return 1


def process_label(distribution) -> str:
    """What one of the job's processes is called in its streamed lines and messages: a TensorFlow worker, or a
    process (a rank), as Azure names their logs (std_log_process_N.txt)."""
    return "worker" if (distribution or {}).get("type") == "tensorflow" else "process"


def _rank_env(kind: str, rank: int, per_instance: int, world: int, master_port: int) -> dict:
    """The variables Azure ML's launcher gives rank `rank` of a pytorch or mpi job; this machine stands for every
    node, so the master is 127.0.0.1 on a free port (Azure uses the first node's address, and port 6105 for PyTorch:
    how-to-train-distributed-gpu SDK v1, "Azure ML sets MASTER_PORT to 6105"; a fixed port here would collide between
    two local jobs)."""
    node, local = divmod(rank, per_instance)
    if kind == "pytorch":
        # "Azure Machine Learning sets the MASTER_ADDR, MASTER_PORT, WORLD_SIZE, and NODE_RANK environment variables
        # on each node, and sets the process-level RANK and LOCAL_RANK environment variables" (how-to-train-distributed-
        # gpu; WORLD_SIZE: "The total number of processes"). LOCAL_WORLD_SIZE is torchrun's ("The local world size
        # (e.g. number of workers running locally)": https://pytorch.org/docs/stable/elastic/run.html#environment-
        # variables), for scripts written for torchrun. AZ_BATCHAI_TASK_INDEX is the "global rank of the worker
        # process", one of the variables Azure ML sets on a PyTorch job's nodes in the SDK v1 how-to-train-pytorch
        # page (kept in its translations, e.g. azure-docs.de-de articles/machine-learning/how-to-train-pytorch.md);
        # its AZ_BATCHAI_PYTORCH_INIT_METHOD (a shared-file-system init URL, format not documented) is not set here.
        return {
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(master_port),
            "WORLD_SIZE": str(world),
            "NODE_RANK": str(node),
            "RANK": str(rank),
            "LOCAL_RANK": str(local),
            "LOCAL_WORLD_SIZE": str(per_instance),
            "AZ_BATCHAI_TASK_INDEX": str(rank),
        }
    # mpi: "When running MPI jobs with Open MPI images, the following environment variables for each process
    # launched: OMPI_COMM_WORLD_RANK, OMPI_COMM_WORLD_SIZE, AZ_BATCH_MASTER_NODE - primary address with port,
    # MASTER_ADDR:MASTER_PORT, OMPI_COMM_WORLD_LOCAL_RANK, OMPI_COMM_WORLD_LOCAL_SIZE" (how-to-train-distributed-gpu,
    # "Environment variables from Open MPI"); the page's own MPI snippet reads AZ_BATCHAI_MPI_MASTER_NODE as the
    # master's address. OMPI_COMM_WORLD_NODE_RANK is Open MPI's "relative rank of this process on this node looking
    # across all jobs" (docs/tuning-apps/environment-var.rst): one job per node, so the local rank ("Despite the name
    # ... does not correspond to the NODE_RANK", the Azure page says).
    return {
        "OMPI_COMM_WORLD_RANK": str(rank),
        "OMPI_COMM_WORLD_SIZE": str(world),
        "OMPI_COMM_WORLD_LOCAL_RANK": str(local),
        "OMPI_COMM_WORLD_LOCAL_SIZE": str(per_instance),
        "OMPI_COMM_WORLD_NODE_RANK": str(local),
        "AZ_BATCH_MASTER_NODE": f"127.0.0.1:{master_port}",
        "AZ_BATCHAI_MPI_MASTER_NODE": "127.0.0.1",
    }


def _worker_envs(spec, layer: env_layer.Layer, tracking_uri=None):
    """One environment per process: Azure ML's variables, MLflow attached to the job's run, and TF_CONFIG on
    127.0.0.1 ports for each TensorFlow worker, or each pytorch or mpi rank's variables (_rank_env). `layer` is the
    job's own layer over its environment (the project venv when the job names none): its `python` and `pip` come
    first on PATH."""
    base = layer.process_env(os.environ)
    # `python` in the command means the environment's interpreter, as the job's image would: PATH is ours.
    path = base["PATH"]
    base.update(spec["environment_variables"])
    base.update(
        {
            "AZUREML_RUN_ID": spec["name"],
            "MLFLOW_TRACKING_URI": tracking_uri or store.tracking_uri(),
            "MLFLOW_RUN_ID": spec["mlflow_run_id"],
            "MLFLOW_EXPERIMENT_ID": spec["experiment_id"],
            "AML_LOCAL_HOME": str(store.home()),
            "PYTHONUNBUFFERED": "1",
            "PATH": path,
        }
    )
    distribution = spec.get("distribution") or {}
    kind = distribution.get("type")
    workers = process_count(distribution, spec.get("resources"))
    if workers == 1 and kind not in PER_RANK:
        return [base]
    # Split the cores between the processes so they do not fight over them.
    threads = str(max(1, (os.cpu_count() or 1) // workers))
    if kind == "tensorflow":
        addresses = [f"127.0.0.1:{port}" for port in _free_ports(workers)]
    else:
        master_port = _free_ports(1)[0]
        per_instance = int(distribution.get("process_count_per_instance") or 1)
    envs = []
    for index in range(workers):
        env = dict(base)
        env.setdefault("TF_NUM_INTRAOP_THREADS", threads)
        env.setdefault("OMP_NUM_THREADS", threads)
        if kind == "tensorflow":
            task = {"type": "worker", "index": index}
            env["TF_CONFIG"] = json.dumps({"cluster": {"worker": addresses}, "task": task})
        else:
            env.update(_rank_env(kind, index, per_instance, workers, master_port))
        envs.append(env)
    return envs


ENVIRONMENT_RECORD = "environment.json"


def prepared_environment(job_dir: Path) -> dict | None:
    """What the job ran in (Prepared.as_dict(): python, environment hash, cache path), once it was prepared."""
    try:
        return json.loads((Path(job_dir) / ENVIRONMENT_RECORD).read_text())
    except (OSError, ValueError):
        return None


LAYER_FOLDER = "layer"


def _prepare(spec, job_dir: Path, log_path: Path, echo):
    """The job's own layer over its environment (prepared, built on first use), and the tracking URI its command
    gets. The build's lines go to the job's log; the job is `Preparing` while a venv is built or found. A job that
    names no environment runs in a layer over the project venv: never in the project venv itself."""
    run_id = spec["mlflow_run_id"]
    preparing = []
    prepared = None
    with open(log_path, "a") as log_file:

        def log(line):
            if not preparing and not line.startswith("WARNING"):
                preparing.append(True)
                store.set_status(run_id, "Preparing")
            for stream in (log_file, echo):
                if stream is not None:
                    stream.write(line + "\n")
                    stream.flush()

        if spec.get("environment_spec") is not None:
            prepared = environment.prepare(spec["environment_spec"], log)
        started = time.perf_counter()
        lower = prepared.venv if prepared is not None else env_layer.project_venv()
        layer = env_layer.make(lower, job_dir / LAYER_FOLDER)
        if prepared is not None:
            made_in = round(time.perf_counter() - started, 4)
            store.write_json(job_dir / ENVIRONMENT_RECORD, {**prepared.as_dict(), "layer_seconds": made_in})
        # The store's sqlite schema is the project's mlflow's: a built venv's mlflow talks to it over REST.
        tracking_uri = tracking_server.uri(log) if prepared is not None and not prepared.in_project else None
    return layer, tracking_uri


def _collect_artifacts(spec, job_dir: Path):
    """What Azure uploads when a job ends: `upload` outputs into their place, then ./outputs, ./logs and the job's
    own log as the run's artifacts (outputs/, logs/, user_logs/: the folders `job download` brings back)."""
    for output_name, staged in (spec.get("output_staging") or {}).items():
        output = spec["outputs"][output_name]
        target, staged = Path(output["path"]), Path(staged)
        if output["type"] == "uri_file":  # the file the command wrote, if it wrote one
            if staged.is_file():
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.move(str(staged), target)
            continue
        for item in staged.iterdir():
            _replace(target / item.name)  # an upload to a datastore path replaces what was there
            shutil.move(str(item), target / item.name)
    upload_run_artifacts(spec, job_dir)


def upload_run_artifacts(spec, job_dir: Path):
    """./outputs, ./logs and the job's own log as the run's artifacts (outputs/, logs/, user_logs/)."""
    code_dir = Path(spec["code_dir"])
    for folder, artifact_path in (
        (code_dir / "outputs", "outputs"),
        (code_dir / "logs", "logs"),
        (job_dir / "logs" / "user_logs", "user_logs"),
    ):
        if folder.is_dir() and any(folder.iterdir()):
            store.client().log_artifacts(spec["mlflow_run_id"], str(folder), artifact_path)


def _replace(path: Path):
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def log_paths(job_dir: Path, procs: int, per_process: bool = False):
    """The job's logs: std_log.txt, or one std_log_process_N.txt per process (always for pytorch and mpi, whose
    processes Azure logs each to its own file, one of them or many: azureml-examples' Node Health Checks README
    reads a job's results "At the bottom of the std_log_process_0.txt file", one log per node). N is padded to the
    width of the largest rank, as Azure pads it: a 16-process MPI job's rank 1 logs to "std_log_process_01.txt"
    (azureml-examples cli/jobs/single-step/dask/nyctaxi/README.md), and azure-ai-ml streams the rank-0 log whatever
    its zeros (JobLogPattern.COMMON_RUNTIME_STREAM_LOG_PATTERN, "user_logs/std_log[\\D]*[0]*(?:_ps)?\\.txt")."""
    logs = job_dir / "logs" / "user_logs"
    if procs == 1 and not per_process:
        return [logs / "std_log.txt"]
    width = len(str(procs - 1))
    return [logs / f"std_log_process_{i:0{width}d}.txt" for i in range(procs)]


def job_log_paths(job_dir: Path, spec: dict):
    """log_paths for the job recorded in spec (job.json): its processes and how Azure names their logs."""
    distribution = spec.get("distribution") or {}
    procs = process_count(distribution, spec.get("resources"))
    return log_paths(job_dir, procs, per_process=distribution.get("type") in PER_RANK)


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
        prefix = f"[{process_label(spec.get('distribution'))} {index}] " if len(envs) > 1 else ""
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
            where = f" (process {index}, {paths[index].name})" if len(procs) > 1 else ""
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
    paths = job_log_paths(job_dir, spec)
    paths[0].parent.mkdir(parents=True, exist_ok=True)

    procs, pumps, guards = [], [], []
    last_lines = [[""] for _ in paths]  # each process's last output line: usually its own error message
    status, message = "Failed", None
    parent_gone = threading.Event()
    with driving(job_dir) as signals:
        if spec.get("parent_job_name"):
            follow = (job_dir, spec["parent_job_name"], parent_gone)
            threading.Thread(target=_follow_parent, args=follow, daemon=True).start()
        try:
            layer, tracking_uri = _prepare(spec, job_dir, paths[0], echo)
            envs = _worker_envs(spec, layer, tracking_uri)
            store.set_status(run_id, "Running")
            status, message = _run_processes(spec, envs, paths, echo, procs, pumps, last_lines, guards)
        except Canceled as signame:
            _stop(procs)
            status, message = "Canceled", f"canceled by {signame}"
            # A sweep that stops a trial says why (early termination, trial_timeout, a NaN metric) in cancel.json.
            with contextlib.suppress(OSError, ValueError, KeyError):
                reason = json.loads((job_dir / "cancel.json").read_text())
                status, message = reason["status"], reason["message"]
        except AmlLocalError as err:  # the environment could not be prepared: the command never started
            status, message = "Failed", str(err)
            with open(paths[0], "a") as log_file:
                log_file.write(f"ERROR: {err}\n")
        except Exception as err:
            _stop(procs)
            status, message = "Failed", f"aml-local could not run the job: {err}"
        finally:
            signals.hold()
            parent_gone.set()  # stops the parent-following thread (it sleeps in Event.wait)
            for pump in pumps:
                pump.join(timeout=5)
            processes.release(guards)
            env_layer.remove(job_dir / LAYER_FOLDER)  # what the run installed goes with it, as with a container
            try:
                _collect_artifacts(spec, job_dir)
            except Exception as err:  # the job's own result stands; say what was not kept
                message = (f"{message}; " if message else "") + f"its outputs could not be collected: {err}"
                status = "Failed" if status == "Completed" else status
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
