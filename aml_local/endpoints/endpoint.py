"""The `online-endpoint` noun: `online-endpoint create/show/list/update/delete/get-credentials/invoke`.

An endpoint here is a record plus its keys: $AML_LOCAL_HOME/endpoints/<name>/endpoint.json and keys.json
(readable by the user only). Its deployments are local inference servers, one port each, on 127.0.0.1
(see online_deployment). Azure gives an endpoint one scoring URI and splits its traffic between the
deployments behind it; locally each deployment has its own URI, so `scoring_uri` is the URI of the
deployment that takes the most traffic, and `invoke` picks a deployment by the traffic weights itself,
as Azure's router does (or the one named with --deployment-name, as Azure's azureml-model-deployment header).
"""

import datetime
import getpass
import json
import os
import random
import re
import secrets
import shutil
from pathlib import Path

from aml_local import AmlLocalError, specs, store
from aml_local.endpoints import deployment as deployments_verbs
from aml_local.endpoints import records

SCHEMA = "https://azuremlschemas.azureedge.net/latest/managedOnlineEndpoint.schema.json"
# Azure ML's rule for endpoint names: 3 to 32 characters, a letter first, letters, digits and '-', no '-' last.
ENDPOINT_NAME = re.compile(r"^[a-zA-Z][a-zA-Z0-9-]{1,30}[a-zA-Z0-9]$")
TRAFFIC_PAIR = re.compile(r"^(?P<deployment>[^=\s]+)=(?P<percent>\d{1,3})$")


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def _load(file, name, auth_mode):
    overrides = []
    if name:
        overrides.append({"name": name.lower()})  # the CLI lower-cases a --name: endpoint names ignore case
    if auth_mode:
        overrides.append({"auth_mode": auth_mode.lower()})
    return specs.load("load_online_endpoint", file, overrides)


def create(file, name=None, auth_mode=None) -> dict:
    entity = _load(file, name, auth_mode)
    name = entity.name
    if not name or not ENDPOINT_NAME.match(name):
        raise AmlLocalError(
            f"name {name!r}: 3 to 32 letters, digits and '-', starting with a letter and not ending with '-'"
        )
    if entity.auth_mode != "key":
        raise AmlLocalError(f"{file}: auth_mode {entity.auth_mode!r} does not run locally (key only)")
    with store.locked("endpoints"):
        if (records.endpoint_dir(name) / "endpoint.json").exists():
            raise AmlLocalError(
                f"online endpoint {name} already exists; to create a new one, use another --name "
                "(to change traffic: online-endpoint update)"
            )
        folder = records.endpoint_dir(name)
        if folder.exists():
            shutil.rmtree(folder)  # left by a create that stopped before writing its record
        folder.mkdir(parents=True, mode=0o700)
        _write_keys(name)
        records.save_endpoint(
            {
                "name": name,
                "description": entity.description,
                "tags": {str(k): str(v) for k, v in (entity.tags or {}).items()},
                "auth_mode": entity.auth_mode,
                "traffic": {},
                "mirror_traffic": {},
                "file": str(Path(file).resolve()),
                "created_at": _now(),
                "created_by": getpass.getuser(),
            }
        )
    return show(name)


