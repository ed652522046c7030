"""MLClient's operation groups for jobs and assets, with azure-ai-ml's method names and signatures
(azure/ai/ml/operations/_job_operations.py, _model_operations.py, _data_operations.py, _environment_operations.py,
_component_operations.py, _compute_operations.py), over the same verbs as `aml-local job|model|data|...`."""

import sys
from typing import ClassVar

from azure.ai.ml import load_component, load_compute, load_data, load_environment, load_model
from azure.ai.ml import operations as azure_operations
from azure.ai.ml.constants import ListViewType
from azure.ai.ml.entities import Component, Data, Environment, Model
from azure.ai.ml.entities._builders import BaseNode
from azure.ai.ml.entities._job.base_job import _BaseJob
from azure.ai.ml.exceptions import ErrorTarget
from azure.core.polling import LROPoller, NoPolling

from aml_local import AmlLocalError, job_records
from aml_local.assets import component, compute, data, environment, model
from aml_local.jobs import common
from aml_local.jobs import verbs as job_verbs
from aml_local.sdk import documents, errors


def done(result=None) -> LROPoller:
    """An azure.core LROPoller that is already done: the local verbs finish within the call (a deployment returns
    when its servers answer), so .result(), .wait(), .done() and .status() behave as on a finished operation."""
    return LROPoller(None, result, lambda initial: initial, NoPolling())


def view(list_view_type) -> dict:
    """azure-ai-ml's ListViewType as the verbs' include_archived / archived_only."""
    return {
        "include_archived": list_view_type == ListViewType.ALL,
        "archived_only": list_view_type == ListViewType.ARCHIVED_ONLY,
    }


class Operations:
    """What every group shares: an azure-ai-ml method it lacks fails with one line naming it and what this group
    has, rather than an AttributeError (a name azure-ai-ml lacks too is an AttributeError, as there)."""

    group = ""
    azure_class = object
    instead: ClassVar[dict[str, str]] = {}

    def __getattr__(self, name):
        if name.startswith("_") or not hasattr(self.azure_class, name):
            raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")
        have = ", ".join(sorted(n for n in dir(type(self)) if not n.startswith("_") and n not in ("group", "instead")))
        hint = self.instead.get(name, f"the {self.group} methods here are {have}")
        raise errors.NotAvailableLocally(
            f"ml_client.{self.group}.{name} is not available locally (aml-local); {hint}, or use azure.ai.ml's "
            "MLClient with a workspace"
        )


class JobOperations(Operations):
    group = "jobs"
    azure_class = azure_operations.JobOperations
    instead: ClassVar[dict[str, str]] = {
        "validate": "create_or_update validates a job with the CLI's own schema before it runs",
        "show_services": "jobs.get(name).services has them",
        "begin_delete": "jobs.archive hides a job; its folder stays under AML_LOCAL_HOME/jobs",
    }

    def create_or_update(
        self, job, *, description=None, compute=None, tags=None, experiment_name=None, skip_validation=False, **kwargs
    ):
        """A job entity, or a command()/sweep() node (submitted as its job, as azure-ai-ml does), starts here as
        `aml-local job create` would start its YAML; the job is returned as jobs.get returns it."""
        if isinstance(job, BaseNode):
            job = job._to_job()
        for field, value in (
            ("description", description),
            ("compute", compute),
            ("tags", tags),
            ("experiment_name", experiment_name),
        ):
            if value is not None:
                setattr(job, field, value)
        with errors.as_azure(ErrorTarget.JOB):
            shown = job_verbs.create(documents.write(job, "job"))
        return self.get(shown["name"])

    def get(self, name: str):
        with errors.as_azure(ErrorTarget.JOB):
            shown = job_verbs.show(name)
        return job_entity(shown)

    def list(self, *, parent_job_name=None, list_view_type=ListViewType.ACTIVE_ONLY, **kwargs):
        with errors.as_azure(ErrorTarget.JOB):
            shown = job_verbs.list_jobs(parent_job_name=parent_job_name, max_results=None, **view(list_view_type))
        return [job_entity(item) for item in shown]

    def stream(self, name: str) -> None:
        """The job's log until it ends, on stdout; a job that ends failed raises JobException, as azure-ai-ml's
        stream does (_job_ops_helper.stream_logs_until_completion, raise_exception_on_failed_job)."""
        with errors.as_azure(ErrorTarget.JOB):
            shown = job_verbs.stream(name, echo=sys.stdout)
        if shown["status"] == "Failed":
            message = shown["properties"].get("aml_local.status_message") or "the job failed; see its logs"
            raise errors.job_failed(f"Exception : \n {message} ")

    def begin_cancel(self, name: str, **kwargs) -> LROPoller:
        with errors.as_azure(ErrorTarget.JOB):
            job_verbs.cancel(name)
        return done()

    def download(self, name: str, *, download_path=".", output_name=None, all=False) -> None:
        with errors.as_azure(ErrorTarget.JOB):
            job_verbs.download(name, output_name=output_name, download_path=str(download_path), all_outputs=all)

    def archive(self, name: str) -> None:
        with errors.as_azure(ErrorTarget.JOB):
            job_verbs.set_archived(name, True, "archive")

    def restore(self, name: str) -> None:
        with errors.as_azure(ErrorTarget.JOB):
            job_verbs.set_archived(name, False, "restore")


