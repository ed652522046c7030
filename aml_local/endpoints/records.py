"""The on-disk records of local endpoints and their deployments, laid out alike for both kinds:
$AML_LOCAL_HOME/<kind's folder>/<endpoint>/endpoint.json, and deployments/<deployment>/deployment.json beside it.
ONLINE's folder is endpoints/ (an endpoint's keys and traffic are beside its record, in routing.json:
aml_local/endpoints/online/routing.py); BATCH's is batch-endpoints/ (a deployment's folder holds its code snapshot and
inline model too). Every write is whole-file-then-rename (store.write_json).

The online verbs read ONLINE through online/records.py (with where a deployment's servers log); the batch verbs read
BATCH here."""

import json
import re
import shutil
from collections.abc import Callable
from pathlib import Path

from aml_local import AmlLocalError, ResourceNotFound, store

# Azure ML's rules for endpoint names (3 to 32 characters, a letter first, letters, digits and '-', no '-' last) and
# deployment names (3 to 32, letters, digits and '-', alphanumeric at both ends), online and batch alike.
ENDPOINT_NAME = re.compile(r"^[a-zA-Z][a-zA-Z0-9-]{1,30}[a-zA-Z0-9]$")
DEPLOYMENT_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9-]{1,30}[a-zA-Z0-9]$")


def check_endpoint_name(name):
    if not name or not ENDPOINT_NAME.match(name):
        raise AmlLocalError(
            f"name {name!r}: 3 to 32 letters, digits and '-', starting with a letter and not ending with '-'"
        )


def check_deployment_name(name):
    if not name or not DEPLOYMENT_NAME.match(name):
        raise AmlLocalError(f"name {name!r}: 3 to 32 letters, digits and '-', a letter or digit at both ends")


def _read(path: Path, what: str, where: str, others: str, known: Callable[[], list[str]]) -> dict:
    """The record at `path`, `what` naming it in errors: when there is none, not found says `where` it was looked
    for and lists the `others` that exist there (known(), asked only then)."""
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise ResourceNotFound(f"{what} not found {where} ({others}: {', '.join(known()) or 'none'})") from None
    except (OSError, ValueError):
        raise AmlLocalError(f"{what}: its record {path} is unreadable") from None


class EndpointRecords:
    """One kind's endpoint and deployment records under $AML_LOCAL_HOME/<folder>; its errors name them by `kind`
    ("online endpoint 'x' not found ..."). `unremovable` is the error when a deleted endpoint's or deployment's folder
    cannot be removed, with {what}, {folder} and {reason} to fill."""

    def __init__(self, kind: str, folder: str, unremovable: str):
        self.kind = kind
        self.folder = folder
        self.unremovable = unremovable

    def endpoints_dir(self) -> Path:
        return store.home() / self.folder

    def endpoint_dir(self, name: str) -> Path:
        return self.endpoints_dir() / name

    def endpoint_names(self) -> list[str]:
        return sorted(p.parent.name for p in self.endpoints_dir().glob("*/endpoint.json"))

    def load_endpoint(self, name: str) -> dict:
        """The endpoint's record; not found (exit 3, as az answers a 404) naming the endpoints that exist."""
        path = self.endpoint_dir(name or "") / "endpoint.json"
        return _read(path, f"{self.kind} endpoint {name!r}", f"in {store.home()}", "endpoints", self.endpoint_names)

    def save_endpoint(self, record: dict):
        self.endpoint_dir(record["name"]).mkdir(parents=True, exist_ok=True)
        store.write_json(self.endpoint_dir(record["name"]) / "endpoint.json", record)

    def deployment_dir(self, endpoint_name: str, name: str) -> Path:
        return self.endpoint_dir(endpoint_name) / "deployments" / name

    def deployments(self, endpoint_name: str) -> list[dict]:
        found = []
        for path in sorted((self.endpoint_dir(endpoint_name) / "deployments").glob("*/deployment.json")):
            try:
                found.append(json.loads(path.read_text()))
            except (OSError, ValueError):
                continue  # a deployment folder being removed right now
        return found

    def deployment_names(self, endpoint_name: str) -> list[str]:
        return [record["name"] for record in self.deployments(endpoint_name)]

    def load_deployment(self, endpoint_name: str, name: str) -> dict:
        self.load_endpoint(endpoint_name)
        path = self.deployment_dir(endpoint_name, name or "") / "deployment.json"
        return _read(
            path,
            f"{self.kind} deployment {name!r}",
            f"on endpoint {endpoint_name}",
            "deployments",
            lambda: self.deployment_names(endpoint_name),
        )

    def save_deployment(self, record: dict):
        store.write_json(self.deployment_dir(record["endpoint_name"], record["name"]) / "deployment.json", record)

    def remove_folder(self, folder: Path, what: str):
        """Remove a deleted endpoint's or deployment's folder; one that cannot be removed is an error, not a success."""
        try:
            shutil.rmtree(folder)
        except FileNotFoundError:
            return
        except OSError as err:
            raise AmlLocalError(self.unremovable.format(what=what, folder=folder, reason=err.strerror or err)) from None


ONLINE = EndpointRecords(
    "online",
    "endpoints",
    # By then the verbs have stopped its servers: the folder is all that is left, to remove by hand.
    unremovable="{what}: its server is stopped, but its folder {folder} could not be removed ({reason}); "
    "remove it by hand",
)
BATCH = EndpointRecords(
    "batch", "batch-endpoints", unremovable="{what}: its folder {folder} could not be removed ({reason})"
)
