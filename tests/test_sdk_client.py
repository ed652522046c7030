"""aml_local.sdk.MLClient: azure-ai-ml's client shape over aml-local (no training, no servers; the tutorial's whole
flow, sweep and endpoint included, is tests/test_sdk_notebook.py). Each call takes and returns azure-ai-ml's own
entities, fails with azure-ai-ml's exception types, and refuses what it lacks in one line."""

import json
import textwrap

import azure.ai.ml
import nbformat
import pytest
from azure.ai.ml import Input, Output, command, load_component
from azure.ai.ml.dsl import pipeline
from azure.ai.ml.entities import AmlCompute, CommandComponent, Data, Environment, Model
from azure.ai.ml.exceptions import JobException, ValidationException
from azure.core.exceptions import ResourceNotFoundError
from azure.core.polling import LROPoller

from aml_local import store
from aml_local.sdk import MLClient
from aml_local.sdk.errors import NotAvailableLocally

NOTEBOOK = store.REPO_ROOT / "notebooks" / "mnist-sdk.ipynb"


@pytest.fixture
def ml_client(home):
    return MLClient.local()


@pytest.fixture
def sdk_project(tmp_path, project_environments, monkeypatch):
    """A folder with a pyproject.toml and the tiny environment, as the current folder (entities resolve their local
    paths from it, as azure-ai-ml's do)."""
    root = tmp_path / "project"
    (root / "src").mkdir(parents=True)
    (root / "pyproject.toml").write_text("[project]\nname = 'sdk-test'\n")
    project_environments(root)
    (root / "src" / "hello.py").write_text("import sys\nprint('hello', *sys.argv[1:])\n")
    (root / "data").mkdir()
    (root / "data" / "numbers.csv").write_text("a,b\n1,2\n")
    monkeypatch.chdir(root)
    return root


def cell_source(tag: str) -> str:
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    (cell,) = [c for c in notebook.cells if tag in c.metadata.get("tags", [])]
    return cell.source


# ---------------------------------------------------------------------------------------------------------------
# Construction: as azure.ai.ml's, and the notebook's one backend cell


def test_the_notebooks_azure_cell_constructs_azure_ai_mls_own_client(monkeypatch):
    monkeypatch.setenv("AML_BACKEND", "azure")
    namespace = {}
    exec(cell_source("parameters"), namespace)
    exec(cell_source("connect"), namespace)  # constructs only: azure-ai-ml contacts nothing until a call
    client = namespace["ml_client"]
    assert type(client) is azure.ai.ml.MLClient
    assert (client.subscription_id, client.resource_group_name, client.workspace_name) == (
        "<SUBSCRIPTION_ID>",
        "<RESOURCE_GROUP>",
        "<AML_WORKSPACE_NAME>",
    )


def test_the_notebooks_local_cell_constructs_aml_locals_client_with_the_same_arguments(home, monkeypatch):
    monkeypatch.setenv("AML_BACKEND", "local")
    namespace = {}
    exec(cell_source("parameters"), namespace)
    exec(cell_source("connect"), namespace)
    client = namespace["ml_client"]
    assert type(client) is MLClient
    assert client.workspace_name == "<AML_WORKSPACE_NAME>"
    assert client.home == home


def test_the_notebook_is_kept_without_outputs():
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(notebook)
    code = [c for c in notebook.cells if c.cell_type == "code"]
    assert [(c.outputs, c.execution_count) for c in code] == [([], None)] * len(code)


def test_from_config_reads_the_workspace_as_azure_ai_ml_finds_it(tmp_path, tmp_path_factory, home):
    (tmp_path / ".azureml").mkdir()
    config = {"subscription_id": "sub", "resource_group": "rg", "workspace_name": "ws"}
    (tmp_path / ".azureml" / "config.json").write_text(json.dumps(config))
    (tmp_path / "deeper" / "folder").mkdir(parents=True)
    client = MLClient.from_config(path=tmp_path / "deeper" / "folder")
    assert (client.subscription_id, client.resource_group_name, client.workspace_name) == ("sub", "rg", "ws")
    with pytest.raises(ValidationException, match=r"We could not find config\.json in"):
        MLClient.from_config(path=tmp_path_factory.mktemp("no-config"))


def test_what_the_client_lacks_fails_in_one_line_naming_it_and_what_to_use(ml_client):
    with pytest.raises(NotAvailableLocally) as raised:
        ml_client.jobs.validate(None)
    assert str(raised.value).startswith("ml_client.jobs.validate is not available locally (aml-local); ")
    assert "create_or_update validates" in str(raised.value)
    with pytest.raises(NotAvailableLocally, match=r"^ml_client\.workspaces is not available locally .*jobs, models"):
        ml_client.workspaces.get("ws")
    with pytest.raises(NotAvailableLocally, match=r"models.download .* models.get\(name, version\).path"):
        ml_client.models.download("m", "1")
    # A name azure-ai-ml has not either: an AttributeError, as azure-ai-ml's client raises.
    with pytest.raises(AttributeError):
        ml_client.jobz  # noqa: B018
    with pytest.raises(AttributeError):
        ml_client.jobs.creat_or_update  # noqa: B018


