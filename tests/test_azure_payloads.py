"""tests/azure_payloads/ holds, for every `az ml` YAML in the repo, the REST body azure-ai-ml builds from it (its
README says exactly what; tools/azure_payloads.py writes them, `make azure-payloads` runs it). Regenerating them
must give the committed files byte for byte, so that a change to a YAML shows in review as the change in what
Azure is sent, and the bodies must say what the YAML files mean to say."""

import importlib.util
import json
import pathlib

import pytest
import yaml

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
COMMITTED = REPO_ROOT / "tests" / "azure_payloads"


@pytest.fixture(scope="module")
def tool():
    spec = importlib.util.spec_from_file_location("azure_payloads", REPO_ROOT / "tools" / "azure_payloads.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def files(folder: pathlib.Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def body(name: str) -> dict:
    return json.loads((COMMITTED / name).read_text())


def test_the_committed_bodies_are_what_the_sdk_builds_from_the_yaml_now(tool, tmp_path):
    assert tool.main(["--output", str(tmp_path)]) == 0
    fresh, committed = files(tmp_path), files(COMMITTED)
    assert sorted(fresh) == sorted(committed), "run `make azure-payloads` and commit tests/azure_payloads/"
    stale = [name for name in fresh if fresh[name] != committed[name]]
    assert not stale, f"stale (run `make azure-payloads` and commit them): {stale}"


def test_every_az_ml_yaml_has_a_body_and_nothing_else_does(tool):
    yamls = {
        str(path.relative_to(REPO_ROOT).with_suffix(".json"))
        for folder in ("jobs", "components", "environments", "endpoints", "compute", "data")
        for path in (REPO_ROOT / folder).rglob("*.yml")
        if str((yaml.safe_load(path.read_text()) or {}).get("$schema", "")).startswith(tool.SCHEMA_PREFIX)
    }
    assert len(yamls) == 23
    assert set(files(COMMITTED)) == yamls | {"README.md"}


def test_the_bodies_hold_no_path_of_this_checkout_and_name_their_placeholders():
    readme = (COMMITTED / "README.md").read_text()
    for name, raw in files(COMMITTED).items():
        assert str(REPO_ROOT).encode() not in raw, name
    assert body("components/train.json")["properties"]["componentSpec"]["code"] == "../src"
    assert body("endpoints/model.json")["properties"]["modelUri"] == "../outputs/model"
    hashes = body("components/train.json")["properties"]["properties"]["client_component_hash"]
    assert hashes.startswith("<") and hashes in readme
    evaluate = body("jobs/pipeline.json")["properties"]["jobs"]["evaluate"]["componentId"]
    assert "../components/evaluate.yml" in evaluate and evaluate.startswith("<")
    assert body("endpoints/endpoint.json")["location"] in readme


def test_the_bodies_carry_what_the_yaml_files_say(tool):
    # jobs/train-distributed.yml is "the same training" as jobs/train.yml: the same arguments and inputs.
    train, distributed = body("jobs/train.json")["properties"], body("jobs/train-distributed.json")["properties"]
    assert distributed["command"] == train["command"] and "--momentum ${{inputs.momentum}}" in train["command"]
    assert distributed["inputs"] == train["inputs"] and train["inputs"]["momentum"]["value"] == "0.9"
    assert distributed["distribution"] == {
        "parameterServerCount": 0,
        "workerCount": 2,
        "distributionType": "TensorFlow",
    }
    # A sweep's limits go as ISO 8601 durations; jobs/sweep.yml's 14,400 s are the 4 hours the workflow waits for.
    assert body("jobs/sweep.json")["properties"]["limits"]["timeout"] == "PT4H"
    assert body("jobs/sweep-quick.json")["properties"]["jobType"] == "Sweep"
    image = body("environments/inference.json")["properties"]["image"]
    assert image == "mcr.microsoft.com/azureml/minimal-py312-inference:latest"
    # The batch deployment is a model deployment (type: model, its settings nested in the YAML): the body carries
    # them flat, as the REST API takes them; the scoring script is batch_score.py in src/.
    batch = body("endpoints/batch/deployment.json")["properties"]
    assert batch["codeConfiguration"] == {"codeId": "../../src", "scoringScript": "batch_score.py"}
    assert (batch["outputAction"], batch["outputFileName"], batch["miniBatchSize"]) == (
        "AppendRow",
        "predictions.csv",
        100,
    )
    assert batch["retrySettings"] == {"maxRetries": 3, "timeout": "PT1M"}
    assert body("endpoints/batch/endpoint.json")["properties"]["authMode"] == "aadToken"


def test_a_yaml_of_a_kind_without_a_builder_is_a_one_line_error(tool, tmp_path):
    kubernetes = tmp_path / "kubernetes-endpoint.yml"
    kubernetes.write_text(
        "$schema: https://azuremlschemas.azureedge.net/latest/kubernetesOnlineEndpoint.schema.json\nname: k\n"
    )
    with pytest.raises(SystemExit) as stopped:
        tool.rest_object(kubernetes)
    assert str(stopped.value) == (
        f"ERROR: {kubernetes}: no REST body builder for $schema kubernetesOnlineEndpoint.schema.json (add one here)"
    )
