"""The `online-deployment` noun: `online-deployment create/show/list/get-logs/delete`.

A deployment runs the Azure ML inference server (azureml-inference-server-http) on this machine, the way the
managed online endpoint's container runs it:

- code: code_configuration.code is copied to <deployment>/app/<folder name> (AML_APP_ROOT is <deployment>/app,
  AZUREML_ENTRY_SCRIPT <folder name>/<scoring_script>), so later edits do not change a running deployment;
- model: AZUREML_MODEL_DIR is the registered version's folder, models/<name>/<version>, holding the registered
  file or folder by its own name, as /var/azureml-app/azureml-models/<name>/<version> does on Azure; an inline
  model path is copied into <deployment>/azureml-models/<name>/1 the same way;
- environment_variables are passed as they are (WORKER_COUNT, SCORING_TIMEOUT_MS... are the server's own);
  request_settings.request_timeout_ms becomes SCORING_TIMEOUT_MS unless the deployment sets that itself;
  max_concurrent_requests_per_instance becomes the worker count unless WORKER_COUNT is set; the gateway admits at
  most max_concurrent_requests_per_instance x instance_count requests at once, answers 429 to one that waits
  longer than request_timeout_ms for its turn and 408 to one not answered within it (aml_local.endpoints.serving);
- `create` of a deployment whose server died starts it again in place (its traffic share is kept);
- environment: the deployment's `environment` is prepared as a job's is (assets/environment.py): the project venv
  when it has every requirement, else a venv built from it (the build's lines in the server's log and on stderr);
  the server runs with that environment's python and PATH, so the scoring script imports the environment's
  packages and the server itself is the environment's azureml-inference-server-http (as on Azure, the environment
  must bring it; its version is the x-ms-server-version header). aml_local.endpoints.serving imports only the
  standard library, that server and aml_local, which a built venv finds through a folder on PYTHONPATH holding
  only a link to this aml_local;
- the server is gunicorn on aml_local.endpoints.serving (the server's Flask app behind the endpoint's key check),
  listening on 127.0.0.1 only, on a free port (AML_LOCAL_PORT picks one), in its own process group, logging
  to <deployment>/logs/inference-server.log;
- `create` waits for readiness by polling `GET /` with the readiness probe's timeout, for at most the probe's
  initial_delay + period x failure_threshold (polling from the start, every 0.25 s, not every period: a local
  server that is ready early is used early), and fails with the last log lines if the server dies or never
  answers. The port, pid and the process's start time are recorded, so later commands from any shell find it
  and a reused pid is never taken for it.
"""

import contextlib
import datetime
import errno
import getpass
import http.client
import json
import math
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import aml_local
from aml_local import AmlLocalError, ResourceNotFound, processes, progress, specs, store
from aml_local.assets import env_build, environment, model
from aml_local.endpoints import records

SCHEMA = "https://azuremlschemas.azureedge.net/latest/managedOnlineDeployment.schema.json"
# Azure ML's rule for deployment names: 3 to 32 characters, letters, digits and '-', alphanumeric at both ends.
DEPLOYMENT_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9-]{1,30}[a-zA-Z0-9]$")
LOG_CONTAINER = records.LOG_CONTAINER
DEFAULT_LOG_LINES = 5000  # az ml online-deployment get-logs --lines default
# Azure's defaults for what a deployment YAML leaves out.
DEFAULT_REQUEST_SETTINGS = {"request_timeout_ms": 5000, "max_concurrent_requests_per_instance": 1}
DEFAULT_PROBE = {"initial_delay": 10, "period": 10, "timeout": 2, "success_threshold": 1, "failure_threshold": 30}
READY_POLL_S = 0.25
# The last line of a Python traceback: "RuntimeError: no model here", "ModuleNotFoundError: No module named 'x'".
EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Exit|Interrupt)\b(: .*)?$")
STOP_GRACE_S = 10
# Connections a server worker takes in at once (most of them waiting for a slot, see aml_local.endpoints.serving).
GATEWAY_THREADS = 64


def _load(file, name, endpoint_name, set_pairs):
    overrides = []
    for pair in set_pairs or ():
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise AmlLocalError(f"--set {pair!r}: expected key=value, e.g. --set environment_variables.WORKER_COUNT=1")
        overrides.append({key.strip(): value})
    if name:
        overrides.append({"name": name})
    if endpoint_name:
        overrides.append({"endpoint_name": endpoint_name})
    return specs.load("load_online_deployment", file, overrides)