def test_a_registry_is_refused_in_one_line(home):
    with pytest.raises(ValidationException, match="registry_name 'azureml': registries are Azure's"):
        MLClient(None, registry_name="azureml")


# ---------------------------------------------------------------------------------------------------------------
# Assets and compute


def test_data_and_models_round_trip_as_azure_ai_ml_entities(ml_client, sdk_project):
    data = ml_client.data.create_or_update(Data(name="numbers", version="1", path="./data", type="uri_folder"))
    assert isinstance(data, Data)
    assert (data.name, data.version, str(data.path), data.id) == (
        "numbers",
        "1",
        str(sdk_project / "data"),  # made absolute from the current folder, as azure-ai-ml resolves a local path
        "azureml:/local/data/numbers/versions/1",
    )
    assert data.creation_context.created_at.year >= 2024
    assert str(ml_client.data.get("numbers", version="1").path) == str(sdk_project / "data")
    assert [(d.name, d.latest_version) for d in ml_client.data.list()] == [("numbers", "1")]

    model = ml_client.create_or_update(Model(name="my-model", path="data", type="custom_model", description="d"))
    assert isinstance(model, Model)
    assert (model.version, model.description, model.type) == ("1", "d", "custom_model")
    assert (store.home() / "models" / "my-model" / "1" / "data" / "numbers.csv").is_file()
    again = ml_client.models.create_or_update(Model(name="my-model", path="data", type="custom_model"))
    assert again.version == "2"
    assert [m.version for m in ml_client.models.list("my-model")] == ["2", "1"]
    assert ml_client.models.get("my-model", label="latest").version == "2"

    ml_client.models.archive("my-model", version="2")
    assert [m.version for m in ml_client.models.list("my-model")] == ["1"]
    ml_client.models.restore("my-model", version="2")
    assert [m.version for m in ml_client.models.list("my-model")] == ["2", "1"]


def test_gets_fail_as_azure_ai_ml_fails_them(ml_client):
    with pytest.raises(ResourceNotFoundError, match="nope"):
        ml_client.models.get("nope", version="1")
    with pytest.raises(ResourceNotFoundError):
        ml_client.jobs.get("no_such_job")
    with pytest.raises(ResourceNotFoundError):
        ml_client.compute.get("no-such-cluster")
    with pytest.raises(ResourceNotFoundError):
        ml_client.online_endpoints.get("no-such-endpoint")
    # azure-ai-ml's own checks before any call (operations/_model_operations.py get).
    with pytest.raises(ValidationException, match="Must provide either version or label"):
        ml_client.models.get("nope")


def test_a_model_path_that_does_not_exist_is_a_validation_error_naming_it(ml_client, sdk_project):
    with pytest.raises(ValidationException, match=r"path .*missing-folder.* does not exist"):
        ml_client.models.create_or_update(Model(name="m", path="missing-folder"))


def test_environments_and_components_register_and_come_back(ml_client, sdk_project):
    environment = ml_client.environments.create_or_update(
        Environment(name="tiny-env", image="python:3.11-slim", conda_file="environments/tiny-env.conda.yaml")
    )
    assert isinstance(environment, Environment)
    assert (environment.name, environment.version, environment.image) == ("tiny-env", "1", "python:3.11-slim")
    assert environment.conda_file["dependencies"][1]["pip"] == ["mlflow"]

    (sdk_project / "say_hello.yml").write_text(
        textwrap.dedent(
            """\
            $schema: https://azuremlschemas.azureedge.net/latest/commandComponent.schema.json
            name: say_hello
            version: "1"
            type: command
            inputs:
              who: {type: string}
            code: ./src
            environment: azureml:tiny-env:1
            command: python hello.py ${{inputs.who}}
            """
        )
    )
    component = load_component("say_hello.yml")
    created = ml_client.components.create_or_update(component)
    assert isinstance(created, CommandComponent)
    assert (created.name, created.version, created.command) == ("say_hello", "1", "python hello.py ${{inputs.who}}")
    assert [c.name for c in ml_client.components.list()] == ["say_hello"]


