"""A deployment's inference servers as processes: the environment each runs in (prepared as a job's is, see
assets/environment.py: the project venv when it has every requirement, else a venv built from the environment, whose
python and own azureml-inference-server-http then run the server), each server in a layer of its own over it
(assets/env_layer.py: one container per instance on Azure; the layer goes when the server is stopped), its command
line (gunicorn on the inference server's Flask app, on 127.0.0.1), starting instance_count of them and waiting for
their readiness, and their log."""

import json
import math
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path, PurePosixPath

from aml_local import AmlLocalError, processes, progress
from aml_local.assets import env_layer, environment
from aml_local.endpoints.online import records, routing

READY_POLL_S = 0.25
EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Exit|Interrupt)\b(: .*)?$")
NOT_INHERITED = ("AML_LOCAL_PORT", "GUNICORN_CMD_ARGS", "MLFLOW_RUN_ID")
STOP_GRACE_S = 10


def layer_dir(record: dict, port: int) -> Path:
    """Where the server on `port` has its own layer over the deployment's environment."""
    return records.deployment_dir(record["endpoint_name"], record["name"]) / "layers" / str(port)


def make_layer(record: dict, port: int) -> env_layer.Layer:
    """A fresh layer for the server on `port` over the deployment's environment (the project venv when it names
    none)."""
    lower = (record.get("runtime") or {}).get("venv") or env_layer.project_venv()
    return env_layer.make(lower, layer_dir(record, port))


def remove_layers(record: dict, servers: list[dict]) -> None:
    """The layers of stopped servers: what each installed goes with it."""
    for server in servers:
        if server.get("port"):
            env_layer.remove(layer_dir(record, server["port"]))


def server_environment(record: dict, port: int, layer: env_layer.Layer) -> dict:
    """The process environment of one of the deployment's servers, as the container's: this process's environment
    (less NOT_INHERITED) with the server's layer over the deployment's environment first on PATH, its
    environment_variables, and the inference server's settings."""
    base = {k: v for k, v in os.environ.items() if k not in NOT_INHERITED}
    env = layer.process_env(base)
    path = env["PATH"]  # the environment's python first, whatever environment_variables say
    server_version = record.get("server_version") or server_version_of(sys.executable, record)
    env.update(record["environment_variables"])
    env.setdefault("SCORING_TIMEOUT_MS", str(record["request_settings"]["request_timeout_ms"]))
    env.setdefault("SERVICE_NAME", record["endpoint_name"])
    code_folder = Path(record["app_root"]) / record["code_folder"]
    script = PurePosixPath(record["scoring_script"])
    env.update(
        {
            # AML_APP_ROOT is the scoring script's folder, as "In online deployment, AML_APP_ROOT is set to the
            # directory containing scoring script" (Azure/azure-sdk-for-python pull request 30296, which made
            # azure-ai-ml's local endpoints do the same: _local_endpoints/azureml_image_context.py). The server reads
            # a deployment's own swagger2.json / swagger3.json (and swagger.json for version 2) from there
            # (azureml_inference_server_http/server/swagger.py, _SwaggerBuilder._read_swagger), the "root of the
            # `code` directory" of azureml-examples' cli/endpoints/online/managed/openapi README for a script at its
            # top. The code folder stays on sys.path through AZUREML_SOURCE_DIRECTORY (an absolute path: the server
            # joins it to AML_APP_ROOT), as when AML_APP_ROOT was the folder holding it.
            "AML_APP_ROOT": str(code_folder / script.parent),
            "AZUREML_SOURCE_DIRECTORY": str(code_folder),
            "AZUREML_ENTRY_SCRIPT": script.name,
            "WORKER_COUNT": str(record["worker_count"]),
            "SERVER_PORT": str(port),
            "HEALTH_PORT": str(port),
            "AML_APP_INSIGHTS_ENABLED": "false",
            "HTTP_X_MS_SERVER_VERSION": f"azmlinfsrv/{server_version}",
            "PYTHONUNBUFFERED": "1",
            "PATH": path,
        }
    )
    if record["model_dir"]:
        env["AZUREML_MODEL_DIR"] = record["model_dir"]
    if record.get("mlflow_model_folder"):
        # A no-code MLflow deployment: the model's folder in AZUREML_MODEL_DIR, which Azure's generated scoring script
        # reads (mlflow_score_script.py of Azure/azureml-assets' mlflow-py312-inference image), as ours does.
        env["MLFLOW_MODEL_FOLDER"] = record["mlflow_model_folder"]
    return env


