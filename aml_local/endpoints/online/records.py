"""The on-disk records of local online endpoints and their deployments, read by both nouns' verbs: the online kind's
records (aml_local/endpoints/records.py, ONLINE: $AML_LOCAL_HOME/endpoints/<endpoint>/endpoint.json and
deployments/<deployment>/deployment.json beside it; the endpoint's keys and traffic are in its routing.json,
aml_local/endpoints/online/routing.py), and where a deployment's servers log."""

from pathlib import Path

from aml_local.endpoints.records import ONLINE

LOG_CONTAINER = "inference-server"

endpoints_dir = ONLINE.endpoints_dir
endpoint_dir = ONLINE.endpoint_dir
endpoint_names = ONLINE.endpoint_names
load_endpoint = ONLINE.load_endpoint
save_endpoint = ONLINE.save_endpoint
deployment_dir = ONLINE.deployment_dir
deployments = ONLINE.deployments
load_deployment = ONLINE.load_deployment
save_deployment = ONLINE.save_deployment
remove_folder = ONLINE.remove_folder


def log_path(record: dict) -> Path:
    return Path(record["deployment_dir"]) / "logs" / f"{LOG_CONTAINER}.log"