def _settings(entity_settings, defaults: dict) -> dict:
    given = {k: v for k, v in vars(entity_settings).items() if v is not None} if entity_settings else {}
    return {**defaults, **{k: v for k, v in given.items() if not k.startswith("_")}}


def _resolve_model(entity, file, deployment_folder: Path) -> tuple[str | None, Path | None]:
    """(what show prints for `model`, AZUREML_MODEL_DIR) for a registered reference or an inline model."""
    from azure.ai.ml.entities import Model

    reference = entity.model
    if reference is None:
        return None, None
    if isinstance(reference, str):
        if reference.startswith("azureml://"):
            raise AmlLocalError(f"{file}: model {reference}: registry models do not run locally; register it here")
        try:
            shown = model.resolve(reference)
        except AmlLocalError as err:
            raise AmlLocalError(f"{file}: model: {err}") from None
        return shown["id"], Path(shown["properties"]["aml_local.model_dir"])
    if isinstance(reference, Model):
        if reference.path is None:
            raise AmlLocalError(f"{file}: model: an inline model needs a path")
        base_dir = Path(reference.base_path or Path(file).resolve().parent)
        source, _ = model.resolve_source(str(reference.path), base_dir, field="model.path")
        # Azure registers an inline model as an anonymous version 1 under a generated name.
        model_dir = deployment_folder / "azureml-models" / reference.name / "1"
        model_dir.mkdir(parents=True)
        target = model_dir / source.name
        if source.is_dir():
            shutil.copytree(source, target)
        else:
            shutil.copy2(source, target)
        return f"azureml:/local/models/{reference.name}/versions/1", model_dir
    raise AmlLocalError(f"{file}: model: expected azureml:<name>:<version> or an inline model with a path")


def _copy_code(entity, file, app_root: Path) -> tuple[str, str, str]:
    """Copy code_configuration.code under app_root; (source folder, folder name, scoring script)."""
    configuration = entity.code_configuration
    if configuration is None or not configuration.code or not configuration.scoring_script:
        raise AmlLocalError(f"{file}: code_configuration: code and scoring_script are required to run locally")
    code = str(configuration.code)
    if code.startswith("azureml:"):
        raise AmlLocalError(f"{file}: code_configuration.code {code}: a registered code asset; give a local folder")
    base_dir = Path(entity.base_path or Path(file).resolve().parent)
    source = (base_dir / code).resolve()
    if not source.is_dir():
        raise AmlLocalError(f"{file}: code_configuration.code {code}: {source} is not a folder")
    script = configuration.scoring_script
    if not (source / script).is_file():
        raise AmlLocalError(f"{file}: code_configuration.scoring_script {script}: no such file in {source}")
    shutil.copytree(
        source, app_root / source.name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", ".git", "*.egg-info")
    )
    return str(source), source.name, script


def _listening_socket() -> socket.socket:
    """A socket bound and listening on 127.0.0.1 (a free port, or AML_LOCAL_PORT), handed to gunicorn as a file
    descriptor: no other program can take the port between choosing it and serving on it."""
    wanted = os.environ.get("AML_LOCAL_PORT", "").strip()
    if wanted and not (wanted.isdigit() and 0 < int(wanted) < 65536):
        raise AmlLocalError(f"AML_LOCAL_PORT={wanted}: expected a port number from 1 to 65535")
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind(("127.0.0.1", int(wanted or 0)))
        listener.listen(2048)
    except OSError as err:
        listener.close()
        if err.errno == errno.EADDRINUSE:
            holder = _port_holder(int(wanted))
            raise AmlLocalError(
                f"AML_LOCAL_PORT={wanted}: port {wanted} on 127.0.0.1 is in use{holder}; "
                "pick another or unset AML_LOCAL_PORT for a free one"
            ) from None
        raise AmlLocalError(f"AML_LOCAL_PORT={wanted}: cannot listen on 127.0.0.1:{wanted} ({err.strerror})") from None
    listener.set_inheritable(True)
    return listener