def job_entity(shown: dict):
    """A job as azure-ai-ml's jobs.get returns it: loaded by load_job from the YAML it was created from (its --set
    applied), with what the service adds (name, status, id, services, properties such as a sweep's
    best_child_run_id). A child (a pipeline's node, a sweep's trial: its YAML is its parent's) is a _BaseJob, as
    azure-ai-ml makes one from run history (entities/_job/base_job.py); so is a job whose YAML has since been
    removed, or that has none (a batch endpoint's scoring job)."""
    spec = job_records.read_spec(shown["name"])
    try:
        if "type" not in shown or spec.get("parent_job_name") or not spec.get("file"):
            raise AmlLocalError("no YAML of its own")
        entity = common.load(spec["file"], spec.get("set_pairs") or ())
    except AmlLocalError:
        entity = _BaseJob(
            name=shown["name"],
            **{k: shown.get(k) for k in ("display_name", "description", "tags", "experiment_name", "compute")},
        )
    for field in ("name", "display_name", "experiment_name", "description", "tags", "compute"):
        if shown.get(field) is not None:
            setattr(entity, field, shown[field])
    return documents.set_read_only(entity, shown)


class _AssetOperations(Operations):
    """models, data, environments, components: create_or_update, get, list, archive, restore."""

    module = None
    loader = None
    entity_class = None
    lister = None  # the verb that lists: (name, include_archived=, archived_only=) -> shown dicts

    def _create(self, entity, **kwargs) -> dict:
        return self.module.create(documents.write(entity, self.group), **kwargs)

    def create_or_update(self, entity):
        with errors.as_azure(ErrorTarget.ASSET):
            shown = self._create(entity)
        return self._entity(shown)

    def get(self, name: str, version=None, label=None):
        if version and label:
            raise errors.validation_error("Cannot specify both version and label.", ErrorTarget.ASSET)
        if not (version or label):
            raise errors.validation_error("Must provide either version or label.", ErrorTarget.ASSET)
        with errors.as_azure(ErrorTarget.ASSET):
            return self._entity(self.module.show(name, version=version and str(version), label=label))

    def list(self, name=None, *, list_view_type=ListViewType.ACTIVE_ONLY):
        with errors.as_azure(ErrorTarget.ASSET):
            return [self._entity(item) for item in self.lister(name, **view(list_view_type))]

    def archive(self, name: str, version=None, label=None, **kwargs) -> None:
        with errors.as_azure(ErrorTarget.ASSET):
            self.module.archive(name, version=version and str(version), label=label)

    def restore(self, name: str, version=None, label=None, **kwargs) -> None:
        with errors.as_azure(ErrorTarget.ASSET):
            self.module.restore(name, version=version and str(version), label=label)

    def _entity(self, shown: dict):
        if "latest_version" in shown:
            # A listing without a name: one row per asset (its container), as azure-ai-ml builds them
            # (_from_container_rest_object: the name and latest version).
            entity = self.entity_class(name=shown["name"])
            entity.latest_version = shown["latest_version"]
            return documents.set_read_only(entity, shown)
        return documents.from_shown(self.loader, shown)


