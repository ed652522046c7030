"""The `online-deployment` noun: `online-deployment create/update/show/list/get-logs/delete`.

A deployment runs the Azure ML inference server (azureml-inference-server-http) on this machine, the way the
managed online endpoint's container runs it, behind its endpoint's router (aml_local/endpoints/router.py), which
does all that Azure's front end does before a request reaches a container (keys, traffic, mirroring, 429/408/413,
424 for a model's error, liveness probes and restarts). The servers themselves have no auth or admission code:

- code: code_configuration.code is copied to <deployment>/revisions/<n>/app/<folder name> (AML_APP_ROOT is that
  app folder, AZUREML_ENTRY_SCRIPT <folder name>/<scoring_script>), so later edits do not change a running
  deployment; each `update` makes a new revision beside the one still serving;
- model: AZUREML_MODEL_DIR is the registered version's folder, models/<name>/<version>, holding the registered
  file or folder by its own name, as /var/azureml-app/azureml-models/<name>/<version> does on Azure; an inline
  model path is copied into the revision's azureml-models/<name>/1 the same way;
- environment_variables are passed as they are (WORKER_COUNT, SCORING_TIMEOUT_MS... are the server's own);
  request_settings.request_timeout_ms becomes SCORING_TIMEOUT_MS unless the deployment sets that itself;
  max_concurrent_requests_per_instance becomes the worker count unless WORKER_COUNT is set;
- instance_count: N servers, each gunicorn (threaded workers, max_concurrent_requests_per_instance threads each) on
  the inference server's Flask app, on its own free 127.0.0.1 port (azmlinfsrv itself binds 0.0.0.0 and has no host
  flag), in its own process group, logging to <deployment>/logs/inference-server.log;
- `create` waits for every server's readiness by polling `GET /` with the readiness probe's timeout, for at most the
  probe's initial_delay + period x failure_threshold (polling from the start, every 0.25 s, not every period: a local
  server that is ready early is used early), and fails with the last log lines if a server dies or never answers;
  then the servers go into the endpoint's routing table (with how to start each again, for the router's liveness
  restarts), and `create` returns once the router routes to them. Ports, pids and the processes' start times are
  recorded, so later commands from any shell find them and a reused pid is never taken for one of them;
- `create` of a deployment whose servers all died starts it again in place (its traffic share is kept);
- `update` replaces the servers with no failed request: the new ones start and get ready beside the old, the router
  is switched to them, the old ones are stopped once every request they had can have finished (request_timeout_ms);
- `delete` takes it out of the routing table first, then drains and stops its servers the same way.

The request body cap (413) is the router's; a deployment may lower or raise it with the environment variable
AML_LOCAL_MAX_REQUEST_BYTES (our choice: Azure has no such setting and documents no number; default 32 MiB).
"""

import contextlib
import datetime
import getpass
import http.client
import math
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

from aml_local import AmlLocalError, processes, progress, specs, store
from aml_local.assets import model
from aml_local.endpoints import records, routing
from aml_local.endpoints.routing_table import DEFAULT_MAX_REQUEST_BYTES

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
MAX_REQUEST_BYTES_VARIABLE = "AML_LOCAL_MAX_REQUEST_BYTES"
# The variables of this process that a server must not inherit: ours, and a run of the caller's.
NOT_INHERITED = ("AML_LOCAL_PORT", "GUNICORN_CMD_ARGS", "MLFLOW_RUN_ID")


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


def _resolve_model(entity, file, revision_folder: Path) -> tuple[str | None, Path | None]:
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
        model_dir = revision_folder / "azureml-models" / reference.name / "1"
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


def _worker_count(environment_variables: dict, request_settings: dict, file) -> int:
    text = environment_variables.get("WORKER_COUNT")
    if text is None:
        return max(1, int(request_settings["max_concurrent_requests_per_instance"]))
    if not str(text).isdigit() or int(text) < 1:
        raise AmlLocalError(f"{file}: environment_variables.WORKER_COUNT {text!r}: expected a whole number >= 1")
    return int(text)


