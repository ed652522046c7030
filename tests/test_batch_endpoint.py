"""`aml-local batch-endpoint` and `batch-deployment` as az ml has them (azext_mlv2/manual/custom/batch_endpoint.py,
batch_deployment.py, _params/_batch_*_params.py): the YAML loaded by azure-ai-ml's loaders (`type: model` by
load_model_batch_deployment, settings at the top by load_batch_deployment), show printed as azure-ai-ml's
BatchEndpoint and BatchDeployment dump them, --set-default, the generic update of defaults.deployment_name, and az's
exit codes: 3 for a missing endpoint, deployment or model, 1 for other errors, each one ERROR line. Nothing here runs a
job (tests/test_parallel_job.py does)."""

import json
import textwrap
import warnings
from pathlib import Path

import pytest

from aml_local import cli

ENDPOINT = """\
$schema: https://azuremlschemas.azureedge.net/latest/batchEndpoint.schema.json
name: digits-batch
description: Scores folders of digits.
tags:
  type: deep-learning
"""

# The shape of azureml-examples' cli/endpoints/batch/deploy-models/mnist-classifier/deployment-torch/deployment.yml.
DEPLOYMENT = """\
$schema: https://azuremlschemas.azureedge.net/latest/modelBatchDeployment.schema.json
name: digits-dpl
endpoint_name: digits-batch
type: model
model: azureml:digits-model:1
code_configuration:
  code: code
  scoring_script: score.py
environment: azureml:tiny-env@latest
compute: azureml:batch-cluster
resources:
  instance_count: 2
settings:
  max_concurrency_per_instance: 2
  mini_batch_size: 5
  output_action: append_row
  output_file_name: scores.csv
  retry_settings:
    max_retries: 1
    timeout: 15
  error_threshold: 3
  logging_level: debug
"""

# The older shape: settings at the top level (batchDeployment schema), no type.
FLAT_DEPLOYMENT = """\
$schema: https://azuremlschemas.azureedge.net/latest/batchDeployment.schema.json
name: flat-dpl
endpoint_name: digits-batch
model:
  name: inline-model
  path: model
code_configuration:
  code: code
  scoring_script: score.py
environment: azureml:tiny-env@latest
mini_batch_size: 7
"""


