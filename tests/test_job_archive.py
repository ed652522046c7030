"""`job archive` / `job restore` and `job list`'s views (issue 22), on a pipeline of one node that echoes: azure-ai-ml's
JobOperations.archive/restore set the job's is_archived, and refuse a pipeline's child (PipelineChildJobError,
"please use this command on pipeline parent job"); `job list` shows active jobs unless --include-archived or
--archived-only, while a parent's children (--parent-job-name) come from run history whatever the view
(JobOperations.list -> get_run_children, list_view_type unused)."""

import json
import textwrap

import pytest

from aml_local import cli

pytestmark = pytest.mark.slow  # the pipeline's node runs as a process

PIPELINE = textwrap.dedent(
    """
    $schema: https://azuremlschemas.azureedge.net/latest/pipelineJob.schema.json
    type: pipeline
    experiment_name: tiny
    jobs:
      hello:
        type: command
        command: echo hello
        environment: azureml:tiny-env@latest
    """
)


def run(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def names(capsys, *flags):
    code, out, err = run(capsys, "job", "list", "--all-results", *flags, "--query", "[].name")
    assert code == 0, err
    return sorted(json.loads(out))


def test_archive_and_restore_a_pipeline_and_the_views_of_job_list(home, tmp_path, project_environments, capsys):
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'tiny'\n")
    project_environments(tmp_path)
    (tmp_path / "pipeline.yml").write_text(PIPELINE)
    code, _, err = run(capsys, "job", "create", "-f", tmp_path / "pipeline.yml", "--stream", "-n", "pipe", "-o", "none")
    assert code == 0, err
    assert names(capsys) == ["pipe", "pipe_hello"]

    code, out, err = run(capsys, "job", "archive", "-n", "pipe_hello")
    assert (code, out) == (1, "") and "please use this command on pipeline parent job pipe" in err

    assert run(capsys, "job", "archive", "-n", "pipe", "-g", "rg", "-w", "ws")[:2] == (0, "")  # prints nothing
    assert names(capsys) == ["pipe_hello"]
    assert names(capsys, "--archived-only") == ["pipe"]
    assert names(capsys, "--include-archived") == ["pipe", "pipe_hello"]
    assert names(capsys, "-p", "pipe", "--archived-only") == ["pipe_hello"]  # children: whatever the view
    code, out, _ = run(capsys, "job", "show", "-n", "pipe", "--query", "status", "-o", "tsv")
    assert (code, out.strip()) == (0, "Completed")  # an archived job is still shown by its name

    assert run(capsys, "job", "restore", "-n", "pipe")[:2] == (0, "")
    assert names(capsys) == ["pipe", "pipe_hello"] and names(capsys, "--archived-only") == []
