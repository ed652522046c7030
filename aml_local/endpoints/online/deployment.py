"""The `online-deployment` noun: `online-deployment create/update/show/list/get-logs/delete`.

A deployment runs the Azure ML inference server (azureml-inference-server-http) on this machine, the way the
managed online endpoint's container runs it, behind its endpoint's router (aml_local/endpoints/router/server.py), which
does all that Azure's front end does before a request reaches a container (keys, traffic, mirroring, 429/408/413,
424 for a model's error, liveness probes and restarts). The servers themselves have no auth or admission code:

- code: code_configuration.code is copied to <deployment>/revisions/<n>/app/<folder name>, so later edits do not
  change a running deployment; each `update` makes a new revision beside the one still serving. AML_APP_ROOT is the
  scoring script's folder in that copy, as on Azure: a swagger2.json / swagger3.json there is the deployment's own
  OpenAPI document at /swagger.json?version=2|3 (endpoints/online/servers.py);
- an MLflow model (type mlflow_model) with no code_configuration and no environment is Azure's no-code deployment:
  the scoring script is ours, aml_local/endpoints/online/mlflow_score.py (what Azure's generated one does), copied in as
  code is, and the environment is the model's own requirements (its conda.yaml, else python_env.yaml or
  requirements.txt) plus azureml-inference-server-http, prepared as any environment (the project venv when it has
  them all); MLFLOW_MODEL_FOLDER names the model's folder in AZUREML_MODEL_DIR, as Azure sets it;
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
import shutil
from pathlib import Path

from aml_local import AmlLocalError, ResourceNotFound, processes, specs, store
from aml_local.assets import environment, model
from aml_local.assets.env_spec import EnvSpec
from aml_local.endpoints import deployment_sources
from aml_local.endpoints.online import records, routing
from aml_local.endpoints.online import servers as server_processes
from aml_local.endpoints.overrides import deployment_overrides
from aml_local.endpoints.records import check_deployment_name
from aml_local.endpoints.router.routing_table import DEFAULT_MAX_REQUEST_BYTES

SCHEMA = "https://azuremlschemas.azureedge.net/latest/managedOnlineDeployment.schema.json"
LOG_CONTAINER = records.LOG_CONTAINER
DEFAULT_LOG_LINES = 5000  # az ml online-deployment get-logs --lines default
# Azure's defaults for what a deployment YAML leaves out.
DEFAULT_REQUEST_SETTINGS = {"request_timeout_ms": 5000, "max_concurrent_requests_per_instance": 1}
DEFAULT_PROBE = {"initial_delay": 10, "period": 10, "timeout": 2, "success_threshold": 1, "failure_threshold": 30}
# The last line of a Python traceback: "RuntimeError: no model here", "ModuleNotFoundError: No module named 'x'".
STOP_GRACE_S = server_processes.STOP_GRACE_S
MAX_REQUEST_BYTES_VARIABLE = "AML_LOCAL_MAX_REQUEST_BYTES"
# A no-code MLflow deployment: our scoring script, in an app folder named as Azure's MLflow image has it
# (AML_APP_ROOT=/var/mlflow_resources in assets/inference/environments/mlflow-py312-inference of Azure/azureml-assets).
MLFLOW_SCORING_SCRIPT = Path(__file__).resolve().with_name("mlflow_score.py")
MLFLOW_APP_FOLDER = "mlflow_resources"
INFERENCE_SERVER = "azureml-inference-server-http"
# The variables of this process that a server must not inherit: ours, and a run of the caller's.


def _load(file, name, endpoint_name, set_pairs):
    overrides = deployment_overrides(set_pairs, name, endpoint_name, example="environment_variables.WORKER_COUNT=1")
    return specs.load("load_online_deployment", file, overrides)


def names_in(file, name=None, endpoint_name=None, set_pairs=()) -> tuple[str, str]:
    """The deployment's and its endpoint's names as the YAML gives them, -n/-e/--set overriding (how `update --file`
    finds the deployment it changes)."""
    entity = _load(file, name, endpoint_name, set_pairs)
    return entity.name, entity.endpoint_name


def _settings(entity_settings, defaults: dict) -> dict:
    given = {k: v for k, v in vars(entity_settings).items() if v is not None} if entity_settings else {}
    return {**defaults, **{k: v for k, v in given.items() if not k.startswith("_")}}


def _resolve_model(entity, file, revision_folder: Path) -> tuple[str | None, Path | None, str | None, Path | None]:
    """(what show prints for `model`, AZUREML_MODEL_DIR, the model's type, its file or folder) for a registered
    reference or an inline model."""
    from azure.ai.ml.entities import Model

    reference = entity.model
    if reference is None:
        return None, None, None, None
    if isinstance(reference, str):
        if reference.startswith("azureml://"):
            raise AmlLocalError(f"{file}: model {reference}: registry models do not run locally; register it here")
        try:
            shown = model.resolve(reference)
        except AmlLocalError as err:
            raise AmlLocalError(f"{file}: model: {err}") from None
        return shown["id"], Path(shown["properties"]["aml_local.model_dir"]), shown["type"], Path(shown["path"])
    if isinstance(reference, Model):
        if reference.path is None:
            raise AmlLocalError(f"{file}: model: an inline model needs a path")
        return deployment_sources.inline_model(reference, file, revision_folder)
    raise AmlLocalError(f"{file}: model: expected azureml:<name>:<version> or an inline model with a path")


def _copy_code(entity, file, app_root: Path) -> tuple[str, str, str]:
    """Copy code_configuration.code under app_root; (source folder, folder name, scoring script)."""
    source, _, script = deployment_sources.copy_code(entity, file, app_root)
    return str(source), source.name, script


def _pyfunc_flavor(model_path: Path, file) -> dict:
    """The MLmodel's python_function flavor: Azure generates a scoring script and environment for that flavor only
    ("Deploy MLflow models to online endpoints": autogeneration is only supported for the pyfunc flavor)."""
    flavors = deployment_sources.mlmodel_flavors(model_path, file)
    if "python_function" not in flavors:
        raise AmlLocalError(
            f"{file}: model {model_path}: its MLmodel has no python_function flavor ({', '.join(flavors) or 'none'}), "
            "and a deployment without a scoring script needs it, as on Azure; give code_configuration and an "
            "environment"
        )
    return flavors["python_function"] or {}


def _copy_mlflow_script(entity, file, app_root: Path, model_type: str | None, model_path: Path | None) -> dict:
    """A no-code deployment's scoring script, copied under app_root as code is; its record fields."""
    if model_type != "mlflow_model" or model_path is None:
        _copy_code(entity, file, app_root)  # the error that code and scoring_script are required
    if entity.environment is not None:
        # Azure's no-code deployment has no environment of the YAML's; with one, its MLflow inference no longer sets
        # MLFLOW_MODEL_FOLDER and the generated script fails (microsoft/azureml-inference-server issue 112).
        raise AmlLocalError(
            f"{file}: environment without code_configuration: an MLflow model deploys with neither (Azure supplies "
            "both), or with both a scoring script and its environment"
        )
    if not (model_path / "MLmodel").is_file():
        raise AmlLocalError(f"{file}: model {model_path}: type mlflow_model needs an MLmodel file at its top")
    _pyfunc_flavor(model_path, file)
    (app_root / MLFLOW_APP_FOLDER).mkdir()
    shutil.copy2(MLFLOW_SCORING_SCRIPT, app_root / MLFLOW_APP_FOLDER / MLFLOW_SCORING_SCRIPT.name)
    return {
        "code": None,
        "code_folder": MLFLOW_APP_FOLDER,
        "scoring_script": MLFLOW_SCORING_SCRIPT.name,
        "mlflow_model_folder": model_path.name,
    }


def _mlflow_environment(model_path: Path, file) -> EnvSpec:
    """A no-code deployment's environment: the MLflow model's own requirements plus the inference server. Azure builds
    it from the conda dependencies the model lists over its MLflow inference image, which brings
    azureml-inference-server-http ("Guidelines for deploying MLflow models": Python packages and dependencies); MLflow
    writes them as conda.yaml, and as python_env.yaml with requirements.txt."""
    builder = deployment_sources.mlflow_requirements(model_path, _pyfunc_flavor(model_path, file))
    if not any(r.name == INFERENCE_SERVER for r in builder.requirements):
        builder.add_pip_line(INFERENCE_SERVER, origin="the server of Azure's MLflow inference image", base_dir=None)
    builder.notes.append(
        "no-code MLflow deployment: the model's own requirements and azureml-inference-server-http; the scoring "
        "script is aml-local's (aml_local/endpoints/online/mlflow_score.py)"
    )
    return builder.finish()


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
        "environment": deployment_sources.recorded_reference(entity.environment),
        "environment_variables": environment_variables,
        "instance_type": entity.instance_type,
        "instance_count": entity.instance_count or 1,
        "request_settings": request_settings,
        "liveness_probe": _settings(entity.liveness_probe, DEFAULT_PROBE),
        "readiness_probe": _settings(entity.readiness_probe, DEFAULT_PROBE),
        "worker_count": _worker_count(environment_variables, request_settings, file),
        "max_request_bytes": _max_request_bytes(environment_variables, file),
    }