def _max_request_bytes(environment_variables: dict, file) -> int:
    text = environment_variables.get(MAX_REQUEST_BYTES_VARIABLE)
    if text is None:
        return DEFAULT_MAX_REQUEST_BYTES
    if not str(text).isdigit() or int(text) < 1:
        raise AmlLocalError(f"{file}: environment_variables.{MAX_REQUEST_BYTES_VARIABLE} {text!r}: expected bytes >= 1")
    return int(text)


def _spec(entity, file) -> dict:
    """What a deployment's servers are started from, checked: the YAML's settings and the worker count."""
    request_settings = _settings(entity.request_settings, DEFAULT_REQUEST_SETTINGS)
    environment_variables = {str(k): str(v) for k, v in (entity.environment_variables or {}).items()}
    return {
        "description": entity.description,
        "tags": {str(k): str(v) for k, v in (entity.tags or {}).items()},
        "file": str(Path(file).resolve()),
        "environment": _reference(entity.environment),
        "environment_variables": environment_variables,
        "instance_type": entity.instance_type,
        "instance_count": entity.instance_count or 1,
        "request_settings": request_settings,
        "liveness_probe": _settings(entity.liveness_probe, DEFAULT_PROBE),
        "readiness_probe": _settings(entity.readiness_probe, DEFAULT_PROBE),
        "worker_count": _worker_count(environment_variables, request_settings, file),
        "max_request_bytes": _max_request_bytes(environment_variables, file),
    }


def _prepare_revision(entity, file, folder: Path, revision: int) -> dict:
    """Copy the code and resolve the model into <deployment>/revisions/<revision>; the record's fields for them."""
    revision_folder = folder / "revisions" / str(revision)
    (revision_folder / "app").mkdir(parents=True)
    try:
        code_source, code_folder, scoring_script = _copy_code(entity, file, revision_folder / "app")
        model_id, model_dir = _resolve_model(entity, file, revision_folder)
    except BaseException:
        shutil.rmtree(revision_folder, ignore_errors=True)
        raise
    return {
        "revision": revision,
        "model": model_id,
        "model_dir": str(model_dir) if model_dir else None,
        "code": code_source,
        "code_folder": code_folder,
        "scoring_script": scoring_script,
        "app_root": str(revision_folder / "app"),
    }


def server_environment(record: dict, port: int) -> dict:
    """The process environment of one of the deployment's servers, as the container's: this process's environment
    (less NOT_INHERITED), the deployment's environment_variables, and the inference server's settings."""
    from azureml_inference_server_http import __version__ as server_version

    env = {k: v for k, v in os.environ.items() if k not in NOT_INHERITED}
    env.update(record["environment_variables"])
    env.setdefault("SCORING_TIMEOUT_MS", str(record["request_settings"]["request_timeout_ms"]))
    env.setdefault("SERVICE_NAME", record["endpoint_name"])
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
            "PYTHONUNBUFFERED": "1",
            "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
        }
    )
    if record["model_dir"]:
        env["AZUREML_MODEL_DIR"] = record["model_dir"]
    return env


def server_command(record: dict, port: int) -> list[str]:
    """The argv of one of the deployment's servers: gunicorn on the inference server's Flask app (as azmlinfsrv runs
    it, azureml_inference_server_http/amlserver_linux.py), on 127.0.0.1:port, with the threaded worker: each worker
    takes max_concurrent_requests_per_instance requests at once and keeps the router's connections alive."""
    request_timeout_s = record["request_settings"]["request_timeout_ms"] / 1000
    # gunicorn's worker timeout must outlast the scoring timeout, or it kills the worker before the server answers.
    worker_timeout = max(
        int(record["environment_variables"].get("WORKER_TIMEOUT", 300)), math.ceil(request_timeout_s) + 30
    )
    return [
        sys.executable,
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
        "--no-control-socket",
        "azureml_inference_server_http.server.entry:app",
    ]