def _port_holder(port: int) -> str:
    for path in records.endpoints_dir().glob("*/deployments/*/deployment.json"):
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if record.get("port") == port and server_alive(record):
            return f" (by deployment {record['name']} of endpoint {record['endpoint_name']})"
    return ""


def _server_environment(record: dict, port: int) -> dict:
    runtime = record.get("runtime") or {"python": sys.executable, "venv": None}
    base = {k: v for k, v in os.environ.items() if k not in ("AML_LOCAL_PORT", "GUNICORN_CMD_ARGS", "MLFLOW_RUN_ID")}
    env = env_build.process_env(runtime["python"], runtime["venv"], base)
    path = env["PATH"]  # the environment's python first, whatever environment_variables say
    if runtime.get("pythonpath"):
        env["PYTHONPATH"] = os.pathsep.join([runtime["pythonpath"], *filter(None, [base.get("PYTHONPATH")])])
    server_version = record.get("server_version") or _server_version(sys.executable, record)
    env.update(record["environment_variables"])
    env.setdefault("SCORING_TIMEOUT_MS", str(record["request_settings"]["request_timeout_ms"]))
    env.setdefault("SERVICE_NAME", record["endpoint_name"])
    env.setdefault("AML_LOCAL_MAX_REQUEST_BYTES", str(32 * 1024 * 1024))
    # The gateway's admission control (endpoints/serving.py): a shared cap on requests in the server, and a deadline.
    settings = record["request_settings"]
    env["AML_LOCAL_MAX_CONCURRENT"] = str(settings["max_concurrent_requests_per_instance"] * record["instance_count"])
    env["AML_LOCAL_REQUEST_TIMEOUT_MS"] = str(settings["request_timeout_ms"])
    env["AML_LOCAL_SLOTS_DIR"] = str(Path(record["deployment_dir"]) / "slots")
    env.update(
        {
            "AML_APP_ROOT": record["app_root"],
            "AZUREML_SOURCE_DIRECTORY": record["code_folder"],
            "AZUREML_ENTRY_SCRIPT": f"{record['code_folder']}/{record['scoring_script']}",
            "WORKER_COUNT": str(record["worker_count"]),
            "SERVER_PORT": str(port),
            "HEALTH_PORT": str(port),
            "AML_APP_INSIGHTS_ENABLED": "false",
            "HTTP_X_MS_SERVER_VERSION": f"azmlinfsrv/{server_version}",
            "AML_LOCAL_KEYS_FILE": str(records.keys_path(record["endpoint_name"])),
            "PYTHONUNBUFFERED": "1",
            "PATH": path,
        }
    )
    if record["model_dir"]:
        env["AZUREML_MODEL_DIR"] = record["model_dir"]
    return env