def _prepare_revision(entity, file, folder: Path, revision: int, environment_spec) -> tuple[dict, EnvSpec | None]:
    """Resolve the model and copy the code (or, for a no-code MLflow deployment, our scoring script) into
    <deployment>/revisions/<revision>; the record's fields for them, and the environment to prepare (the YAML's
    environment_spec, or the MLflow model's own)."""
    revision_folder = folder / "revisions" / str(revision)
    (revision_folder / "app").mkdir(parents=True)
    try:
        model_id, model_dir, model_type, model_path = _resolve_model(entity, file, revision_folder)
        if deployment_sources.no_code(entity):
            code = _copy_mlflow_script(entity, file, revision_folder / "app", model_type, model_path)
            environment_spec = _mlflow_environment(model_path, file)
        else:
            code_source, code_folder, scoring_script = _copy_code(entity, file, revision_folder / "app")
            code = {"code": code_source, "code_folder": code_folder, "scoring_script": scoring_script}
            code |= {"mlflow_model_folder": None}
    except BaseException:
        shutil.rmtree(revision_folder, ignore_errors=True)
        raise
    fields = {
        "revision": revision,
        "model": model_id,
        "model_dir": str(model_dir) if model_dir else None,
        **code,
        "app_root": str(revision_folder / "app"),
    }
    return fields, environment_spec


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
    """Once the router no longer routes to these servers: wait until the requests already sent to them have ended
    (the router lists the servers it still waits on; at most request_timeout_ms, the longest a request lasts here, and
    a second), then stop them."""
    addresses = {(server["host"], server["port"]) for server in servers}
    longest = record["request_settings"]["request_timeout_ms"] / 1000 + 1
    routing.wait_drained(record["endpoint_name"], addresses, longest)
    _stop_servers(record, servers, restarted)