def test_compute_create_get_list_delete_with_pollers(ml_client):
    poller = ml_client.begin_create_or_update(
        AmlCompute(name="cpu-cluster", size="Standard_DS3_v2", min_instances=0, max_instances=2)
    )
    assert isinstance(poller, LROPoller) and poller.done() and poller.status() == "succeeded"
    cluster = poller.result()
    assert (cluster.name, cluster.size, cluster.max_instances, cluster.provisioning_state) == (
        "cpu-cluster",
        "Standard_DS3_v2",
        2,
        "Succeeded",
    )
    # create_or_update of an existing compute changes its scale settings, as on Azure.
    updated = ml_client.compute.begin_create_or_update(
        AmlCompute(name="cpu-cluster", size="Standard_DS3_v2", min_instances=0, max_instances=4)
    ).result()
    assert updated.max_instances == 4
    assert [c.name for c in ml_client.compute.list()] == ["cpu-cluster"]
    assert ml_client.compute.begin_delete("cpu-cluster").result() is None
    with pytest.raises(ResourceNotFoundError):
        ml_client.compute.get("cpu-cluster")


# ---------------------------------------------------------------------------------------------------------------
# Jobs (tiny commands in the tiny environment: no training)


def test_a_command_node_runs_as_its_job_streams_and_comes_back(ml_client, sdk_project, capsys, tmp_path):
    job = command(
        inputs={"who": "world", "folder": Input(type="uri_folder", path="./data")},
        code="./src",
        command="python hello.py ${{inputs.who}} && cp ${{inputs.folder}}/numbers.csv ./outputs/",
        environment="azureml:tiny-env@latest",
        compute="cpu-cluster",
        experiment_name="sdk-tests",
        display_name="say-hello",
    )
    returned = ml_client.jobs.create_or_update(job, tags={"from": "sdk"})
    assert returned.status in ("Starting", "Preparing", "Running", "Completed")
    assert returned.studio_url.startswith("http://127.0.0.1")
    ml_client.jobs.stream(returned.name)
    out = capsys.readouterr().out
    assert f"RunId: {returned.name}" in out and "hello world" in out and "Status: Completed" in out

    got = ml_client.jobs.get(returned.name)
    assert type(got).__name__ == "Command"  # what azure-ai-ml's jobs.get returns for a command job
    assert (got.status, got.display_name, got.experiment_name, got.tags) == (
        "Completed",
        "say-hello",
        "sdk-tests",
        {"from": "sdk"},
    )
    assert got._to_dict()["inputs"]["who"] == "world"
    assert got.properties["mlflow.runId"]
    assert [j.name for j in ml_client.jobs.list()] == [returned.name]

    ml_client.jobs.download(returned.name, download_path=tmp_path / "down", all=True)
    assert (tmp_path / "down" / "artifacts" / "outputs" / "numbers.csv").read_text() == "a,b\n1,2\n"
    with pytest.raises(ValidationException, match="has already ended"):
        ml_client.jobs.begin_cancel(returned.name)


def test_a_failing_job_raises_job_exception_when_streamed(ml_client, sdk_project):
    job = command(command="echo about to fail && exit 3", environment="azureml:tiny-env@latest", compute="local")
    returned = ml_client.create_or_update(job)
    with pytest.raises(JobException, match="exited with code 3"):
        ml_client.jobs.stream(returned.name)
    assert ml_client.jobs.get(returned.name).status == "Failed"


def test_a_job_the_cli_schema_refuses_is_refused_with_its_field(ml_client, sdk_project):
    job = command(command="python hello.py", code="./src", environment="azureml:no-such-env@latest")
    with pytest.raises(ValidationException, match="no-such-env"):
        ml_client.jobs.create_or_update(job)
    assert ml_client.jobs.list() == []


def test_a_pipeline_built_with_the_dsl_runs_its_nodes_in_order(ml_client, sdk_project, capsys):
    make = command(
        name="make_file",
        command="echo made > ${{outputs.out}}/made.txt",
        outputs={"out": Output(type="uri_folder")},
        environment="azureml:tiny-env@latest",
    )
    read = command(
        name="read_file",
        command="cat ${{inputs.made}}/made.txt",
        inputs={"made": Input(type="uri_folder")},
        environment="azureml:tiny-env@latest",
    )

    @pipeline(compute="cpu-cluster", description="two steps, the second reads the first's output")
    def two_steps():
        first = make()
        read(made=first.outputs.out)  # a binding, ${{parent.jobs.first.outputs.out}}, kept as one in the YAML

    returned = ml_client.jobs.create_or_update(two_steps(), experiment_name="sdk-dsl")
    ml_client.jobs.stream(returned.name)
    assert "Status: Completed" in capsys.readouterr().out
    got = ml_client.jobs.get(returned.name)
    assert (type(got).__name__, got.status) == ("PipelineJob", "Completed")
    children = ml_client.jobs.list(parent_job_name=returned.name)
    assert sorted(c.display_name for c in children) == ["first", "read_file"]
    assert {c.status for c in children} == {"Completed"}
