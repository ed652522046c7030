"""MLClient's operation groups for online and batch endpoints and deployments, with azure-ai-ml's method names and
signatures (azure/ai/ml/operations/_online_endpoint_operations.py, _online_deployment_operations.py,
_batch_endpoint_operations.py, _batch_deployment_operations.py), over the verbs of `aml-local online-endpoint` etc."""

import warnings

from azure.ai.ml import (
    load_batch_deployment,
    load_batch_endpoint,
    load_online_deployment,
    load_online_endpoint,
)
from azure.ai.ml import operations as azure_operations
from azure.ai.ml.entities import BatchJob, EndpointAuthKeys
from azure.ai.ml.exceptions import ErrorTarget

from aml_local.endpoints.batch import deployment as batch_deployment
from aml_local.endpoints.batch import endpoint as batch_endpoint
from aml_local.endpoints.batch import scoring
from aml_local.endpoints.online import deployment as online_deployment
from aml_local.endpoints.online import endpoint as online_endpoint
from aml_local.sdk import documents, errors
from aml_local.sdk.operations import Operations, done

ONLINE = ErrorTarget.ONLINE_ENDPOINT
BATCH = ErrorTarget.BATCH_ENDPOINT


def _traffic_text(traffic: dict) -> str:
    return " ".join(f"{name}={percent}" for name, percent in traffic.items())


def _online_endpoint_entity(shown: dict):
    return documents.from_shown(load_online_endpoint, shown)


