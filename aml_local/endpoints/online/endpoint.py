"""The `online-endpoint` noun: `online-endpoint create/show/list/update/regenerate-keys/delete/get-credentials/invoke`.

An endpoint here is what it is on Azure: one scoring URI in front of its deployments, deciding per request. Its record
is $AML_LOCAL_HOME/endpoints/<name>/endpoint.json; its keys, traffic and mirrored traffic are in routing.json beside it
(readable by the user only), the table its router serves (endpoints/router/server.py, one process per endpoint on
one 127.0.0.1 port for the endpoint's whole life; aml_local/endpoints/online/routing.py starts, finds and stops it). So
`scoring_uri` is http://127.0.0.1:<the router's port>/score from `create` to `delete`, whatever deployments come and go
or traffic moves, and curl, `requests`, Postman or the draw-a-digit page reach the deployment the router draws, as
`invoke` does.
"""

import datetime
import getpass
import http.client
import json
import os
import re
import secrets
import shutil
from pathlib import Path

from aml_local import AmlLocalError, specs, store
from aml_local.endpoints.online import deployment as deployments_verbs
from aml_local.endpoints.online import records, routing
from aml_local.endpoints.records import check_endpoint_name

SCHEMA = "https://azuremlschemas.azureedge.net/latest/managedOnlineEndpoint.schema.json"
TRAFFIC_PAIR = re.compile(r"^(?P<deployment>[^=\s]+)=(?P<percent>\d{1,3})$")
# azure-ai-ml's EndpointKeyType (constants/_endpoint.py): what --key-type takes; primary when it is not given
# (OnlineEndpointOperations.begin_regenerate_keys' default).
KEY_TYPES = ("primary", "secondary")
MODEL_DEPLOYMENT = "azureml-model-deployment"


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def load(file, name, auth_mode, params_override=()):
    """The endpoint entity a YAML (or --name alone) gives, as `online-endpoint create` reads it."""
    # ml_online_endpoint_create (azext_mlv2/manual/custom/online_endpoint.py): --set pairs, then --name and
    # --auth-mode appended; load_online_endpoint(source=file) with file None builds the endpoint from them alone.
    overrides = list(params_override or ())
    if name:
        overrides.append({"name": name.lower()})  # the CLI lower-cases a --name: endpoint names ignore case
    if auth_mode:
        overrides.append({"auth_mode": auth_mode.lower()})
    if file:
        return specs.load("load_online_endpoint", file, overrides)
    if not name:
        raise AmlLocalError("online-endpoint create: give --file/-f or --name/-n")
    import azure.ai.ml
    from azure.ai.ml.exceptions import MlException
    from marshmallow.exceptions import ValidationError

    try:
        return azure.ai.ml.load_online_endpoint(None, params_override=overrides)
    except (ValidationError, MlException, ValueError, KeyError, TypeError) as err:
        raise AmlLocalError(f"online-endpoint create: {specs.sdk_error_summary(err)}") from None


def _wanted_port() -> int:
    """The router's port: AML_LOCAL_PORT when set (checked to be free), else 0 (a free one, chosen by the router)."""
    wanted = os.environ.get("AML_LOCAL_PORT", "").strip()
    if not wanted:
        return 0
    if not (wanted.isdigit() and 0 < int(wanted) < 65536):
        raise AmlLocalError(f"AML_LOCAL_PORT={wanted}: expected a port number from 1 to 65535")
    if routing.port_in_use(int(wanted)):
        raise AmlLocalError(
            f"AML_LOCAL_PORT={wanted}: port {wanted} on 127.0.0.1 is in use{_port_holder(int(wanted))}; "
            "pick another or unset AML_LOCAL_PORT for a free one"
        )
    return int(wanted)


def _port_holder(port: int) -> str:
    for name in records.endpoint_names():
        found = routing.running(name)
        if found and found.get("port") == port:
            return f" (by the router of endpoint {name})"
    return ""


def create(file=None, name=None, auth_mode=None, params_override=()) -> dict:
    entity = load(file, name, auth_mode, params_override)
    name = entity.name
    check_endpoint_name(name)
    if entity.auth_mode != "key":
        raise AmlLocalError(
            f"{file or 'online-endpoint create'}: auth_mode {entity.auth_mode!r} does not run locally (key only)"
        )
    with store.locked("endpoints"):
        if (records.endpoint_dir(name) / "endpoint.json").exists():
            raise AmlLocalError(
                f"online endpoint {name} already exists; to create a new one, use another --name "
                "(to change traffic: online-endpoint update)"
            )
        port = _wanted_port()
        folder = records.endpoint_dir(name)
        if folder.exists():
            shutil.rmtree(folder)  # left by a create that stopped before writing its record
        folder.mkdir(parents=True, mode=0o700)
        # Two keys, as Azure makes for key auth, in a file only this user can read (never in argv or logs).
        routing.create(name, {which: _new_key() for which in KEY_TYPES}, port)
        records.save_endpoint(
            {
                "name": name,
                "description": entity.description,
                "tags": {str(k): str(v) for k, v in (entity.tags or {}).items()},
                "auth_mode": entity.auth_mode,
                "file": str(Path(file).resolve()) if file else None,
                "created_at": _now(),
                "created_by": getpass.getuser(),
            }
        )
    try:
        routing.start(name)
    except BaseException:
        shutil.rmtree(records.endpoint_dir(name), ignore_errors=True)
        raise
    return show(name)


