"""Parallel jobs as processes: a pipeline's `type: parallel` node (the fields of azureml-examples' cli/jobs/parallel/
3a_mnist_batch_identification/pipeline.yml: an input written out in full with a binding path, input_data,
mini_batch_size, resources.instance_count, max_concurrency_per_instance, retry_settings, mini_batch_error_threshold,
logging_level, environment_variables, task run_function with program_arguments and append_row_to), and batch
endpoint jobs end to end: `batch-endpoint invoke` on a folder and on a data asset, then `job stream`, `job show` (a
pipeline job with one parallel step, `batchscoring`), `job download --output-name score`, `list-jobs`; an MLflow model
batch-deployed with no scoring script and no environment over CSV and parquet files; an empty input folder."""

import json
from pathlib import Path

import pytest

from aml_local import cli

pytestmark = pytest.mark.slow

PREPARE = """\
import pathlib, sys
out = pathlib.Path(sys.argv[1])
for i in range(7):
    (out / f"{i}.txt").write_text(str(i))
"""

SQUARE = """\
import argparse, os


def init():
    global tag
    parser = argparse.ArgumentParser()
    parser.add_argument("--tag")
    parser.add_argument("--logging_level")
    args, _ = parser.parse_known_args()
    tag = f"{args.tag}/{args.logging_level}/{os.environ['EXAMPLE']}"


def run(mini_batch):
    return [f"{os.path.basename(p)}: {int(open(p).read()) ** 2} {tag}" for p in mini_batch]
"""

PIPELINE = """\
$schema: https://azuremlschemas.azureedge.net/latest/pipelineJob.schema.json
type: pipeline
experiment_name: parallel-test
outputs:
  squares:
    type: uri_folder
jobs:
  prepare:
    type: command
    code: src
    command: python prepare.py ${{outputs.files}}
    environment: azureml:tiny-env@latest
    outputs:
      files:
        type: uri_folder
  square:
    type: parallel
    inputs:
      numbers:
        type: uri_folder
        path: ${{parent.jobs.prepare.outputs.files}}
        mode: ro_mount
      tag: hello
    outputs:
      job_output_file: ${{parent.outputs.squares}}
    input_data: ${{inputs.numbers}}
    mini_batch_size: "3"
    resources:
      instance_count: 2
    max_concurrency_per_instance: 1
    mini_batch_error_threshold: 0
    logging_level: DEBUG
    retry_settings:
      max_retries: 1
      timeout: 30
    environment_variables:
      EXAMPLE: 3a_yaml
    task:
      type: run_function
      code: src
      entry_script: square.py
      environment: azureml:tiny-env@latest
      program_arguments: --tag ${{inputs.tag}}
      append_row_to: ${{outputs.job_output_file}}
"""

# A scoring script that reads each file and returns a DataFrame, as azureml-examples' batch drivers do.
SCORE = """\
import os
import pandas as pd


def init():
    global offset
    offset = int(open(os.path.join(os.environ["AZUREML_MODEL_DIR"], "model", "offset.txt")).read())


def run(mini_batch):
    rows = [(os.path.basename(p), int(open(p).read()) + offset, "a b") for p in mini_batch]
    return pd.DataFrame(rows, columns=["file", "score", "note"])
"""

DEPLOYMENT = """\
$schema: https://azuremlschemas.azureedge.net/latest/modelBatchDeployment.schema.json
name: tiny-dpl
endpoint_name: tiny-batch
type: model
model: azureml:tiny-model:1
code_configuration:
  code: src
  scoring_script: score.py
environment: azureml:tiny-env@latest
compute: azureml:batch-cluster
settings:
  max_concurrency_per_instance: 2
  mini_batch_size: 4
  output_file_name: predictions.csv
"""

MLFLOW_DEPLOYMENT = """\
$schema: https://azuremlschemas.azureedge.net/latest/modelBatchDeployment.schema.json
name: sk-dpl
endpoint_name: tiny-batch
type: model
model: azureml:tiny-sklearn@latest
compute: azureml:batch-cluster
settings:
  mini_batch_size: 1
  retry_settings:
    max_retries: 0
"""