def server_command(record: dict, port: int, python: str) -> list[str]:
    """The argv of one of the deployment's servers: gunicorn on the inference server's Flask app (as azmlinfsrv runs
    it, azureml_inference_server_http/amlserver_linux.py), on 127.0.0.1:port, with the threaded worker: each worker
    takes max_concurrent_requests_per_instance requests at once and keeps the router's connections alive."""
    request_timeout_s = record["request_settings"]["request_timeout_ms"] / 1000
    # gunicorn's worker timeout must outlast the scoring timeout, or it kills the worker before the server answers.
    worker_timeout = max(
        int(record["environment_variables"].get("WORKER_TIMEOUT", 300)), math.ceil(request_timeout_s) + 30
    )
    return [
        python,
        "-m",
        "gunicorn",
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        str(record["worker_count"]),
        "--worker-class",
        "gthread",
        "--threads",
        str(record["request_settings"]["max_concurrent_requests_per_instance"]),
        "--timeout",
        str(worker_timeout),
        "--graceful-timeout",
        str(STOP_GRACE_S),
        "--error-logfile",
        "-",
        # gunicorn's control socket is one path per user: two deployments would fight over it, and nothing uses it.
        *(["--no-control-socket"] if record.get("gunicorn_control_socket", True) else []),
        "azureml_inference_server_http.server.entry:app",
    ]