def _new_key() -> str:
    return secrets.token_urlsafe(32)


def get_credentials(name: str) -> dict:
    records.load_endpoint(name)
    keys = routing.read(name)["keys"]
    return {"primaryKey": keys["primary"], "secondaryKey": keys["secondary"]}


def regenerate_keys(name: str, key_type: str = "primary"):
    """A new primary or secondary key; the other one keeps working (as on Azure, so clients can move over)."""
    which = (key_type or "").lower()
    if which not in KEY_TYPES:
        raise AmlLocalError(f"--key-type {key_type}: expected primary or secondary")
    records.load_endpoint(name)
    routing.wait_for(name, routing.change(name, lambda table: table["keys"].update({which: _new_key()})))


def show(name: str) -> dict:
    record = records.load_endpoint(name)
    table = routing.read(name)
    port = routing.ensure(name)
    deployments = {d["name"] for d in records.deployments(name)}
    base_url = f"http://127.0.0.1:{port}"
    return {
        "$schema": SCHEMA,
        "auth_mode": record["auth_mode"],
        "description": record["description"],
        "id": f"azureml:/local/onlineEndpoints/{name}",
        "identity": {"type": "none"},
        "kind": "Managed",
        "location": "local",
        "mirror_traffic": {d: p for d, p in table["mirror_traffic"].items() if p > 0},
        "name": name,
        "openapi_uri": f"{base_url}/swagger.json",
        "properties": {
            "aml_local.endpoint_dir": str(records.endpoint_dir(name)),
            "aml_local.router_log": str(routing.state_dir(name) / routing.ROUTER_LOG),
            "createdAt": record["created_at"],
            "createdBy": record["created_by"],
        },
        "provisioning_state": "Succeeded",
        # The router listens on 127.0.0.1 only: nothing outside this machine can reach it.
        "public_network_access": "disabled",
        "scoring_uri": f"{base_url}/score",
        "tags": record["tags"],
        "traffic": {d: int(table["traffic"].get(d, 0)) for d in sorted(deployments)},
    }


def list_endpoints() -> list[dict]:
    return [show(name) for name in records.endpoint_names()]


def parse_traffic(text: str, flag: str = "--traffic") -> dict:
    """`blue=90 green=10` (as `az ml online-endpoint update --traffic` takes it) -> {"blue": 90, "green": 10}."""
    traffic = {}
    for pair in text.replace(",", " ").split():
        match = TRAFFIC_PAIR.match(pair)
        if not match or int(match["percent"]) > 100:
            raise AmlLocalError(f"{flag} {text!r}: expected DEPLOYMENT=PERCENT pairs, e.g. 'blue=90 green=10'")
        traffic[match["deployment"]] = int(match["percent"])
    if not traffic:
        raise AmlLocalError(f"{flag} {text!r}: expected DEPLOYMENT=PERCENT pairs, e.g. 'blue=90 green=10'")
    return traffic


def update(name: str, traffic: str | None = None, mirror_traffic: str | None = None) -> dict:
    """Set the live traffic split and/or the mirrored traffic, with Azure's rules: live traffic adds up to 100
    (or is all 0); mirrored traffic goes to at most one deployment, at most 50%, and never to a deployment that
    takes live traffic. Returns once the router routes by the new split."""
    if traffic is None and mirror_traffic is None:
        raise AmlLocalError(
            "online-endpoint update: give --traffic (e.g. 'blue=90 green=10') and/or --mirror-traffic (e.g. 'green=10')"
        )
    wanted = parse_traffic(traffic) if traffic is not None else None
    mirrored = parse_traffic(mirror_traffic, flag="--mirror-traffic") if mirror_traffic is not None else None
    records.load_endpoint(name)

    def edit(table):
        deployments = set(table["deployments"])
        for flag, split in (("--traffic", wanted), ("--mirror-traffic", mirrored)):
            unknown = sorted(set(split or {}) - deployments)
            if unknown:
                raise AmlLocalError(
                    f"{flag}: endpoint {name} has no deployment {unknown[0]!r} that is ready "
                    f"(deployments: {', '.join(sorted(deployments)) or 'none'})"
                )
        if wanted is not None and sum(wanted.values()) not in (0, 100):
            raise AmlLocalError(f"--traffic {traffic!r}: the percentages add up to {sum(wanted.values())}, not 100")
        # As on Azure, a new split replaces the old one: deployments left out take no traffic.
        live = {d: wanted.get(d, 0) for d in sorted(deployments)} if wanted is not None else table["traffic"]
        mirror = {d: p for d, p in (mirrored if mirrored is not None else table["mirror_traffic"]).items() if p > 0}
        if len(mirror) > 1:
            raise AmlLocalError(
                f"--mirror-traffic: mirrored traffic can go to one deployment only (got {', '.join(sorted(mirror))})"
            )
        if sum(mirror.values()) > 50:
            raise AmlLocalError(f"--mirror-traffic {mirror_traffic!r}: at most 50% of traffic can be mirrored")
        both = sorted(d for d in mirror if live.get(d, 0) > 0)
        if both:
            raise AmlLocalError(
                f"deployment {both[0]} would take live traffic ({live[both[0]]}%) and mirrored traffic; "
                f"stop the mirror first (--mirror-traffic '{both[0]}=0')"
            )
        table["traffic"], table["mirror_traffic"] = live, mirror

    routing.wait_for(name, routing.change(name, edit))
    return show(name)