def _free_port() -> int:
    """A port free on 127.0.0.1 now (gunicorn binds it a moment later, retrying if another program took it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _start_servers(record: dict, on_disk: dict | None = None) -> list[dict]:
    """Start instance_count servers and wait until every one is ready; their {host, port, pid, started, restart}.
    If one fails, all of them are stopped and the error names the cause from the log. Each is in the record's
    pending_servers from its start until it is in `servers` (or stopped), so that a command interrupted meanwhile
    leaves none that delete would not find: the record saved is on_disk (during an update, the old record), or
    record."""
    on_disk = record if on_disk is None else on_disk
    servers = []
    try:
        for _ in range(record["instance_count"]):
            port = _free_port()
            restart = {
                "argv": server_command(record, port),
                "env": server_environment(record, port),
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
            on_disk["pending_servers"] = _recorded(servers)
            records.save_deployment(on_disk)
            servers[-1]["process"], servers[-1]["restart"] = process, restart
        _wait_until_ready(record, servers)
    except BaseException:
        for server in servers:
            routing.stop_process(server["pid"], server["started"], STOP_GRACE_S + 2)
        raise
    for server in servers:
        del server["process"]
    return servers


def _answers(port: int, timeout: float) -> bool:
    """Whether a server answers its liveness/readiness route (`GET /`) with 200."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request("GET", "/")
        return connection.getresponse().status == 200
    except (OSError, http.client.HTTPException):
        return False
    finally:
        connection.close()


def _wait_until_ready(record: dict, servers: list[dict]):
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
                        f"it was ready; last log lines: {_tail_for_error(record)}"
                    )
                if _answers(server["port"], timeout=probe["timeout"]):
                    waiting.remove(server)
            if not waiting:
                status_line.finish(f"deployment {record['name']}: ready after {time.monotonic() - started:.1f} s")
                return
            if time.monotonic() > deadline:
                raise AmlLocalError(
                    f"online deployment {record['name']}: not ready after {budget} s (readiness_probe initial_delay "
                    f"+ period x failure_threshold); last log lines: {_tail_for_error(record)}"
                )
            waited = time.monotonic() - started
            status_line.show(
                f"deployment {record['name']}: waiting for {len(waiting)} of {len(servers)} servers to be ready, "
                f"{waited:.0f} s of {budget} s"
            )
            time.sleep(READY_POLL_S)
    finally:
        status_line.clear()


def _routing_entry(record: dict, servers: list[dict]) -> dict:
    """The deployment as the router takes it (routing.json's deployments.<name>)."""
    probe = record["liveness_probe"]
    return {
        "instance_count": len(servers),
        "max_concurrent_requests_per_instance": record["request_settings"]["max_concurrent_requests_per_instance"],
        "request_timeout_ms": record["request_settings"]["request_timeout_ms"],
        "max_request_bytes": record["max_request_bytes"],
        "liveness_probe": {key: probe[key] for key in ("initial_delay", "period", "timeout", "failure_threshold")},
        "servers": [
            {key: server[key] for key in ("host", "port", "pid", "started", "restart") if server.get(key) is not None}
            for server in servers
        ],
    }


def _recorded(servers: list[dict]) -> list[dict]:
    """The servers as deployment.json keeps them (without the environment, which stays in routing.json, 0600)."""
    return [{key: server[key] for key in ("host", "port", "pid", "started")} for server in servers]


def _route(record: dict, servers: list[dict], all_traffic: bool):
    """Put the servers into the routing table (a deployment new there takes no traffic unless all_traffic; one that
    was there keeps its share) and wait until the router routes by it."""
    name = record["name"]

    def edit(table):
        table["deployments"][name] = _routing_entry(record, servers)
        if all_traffic:
            table["traffic"] = {d: 0 for d in table["deployments"]} | {name: 100}
        else:
            table["traffic"].setdefault(name, 0)

    routing.wait_for(record["endpoint_name"], routing.change(record["endpoint_name"], edit))


def _drain_and_stop(record: dict, servers: list[dict], restarted: list):
    """Once the router no longer routes to these servers: wait until every request they had can have finished
    (request_timeout_ms, the longest a request lasts here, and a second), then stop them."""
    time.sleep(record["request_settings"]["request_timeout_ms"] / 1000 + 1)
    _stop_servers(record["name"], servers, restarted)


def _stop_servers(name: str, servers: list[dict], restarted) -> None:
    failed = [
        pid
        for pid, started in {(s["pid"], s.get("started")) for s in servers if s.get("pid")} | set(restarted)
        if not routing.stop_process(pid, started, STOP_GRACE_S + 2)
    ]
    if failed:
        raise AmlLocalError(f"online deployment {name}: its server (process group {failed[0]}) did not stop")