def _write_keys(name: str):
    """Two keys, as Azure makes for key auth, in a file only this user can read (never in argv or logs)."""
    keys = {"primaryKey": secrets.token_urlsafe(32), "secondaryKey": secrets.token_urlsafe(32)}
    descriptor = os.open(records.keys_path(name), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        json.dump(keys, handle)


def get_credentials(name: str) -> dict:
    records.load_endpoint(name)
    try:
        keys = json.loads(records.keys_path(name).read_text())
    except (OSError, ValueError):
        raise AmlLocalError(
            f"online endpoint {name}: its keys file {records.keys_path(name)} is missing or unreadable"
        ) from None
    return {"primaryKey": keys["primaryKey"], "secondaryKey": keys["secondaryKey"]}


def scoring_deployment(record: dict) -> str | None:
    """The deployment whose URI stands for the endpoint's: the one taking the most traffic (ties: by name)."""
    weighted = [(percent, name) for name, percent in record["traffic"].items() if percent > 0]
    return min(weighted, key=lambda pair: (-pair[0], pair[1]))[1] if weighted else None


def show(name: str) -> dict:
    record = records.load_endpoint(name)
    deployments = {d["name"]: d for d in records.deployments(name)}
    traffic = {d: int(record["traffic"].get(d, 0)) for d in sorted(deployments)}
    chosen = scoring_deployment(record)
    base_url = records.base_url(deployments[chosen]) if chosen in deployments else None
    result = {
        "$schema": SCHEMA,
        "auth_mode": record["auth_mode"],
        "description": record["description"],
        "id": f"azureml:/local/onlineEndpoints/{name}",
        "identity": {"type": "none"},
        "kind": "Managed",
        "location": "local",
        "mirror_traffic": record["mirror_traffic"],
        "name": name,
        "openapi_uri": f"{base_url}/swagger.json" if base_url else None,
        "properties": {
            "aml_local.endpoint_dir": str(records.endpoint_dir(name)),
            "aml_local.scoring_deployment": chosen,
            "createdAt": record["created_at"],
            "createdBy": record["created_by"],
        },
        "provisioning_state": "Succeeded",
        # Its deployments listen on 127.0.0.1 only: nothing outside this machine can reach them.
        "public_network_access": "disabled",
        "scoring_uri": f"{base_url}/score" if base_url else None,
        "tags": record["tags"],
        "traffic": traffic,
    }
    return result


def list_endpoints() -> list[dict]:
    return [show(path.parent.name) for path in sorted(records.endpoints_dir().glob("*/endpoint.json"))]


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
    takes live traffic."""
    if traffic is None and mirror_traffic is None:
        raise AmlLocalError(
            "online-endpoint update: give --traffic (e.g. 'blue=90 green=10') and/or --mirror-traffic (e.g. 'green=10')"
        )
    wanted = parse_traffic(traffic) if traffic is not None else None
    mirrored = parse_traffic(mirror_traffic, flag="--mirror-traffic") if mirror_traffic is not None else None
    with store.locked("endpoints"):
        record = records.load_endpoint(name)
        deployments = {d["name"] for d in records.deployments(name)}
        for flag, split in (("--traffic", wanted), ("--mirror-traffic", mirrored)):
            unknown = sorted(set(split or {}) - deployments)
            if unknown:
                raise AmlLocalError(
                    f"{flag}: endpoint {name} has no deployment {unknown[0]!r} "
                    f"(deployments: {', '.join(sorted(deployments)) or 'none'})"
                )
        if wanted is not None and sum(wanted.values()) not in (0, 100):
            raise AmlLocalError(f"--traffic {traffic!r}: the percentages add up to {sum(wanted.values())}, not 100")
        # As on Azure, a new split replaces the old one: deployments left out take no traffic.
        live = {d: wanted.get(d, 0) for d in sorted(deployments)} if wanted is not None else record["traffic"]
        mirror = record.get("mirror_traffic") or {}
        if mirrored is not None:
            mirror = {d: p for d, p in mirrored.items() if p > 0}
        mirror = {d: p for d, p in mirror.items() if d in deployments}
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
        record["traffic"] = live
        record["mirror_traffic"] = mirror
        records.save_endpoint(record)
    return show(name)


def delete(name: str):
    records.load_endpoint(name)
    for record in records.deployments(name):
        deployments_verbs.stop(record)
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


def choose_deployment(record: dict, deployment_name: str | None, deployments: dict) -> str:
    if deployment_name:
        if deployment_name not in deployments:
            known = ", ".join(sorted(deployments)) or "none"
            raise AmlLocalError(
                f"--deployment-name {deployment_name}: endpoint {record['name']} has no such deployment "
                f"(deployments: {known})"
            )
        return deployment_name
    weighted = [(d, p) for d, p in record["traffic"].items() if p > 0 and d in deployments]
    if not weighted:
        raise AmlLocalError(
            f"online endpoint {record['name']}: no deployment takes traffic; give one all traffic "
            "(online-deployment create --all-traffic, online-endpoint update --traffic) or use --deployment-name"
        )
    names, weights = zip(*weighted, strict=True)
    return random.choices(names, weights=weights)[0]


def invoke(name: str, request_file, deployment_name: str | None = None) -> str:
    """POST the request file to a deployment's /score with the endpoint's key; the response body, as az
    prints it (a string), or an error with the status and the server's message for anything but 2xx."""
    import http.client

    record = records.load_endpoint(name)
    body = _read_request(request_file)
    deployments = {d["name"]: d for d in records.deployments(name)}
    chosen = choose_deployment(record, deployment_name, deployments)
    deployment = deployments[chosen]
    key = get_credentials(name)["primaryKey"]
    headers = {
        "Content-Type": "application/json",
        "Authorization": f"Bearer {key}",
        "azureml-model-deployment": chosen,
    }
    timeout_s = deployment["request_settings"]["request_timeout_ms"] / 1000 * 2 + 5
    connection = http.client.HTTPConnection("127.0.0.1", deployment["port"], timeout=timeout_s)
    try:
        connection.request("POST", "/score", body=body, headers=headers)
        response = connection.getresponse()
        status, text = response.status, response.read().decode("utf-8", errors="replace")
    except (OSError, http.client.HTTPException) as err:
        reason = getattr(err, "strerror", None) or type(err).__name__
        raise AmlLocalError(
            f"online endpoint {name}: deployment {chosen} is not answering on 127.0.0.1:{deployment['port']} "
            f"({reason}); see: online-deployment get-logs --name {chosen} --endpoint-name {name}"
        ) from None
    finally:
        connection.close()
    if deployment_name is None:
        _mirror(record, deployments, body, key)
    if not 200 <= status < 300:
        raise AmlLocalError(f"online endpoint {name}: deployment {chosen} answered HTTP {status}: {_message(text)}")
    return text


def _mirror(record: dict, deployments: dict, body: bytes, key: str):
    """Send a copy of a request routed by traffic to the mirrored deployment, at its percentage, as Azure does:
    its answer is never returned and its failures never reach the caller (they show in its own log)."""
    import http.client

    for name, percent in (record.get("mirror_traffic") or {}).items():
        if name not in deployments or random.random() * 100 >= percent:
            continue
        deployment = deployments[name]
        headers = {
            "Content-Type": "application/json",
            "Authorization": f"Bearer {key}",
            "azureml-model-deployment": name,
        }
        timeout_s = deployment["request_settings"]["request_timeout_ms"] / 1000 + 5
        connection = http.client.HTTPConnection("127.0.0.1", deployment["port"], timeout=timeout_s)
        try:
            connection.request("POST", "/score", body=body, headers=headers)
            connection.getresponse().read()
        except (OSError, http.client.HTTPException):
            pass
        finally:
            connection.close()


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