def delete(name: str):
    """Stop the router (requests in progress finish first), then every deployment's servers, those the router
    started again itself included; then remove the endpoint's folder."""
    records.load_endpoint(name)
    restarted = {d["name"]: routing.restarted_servers(name, d["name"]) for d in records.deployments(name)}
    routing.stop(name)
    for record in records.deployments(name):
        deployments_verbs.stop(record, restarted.get(record["name"], []))
    with store.locked("endpoints"):
        records.remove_folder(records.endpoint_dir(name), f"online endpoint {name}")


def _read_request(request_file) -> bytes:
    path = Path(request_file)
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise AmlLocalError(f"--request-file {request_file}: cannot read it ({err.strerror})") from None
    try:
        data = json.loads(raw)
    except ValueError as err:
        raise AmlLocalError(f"--request-file {request_file}: not valid JSON ({err})") from None
    # The SDK loads the file and posts it again as JSON (requests' json=): the same bytes up to spacing.
    return json.dumps(data).encode()


def invoke(name: str, request_file, deployment_name: str | None = None) -> str:
    """POST the request file to the endpoint's scoring URI with its primary key (and the azureml-model-deployment
    header for --deployment-name), as azure-ai-ml's OnlineEndpointOperations.invoke does; the response body, as az
    prints it (a string). Anything but 200/201 is an error naming the status, and for a 424 the model's own status
    and message (validate_response in azure-ai-ml's _utils/_endpoint_utils.py raises on all others)."""
    records.load_endpoint(name)
    body = _read_request(request_file)
    table = routing.read(name)
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {table['keys']['primary']}"}
    if deployment_name:
        # As the SDK checks it first (OnlineEndpointOperations._validate_deployment_name).
        known = {d["name"] for d in records.deployments(name)}
        if deployment_name not in known:
            raise AmlLocalError(
                f"--deployment-name {deployment_name}: endpoint {name} has no such deployment "
                f"(deployments: {', '.join(sorted(known)) or 'none'})"
            )
        headers[MODEL_DEPLOYMENT] = deployment_name
    elif not any(p > 0 for p in table["traffic"].values()):
        raise AmlLocalError(
            f"online endpoint {name}: no deployment takes traffic; give one all traffic "
            "(online-deployment create --all-traffic, online-endpoint update --traffic) or use --deployment-name"
        )
    port = routing.ensure(name)
    longest = max((d["request_timeout_ms"] for d in table["deployments"].values()), default=5000)
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=longest / 1000 + 10)
    try:
        connection.request("POST", "/score", body=body, headers=headers)
        response = connection.getresponse()
        status, text = response.status, response.read().decode("utf-8", errors="replace")
        answered_by = response.getheader(MODEL_DEPLOYMENT)
        model_status = response.getheader("ms-azureml-model-error-statuscode")
    except (OSError, http.client.HTTPException) as err:
        reason = getattr(err, "strerror", None) or type(err).__name__
        raise AmlLocalError(
            f"online endpoint {name}: its router on 127.0.0.1:{port} did not answer ({reason}); "
            f"see {routing.state_dir(name) / routing.ROUTER_LOG}"
        ) from None
    finally:
        connection.close()
    if status not in (200, 201):
        where = f" (deployment {answered_by})" if answered_by else ""
        what = f"HTTP {status}" + (f", the model answered {model_status}" if model_status else "")
        raise AmlLocalError(f"online endpoint {name}{where} answered {what}: {_message(text)}")
    return text


def _message(text: str) -> str:
    try:
        body = json.loads(text)
    except ValueError:
        body = None
    if isinstance(body, dict):
        for field in ("message", "error"):
            if isinstance(body.get(field), str):
                return body[field]
            if isinstance(body.get(field), dict) and isinstance(body[field].get("message"), str):
                return body[field]["message"]
    return " ".join(text.split())[:300] or "(empty body)"