def _stop_servers(record: dict, servers: list[dict], restarted) -> None:
    failed = [
        pid
        for pid, started in {(s["pid"], s.get("started")) for s in servers if s.get("pid")} | set(restarted)
        if not routing.stop_process(pid, started, STOP_GRACE_S + 2)
    ]
    if failed:
        raise AmlLocalError(f"online deployment {record['name']}: its server (process group {failed[0]}) did not stop")
    server_processes.remove_layers(record, servers)


def create(file, name=None, endpoint_name=None, all_traffic=False, set_pairs=()) -> dict:
    entity = _load(file, name, endpoint_name, set_pairs)
    name, endpoint_name = entity.name, entity.endpoint_name
    check_deployment_name(name)
    if not endpoint_name:
        raise AmlLocalError(f"{file}: endpoint_name is required (in the YAML or --endpoint-name)")
    try:
        records.load_endpoint(endpoint_name)
    except AmlLocalError:
        # Not found, as az ml's create reports it: the SDK GETs the endpoint first (exit 3, tests/test_cli.py).
        raise ResourceNotFound(
            f"endpoint_name {endpoint_name}: no such local online endpoint; create it first "
            "(online-endpoint create --file endpoints/endpoint.yml)"
        ) from None
    spec = _spec(entity, file)
    environment_spec = environment.resolve(entity.environment, file=file)  # a bad reference fails here, unrecorded
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
            revision, environment_spec = _prepare_revision(entity, file, folder, 1, environment_spec)
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
        server_processes.prepare_environment(environment_spec, record)
        servers = server_processes.start_servers(record)
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
    environment_spec = environment.resolve(entity.environment, file=file or record["file"])
    folder = Path(record["deployment_dir"])
    with store.locked("endpoints"):
        revision, environment_spec = _prepare_revision(
            entity, file or record["file"], folder, int(record.get("revision", 1)) + 1, environment_spec
        )
    new_record = record | spec | revision | {"set_pairs": pairs}
    try:
        server_processes.prepare_environment(environment_spec, new_record)
        servers = server_processes.start_servers(new_record, on_disk=record)
    except BaseException:
        shutil.rmtree(folder / "revisions" / str(revision["revision"]), ignore_errors=True)
        record.pop("pending_servers", None)
        records.save_deployment(record)
        raise
    restarted = routing.restarted_servers(endpoint_name, name)
    _route(new_record, servers, all_traffic=False)
    new_record.pop("pending_servers", None)
    new_record |= {
        "servers": server_processes.recorded(servers),
        "state": "Succeeded",
        "updated_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }
    new_record.pop("failure", None)
    records.save_deployment(new_record)
    _drain_and_stop(record, record.get("servers", []), restarted)
    shutil.rmtree(folder / "revisions" / str(record.get("revision", 1)), ignore_errors=True)
    return show(endpoint_name, name)


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
    _stop_servers(record, [*record.get("servers", []), *record.get("pending_servers", [])], restarted)


def _provisioning_state(record: dict) -> tuple[str, str | None]:
    if record["state"] == "Failed":
        return "Failed", record.get("failure")
    if record["state"] == "Creating" and not record.get("servers"):
        return "Creating", None
    if not server_alive(record):
        return "Failed", "its inference server is not running (stopped, or this machine restarted)"
    timeout = record["liveness_probe"]["timeout"]
    if any(routing.answers(server["port"], timeout) for server in record["servers"]):
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
        "aml_local.environment": record.get("environment_details"),
    }
    if record.get("mlflow_model_folder"):  # a no-code MLflow deployment: the scoring script that runs is ours
        properties["aml_local.scoring_script"] = str(
            Path(record["app_root"]) / record["code_folder"] / record["scoring_script"]
        )
    if message:
        properties["aml_local.status_message"] = message
    result = {
        "$schema": SCHEMA,
        "app_insights_enabled": False,
        # None (left out) for a no-code MLflow deployment, as its YAML has none.
        "code_configuration": {"code": record["code"], "scoring_script": record["scoring_script"]}
        if record["code"]
        else None,
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
    return server_processes.tail(records.log_path(record), lines)


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