def create(file, name=None, endpoint_name=None, all_traffic=False, set_pairs=()) -> dict:
    entity = _load(file, name, endpoint_name, set_pairs)
    name, endpoint_name = entity.name, entity.endpoint_name
    if not name or not DEPLOYMENT_NAME.match(name):
        raise AmlLocalError(f"name {name!r}: 3 to 32 letters, digits and '-', a letter or digit at both ends")
    if not endpoint_name:
        raise AmlLocalError(f"{file}: endpoint_name is required (in the YAML or --endpoint-name)")
    try:
        records.load_endpoint(endpoint_name)
    except AmlLocalError:
        raise AmlLocalError(
            f"endpoint_name {endpoint_name}: no such local online endpoint; create it first "
            "(online-endpoint create --file endpoints/endpoint.yml)"
        ) from None
    spec = _spec(entity, file)
    folder = records.deployment_dir(endpoint_name, name)
    with store.locked("endpoints"):
        if (folder / "deployment.json").exists():
            previous = records.load_deployment(endpoint_name, name)
            if server_alive(previous):
                raise AmlLocalError(
                    f"online deployment {name} already exists on endpoint {endpoint_name}; use another name, "
                    "delete it first, or change it with online-deployment update"
                )
            # Its servers died (killed, crashed, or this machine restarted): create it again in place, as a create
            # of an existing deployment on Azure re-provisions it. Its share of the traffic is kept.
            stop(previous, routing.restarted_servers(endpoint_name, name))
            shutil.rmtree(folder)
        elif folder.exists():
            shutil.rmtree(folder)  # left by a create that stopped before writing its record
        (folder / "logs").mkdir(parents=True)
        try:
            revision = _prepare_revision(entity, file, folder, 1)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        record = {
            "name": name,
            "endpoint_name": endpoint_name,
            **spec,
            **revision,
            "set_pairs": list(set_pairs or ()),
            "deployment_dir": str(folder),
            "state": "Creating",
            "servers": [],
            "created_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "created_by": getpass.getuser(),
        }
        records.save_deployment(record)
    try:
        servers = _start_servers(record)
        record["servers"] = record.pop("pending_servers")
        records.save_deployment(record)
        _route(record, servers, all_traffic)
    except BaseException as err:
        stop(record)
        record["state"] = "Failed"
        record["failure"] = str(err) if isinstance(err, AmlLocalError) else "creation was interrupted"
        with contextlib.suppress(OSError):  # the endpoint may have been deleted meanwhile, folder and all
            records.save_deployment(record)
        raise
    record["state"] = "Succeeded"
    records.save_deployment(record)
    return show(endpoint_name, name)