class ModelOperations(_AssetOperations):
    group = "models"
    azure_class = azure_operations.ModelOperations
    module = model
    loader = staticmethod(load_model)
    entity_class = Model
    instead: ClassVar[dict[str, str]] = {"download": "a registered model's files are at models.get(name, version).path"}

    def create_or_update(self, model):  # azure-ai-ml's parameter name, for callers that pass it by keyword
        return super().create_or_update(model)

    def list(self, name=None, stage=None, *, list_view_type=ListViewType.ACTIVE_ONLY):
        with errors.as_azure(ErrorTarget.MODEL):
            listed = model.list_models(name, stage=stage, **view(list_view_type))
        return [self._entity(item) for item in listed]

    def archive(self, name: str, version=None, label=None, **kwargs) -> None:
        with errors.as_azure(ErrorTarget.MODEL):
            model.set_archived(name, version and str(version), label, True)

    def restore(self, name: str, version=None, label=None, **kwargs) -> None:
        with errors.as_azure(ErrorTarget.MODEL):
            model.set_archived(name, version and str(version), label, False)


class DataOperations(_AssetOperations):
    group = "data"
    azure_class = azure_operations.DataOperations
    module = data
    loader = staticmethod(load_data)
    entity_class = Data
    lister = staticmethod(data.list_data)

    def create_or_update(self, data):  # azure-ai-ml's parameter name, for callers that pass it by keyword
        return super().create_or_update(data)


class EnvironmentOperations(_AssetOperations):
    group = "environments"
    azure_class = azure_operations.EnvironmentOperations
    module = environment
    loader = staticmethod(load_environment)
    entity_class = Environment
    lister = staticmethod(environment.list_environments)

    def create_or_update(self, environment):
        return super().create_or_update(environment)

    def _entity(self, shown: dict):
        # What `environment show` adds to the YAML's fields: the local build's notes (properties, as strings).
        return super()._entity({k: v for k, v in shown.items() if not (k == "build" and v is None)})


class ComponentOperations(_AssetOperations):
    group = "components"
    azure_class = azure_operations.ComponentOperations
    module = component
    loader = staticmethod(load_component)
    entity_class = Component
    lister = staticmethod(component.list_components)

    def create_or_update(self, component, version=None, *, skip_validation=False, **kwargs):
        with errors.as_azure(ErrorTarget.COMPONENT):
            shown = self._create(component, version=version and str(version))
        return self._entity(shown)


COMPUTE_UPDATABLE = ("max_instances", "min_instances", "idle_time_before_scale_down", "tags")


class ComputeOperations(Operations):
    group = "compute"
    azure_class = azure_operations.ComputeOperations

    def begin_create_or_update(self, compute_entity) -> LROPoller:
        """A compute is recorded here (this machine runs every job); creating one that exists updates its
        settings, as begin_create_or_update does on Azure."""
        with errors.as_azure(ErrorTarget.COMPUTE):
            if compute_entity.name in {c["name"] for c in compute.list_computes()}:
                # What `compute update` can change (the scale settings and tags); the rest is the compute's kind.
                settings = documents.document(compute_entity)
                shown = compute.update(compute_entity.name, {k: settings.get(k) for k in COMPUTE_UPDATABLE})
            else:
                shown = compute.create(documents.write(compute_entity, "compute"))
        return done(_compute_entity(shown))

    def get(self, name: str):
        with errors.as_azure(ErrorTarget.COMPUTE):
            return _compute_entity(compute.show(name))

    def list(self, *, compute_type=None):
        with errors.as_azure(ErrorTarget.COMPUTE):
            return [_compute_entity(item) for item in compute.list_computes(compute_type)]

    def begin_delete(self, name: str, *, action="Delete") -> LROPoller:
        with errors.as_azure(ErrorTarget.COMPUTE):
            compute.delete(name)
        return done()


def _compute_entity(shown: dict):
    fields = {k: v for k, v in shown.items() if k != "properties"}
    return documents.from_shown(load_compute, fields)
