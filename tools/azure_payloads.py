"""Write what Azure is sent for each `az ml` YAML in the repo: the REST body azure-ai-ml builds from it.

For every YAML file git tracks (or would: not ignored) whose `$schema` is an Azure ML schema, this loads the file
with azure-ai-ml's own loader (the one `az ml ... create --file` uses), converts the entity with its own REST
conversion and serializes that the way the SDK's REST client does (its SdkJSONEncoder with exclude_readonly=True,
the body of the PUT), before any `azureml:` reference is resolved and before local code is uploaded, then writes it
to tests/azure_payloads/<the YAML's path>.json with the README there (PAYLOADS_README below says exactly what they
are and what differs from the wire). `make azure-payloads` runs it; tests/test_azure_payloads.py regenerates them
into a temporary folder and fails on any difference, so a change to a YAML shows in review as the change in what
the service is sent.

Usage: python tools/azure_payloads.py [--output DIR]    (default: tests/azure_payloads, whose *.json it replaces)
"""

import argparse
import importlib
import json
import logging
import os
import pathlib
import subprocess
import sys

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
DEFAULT_OUTPUT = REPO_ROOT / "tests" / "azure_payloads"
SCHEMA_PREFIX = "https://azuremlschemas.azureedge.net/"
# Placeholders for what azure-ai-ml only knows at submit time.
JOB_NAME = "job_name_given_at_submit"  # `--name` (jobs are named by the CLI or at random; the name goes in the URL)
LOCATION = "<the workspace's region>"  # endpoints and deployments carry the workspace's location, fetched then
COMPONENT_HASH = "<computed at submit time from the component with its uploaded code's asset id>"
COMPONENT_REFERENCE = "<the ARM id of the anonymous component the SDK registers at submit time from {source}>"

PAYLOADS_README = """\
# What Azure receives: the REST bodies azure-ai-ml builds from the `az ml` YAML files

Written by `make azure-payloads` (`tools/azure_payloads.py`); do not edit. `tests/test_azure_payloads.py`
regenerates them and fails on any difference, so a change to a YAML shows in review as the change here.

Each `<path>.json` is, for the YAML file `<path>.yml` of the repository, the JSON body of the PUT request that
azure-ai-ml {sdk_version} (the SDK behind `az ml`) builds from it: the file loaded with the SDK's own loader
(`load_job`, `load_component`, `load_environment`, `load_compute`, `load_data`, `load_model`,
`load_online_endpoint`, `load_online_deployment`, `load_batch_endpoint`, and for a batch deployment the loader
`az ml batch-deployment create` picks by its `type`: `load_model_batch_deployment` for `type: model`), converted by
the entity's own REST conversion (`to_rest_job_object(job)` for jobs, as `JobOperations.create_or_update` calls it;
`_to_rest_object()`; for an online endpoint `_to_rest_online_endpoint(location)`, for a batch endpoint
`_to_rest_batch_endpoint(location)`, for a deployment `_to_rest_object(location)`) and serialized as the SDK's
REST client serializes a body (`SdkJSONEncoder` with `exclude_readonly=True`).

It is the body *before* the SDK resolves references and uploads code, so it differs from the wire in exactly
these ways:
- `azureml:` references appear as the YAML writes them (in most fields the loader has dropped the `azureml:`
  prefix: `mnist-train@latest`, `mnist-mlp:1`); on the wire they are the ARM ids of the asset versions the names
  and labels resolve to at submit time.
- Local paths (code folders, a model's local path) appear relative to the YAML's folder, as the YAML writes them;
  on the wire they are the ARM ids or URIs of the uploaded code or files.
- A pipeline node whose component is a file (`component: ../components/evaluate.yml`) has as its `componentId`
  `{component_reference}`
  (the SDK registers that component anonymously first and sends its ARM id). A sweep node's trial component is
  sent inline (`componentSpec`).
- `client_component_hash` is
  `{component_hash}`
  (the SDK computes it from the component as sent, so after the code is uploaded).
- Jobs are loaded with the name `{job_name}` (the CLI's `--name`); a job's name is part of the
  URL, not of the body. Endpoints and deployments carry `location: {location}`, which the SDK fills in
  with the workspace's region.
- The git properties the SDK adds to a job from the checkout it is submitted from (`mlflow.source.git.*`) are
  left out: they change with every commit.
"""


def shown(path: pathlib.Path) -> str:
    return str(path.relative_to(REPO_ROOT)) if path.is_relative_to(REPO_ROOT) else str(path)


