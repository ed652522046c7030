"""Every Azure ML YAML in the repo loads with the azure-ai-ml loader that `az ml` uses for it."""

import pathlib
import re

import pytest
import yaml

from aml_local import AmlLocalError, specs

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
SPEC_FOLDERS = ("jobs", "components", "endpoints", "environments", "compute", "data")

# The $schema URL names the resource type; each maps to the SDK loader the CLI calls for it.
LOADERS = {
    "commandJob": "load_job",
    "sweepJob": "load_job",
    "pipelineJob": "load_job",
    "commandComponent": "load_component",
    "amlCompute": "load_compute",
    "environment": "load_environment",
    "data": "load_data",
    "model": "load_model",
    "managedOnlineEndpoint": "load_online_endpoint",
    "managedOnlineDeployment": "load_online_deployment",
    "batchEndpoint": "load_batch_endpoint",
    # `type: model` takes the model-deployment loader instead, as `az ml batch-deployment create` chooses
    # (ml_batch_deployment_create in the ml extension's custom/batch_deployment.py): see loader_for().
    "batchDeployment": "load_batch_deployment",
}


def loader_for(kind, document):
    """The SDK loader `az ml` uses for a YAML of this kind and content."""
    import azure.ai.ml
    from azure.ai.ml.entities._load_functions import load_model_batch_deployment

    if kind == "batchDeployment" and document.get("type") == "model":
        return load_model_batch_deployment
    return getattr(azure.ai.ml, LOADERS[kind])


def _spec_files():
    for folder in SPEC_FOLDERS:
        for path in sorted((REPO_ROOT / folder).rglob("*.y*ml")):
            if not path.name.endswith(".conda.yaml"):
                yield path


SPECS = list(_spec_files())


def test_there_are_specs_for_every_stage_of_issue_2():
    names = {p.relative_to(REPO_ROOT).as_posix() for p in SPECS}
    for expected in (
        "jobs/train.yml",
        "jobs/train-distributed.yml",
        "components/train.yml",
        "compute/cpu-cluster.yml",
        "compute/gpu-cluster.yml",
        "environments/train.yml",
        "environments/inference.yml",
        "data/mnist.yml",
    ):
        assert expected in names


@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.relative_to(REPO_ROOT).as_posix())
def test_spec_starts_with_schema_and_loads_with_the_sdk(path):
    first_line = path.read_text().splitlines()[0]
    assert first_line.startswith("$schema: https://azuremlschemas.azureedge.net/latest/"), first_line
    document = yaml.safe_load(path.read_text())
    schema = document["$schema"]
    kind = schema.rsplit("/", 1)[-1].removesuffix(".schema.json")
    assert kind in LOADERS, f"no loader known for schema {schema}"
    entity = loader_for(kind, document)(path)
    assert entity is not None
    assert yaml.safe_load(path.read_text()).get("description"), "each spec carries a short description"


def test_environments_point_at_conda_files_that_exist():
    from azure.ai.ml import load_environment

    for path in (REPO_ROOT / "environments").glob("*.yml"):
        env = load_environment(path)
        assert env.conda_file, f"{path.name} has no conda file"
        assert env.image, f"{path.name} has no base image"


def test_train_job_matches_the_component_and_train_py_arguments():
    from azure.ai.ml import load_component, load_job

    job = load_job(REPO_ROOT / "jobs/train.yml")
    component = load_component(REPO_ROOT / "components/train.yml")
    job_inputs = set(job.inputs)
    assert job_inputs <= set(component.inputs)
    assert set(job.outputs) == set(component.outputs) == {"model", "checkpoints"}
    assert component.outputs["model"].type == "mlflow_model"
    train_py = (REPO_ROOT / "src/train.py").read_text()
    for flag in (
        "--data-folder",
        "--batch-size",
        "--first-layer-neurons",
        "--second-layer-neurons",
        "--learning-rate",
        "--resume-from",
        "--epochs",
        "--seed",
        "--model-output",
        "--checkpoint-dir",
    ):
        assert f'"{flag}"' in train_py, f"src/train.py has no {flag} argument"
        if flag != "--resume-from":
            assert flag in job.command