def _deployment_entity(loader, shown: dict):
    """The deployment as the verbs show it. A batch one is the BatchDeployment azure-ai-ml builds from the service's
    answer, whose constructor warns that it is a base class: the verbs' show quiets that warning, so does this."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return documents.from_shown(loader, shown)


def _create_or_update(verbs, deployment, noun: str) -> dict:
    """A deployment created, or updated in place when its endpoint has one of that name (begin_create_or_update);
    `verbs` is the online or batch deployment module."""
    document = documents.write(deployment, noun)
    if deployment.name in {d["name"] for d in verbs.list_deployments(deployment.endpoint_name)}:
        return verbs.update(deployment.name, deployment.endpoint_name, file=document)
    return verbs.create(document)


class OnlineEndpointOperations(Operations):
    group = "online_endpoints"
    azure_class = azure_operations.OnlineEndpointOperations

    def begin_create_or_update(self, endpoint, *, local=False):
        """Create the endpoint (its router starts on 127.0.0.1), or, for one that exists, apply its traffic and
        mirror traffic: how SDK users move traffic (endpoint.traffic = {...}; begin_create_or_update)."""
        with errors.as_azure(ONLINE):
            if endpoint.name in {e["name"] for e in online_endpoint.list_endpoints()}:
                shown = online_endpoint.show(endpoint.name)
            else:
                shown = online_endpoint.create(documents.write(endpoint, "online-endpoint"))
            if endpoint.traffic or endpoint.mirror_traffic:
                shown = online_endpoint.update(
                    endpoint.name,
                    traffic=_traffic_text(endpoint.traffic) if endpoint.traffic else None,
                    mirror_traffic=_traffic_text(endpoint.mirror_traffic) if endpoint.mirror_traffic else None,
                )
        return done(_online_endpoint_entity(shown))

    def get(self, name: str, *, local=False):
        with errors.as_azure(ONLINE):
            return _online_endpoint_entity(online_endpoint.show(name))

    def list(self, *, local=False):
        with errors.as_azure(ONLINE):
            return [_online_endpoint_entity(item) for item in online_endpoint.list_endpoints()]

    def get_keys(self, name: str):
        with errors.as_azure(ONLINE):
            keys = online_endpoint.get_credentials(name)
        return EndpointAuthKeys(primary_key=keys["primaryKey"], secondary_key=keys["secondaryKey"])

    def begin_regenerate_keys(self, name: str, *, key_type="primary"):
        with errors.as_azure(ONLINE):
            online_endpoint.regenerate_keys(name, key_type=key_type)
        return done()

    def invoke(
        self,
        endpoint_name: str,
        *,
        request_file=None,
        deployment_name=None,
        input_data=None,
        params_override=None,
        local=False,
        **kwargs,
    ) -> str:
        """The response body as text, as azure-ai-ml returns it; a refused request is HttpResponseError."""
        if input_data is not None:
            raise errors.validation_error("input_data is for batch endpoints; give request_file", ONLINE)
        if request_file is None:
            raise errors.validation_error("invoke: give request_file, the JSON file to send", ONLINE)
        with errors.as_azure(ONLINE, http=True):
            return online_endpoint.invoke(endpoint_name, request_file, deployment_name=deployment_name)

    def begin_delete(self, name=None, *, local=False):
        with errors.as_azure(ONLINE):
            online_endpoint.delete(name)
        return done()


class OnlineDeploymentOperations(Operations):
    group = "online_deployments"
    azure_class = azure_operations.OnlineDeploymentOperations

    def begin_create_or_update(
        self,
        deployment,
        *,
        local=False,
        vscode_debug=False,
        skip_script_validation=False,
        local_enable_gpu=False,
        **kwargs,
    ):
        """The deployment's servers start and answer before this returns; one that exists is updated in place
        (a new revision behind the router, as `online-deployment update`)."""
        with errors.as_azure(ONLINE):
            shown = _create_or_update(online_deployment, deployment, "online-deployment")
        return done(_deployment_entity(load_online_deployment, shown))

    def get(self, name: str, endpoint_name: str, *, local=False):
        with errors.as_azure(ONLINE):
            return _deployment_entity(load_online_deployment, online_deployment.show(endpoint_name, name))

    def list(self, endpoint_name: str, *, local=False):
        with errors.as_azure(ONLINE):
            listed = online_deployment.list_deployments(endpoint_name)
        return [_deployment_entity(load_online_deployment, item) for item in listed]

    def get_logs(self, name: str, endpoint_name: str, lines: int, *, container_type=None, local=False) -> str:
        with errors.as_azure(ONLINE):
            return online_deployment.get_logs(endpoint_name, name, lines=lines, container=container_type)

    def begin_delete(self, name: str, endpoint_name: str, *, local=False):
        with errors.as_azure(ONLINE):
            online_deployment.delete(endpoint_name, name)
        return done()


def _batch_job(shown: dict) -> BatchJob:
    """What azure-ai-ml returns for a batch scoring job (entities/_deployment/batch_job.py): id, name, type,
    status; jobs.get(name) gives the whole job."""
    return BatchJob(id=shown.get("id"), name=shown["name"], type=shown.get("type"), status=shown.get("status"))


class BatchEndpointOperations(Operations):
    group = "batch_endpoints"
    azure_class = azure_operations.BatchEndpointOperations

    def begin_create_or_update(self, endpoint):
        with errors.as_azure(BATCH):
            if endpoint.name in {e["name"] for e in batch_endpoint.list_endpoints()}:
                changed = {"description": endpoint.description, "tags": endpoint.tags or {}}
                if endpoint.defaults and endpoint.defaults.deployment_name:
                    changed["defaults"] = {"deployment_name": endpoint.defaults.deployment_name}
                shown = batch_endpoint.update(endpoint.name, changed)
            else:
                shown = batch_endpoint.create(documents.write(endpoint, "batch-endpoint"))
        return done(documents.from_shown(load_batch_endpoint, shown))

    def get(self, name: str):
        with errors.as_azure(BATCH):
            return documents.from_shown(load_batch_endpoint, batch_endpoint.show(name))

    def list(self):
        with errors.as_azure(BATCH):
            return [documents.from_shown(load_batch_endpoint, item) for item in batch_endpoint.list_endpoints()]

    def begin_delete(self, name: str):
        with errors.as_azure(BATCH):
            batch_endpoint.delete(name)
        return done()

    def invoke(self, endpoint_name: str, *, deployment_name=None, inputs=None, **kwargs) -> BatchJob:
        """One input (inputs={"<name>": Input(type="uri_folder", path=...)}, or input=Input(...) as older
        azure-ai-ml took it) scored by the deployment as a job; returns at once, as on Azure (jobs.stream follows
        it)."""
        given = list((inputs or {}).values()) + ([kwargs["input"]] if kwargs.get("input") is not None else [])
        if len(given) != 1:
            raise errors.validation_error("invoke: give one input, inputs={'input': Input(path=...)}", BATCH)
        with errors.as_azure(BATCH):
            shown = scoring.invoke(
                endpoint_name,
                input=documents.local_path(given[0].path),
                input_type=given[0].type,
                deployment_name=deployment_name,
                job_name=kwargs.get("job_name"),
            )
        return _batch_job(shown)

    def list_jobs(self, endpoint_name: str):
        with errors.as_azure(BATCH):
            return [_batch_job(item) for item in batch_endpoint.list_jobs(endpoint_name)]


class BatchDeploymentOperations(Operations):
    group = "batch_deployments"
    azure_class = azure_operations.BatchDeploymentOperations

    def begin_create_or_update(self, deployment, *, skip_script_validation=False, **kwargs):
        with errors.as_azure(BATCH):
            shown = _create_or_update(batch_deployment, deployment, "batch-deployment")
        return done(_deployment_entity(load_batch_deployment, shown))

    def get(self, name: str, endpoint_name: str):
        with errors.as_azure(BATCH):
            return _deployment_entity(load_batch_deployment, batch_deployment.show(endpoint_name, name))

    def list(self, endpoint_name: str):
        with errors.as_azure(BATCH):
            listed = batch_deployment.list_deployments(endpoint_name)
        return [_deployment_entity(load_batch_deployment, item) for item in listed]

    def begin_delete(self, name: str, endpoint_name: str):
        with errors.as_azure(BATCH):
            batch_deployment.delete(endpoint_name, name)
        return done()

    def list_jobs(self, endpoint_name: str, *, name=None):
        with errors.as_azure(BATCH):
            return [_batch_job(item) for item in batch_deployment.list_jobs(endpoint_name, name)]
