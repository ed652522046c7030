"""The on-disk records of local online endpoints and their deployments, read by both nouns' verbs:
$AML_LOCAL_HOME/endpoints/<endpoint>/endpoint.json, and deployments/<deployment>/deployment.json beside it (the
endpoint's keys and traffic are in its routing.json, aml_local/endpoints/online/routing.py). Every write is
whole-file-then-rename (store.write_json)."""

import json
import shutil
from pathlib import Path

from aml_local import AmlLocalError, ResourceNotFound, store

LOG_CONTAINER = "inference-server"


def endpoints_dir() -> Path:
    return store.home() / "endpoints"


def endpoint_dir(name: str) -> Path:
    return endpoints_dir() / name


def load_endpoint(name: str) -> dict:
    """The endpoint's record; a clear error naming the endpoints that do exist when it does not."""
    path = endpoint_dir(name) / "endpoint.json"
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        known = ", ".join(sorted(p.parent.name for p in endpoints_dir().glob("*/endpoint.json"))) or "none"
        raise ResourceNotFound(f"online endpoint {name!r} not found in {store.home()} (endpoints: {known})") from None
    except (OSError, ValueError):
        raise AmlLocalError(f"online endpoint {name!r}: its record {path} is unreadable") from None


def save_endpoint(record: dict):
    store.write_json(endpoint_dir(record["name"]) / "endpoint.json", record)


def deployments_dir(endpoint_name: str) -> Path:
    return endpoint_dir(endpoint_name) / "deployments"


def deployment_dir(endpoint_name: str, name: str) -> Path:
    return deployments_dir(endpoint_name) / name


def log_path(record: dict) -> Path:
    return Path(record["deployment_dir"]) / "logs" / f"{LOG_CONTAINER}.log"


def deployments(endpoint_name: str) -> list[dict]:
    found = []
    for path in sorted(deployments_dir(endpoint_name).glob("*/deployment.json")):
        try:
            found.append(json.loads(path.read_text()))
        except (OSError, ValueError):
            continue  # a deployment folder being removed right now
    return found


def load_deployment(endpoint_name: str, name: str) -> dict:
    load_endpoint(endpoint_name)
    path = deployment_dir(endpoint_name, name) / "deployment.json"
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        known = ", ".join(r["name"] for r in deployments(endpoint_name)) or "none"
        raise ResourceNotFound(
            f"online deployment {name!r} not found on endpoint {endpoint_name} (deployments: {known})"
        ) from None
    except (OSError, ValueError):
        raise AmlLocalError(f"online deployment {name!r}: its record {path} is unreadable") from None


def save_deployment(record: dict):
    store.write_json(Path(record["deployment_dir"]) / "deployment.json", record)


def remove_folder(folder: Path, what: str):
    """Remove a deleted endpoint's or deployment's folder; one that cannot be removed is an error, not a success."""
    try:
        shutil.rmtree(folder)
    except FileNotFoundError:
        return
    except OSError as err:
        raise AmlLocalError(
            f"{what}: its server is stopped, but its folder {folder} could not be removed "
            f"({err.strerror or err}); remove it by hand"
        ) from None