def test_distributed_job_asks_for_two_tensorflow_workers():
    from azure.ai.ml import load_job

    job = load_job(REPO_ROOT / "jobs/train-distributed.yml")
    assert job.distribution.type == "tensorflow"
    assert job.distribution.worker_count == 2
    assert job.resources.instance_count == 2


def test_clusters_scale_to_zero():
    from azure.ai.ml import load_compute

    for path in (REPO_ROOT / "compute").glob("*.yml"):
        assert load_compute(path).min_instances == 0, path.name


SWEEP_WITH = """\
$schema: https://azuremlschemas.azureedge.net/latest/sweepJob.schema.json
type: sweep
trial:
  command: python train.py --lr ${{{{search_space.lr}}}}
  code: .
  environment: azureml:AzureML-sklearn-1.5@latest
{extra}
objective:
  primary_metric: acc
  goal: maximize
sampling_algorithm: random
limits:
  max_total_trials: 2
"""


@pytest.mark.parametrize(
    ("extra", "summary"),
    [
        # A distribution of a known type: only what is wrong within it, not every other distribution's complaints.
        (
            "search_space:\n  lr: {type: uniform, min_value: zero, max_value: 1}",
            # (once a pipeline has been loaded in the process, the SDK tries a ${{...}} binding first: left out)
            r"search_space\.lr\.min_value: Not a valid integer or Not a valid number\.",
        ),
        ("search_space:\n  lr: {type: randint}", r"search_space\.lr\.upper: Missing data for required field\."),
        # An unknown type: every type the field's schemas take, in one message.
        (
            "search_space:\n  lr: {type: gaussian, mu: 0, sigma: 1}",
            re.escape(
                "search_space.lr.type: Value 'gaussian' passed is not in set ['choice', 'uniform', 'loguniform', "
                "'quniform', 'qloguniform', 'normal', 'lognormal', 'qnormal', 'qlognormal', 'randint']"
            ),
        ),
        (
            "search_space:\n  lr: {type: choice, values: [0.1]}\ninputs:\n  x: {type: bogus, path: ./data}",
            re.escape(
                "inputs.x.type: Value 'bogus' passed is not in set ['uri_file', 'uri_folder', 'custom_model', "
                "'mlflow_model', 'triton_model', 'mltable']"
            ),
        ),
    ],
)
def test_a_union_fields_error_names_the_field_and_what_its_type_takes(tmp_path, extra, summary):
    spec = tmp_path / "sweep.yml"
    spec.write_text(SWEEP_WITH.format(extra=extra))
    with pytest.raises(AmlLocalError) as refused:
        specs.load("load_job", spec)
    assert re.fullmatch(f"{re.escape(str(spec))}: {summary}", str(refused.value)), str(refused.value)


PIPELINE_WITH = """\
$schema: https://azuremlschemas.azureedge.net/latest/pipelineJob.schema.json
type: pipeline
jobs:
  step:
    command: echo hi > ${{{{outputs.out}}}}/a.txt
    environment: azureml:AzureML-sklearn-1.5@latest
{extra}
"""


@pytest.mark.parametrize(
    ("extra", "summary"),
    [
        # A node is read with every node type's schema (the SDK joins their complaints as Python reprs): the
        # command's own complaint, not the other types' missing fields nor the output binding string tried first.
        (
            "    outputs:\n      out: {type: uri_folder, mode: ro_mount}",
            "jobs.step.outputs.out.mode: Value 'ro_mount' passed is not in set ['mount', 'upload', 'rw_mount', "
            "'direct']",
        ),
        ("    resources: {instance_count: many}", "jobs.step.resources.instance_count: Not a valid integer."),
    ],
)
def test_a_pipeline_nodes_error_is_the_one_its_own_type_finds(tmp_path, extra, summary):
    spec = tmp_path / "pipeline.yml"
    spec.write_text(PIPELINE_WITH.format(extra=extra))
    with pytest.raises(AmlLocalError) as refused:
        specs.load("load_job", spec)
    assert str(refused.value) == f"{spec}: {summary}"