def az_ml_yamls() -> list[pathlib.Path]:
    """Every YAML git tracks or would track whose $schema is an Azure ML one, sorted."""
    import yaml

    try:
        listed = subprocess.run(
            ["git", "ls-files", "--cached", "--others", "--exclude-standard", "*.yml", "*.yaml"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
    except (OSError, subprocess.CalledProcessError) as error:
        raise SystemExit(f"ERROR: listing the repository's YAML files with git failed: {error}") from None
    found = []
    for name in sorted(set(listed)):
        path = REPO_ROOT / name
        if not path.is_file():
            continue  # deleted but still in the index
        document = yaml.safe_load(path.read_text())
        if isinstance(document, dict) and str(document.get("$schema", "")).startswith(SCHEMA_PREFIX):
            found.append(path)
    return found


def rest_object(path: pathlib.Path):
    """The REST object azure-ai-ml builds from the YAML, chosen by its $schema's file name."""
    import yaml
    from azure.ai.ml import (
        load_batch_deployment,
        load_batch_endpoint,
        load_component,
        load_compute,
        load_data,
        load_environment,
        load_job,
        load_model,
        load_online_deployment,
        load_online_endpoint,
    )
    from azure.ai.ml.entities._job.to_rest_functions import to_rest_job_object
    from azure.ai.ml.entities._load_functions import load_model_batch_deployment

    document = yaml.safe_load(path.read_text())
    schema = str(document["$schema"]).rsplit("/", 1)[-1]
    if schema in ("commandJob.schema.json", "sweepJob.schema.json", "pipelineJob.schema.json"):
        return to_rest_job_object(load_job(str(path), params_override=[{"name": JOB_NAME}]))
    if schema == "commandComponent.schema.json":
        return load_component(str(path))._to_rest_object()
    if schema == "environment.schema.json":
        return load_environment(str(path))._to_rest_object()
    if schema == "amlCompute.schema.json":
        return load_compute(str(path))._to_rest_object()
    if schema == "data.schema.json":
        return load_data(str(path))._to_rest_object()
    if schema == "model.schema.json":
        return load_model(str(path))._to_rest_object()
    if schema == "managedOnlineEndpoint.schema.json":
        return load_online_endpoint(str(path))._to_rest_online_endpoint(location=LOCATION)
    if schema == "managedOnlineDeployment.schema.json":
        return load_online_deployment(str(path))._to_rest_object(location=LOCATION)
    if schema == "batchEndpoint.schema.json":
        return load_batch_endpoint(str(path))._to_rest_batch_endpoint(location=LOCATION)
    if schema == "batchDeployment.schema.json":
        # As ml_batch_deployment_create in the az ml extension (custom/batch_deployment.py) chooses the loader.
        load = load_model_batch_deployment if document.get("type") == "model" else load_batch_deployment
        return load(str(path))._to_rest_object(location=LOCATION)
    raise SystemExit(f"ERROR: {shown(path)}: no REST body builder for $schema {schema} (add one here)")


def serialize(rest, yaml_dir: pathlib.Path) -> dict:
    """The body as the SDK's REST client sends it: its own JSON encoder, read-only fields left out."""
    from azure.ai.ml.entities import Component

    package = type(rest).__module__.rsplit(".models", 1)[0]
    try:
        encoder = importlib.import_module(f"{package}._utils.model_base").SdkJSONEncoder
    except (ImportError, AttributeError):
        return rest.serialize()  # an older msrest-generated client: its serializer

    class Encoder(encoder):
        def default(self, o):
            # What the SDK resolves before it sends the body is still an object here: a local path (replaced by
            # the uploaded asset's URI) or a pipeline node's component loaded from a file (registered as an
            # anonymous component, replaced by its ARM id).
            if isinstance(o, os.PathLike):
                return os.fspath(o)
            if isinstance(o, Component):
                source = os.path.relpath(o._source_path, yaml_dir) if o._source_path else "an inline definition"
                return COMPONENT_REFERENCE.format(source=source)
            return super().default(o)

    return json.loads(json.dumps(rest, cls=Encoder, exclude_readonly=True))


def relative(value, yaml_dir: pathlib.Path):
    """Absolute paths into the repository become relative to the YAML's folder; the component hash a placeholder."""
    if isinstance(value, dict):
        return {
            key: COMPONENT_HASH if key == "client_component_hash" else relative(item, yaml_dir)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [relative(item, yaml_dir) for item in value]
    if isinstance(value, str) and os.path.isabs(value) and pathlib.Path(value).is_relative_to(REPO_ROOT):
        return os.path.relpath(value, yaml_dir)
    return value


def payload(path: pathlib.Path) -> dict:
    body = relative(serialize(rest_object(path), path.parent), path.parent)
    text = json.dumps(body)
    if str(REPO_ROOT) in text:
        raise SystemExit(f"ERROR: {shown(path)}: the body still names this checkout ({REPO_ROOT})")
    return body


def write(output: pathlib.Path) -> list[pathlib.Path]:
    from azure.ai.ml._version import VERSION

    written = []
    for path in az_ml_yamls():
        target = output / path.relative_to(REPO_ROOT).with_suffix(".json")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(payload(path), indent=2, ensure_ascii=False) + "\n")
        written.append(target)
    for stale in set(output.rglob("*.json")) - set(written):
        stale.unlink()
    readme = PAYLOADS_README.format(
        sdk_version=VERSION,
        component_hash=COMPONENT_HASH,
        component_reference=COMPONENT_REFERENCE.format(source="that file"),
        job_name=JOB_NAME,
        location=LOCATION,
    )
    (output / "README.md").write_text(readme)
    return written


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=pathlib.Path, default=DEFAULT_OUTPUT, help="folder to write into")
    args = parser.parse_args(argv)
    # The SDK announces its experimental schema classes as it loads YAML; they are not what this is about.
    import azure.ai.ml._utils._experimental  # noqa: F401  (its logger exists once imported)

    logging.getLogger("azure.ai.ml._utils._experimental").setLevel(logging.ERROR)
    written = write(args.output.resolve())
    print(f"wrote {len(written)} REST bodies and README.md into {args.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