def run_cli(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def ok(capsys, *argv):
    code, out, err = run_cli(capsys, *argv)
    assert code == 0, out + err
    try:
        return json.loads(out) if out.strip() else None
    except ValueError:
        return out


@pytest.fixture
def project(tmp_path, project_environments, home, monkeypatch):
    root = tmp_path / "project"
    (root / "src").mkdir(parents=True)
    (root / "pyproject.toml").write_text("[project]\nname = 'tiny'\n")
    project_environments(root)
    (root / "src" / "prepare.py").write_text(PREPARE)
    (root / "src" / "square.py").write_text(SQUARE)
    (root / "src" / "score.py").write_text(SCORE)
    monkeypatch.chdir(root)
    return root


def test_a_parallel_node_runs_its_entry_script_over_the_files_another_node_wrote(project, capsys):
    (project / "pipeline.yml").write_text(PIPELINE)
    streamed = ok(capsys, "job", "create", "-f", project / "pipeline.yml", "-n", "par", "--stream", "-o", "none")
    assert "[square] [parallel" in streamed and "items/s" in streamed  # the step's progress, in the pipeline's log
    shown = ok(capsys, "job", "show", "-n", "par")
    assert shown["status"] == "Completed"
    assert {n: (j["type"], j["status"]) for n, j in shown["jobs"].items()} == {
        "prepare": ("command", "Completed"),
        "square": ("parallel", "Completed"),
    }
    ok(capsys, "job", "download", "-n", "par", "--output-name", "squares", "--download-path", project / "dl")
    written = (project / "dl" / "named-outputs" / "squares" / "parallel_run_step.txt").read_text().splitlines()
    # Every file once; the program arguments, Azure's --logging_level and the node's variables reached the script.
    assert sorted(written) == sorted(f"{i}.txt: {i * i} hello/DEBUG/3a_yaml" for i in range(7))
    step = ok(capsys, "job", "show", "-n", "par_square")
    assert step["properties"]["aml_local.items"] == "7" and step["properties"]["aml_local.mini_batches"] == "3"
    logs = Path(step["properties"]["aml_local.job_dir"]) / "code" / "logs"
    # Two instances of one process each: their logs by node, as Azure lays out logs/user/stdout/<node>/.
    assert {p.parent.name for p in (logs / "user" / "stdout").glob("*/process*.stdout.txt")} == {
        "127.0.0.1",
        "127.0.0.2",
    }
    assert "final:" in (logs / "job_progress_overview.txt").read_text()


def test_a_batch_endpoint_scores_a_folder_and_a_data_asset_into_its_score_output(project, capsys):
    (project / "model").mkdir()
    (project / "model" / "offset.txt").write_text("100")
    data = project / "numbers"
    data.mkdir()
    for i in range(10):
        (data / f"{i}.txt").write_text(str(i))
    (project / "numbers.yml").write_text("name: numbers\nversion: '1'\ntype: uri_folder\npath: numbers\n")
    (project / "deployment.yml").write_text(DEPLOYMENT)
    ok(capsys, "model", "create", "-n", "tiny-model", "-p", project / "model", "-o", "none")
    ok(capsys, "data", "create", "-f", project / "numbers.yml", "-o", "none")
    ok(capsys, "batch-endpoint", "create", "-n", "tiny-batch", "-o", "none")
    ok(capsys, "batch-deployment", "create", "-f", project / "deployment.yml", "--set-default", "-o", "none")
    invoked = ok(
        capsys,
        "batch-endpoint",
        "invoke",
        "-n",
        "tiny-batch",
        "--input",
        "azureml:numbers:1",
        "--mini-batch-size",
        "3",
        "--instance-count",
        "2",
        "--set",
        "output_file_name=scores.csv",
    )
    assert set(invoked) == {"id", "name", "status", "type"} and invoked["name"].startswith("batchjob-")
    job = invoked["name"]
    streamed = ok(capsys, "job", "stream", "-n", job)
    assert "[batchscoring] [parallel" in streamed and "10 items in 4 mini-batches of up to 3" in streamed
    shown = ok(capsys, "job", "show", "-n", job)
    assert (shown["type"], shown["status"], shown["experiment_name"]) == ("pipeline", "Completed", "tiny-batch")
    assert shown["jobs"] == {"batchscoring": {"name": f"{job}_batchscoring", "status": "Completed", "type": "parallel"}}
    ok(capsys, "job", "download", "-n", job, "--output-name", "score", "--download-path", project / "dl")
    rows = (project / "dl" / "named-outputs" / "score" / "scores.csv").read_text().splitlines()
    # Azure's append_row of a DataFrame: its values separated by a space, no header, one line per row.
    assert sorted(rows) == sorted(f'{i}.txt {i + 100} "a b"' for i in range(10))
    # A second job on the folder itself, by the deployment's name; list-jobs finds both, newest first.
    second = ok(
        capsys,
        "batch-endpoint",
        "invoke",
        "-n",
        "tiny-batch",
        "-d",
        "tiny-dpl",
        "--input",
        data,
        "--query",
        "name",
        "-o",
        "tsv",
    ).strip()
    ok(capsys, "job", "stream", "-n", second)
    assert ok(capsys, "batch-deployment", "list-jobs", "-n", "tiny-dpl", "-e", "tiny-batch", "--query", "[].name") == [
        second,
        job,
    ]
    second_rows = Path(ok(capsys, "job", "show", "-n", second)["outputs"]["score"]["path"]) / "predictions.csv"
    assert len(second_rows.read_text().splitlines()) == 10


def test_an_mlflow_model_is_batch_deployed_with_no_scoring_script(project, capsys):
    import mlflow.sklearn
    import pandas as pd
    from mlflow.models import infer_signature
    from sklearn.linear_model import LogisticRegression

    table = pd.DataFrame({"a": [0.0, 1.0, 2.0, 3.0], "b": [1.0, 0.0, 1.0, 0.0]})
    classifier = LogisticRegression().fit(table, [0, 0, 1, 1])
    mlflow.sklearn.save_model(classifier, project / "sk-model", signature=infer_signature(table))
    data = project / "tables"
    data.mkdir()
    table.iloc[:2].to_csv(data / "part-0.csv", index=False)
    table.to_parquet(data / "part-1.parquet")
    (data / "notes.avro").write_text("not a table")  # an unsupported file fails its item, the others are scored
    (project / "sk.yml").write_text(MLFLOW_DEPLOYMENT)
    ok(
        capsys,
        "model",
        "create",
        "-n",
        "tiny-sklearn",
        "-p",
        project / "sk-model",
        "--type",
        "mlflow_model",
        "-o",
        "none",
    )
    ok(capsys, "batch-endpoint", "create", "-n", "tiny-batch", "-o", "none")
    shown = ok(capsys, "batch-deployment", "create", "-f", project / "sk.yml", "--set-default")
    assert "code_configuration" not in shown and "environment" not in shown  # none given, none shown
    job = ok(capsys, "batch-endpoint", "invoke", "-n", "tiny-batch", "--input", data, "--query", "name", "-o", "tsv")
    ok(capsys, "job", "stream", "-n", job.strip())
    score = Path(ok(capsys, "job", "show", "-n", job.strip())["outputs"]["score"]["path"]) / "predictions.csv"
    expected = [f"{row} {label} part-0.csv" for row, label in enumerate(classifier.predict(table.iloc[:2]))]
    expected += [f"{row} {label} part-1.parquet" for row, label in enumerate(classifier.predict(table))]
    # "Deploy MLflow models in batch deployments": row, prediction, file name, one line per data point.
    assert sorted(score.read_text().splitlines()) == sorted(expected)
    step = ok(capsys, "job", "show", "-n", f"{job.strip()}_batchscoring")
    logs = Path(step["properties"]["aml_local.job_dir"]) / "code" / "logs" / "user"
    assert "Error processing input file" in "".join(p.read_text() for p in (logs / "stdout").rglob("*.txt"))
    assert step["properties"]["aml_local.failed_items"] == "1"


def test_an_empty_input_folder_fails_the_job_with_one_line(project, capsys):
    (project / "model").mkdir()
    (project / "model" / "offset.txt").write_text("1")
    (project / "empty").mkdir()
    (project / "deployment.yml").write_text(DEPLOYMENT)
    ok(capsys, "model", "create", "-n", "tiny-model", "-p", project / "model", "-o", "none")
    ok(capsys, "batch-endpoint", "create", "-n", "tiny-batch", "-o", "none")
    ok(capsys, "batch-deployment", "create", "-f", project / "deployment.yml", "--set-default", "-o", "none")
    job = ok(capsys, "batch-endpoint", "invoke", "-n", "tiny-batch", "--input", "empty", "--query", "name", "-o", "tsv")
    code, _, err = run_cli(capsys, "job", "stream", "-n", job.strip())
    assert code == 1 and err.count("\n") == 1
    assert f"input input_data: the folder {project / 'empty'} has no files to score" in err