def free_port() -> int:
    """A port free on 127.0.0.1 now (gunicorn binds it a moment later, retrying if another program took it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_servers(record: dict, on_disk: dict | None = None) -> list[dict]:
    """Start instance_count servers and wait until every one is ready; their {host, port, pid, started, restart}.
    If one fails, all of them are stopped and the error names the cause from the log. Each is in the record's
    pending_servers from its start until it is in `servers` (or stopped), so that a command interrupted meanwhile
    leaves none that delete would not find: the record saved is on_disk (during an update, the old record), or
    record."""
    on_disk = record if on_disk is None else on_disk
    servers = []
    try:
        for _ in range(record["instance_count"]):
            port = free_port()
            layer = make_layer(record, port)
            restart = {
                "argv": server_command(record, port, layer.python),
                "env": server_environment(record, port, layer),
                "cwd": record["app_root"],
                "log": str(records.log_path(record)),
            }
            with open(restart["log"], "ab") as log:
                try:
                    process = subprocess.Popen(
                        restart["argv"],
                        cwd=restart["cwd"],
                        env=restart["env"],
                        stdin=subprocess.DEVNULL,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,  # its own process group: stopping it stops the master and workers
                    )
                except OSError as err:
                    raise AmlLocalError(
                        f"online deployment {record['name']}: cannot start gunicorn ({err.strerror})"
                    ) from None
            started = processes.start_time(process.pid)
            servers.append({"host": "127.0.0.1", "port": port, "pid": process.pid, "started": started})
            on_disk["pending_servers"] = recorded(servers)
            records.save_deployment(on_disk)
            servers[-1]["process"], servers[-1]["restart"] = process, restart
        wait_until_ready(record, servers)
    except BaseException:
        for server in servers:
            routing.stop_process(server["pid"], server["started"], STOP_GRACE_S + 2)
        remove_layers(record, servers)
        raise
    for server in servers:
        del server["process"]
    return servers


def ready(server: dict, timeout: float) -> bool:
    """A starting server's readiness probe: GET / answered 200 on its port, by its own process (gunicorn's master
    holds the listening socket): the port was free when chosen, and another program may have been given it since."""
    return routing.answers(server["port"], timeout=timeout) and processes.listens(server["pid"], server["port"])


def wait_until_ready(record: dict, servers: list[dict]):
    # The readiness wait is shown live on a terminal (stderr: stdout carries the JSON).
    probe = record["readiness_probe"]
    budget = probe["initial_delay"] + probe["period"] * probe["failure_threshold"]
    started = time.monotonic()
    deadline = started + budget
    waiting = list(servers)
    status_line = progress.StatusLine(sys.stderr)
    try:
        while True:
            for server in list(waiting):
                code = server["process"].poll()
                if code is not None:
                    raise AmlLocalError(
                        f"online deployment {record['name']}: its inference server exited with code {code} before "
                        f"it was ready; last log lines: {tail_for_error(record)}"
                    )
                if ready(server, probe["timeout"]):
                    waiting.remove(server)
            if not waiting:
                status_line.finish(f"deployment {record['name']}: ready after {time.monotonic() - started:.1f} s")
                return
            if time.monotonic() > deadline:
                raise AmlLocalError(
                    f"online deployment {record['name']}: not ready after {budget} s (readiness_probe initial_delay "
                    f"+ period x failure_threshold); last log lines: {tail_for_error(record)}"
                )
            waited = time.monotonic() - started
            status_line.show(
                f"deployment {record['name']}: waiting for {len(waiting)} of {len(servers)} servers to be ready, "
                f"{waited:.0f} s of {budget} s"
            )
            time.sleep(READY_POLL_S)
    finally:
        status_line.clear()


def tail_for_error(record: dict, count: int = 3) -> str:
    """The scoring script's own exception (the root cause, not the server's wrapper of it) and the last lines."""
    lines = [line.strip() for line in tail(records.log_path(record), 300).splitlines() if line.strip()]
    causes = [line for line in lines if EXCEPTION_LINE.match(line) and "azureml_inference_server_http" not in line]
    shown = causes[-1:] + [line for line in lines[-count:] if line not in causes[-1:]]
    return (" | ".join(shown) or "(the log is empty)") + (
        f" (whole log: online-deployment get-logs --name {record['name']} --endpoint-name {record['endpoint_name']})"
    )


def tail(path: Path, lines: int) -> str:
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - 1024 * 1024))  # the last MiB holds the last lines anyone asks for
            text = handle.read().decode("utf-8", errors="replace")
    except FileNotFoundError:
        return ""
    return "\n".join(text.splitlines()[-lines:]) if lines > 0 else ""


# What the environment's own server is: the inference server's version (the x-ms-server-version header) and whether
# its gunicorn has the control socket (gunicorn 24 and later: one path per user, which two deployments would fight
# over; an older gunicorn, as azureml-inference-server-http 0.7 pins 20.1.0, has none and refuses the flag).
_SERVER_PROBE = (
    "import json, gunicorn.config\n"
    "from azureml_inference_server_http import __version__\n"
    "flags = {flag for setting in gunicorn.config.KNOWN_SETTINGS for flag in (setting.cli or [])}\n"
    "print(json.dumps({'version': __version__, 'control_socket': '--no-control-socket' in flags}))\n"
)


def server_version_of(python: str, record: dict) -> str:
    """The version of the azureml-inference-server-http that `python` imports: the environment's own copy. Records
    what its gunicorn takes (record["gunicorn_control_socket"]) on the way."""
    if python == sys.executable:  # the project's own: no process to start (the imports are a verb's cost otherwise)
        from azureml_inference_server_http import __version__

        return __version__
    answer = subprocess.run([python, "-c", _SERVER_PROBE], capture_output=True, text=True, timeout=120, check=False)
    if answer.returncode != 0:
        if record.get("mlflow_model_folder"):  # a no-code MLflow deployment's environment, which asks for the server
            raise AmlLocalError(
                f"online deployment {record['name']}: azureml-inference-server-http does not import in its MLflow "
                f"model's environment ({python}): {(answer.stderr.strip().splitlines() or ['no output'])[-1]}"
            )
        raise AmlLocalError(
            f"online deployment {record['name']}: its environment {record['environment']} has no "
            "azureml-inference-server-http (the server a managed online deployment runs); add it to the "
            "environment's conda file pip list"
        )
    found = json.loads(answer.stdout.strip().splitlines()[-1])
    record["gunicorn_control_socket"] = found["control_socket"]
    return found["version"]


def prepare_environment(spec, record: dict) -> None:
    """The deployment's environment (an EnvSpec, or None for none), prepared before its server starts; what it runs
    in goes into the record."""
    record.pop("gunicorn_control_socket", None)  # said again below for an environment's own server
    if spec is None:
        # The project venv: nothing kept of an environment a previous revision ran in (an update that drops it).
        for key in ("runtime", "server_version", "environment_details"):
            record.pop(key, None)
        return
    log_path = records.log_path(record)
    with open(log_path, "a") as log_file:

        def log(line):
            for stream in (log_file, sys.stderr):
                stream.write(line + "\n")
                stream.flush()

        prepared = environment.prepare(spec.to_record(), log)
    # The servers run the environment's own azureml-inference-server-http: nothing of aml_local is imported there.
    record["runtime"] = {"python": prepared.python, "venv": prepared.venv}
    record["server_version"] = server_version_of(prepared.python, record)
    record["environment_details"] = prepared.as_dict()  # saved with the servers (start_servers)


def recorded(servers: list[dict]) -> list[dict]:
    """The servers as deployment.json keeps them (without the environment, which stays in routing.json, 0600)."""
    return [{key: server[key] for key in ("host", "port", "pid", "started")} for server in servers]