def _server_version(python: str, record: dict) -> str:
    """The version of the azureml-inference-server-http that `python` imports: the environment's own copy."""
    if python == sys.executable:
        from azureml_inference_server_http import __version__

        return __version__
    answer = subprocess.run(
        [python, "-c", "from azureml_inference_server_http import __version__; print(__version__)"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    if answer.returncode != 0:
        raise AmlLocalError(
            f"online deployment {record['name']}: its environment {record['environment']} has no "
            "azureml-inference-server-http (the server a managed online deployment runs); add it to the "
            "environment's conda file pip list"
        )
    return answer.stdout.strip()


def _prepare_environment(spec, record: dict) -> None:
    """The deployment's environment (an EnvSpec, or None for none), prepared before its server starts; what it runs
    in goes into the record."""
    if spec is None:
        return
    log_path = records.log_path(record)
    with open(log_path, "a") as log_file:

        def log(line):
            for stream in (log_file, sys.stderr):
                stream.write(line + "\n")
                stream.flush()

        prepared = environment.prepare(spec.to_record(), log)
    runtime = {"python": prepared.python, "venv": prepared.venv}
    if prepared.venv:
        # A folder holding only a link to this aml_local, for serving.py's imports (not the repository's root, whose
        # other folders would be importable as top-level names by the scoring script).
        path = Path(record["deployment_dir"]) / "aml-local-path"
        path.mkdir(exist_ok=True)
        (path / "aml_local").symlink_to(Path(aml_local.__file__).resolve().parent, target_is_directory=True)
        runtime["pythonpath"] = str(path)
    record["runtime"] = runtime
    record["server_version"] = _server_version(prepared.python, record)
    record["environment_details"] = prepared.as_dict()
    records.save_deployment(record)


def _worker_count(environment_variables: dict, request_settings: dict, file) -> int:
    text = environment_variables.get("WORKER_COUNT")
    if text is None:
        return max(1, int(request_settings["max_concurrent_requests_per_instance"]))
    if not str(text).isdigit() or int(text) < 1:
        raise AmlLocalError(f"{file}: environment_variables.WORKER_COUNT {text!r}: expected a whole number >= 1")
    return int(text)


def create(file, name=None, endpoint_name=None, all_traffic=False, set_pairs=()) -> dict:
    entity = _load(file, name, endpoint_name, set_pairs)
    name, endpoint_name = entity.name, entity.endpoint_name
    if not name or not DEPLOYMENT_NAME.match(name):
        raise AmlLocalError(f"name {name!r}: 3 to 32 letters, digits and '-', a letter or digit at both ends")
    if not endpoint_name:
        raise AmlLocalError(f"{file}: endpoint_name is required (in the YAML or --endpoint-name)")
    try:
        records.load_endpoint(endpoint_name)
    except ResourceNotFound:
        # azure-ai-ml's OnlineDeploymentOperations.begin_create_or_update GETs the endpoint first "to ensure the
        # endpoint exists and fail before even start the deployment": a 404, so az's exit code 3.
        raise ResourceNotFound(
            f"endpoint_name {endpoint_name}: no such local online endpoint; create it first "
            "(online-endpoint create --file endpoints/endpoint.yml)"
        ) from None
    request_settings = _settings(entity.request_settings, DEFAULT_REQUEST_SETTINGS)
    environment_variables = {str(k): str(v) for k, v in (entity.environment_variables or {}).items()}
    worker_count = _worker_count(environment_variables, request_settings, file)
    environment_spec = environment.resolve(entity.environment, file=file)  # a bad reference fails here, unrecorded
    folder = records.deployment_dir(endpoint_name, name)
    with store.locked("endpoints"):
        if (folder / "deployment.json").exists():
            previous = records.load_deployment(endpoint_name, name)
            if server_alive(previous):
                raise AmlLocalError(
                    f"online deployment {name} already exists on endpoint {endpoint_name}; use another name, "
                    "or delete it first"
                )
            # Its server died (killed, crashed, or this machine restarted): create it again in place, as a create
            # of an existing deployment on Azure re-provisions it. Its share of the traffic is kept.
            stop(previous)
            shutil.rmtree(folder)
        elif folder.exists():
            shutil.rmtree(folder)  # left by a create that stopped before writing its record
        (folder / "logs").mkdir(parents=True)
        (folder / "app").mkdir()
        try:
            code_source, code_folder, scoring_script = _copy_code(entity, file, folder / "app")
            model_id, model_dir = _resolve_model(entity, file, folder)
            listener = _listening_socket()
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        record = {
            "name": name,
            "endpoint_name": endpoint_name,
            "description": entity.description,
            "tags": {str(k): str(v) for k, v in (entity.tags or {}).items()},
            "file": str(Path(file).resolve()),
            "model": model_id,
            "model_dir": str(model_dir) if model_dir else None,
            "code": code_source,
            "code_folder": code_folder,
            "scoring_script": scoring_script,
            "app_root": str(folder / "app"),
            "deployment_dir": str(folder),
            "environment": _reference(entity.environment),
            "environment_variables": environment_variables,
            "instance_type": entity.instance_type,
            "instance_count": entity.instance_count or 1,
            "request_settings": request_settings,
            "liveness_probe": _settings(entity.liveness_probe, DEFAULT_PROBE),
            "readiness_probe": _settings(entity.readiness_probe, DEFAULT_PROBE),
            "worker_count": worker_count,
            "state": "Creating",
            "port": listener.getsockname()[1],
            "created_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "created_by": getpass.getuser(),
        }
        records.save_deployment(record)
    records.set_traffic(endpoint_name, name, 0)
    try:
        _prepare_environment(environment_spec, record)
        process = _start_server(record, listener)
        _wait_until_ready(record, process)
    except BaseException as err:
        stop(record)
        record["state"] = "Failed"
        record["failure"] = str(err) if isinstance(err, AmlLocalError) else "creation was interrupted"
        with contextlib.suppress(OSError):  # the endpoint may have been deleted meanwhile, folder and all
            records.save_deployment(record)
        raise
    finally:
        listener.close()  # the server holds its own copy
    record["state"] = "Succeeded"
    records.save_deployment(record)
    if all_traffic:
        records.set_traffic(endpoint_name, name, 100)
    return show(endpoint_name, name)


def _reference(value):
    if value is None:
        return None
    if isinstance(value, str):
        return value if value.startswith("azureml:") else f"azureml:{value}"
    return f"inline {type(value).__name__.lower()}"


def _start_server(record: dict, listener: socket.socket) -> subprocess.Popen:
    request_timeout_s = record["request_settings"]["request_timeout_ms"] / 1000
    # gunicorn's worker timeout must outlast the scoring timeout, or it kills the worker before the server answers.
    worker_timeout = max(
        int(record["environment_variables"].get("WORKER_TIMEOUT", 300)), math.ceil(request_timeout_s) + 30
    )
    command = [
        (record.get("runtime") or {}).get("python") or sys.executable,
        "-m",
        "gunicorn",
        "--bind",
        f"fd://{listener.fileno()}",
        "--workers",
        str(record["worker_count"]),
        "--timeout",
        str(worker_timeout),
        "--graceful-timeout",
        str(STOP_GRACE_S),
        "--error-logfile",
        "-",
        # gunicorn's control socket is one path per user: two deployments would fight over it, and nothing uses it.
        "--no-control-socket",
        # Threads, so that requests beyond max_concurrent_requests_per_instance wait inside the gateway, where they
        # are counted and timed (429/408), instead of unseen in the listen queue. Up to GATEWAY_THREADS per worker.
        "--worker-class",
        "gthread",
        "--threads",
        str(GATEWAY_THREADS),
        "aml_local.endpoints.serving:build_app()",
    ]
    log = open(records.log_path(record), "ab")  # noqa: SIM115 - handed to the detached server
    try:
        process = subprocess.Popen(
            command,
            cwd=record["app_root"],
            env=_server_environment(record, record["port"]),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            pass_fds=(listener.fileno(),),
            start_new_session=True,  # its own process group: delete stops the master and every worker at once
        )
    except OSError as err:
        raise AmlLocalError(f"online deployment {record['name']}: cannot start gunicorn ({err.strerror})") from None
    finally:
        log.close()
    record["pid"] = process.pid
    record["started"] = processes.start_time(process.pid)
    records.save_deployment(record)
    return process


def _answers(record: dict, timeout: float) -> bool:
    """Whether the server answers its liveness/readiness route (`GET /`, no key needed) with 200."""
    connection = http.client.HTTPConnection("127.0.0.1", record["port"], timeout=timeout)
    try:
        connection.request("GET", "/")
        return connection.getresponse().status == 200
    except (OSError, http.client.HTTPException):
        return False
    finally:
        connection.close()


def _wait_until_ready(record: dict, process: subprocess.Popen):
    # The readiness wait is shown live on a terminal (stderr: stdout carries the JSON).
    probe = record["readiness_probe"]
    budget = probe["initial_delay"] + probe["period"] * probe["failure_threshold"]
    started = time.monotonic()
    deadline = started + budget
    status_line = progress.StatusLine(sys.stderr)
    try:
        while True:
            code = process.poll()
            if code is not None:
                raise AmlLocalError(
                    f"online deployment {record['name']}: its inference server exited with code {code} before it "
                    f"was ready; last log lines: {_tail_for_error(record)}"
                )
            if _answers(record, timeout=probe["timeout"]):
                status_line.finish(f"deployment {record['name']}: ready after {time.monotonic() - started:.1f} s")
                return
            if time.monotonic() > deadline:
                raise AmlLocalError(
                    f"online deployment {record['name']}: not ready after {budget} s (readiness_probe initial_delay "
                    f"+ period x failure_threshold); last log lines: {_tail_for_error(record)}"
                )
            waited = time.monotonic() - started
            status_line.show(
                f"deployment {record['name']}: waiting for the server to be ready, {waited:.0f} s of {budget} s"
            )
            time.sleep(READY_POLL_S)
    finally:
        status_line.clear()


def _tail_for_error(record: dict, count: int = 3) -> str:
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


def server_alive(record: dict) -> bool:
    """Whether the recorded server process is still this deployment's (same pid and start time), not a zombie."""
    return processes.alive(record.get("pid"), record.get("started"))


def stop(record: dict):
    """Stop the deployment's server: its whole process group (gunicorn's master and workers). A pid now used by
    another program is left alone."""
    pid = record.get("pid")
    if not pid:
        return
    if not server_alive(record):
        processes.reap(pid)
        return
    if not processes.stop_group(pid, grace=STOP_GRACE_S + 2):
        raise AmlLocalError(f"online deployment {record['name']}: its server (process group {pid}) did not stop")


def _provisioning_state(record: dict) -> tuple[str, str | None]:
    if record["state"] == "Failed":
        return "Failed", record.get("failure")
    if not server_alive(record):
        return "Failed", "its inference server is not running (stopped, or this machine restarted)"
    if _answers(record, timeout=record["liveness_probe"]["timeout"]):
        return "Succeeded", None
    if record["state"] == "Creating":
        return "Creating", None
    return "Failed", f"its inference server does not answer GET / within {record['liveness_probe']['timeout']} s"


def show(endpoint_name: str, name: str) -> dict:
    record = records.load_deployment(endpoint_name, name)
    state, message = _provisioning_state(record)
    properties = {
        "aml_local.deployment_dir": record["deployment_dir"],
        "aml_local.scoring_uri": f"{records.base_url(record)}/score",
        "aml_local.port": str(record["port"]),
        "aml_local.pid": str(record.get("pid")),
        "aml_local.worker_count": str(record["worker_count"]),
        "aml_local.model_dir": record["model_dir"],
        "aml_local.log_file": str(records.log_path(record)),
        "aml_local.environment": record.get("environment_details"),
    }
    if message:
        properties["aml_local.status_message"] = message
    result = {
        "$schema": SCHEMA,
        "app_insights_enabled": False,
        "code_configuration": {"code": record["code"], "scoring_script": record["scoring_script"]},
        "description": record["description"],
        "endpoint_name": endpoint_name,
        "environment": record["environment"],
        "environment_variables": record["environment_variables"],
        "id": f"azureml:/local/onlineEndpoints/{endpoint_name}/deployments/{name}",
        "instance_count": record["instance_count"],
        "instance_type": record["instance_type"],
        "liveness_probe": record["liveness_probe"],
        "model": record["model"],
        "name": name,
        "properties": {k: v for k, v in properties.items() if v is not None},
        "provisioning_state": state,
        "readiness_probe": record["readiness_probe"],
        "request_settings": record["request_settings"],
        "scale_settings": {"type": "default"},
        "tags": record["tags"],
        "type": "Managed",
    }
    return {k: v for k, v in result.items() if v is not None}


def list_deployments(endpoint_name: str) -> list[dict]:
    records.load_endpoint(endpoint_name)
    return [show(endpoint_name, r["name"]) for r in records.deployments(endpoint_name)]


def get_logs(endpoint_name: str, name: str, lines: int = DEFAULT_LOG_LINES, container: str | None = None) -> str:
    record = records.load_deployment(endpoint_name, name)
    if container not in (None, LOG_CONTAINER):
        raise AmlLocalError(f"--container {container}: only {LOG_CONTAINER} runs locally")
    if lines < 1:
        raise AmlLocalError(f"--lines {lines}: expected a number of lines >= 1")
    return tail(records.log_path(record), lines)


def delete(endpoint_name: str, name: str):
    record = records.load_deployment(endpoint_name, name)
    percent = records.load_endpoint(endpoint_name)["traffic"].get(name, 0)
    if percent > 0:
        # As on Azure: a deployment that takes traffic is moved off it before it is deleted.
        raise AmlLocalError(
            f"online deployment {name} takes {percent}% of endpoint {endpoint_name}'s traffic; move it first, "
            f"e.g. online-endpoint update --name {endpoint_name} --traffic '{name}=0 <other>=100'"
        )
    stop(record)
    records.set_traffic(endpoint_name, name, None)
    records.remove_folder(Path(record["deployment_dir"]), f"online deployment {name}")