def run_cli(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def ok(capsys, *argv):
    code, out, err = run_cli(capsys, *argv)
    assert code == 0, err
    return json.loads(out) if out.strip() else None


def fails(capsys, code, *argv) -> str:
    got, out, err = run_cli(capsys, *argv)
    assert (got, out) == (code, ""), err
    assert err.startswith("ERROR: ") and err.count("\n") == 1, err
    return err


@pytest.fixture
def batch_project(tmp_path, project_environments, home, capsys):
    root = tmp_path / "project"
    (root / "code").mkdir(parents=True)
    (root / "model").mkdir()
    (root / "pyproject.toml").write_text("[project]\nname = 'tiny'\n")
    project_environments(root)
    (root / "code" / "score.py").write_text("def init():\n    pass\n\n\ndef run(mini_batch):\n    return mini_batch\n")
    (root / "model" / "weights.txt").write_text("1\n")
    for name, text in (("endpoint.yml", ENDPOINT), ("deployment.yml", DEPLOYMENT), ("flat.yml", FLAT_DEPLOYMENT)):
        (root / name).write_text(text)
    ok(capsys, "model", "create", "-n", "digits-model", "-p", root / "model", "-o", "none")
    return root


def test_create_show_list_as_az_prints_them(batch_project, capsys):
    created = ok(capsys, "batch-endpoint", "create", "-f", batch_project / "endpoint.yml")
    assert {k: created[k] for k in ("name", "description", "tags", "auth_mode", "provisioning_state")} == {
        "name": "digits-batch",
        "description": "Scores folders of digits.",
        "tags": {"type": "deep-learning"},
        "auth_mode": "aad_token",
        "provisioning_state": "Succeeded",
    }
    assert "defaults" not in created  # no default deployment until one is set
    shown = ok(capsys, "batch-deployment", "create", "-f", batch_project / "deployment.yml", "--set-default")
    assert {k: shown[k] for k in ("name", "endpoint_name", "model", "compute", "resources", "retry_settings")} == {
        "name": "digits-dpl",
        "endpoint_name": "digits-batch",
        "model": "azureml:/local/models/digits-model/versions/1",
        "compute": "azureml:batch-cluster",
        "resources": {"instance_count": 2},
        "retry_settings": {"max_retries": 1, "timeout": 15},
    }
    assert (shown["mini_batch_size"], shown["max_concurrency_per_instance"], shown["output_file_name"]) == (
        5,
        2,
        "scores.csv",
    )
    assert (shown["error_threshold"], shown["logging_level"], shown["output_action"]) == (3, "debug", "append_row")
    # The code as created: a copy, which later edits do not change.
    deployment_dir = Path(shown["properties"]["aml_local.deployment_dir"])
    (batch_project / "code" / "score.py").write_text("raise SystemExit('edited')\n")
    assert "def run(mini_batch)" in (deployment_dir / "code" / "code" / "score.py").read_text()
    assert ok(capsys, "batch-endpoint", "show", "-n", "digits-batch", "--query", "defaults") == {
        "deployment_name": "digits-dpl"
    }
    assert ok(capsys, "batch-endpoint", "list", "--query", "[].name") == ["digits-batch"]
    assert ok(capsys, "batch-deployment", "list", "-e", "digits-batch", "--query", "[].name") == ["digits-dpl"]
    assert ok(capsys, "batch-endpoint", "list-jobs", "-n", "digits-batch") == []


def test_settings_at_the_top_and_an_inline_model_load_as_az_loads_them(batch_project, capsys):
    ok(capsys, "batch-endpoint", "create", "-f", batch_project / "endpoint.yml", "-o", "none")
    shown = ok(capsys, "batch-deployment", "create", "-f", batch_project / "flat.yml")
    # azure-ai-ml's defaults for what the YAML leaves out (BatchDeployment's docstring; retry: "Troubleshoot batch
    # endpoints", max_retries 3 and timeout 30).
    assert (shown["mini_batch_size"], shown["max_concurrency_per_instance"], shown["output_file_name"]) == (
        7,
        1,
        "predictions.csv",
    )
    assert shown["retry_settings"] == {"max_retries": 3, "timeout": 30} and shown["error_threshold"] == -1
    assert shown["model"] == "azureml:/local/models/inline-model/versions/1"


def test_update_sets_the_default_deployment_as_azs_generic_update(batch_project, capsys):
    ok(capsys, "batch-endpoint", "create", "-f", batch_project / "endpoint.yml", "-o", "none")
    ok(capsys, "batch-deployment", "create", "-f", batch_project / "deployment.yml", "-o", "none")
    updated = ok(
        capsys, "batch-endpoint", "update", "-n", "digits-batch", "--set", "defaults.deployment_name=digits-dpl"
    )
    assert updated["defaults"] == {"deployment_name": "digits-dpl"}
    err = fails(capsys, 1, "batch-endpoint", "update", "-n", "digits-batch", "--set", "defaults.deployment_name=nope")
    assert "defaults.deployment_name nope: endpoint digits-batch has no such deployment" in err
    err = fails(capsys, 1, "batch-endpoint", "update", "-n", "digits-batch", "--set", "auth_mode=key")
    assert "auth_mode cannot change here" in err
    # A deployment update is the deployment made again, with --set as YAML overrides.
    shown = ok(
        capsys,
        "batch-deployment",
        "update",
        "-n",
        "digits-dpl",
        "-e",
        "digits-batch",
        "--set",
        "settings.mini_batch_size=9",
    )
    assert shown["mini_batch_size"] == 9 and shown["output_file_name"] == "scores.csv"
    # With --file alone, the YAML names the deployment and its endpoint.
    shown = ok(
        capsys,
        "batch-deployment",
        "update",
        "-f",
        batch_project / "deployment.yml",
        "--set",
        "settings.mini_batch_size=4",
    )
    assert (shown["name"], shown["endpoint_name"], shown["mini_batch_size"]) == ("digits-dpl", "digits-batch", 4)


# (command line, exit code, what its one ERROR line says), all against one endpoint with one deployment, no default.
INVOKE_ERRORS = [
    (("batch-endpoint", "show", "-n", "nope"), 3, "batch endpoint 'nope' not found"),
    (("batch-endpoint", "delete", "-n", "nope", "--yes"), 3, "batch endpoint 'nope' not found"),
    (("batch-endpoint", "invoke", "-n", "nope", "--input", "."), 3, "batch endpoint 'nope' not found"),
    (("batch-deployment", "show", "-n", "nope", "-e", "digits-batch"), 3, "batch deployment 'nope' not found"),
    (("batch-endpoint", "invoke", "-n", "digits-batch", "-d", "nope", "--input", "."), 3, "Deployment name nope"),
    # No default deployment and none named: az's own message (ml_batch_endpoint_invoke).
    (("batch-endpoint", "invoke", "-n", "digits-batch", "--input", "."), 1, "Set a default deployment"),
    (
        ("batch-endpoint", "invoke", "-n", "digits-batch", "-d", "digits-dpl", "--input", "no/such"),
        1,
        "There is no folder on target path: no/such",
    ),
    # An azureml: value without --input-type is a data asset's <name>:<version> to az (parse_name_version), and a
    # datastore path has no version: DataOperations.get's message.
    (
        (
            "batch-endpoint",
            "invoke",
            "-n",
            "digits-batch",
            "-d",
            "digits-dpl",
            "--input",
            "azureml://datastores/x/paths/y",
        ),
        1,
        "Must provide either version or label.",
    ),
    (
        ("batch-endpoint", "invoke", "-n", "digits-batch", "-d", "digits-dpl", "--input", ".", "--inputs", "x"),
        1,
        "--inputs: for pipeline component deployments",
    ),
    (
        ("batch-endpoint", "invoke", "-n", "digits-batch", "-d", "digits-dpl", "--input", ".", "--set", "nonsense=1"),
        1,
        "Unknown field",
    ),
]

# (a change to DEPLOYMENT, exit code, what the ERROR line says).
DEPLOYMENT_ERRORS = [
    (("azureml:digits-model:1", "azureml:digits-model:9"), 3, "model digits-model:9 not found"),
    (("endpoint_name: digits-batch", "endpoint_name: nowhere"), 3, "batch endpoint 'nowhere' not found"),
    (
        ("code_configuration:\n  code: code\n  scoring_script: score.py\n", ""),
        1,
        "code and scoring_script are required",
    ),
    (("environment: azureml:tiny-env@latest\n", ""), 1, "environment is required with a scoring script"),
    (("type: model", "type: pipeline"), 1, "a pipeline component batch deployment does not run locally"),
    (("mini_batch_size: 5", "mini_batch_size: five"), 1, "Not a valid integer"),
]


def test_errors_are_one_line_with_azs_exit_codes(batch_project, capsys, monkeypatch):
    monkeypatch.chdir(batch_project)
    ok(capsys, "batch-endpoint", "create", "-f", batch_project / "endpoint.yml", "-o", "none")
    ok(capsys, "batch-deployment", "create", "-f", batch_project / "deployment.yml", "-o", "none")
    for argv, code, message in INVOKE_ERRORS:
        assert message in fails(capsys, code, *argv), argv
    for change, code, message in DEPLOYMENT_ERRORS:
        spec = batch_project / "broken.yml"
        spec.write_text(DEPLOYMENT.replace(*change).replace("name: digits-dpl", "name: broken-dpl"))
        assert message in fails(capsys, code, "batch-deployment", "create", "-f", spec), change
    # Nothing recorded by the refused creates.
    assert ok(capsys, "batch-deployment", "list", "-e", "digits-batch", "--query", "[].name") == ["digits-dpl"]


def test_delete_keeps_the_default_until_another_is_chosen(batch_project, capsys):
    ok(capsys, "batch-endpoint", "create", "-f", batch_project / "endpoint.yml", "-o", "none")
    ok(capsys, "batch-deployment", "create", "-f", batch_project / "deployment.yml", "--set-default", "-o", "none")
    ok(capsys, "batch-deployment", "create", "-f", batch_project / "flat.yml", "-o", "none")
    err = fails(capsys, 1, "batch-deployment", "delete", "-n", "digits-dpl", "-e", "digits-batch", "--yes")
    assert "is the default of endpoint digits-batch" in err
    run_cli(capsys, "batch-deployment", "delete", "-n", "flat-dpl", "-e", "digits-batch", "--yes")
    assert ok(capsys, "batch-deployment", "list", "-e", "digits-batch", "--query", "[].name") == ["digits-dpl"]
    ok(capsys, "batch-endpoint", "delete", "-n", "digits-batch", "--yes")
    assert ok(capsys, "batch-endpoint", "list") == []


def test_every_yaml_here_loads_with_azure_ai_ml(tmp_path):
    from azure.ai.ml import load_batch_deployment, load_batch_endpoint
    from azure.ai.ml.entities._load_functions import load_model_batch_deployment

    warnings.filterwarnings("ignore", "This class is intended as a base class", UserWarning)
    for name, text, loader in (
        ("endpoint.yml", ENDPOINT, load_batch_endpoint),
        ("deployment.yml", DEPLOYMENT, load_model_batch_deployment),
        ("flat.yml", FLAT_DEPLOYMENT, load_batch_deployment),
    ):
        (tmp_path / name).write_text(textwrap.dedent(text))
        assert loader(tmp_path / name).name in ("digits-batch", "digits-dpl", "flat-dpl")
