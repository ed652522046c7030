"""The on-disk records of local batch endpoints and their deployments: $AML_LOCAL_HOME/batch-endpoints/<endpoint>/
endpoint.json, and deployments/<deployment>/deployment.json beside it (with the deployment's code snapshot and inline
model). Every write is whole-file-then-rename (store.write_json)."""

import json
import re
import shutil
from pathlib import Path

from aml_local import AmlLocalError, ResourceNotFound, store

# Azure ML's rules for endpoint names (3 to 32 characters, a letter first, letters, digits and '-', no '-' last) and
# deployment names (3 to 32, letters, digits and '-', alphanumeric at both ends): the online nouns' rules too.
ENDPOINT_NAME = re.compile(r"^[a-zA-Z][a-zA-Z0-9-]{1,30}[a-zA-Z0-9]$")
DEPLOYMENT_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9-]{1,30}[a-zA-Z0-9]$")
# The MLflow run tags that mark a batch scoring job's runs (scoring.py sets them; list-jobs finds the jobs by them).
# Our own names: Azure keeps the endpoint and deployment of a batch job in its service.
TAG_ENDPOINT = "aml.batch_endpoint"
TAG_DEPLOYMENT = "aml.batch_deployment"


def endpoints_dir() -> Path:
    return store.home() / "batch-endpoints"


def endpoint_dir(name: str) -> Path:
    return endpoints_dir() / name


def endpoint_names() -> list[str]:
    return sorted(p.parent.name for p in endpoints_dir().glob("*/endpoint.json"))


def load_endpoint(name: str) -> dict:
    """The endpoint's record; not found (exit 3, as az answers a 404) naming the endpoints that exist."""
    path = endpoint_dir(name or "") / "endpoint.json"
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        known = ", ".join(endpoint_names()) or "none"
        raise ResourceNotFound(f"batch endpoint {name!r} not found in {store.home()} (endpoints: {known})") from None
    except (OSError, ValueError):
        raise AmlLocalError(f"batch endpoint {name!r}: its record {path} is unreadable") from None


def save_endpoint(record: dict):
    endpoint_dir(record["name"]).mkdir(parents=True, exist_ok=True)
    store.write_json(endpoint_dir(record["name"]) / "endpoint.json", record)


def deployment_dir(endpoint_name: str, name: str) -> Path:
    return endpoint_dir(endpoint_name) / "deployments" / name


def deployments(endpoint_name: str) -> list[dict]:
    found = []
    for path in sorted((endpoint_dir(endpoint_name) / "deployments").glob("*/deployment.json")):
        try:
            found.append(json.loads(path.read_text()))
        except (OSError, ValueError):
            continue  # a deployment folder being removed right now
    return found


def load_deployment(endpoint_name: str, name: str) -> dict:
    load_endpoint(endpoint_name)
    path = deployment_dir(endpoint_name, name or "") / "deployment.json"
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        known = ", ".join(r["name"] for r in deployments(endpoint_name)) or "none"
        raise ResourceNotFound(
            f"batch deployment {name!r} not found on endpoint {endpoint_name} (deployments: {known})"
        ) from None
    except (OSError, ValueError):
        raise AmlLocalError(f"batch deployment {name!r}: its record {path} is unreadable") from None


def save_deployment(record: dict):
    store.write_json(deployment_dir(record["endpoint_name"], record["name"]) / "deployment.json", record)


def remove_folder(folder: Path, what: str):
    try:
        shutil.rmtree(folder)
    except FileNotFoundError:
        return
    except OSError as err:
        raise AmlLocalError(f"{what}: its folder {folder} could not be removed ({err.strerror or err})") from None