def update(name: str, endpoint_name: str, file=None, set_pairs=()) -> dict:
    """Change a deployment (instance count, request settings, environment variables, model, code: the YAML of --file,
    else the one it was made from, with the --set pairs it was made with and these) with no failed request: new
    servers start and get ready beside the old ones, the router is switched to them, then the old ones are drained
    and stopped. A new deployment that fails to start changes nothing."""
    record = records.load_deployment(endpoint_name, name)
    pairs = [*record.get("set_pairs", []), *(set_pairs or ())] if file is None else list(set_pairs or ())
    entity = _load(file or record["file"], name, endpoint_name, pairs)
    if entity.name != name or entity.endpoint_name != endpoint_name:
        raise AmlLocalError(
            f"{file}: it describes deployment {entity.name} of endpoint {entity.endpoint_name}, "
            f"not {name} of {endpoint_name}"
        )
    spec = _spec(entity, file or record["file"])
    folder = Path(record["deployment_dir"])
    with store.locked("endpoints"):
        revision = _prepare_revision(entity, file or record["file"], folder, int(record.get("revision", 1)) + 1)
    new_record = record | spec | revision | {"set_pairs": pairs}
    try:
        servers = _start_servers(new_record, on_disk=record)
    except BaseException:
        shutil.rmtree(folder / "revisions" / str(revision["revision"]), ignore_errors=True)
        record.pop("pending_servers", None)
        records.save_deployment(record)
        raise
    restarted = routing.restarted_servers(endpoint_name, name)
    _route(new_record, servers, all_traffic=False)
    new_record.pop("pending_servers", None)
    new_record |= {
        "servers": _recorded(servers),
        "state": "Succeeded",
        "updated_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }
    new_record.pop("failure", None)
    records.save_deployment(new_record)
    _drain_and_stop(record, record.get("servers", []), restarted)
    shutil.rmtree(folder / "revisions" / str(record.get("revision", 1)), ignore_errors=True)
    return show(endpoint_name, name)


def _reference(value):
    if value is None:
        return None
    if isinstance(value, str):
        return value if value.startswith("azureml:") else f"azureml:{value}"
    return f"inline {type(value).__name__.lower()}"  # noted, not built: the server runs in this Python


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


def _current(record: dict) -> list[dict]:
    """The deployment's servers as they are now: a server the router started again is its new process."""
    now = routing.server_states(record["endpoint_name"], record["name"])
    current = []
    for server in [*record.get("servers", []), *record.get("pending_servers", [])]:
        seen = now.get(server["port"], {})
        if seen.get("restarts") and seen.get("pid"):
            server = server | {"pid": seen["pid"], "started": seen.get("started")}
        current.append(server)
    return current


def server_alive(record: dict) -> bool:
    """Whether any of the deployment's server processes is still running (same pid and start time, not a zombie)."""
    return any(processes.alive(s.get("pid"), s.get("started")) for s in _current(record))


def stop(record: dict, restarted=()):
    """Stop the deployment's servers: each one's whole process group (gunicorn's master and workers), those the
    router started again (restarted: their (pid, start time)) included. A pid now used by another program is left
    alone."""
    _stop_servers(record["name"], [*record.get("servers", []), *record.get("pending_servers", [])], restarted)


def _provisioning_state(record: dict) -> tuple[str, str | None]:
    if record["state"] == "Failed":
        return "Failed", record.get("failure")
    if record["state"] == "Creating" and not record.get("servers"):
        return "Creating", None
    if not server_alive(record):
        return "Failed", "its inference server is not running (stopped, or this machine restarted)"
    timeout = record["liveness_probe"]["timeout"]
    if any(_answers(server["port"], timeout) for server in record["servers"]):
        return "Succeeded", None
    if record["state"] == "Creating":
        return "Creating", None
    return "Failed", f"its inference server does not answer GET / within {timeout} s"


def show(endpoint_name: str, name: str) -> dict:
    record = records.load_deployment(endpoint_name, name)
    state, message = _provisioning_state(record)
    current = _current(record)
    properties = {
        "aml_local.deployment_dir": record["deployment_dir"],
        "aml_local.ports": ",".join(str(s["port"]) for s in current),
        "aml_local.pids": ",".join(str(s["pid"]) for s in current),
        "aml_local.worker_count": str(record["worker_count"]),
        "aml_local.max_request_bytes": str(record["max_request_bytes"]),
        "aml_local.model_dir": record["model_dir"],
        "aml_local.log_file": str(records.log_path(record)),
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
        "properties": {k: v for k, v in properties.items() if v},
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
    """Take the deployment out of the routing table (as on Azure, not while it takes traffic), then drain and stop
    its servers, and remove it."""
    record = records.load_deployment(endpoint_name, name)
    table = routing.read(endpoint_name)
    percent = table["traffic"].get(name, 0)
    if percent > 0:
        # As on Azure: a deployment that takes traffic is moved off it before it is deleted.
        raise AmlLocalError(
            f"online deployment {name} takes {percent}% of endpoint {endpoint_name}'s traffic; move it first, "
            f"e.g. online-endpoint update --name {endpoint_name} --traffic '{name}=0 <other>=100'"
        )
    restarted = routing.restarted_servers(endpoint_name, name)
    if name in table["deployments"]:

        def edit(document):
            for section in ("deployments", "traffic", "mirror_traffic"):
                document[section].pop(name, None)

        routing.wait_for(endpoint_name, routing.change(endpoint_name, edit))
        _drain_and_stop(record, record.get("servers", []), restarted)
    else:
        stop(record, restarted)
    records.remove_folder(Path(record["deployment_dir"]), f"online deployment {name}")
