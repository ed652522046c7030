"""MLClient: azure-ai-ml's client (azure/ai/ml/_ml_client.py) over aml-local, for code written against the SDK.

Constructed as azure.ai.ml's is (a credential, subscription, resource group and workspace: recorded, nothing is
contacted), from a config.json (from_config), or with MLClient.local() for a store alone. Its operation groups take
and return azure-ai-ml's own entities; each entity goes through the same verbs as `aml-local <noun> create --file`
reading the YAML the entity's _to_dict() gives, so what the CLI refuses the client refuses, in one line."""

import os
from functools import singledispatchmethod
from pathlib import Path

import azure.ai.ml
from azure.ai.ml.entities import (
    BatchDeployment,
    BatchEndpoint,
    Component,
    Compute,
    Data,
    Environment,
    Job,
    Model,
    OnlineDeployment,
    OnlineEndpoint,
)

from aml_local import store
from aml_local.sdk import errors
from aml_local.sdk.endpoint_operations import (
    BatchDeploymentOperations,
    BatchEndpointOperations,
    OnlineDeploymentOperations,
    OnlineEndpointOperations,
)
from aml_local.sdk.operations import (
    ComponentOperations,
    ComputeOperations,
    DataOperations,
    EnvironmentOperations,
    JobOperations,
    ModelOperations,
)

# The workspace a client made with MLClient.local() says it is: no Azure workspace stands behind it.
LOCAL_WORKSPACE = "local"


class MLClient:
    """The operation groups of azure.ai.ml.MLClient that aml-local has: jobs, models, data, environments,
    components, compute, online_endpoints, online_deployments, batch_endpoints, batch_deployments; and
    create_or_update / begin_create_or_update for any entity they take."""

    def __init__(
        self,
        credential=None,
        subscription_id=None,
        resource_group_name=None,
        workspace_name=None,
        registry_name=None,
        *,
        home=None,
        **kwargs,
    ):
        """As azure.ai.ml.MLClient(credential, subscription_id, resource_group_name, workspace_name): the values
        are kept (the client's properties show them) and none is checked or contacted. `home`: the local store
        (AML_LOCAL_HOME, for this process); by default the one aml-local uses from this folder."""
        if registry_name:
            raise errors.validation_error(
                f"registry_name {registry_name!r}: registries are Azure's; aml-local's client serves one local "
                "store (assets from a registry, such as curated environments, are named in what uses them)"
            )
        if home is not None:
            os.environ["AML_LOCAL_HOME"] = str(Path(home).resolve())
        self._credential = credential
        self.subscription_id = subscription_id
        self.resource_group_name = resource_group_name
        self.workspace_name = workspace_name
        self.jobs = JobOperations()
        self.models = ModelOperations()
        self.data = DataOperations()
        self.environments = EnvironmentOperations()
        self.components = ComponentOperations()
        self.compute = ComputeOperations()
        self.online_endpoints = OnlineEndpointOperations()
        self.online_deployments = OnlineDeploymentOperations()
        self.batch_endpoints = BatchEndpointOperations()
        self.batch_deployments = BatchDeploymentOperations()

    @classmethod
    def local(cls, home=None) -> "MLClient":
        """A client of the local store alone: no credential or workspace to name."""
        return cls(None, workspace_name=LOCAL_WORKSPACE, home=home)

    @classmethod
    def from_config(cls, credential=None, *, path=None, file_name=None, **kwargs) -> "MLClient":
        """The workspace of a config.json, found as azure.ai.ml's from_config finds it (the same search of path,
        its .azureml/ and aml_config/ folders and their parents, and the same errors): it reads the file and
        contacts nothing."""
        azure_client = azure.ai.ml.MLClient.from_config(credential or _NoCredential(), path=path, file_name=file_name)
        return cls(
            credential,
            azure_client.subscription_id,
            azure_client.resource_group_name,
            azure_client.workspace_name,
            **kwargs,
        )

    @property
    def home(self) -> Path:
        """The local store this client reads and writes (AML_LOCAL_HOME)."""
        return store.home()

    def __getattr__(self, name):
        if name.startswith("_") or not hasattr(azure.ai.ml.MLClient, name):
            raise AttributeError(f"'MLClient' object has no attribute '{name}'")
        raise errors.NotAvailableLocally(
            f"ml_client.{name} is not available locally (aml-local); its groups are jobs, models, data, "
            "environments, components, compute, online_endpoints, online_deployments, batch_endpoints and "
            "batch_deployments, or use azure.ai.ml's MLClient with a workspace"
        )

    def __repr__(self) -> str:
        return (
            f"MLClient(aml-local store={store.home()}, subscription_id={self.subscription_id}, "
            f"resource_group_name={self.resource_group_name}, workspace_name={self.workspace_name})"
        )

    @singledispatchmethod
    def create_or_update(self, entity, **kwargs):
        """A job, model, data asset, environment or component, as azure.ai.ml's MLClient.create_or_update."""
        raise TypeError("Please refer to create_or_update docstring for valid input types.")

    @create_or_update.register
    def _(self, entity: Job, **kwargs):
        return self.jobs.create_or_update(entity, **kwargs)

    @create_or_update.register
    def _(self, entity: Model, **kwargs):
        return self.models.create_or_update(entity)

    @create_or_update.register
    def _(self, entity: Data, **kwargs):
        return self.data.create_or_update(entity)

    @create_or_update.register
    def _(self, entity: Environment, **kwargs):
        return self.environments.create_or_update(entity)

    @create_or_update.register
    def _(self, entity: Component, **kwargs):
        return self.components.create_or_update(entity, **kwargs)

    @singledispatchmethod
    def begin_create_or_update(self, entity, **kwargs):
        """A compute, online or batch endpoint or deployment, as azure.ai.ml's MLClient.begin_create_or_update:
        an LROPoller whose result() is the entity."""
        raise TypeError("Please refer to begin_create_or_update docstring for valid input types.")

    @begin_create_or_update.register
    def _(self, entity: Compute, **kwargs):
        return self.compute.begin_create_or_update(entity)

    @begin_create_or_update.register
    def _(self, entity: OnlineEndpoint, **kwargs):
        return self.online_endpoints.begin_create_or_update(entity, **kwargs)

    @begin_create_or_update.register
    def _(self, entity: OnlineDeployment, **kwargs):
        return self.online_deployments.begin_create_or_update(entity, **kwargs)

    @begin_create_or_update.register
    def _(self, entity: BatchEndpoint, **kwargs):
        return self.batch_endpoints.begin_create_or_update(entity)

    @begin_create_or_update.register
    def _(self, entity: BatchDeployment, **kwargs):
        return self.batch_deployments.begin_create_or_update(entity, **kwargs)


class _NoCredential:
    """azure.ai.ml.MLClient refuses a credential of None; reading a config file needs none."""

    def get_token(self, *scopes, **kwargs):
        raise errors.validation_error("aml-local's MLClient contacts no Azure service and asks for no token")
