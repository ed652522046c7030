"""The list, archive, restore and update verbs az ml has for model, data, environment and compute (issue 22), run
in-process on tiny assets, and the flags az adds to every command (-g/-w, --subscription, --no-wait, three-state
--local).

What az does, as read from its sources: an archived version is left out of `list` (unless --include-archived or
--archived-only) and of @latest, and is still found by its version; archiving without --version/--label archives the
whole asset (every version), and then no single version can be restored before it (the az ml reference, `az ml data
archive` / `az ml data restore` at learn.microsoft.com/cli/azure/ml/data); `update` is azure-cli's generic update
(--set/--add/--remove, azure/cli/core/commands/arm.py) of what `show` prints."""

import json
import re

import pytest

from aml_local import cli
from aml_local.assets import data
from aml_local.cli import generic_update


def run(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def ok(capsys, *argv):
    code, out, err = run(capsys, *argv)
    assert code == 0, err
    return json.loads(out) if out.strip() else None


def fails(capsys, code, *argv):
    """The one ERROR line of a command that exits `code`."""
    got, out, err = run(capsys, *argv)
    lines = [line for line in err.splitlines() if line.strip()]
    assert (got, out) == (code, ""), err
    assert len(lines) == 1 and lines[0].startswith("ERROR: "), err
    return lines[0]


@pytest.fixture
def weights(tmp_path):
    folder = tmp_path / "weights"
    folder.mkdir()
    (folder / "w.txt").write_text("1")
    return folder


def test_model_archive_restore_and_the_list_views(home, weights, capsys):
    for _ in range(2):
        ok(capsys, "model", "create", "-n", "tiny", "-p", weights, "-o", "none")
    assert ok(capsys, "model", "archive", "-n", "tiny", "-v", "2", "-g", "rg", "-w", "ws") is None  # prints nothing
    assert ok(capsys, "model", "show", "-n", "tiny", "-l", "latest")["version"] == "1"
    assert ok(capsys, "model", "show", "-n", "tiny", "-v", "2")["version"] == "2"  # still found by its version
    versions = ["--query", "[].version"]
    assert ok(capsys, "model", "list", "-n", "tiny", *versions) == ["1"]
    assert ok(capsys, "model", "list", "-n", "tiny", "--archived-only", *versions) == ["2"]
    assert ok(capsys, "model", "list", "-n", "tiny", "--include-archived", *versions) == ["2", "1"]
    assert ok(capsys, "model", "list", "-n", "tiny", "--include-archived", "-r", "1", *versions) == ["2"]
    # The whole model: gone from the plain list, and @latest finds nothing (exit 1, as _get_latest's error).
    ok(capsys, "model", "archive", "-n", "tiny")
    assert ok(capsys, "model", "list") == []
    assert ok(capsys, "model", "list", "--archived-only", "--query", "[].name") == ["tiny"]
    assert "every version is archived" in fails(capsys, 1, "model", "show", "-n", "tiny", "-l", "latest")
    assert "restore it first" in fails(capsys, 1, "model", "restore", "-n", "tiny", "-v", "2")
    ok(capsys, "model", "restore", "-n", "tiny")
    ok(capsys, "model", "restore", "-n", "tiny", "-l", "latest")  # the label names version 1: nothing to restore
    ok(capsys, "model", "restore", "-n", "tiny", "-v", "2")
    assert ok(capsys, "model", "show", "-n", "tiny", "-l", "latest")["version"] == "2"
    assert "not found" in fails(capsys, 3, "model", "archive", "-n", "nope")
    assert "not found" in fails(capsys, 3, "model", "archive", "-n", "tiny", "-v", "9")
    assert "both version and label" in fails(capsys, 1, "model", "archive", "-n", "tiny", "-v", "1", "-l", "latest")
    assert "Cannot provide both" in fails(capsys, 1, "model", "list", "--archived-only", "--include-archived")
    assert "--registry-name" in fails(capsys, 1, "model", "archive", "-n", "tiny", "--registry-name", "shared")


def test_model_update_changes_description_tags_and_stage(home, weights, capsys):
    ok(capsys, "model", "create", "-n", "tiny", "-p", weights, "--tags", "keep=1", "drop=2", "-o", "none")
    shown = ok(capsys, "model", "update", "-n", "tiny", "-v", "1", "--set", "description=better", "tags.new=3",
               "--remove", "tags.drop", "--stage", "Production")  # fmt: skip
    assert (shown["description"], shown["tags"], shown["stage"]) == ("better", {"keep": "1", "new": "3"}, "Production")
    assert ok(capsys, "model", "show", "-n", "tiny", "-v", "1")["tags"] == {"keep": "1", "new": "3"}
    # `model list --stage` filters a model's versions (ModelOperations.list passes the stage with a name only).
    ok(capsys, "model", "create", "-n", "tiny", "-p", weights, "-o", "none")
    assert ok(capsys, "model", "list", "-n", "tiny", "--stage", "Production", "--query", "[].version") == ["1"]
    assert ok(capsys, "model", "list", "-n", "tiny", "-s", "Development", "--query", "[].version") == ["2"]
    assert ok(capsys, "model", "create", "-n", "staged", "-p", weights, "-s", "Staging")["stage"] == "Staging"
    line = fails(capsys, 1, "model", "update", "-n", "tiny", "-v", "1", "--set", "type=mlflow_model")
    assert "type cannot change here" in line
    assert "Couldn't find 'nope'" in fails(
        capsys, 1, "model", "update", "-n", "tiny", "-v", "1", "--remove", "tags.nope"
    )


def test_data_assets_from_flags_lists_archive_and_latest(home, tmp_path, capsys):
    for text in ("one", "two"):
        (tmp_path / text).mkdir()
        created = ok(capsys, "data", "create", "-n", "tiny", "-p", tmp_path / text, "-t", "uri_folder", "-d", text)
        assert (created["type"], created["description"]) == ("uri_folder", text)
    # One item per data asset, as azure-ai-ml lists the containers; with --name, its versions, newest first.
    (listed,) = ok(capsys, "data", "list")
    assert (listed["name"], listed["latest_version"], listed["id"]) == ("tiny", "2", "azureml:/local/data/tiny")
    assert ok(capsys, "data", "list", "-n", "tiny", "--query", "[].description") == ["two", "one"]
    table = run(capsys, "data", "list", "-n", "tiny", "-o", "table")[1].splitlines()
    assert re.split(r"\s{2,}", table[0].strip()) == ["Name", "Version", "Data type", "Path"]  # transform_data
    ok(capsys, "data", "archive", "-n", "tiny", "-v", "2")
    # A job input naming azureml:tiny@latest reads version 1 now; by its version, 2 is still used.
    assert data.local_path("x", "azureml:tiny@latest", tmp_path) == tmp_path / "one"
    assert data.local_path("x", "azureml:tiny:2", tmp_path) == tmp_path / "two"
    assert ok(capsys, "data", "list", "-n", "tiny", "--archived-only", "--query", "[].version") == ["2"]
    ok(capsys, "data", "archive", "-n", "tiny")
    assert ok(capsys, "data", "list") == []
    assert "every version is archived" in fails(capsys, 1, "data", "show", "-n", "tiny")
    ok(capsys, "data", "restore", "-n", "tiny")
    ok(capsys, "data", "restore", "-n", "tiny", "-v", "2")
    assert ok(capsys, "data", "show", "-n", "tiny")["version"] == "2"
    updated = ok(capsys, "data", "update", "-n", "tiny", "-v", "1", "--set", "tags.k=v", "description=first")
    assert (updated["tags"], updated["description"], updated["version"]) == ({"k": "v"}, "first", "1")
    assert "path cannot change" in fails(capsys, 1, "data", "update", "-n", "tiny", "-v", "1", "--set", "path=/tmp")
    assert "'xyz' is not a valid value for '--type'" in fails(capsys, 2, "data", "create", "-n", "x", "-t", "xyz")
    assert "not found" in fails(capsys, 3, "data", "restore", "-n", "nope")


def test_environments_from_flags_archive_restore_and_update(home, capsys):
    ok(capsys, "environment", "create", "-n", "tiny-env", "-i", "python:3.11", "--description", "first", "-o", "none")
    second = ok(capsys, "environment", "create", "-n", "tiny-env", "--image", "python:3.12", "--tags", "a=b")
    assert (second["version"], second["image"], second["tags"]) == ("2", "python:3.12", {"a": "b"})
    ok(capsys, "environment", "archive", "-n", "tiny-env", "-l", "latest")  # the label names version 2
    assert ok(capsys, "environment", "show", "-n", "tiny-env")["version"] == "1"
    assert ok(capsys, "environment", "list", "-n", "tiny-env", "--include-archived", "--query", "[].version") == [
        "2",
        "1",
    ]
    ok(capsys, "environment", "restore", "-n", "tiny-env", "-v", "2")
    updated = ok(capsys, "environment", "update", "-n", "tiny-env", "-v", "1", "--set", "description=changed")
    assert (updated["description"], updated["image"]) == ("changed", "python:3.11")
    assert "image cannot change" in fails(
        capsys, 1, "environment", "update", "-n", "tiny-env", "-v", "1", "--set", "image=python:3.13"
    )
    # The azureml registry's curated catalog is never archived: --archived-only lists none of it.
    assert ok(capsys, "environment", "list", "--registry-name", "azureml", "--archived-only") == []
    assert "needs image" in fails(capsys, 1, "environment", "create", "-n", "bare")
    assert "Linux" in fails(capsys, 1, "environment", "create", "-n", "win", "-i", "x", "--os-type", "windows")


def test_compute_list_update_and_delete(home, capsys):
    ok(capsys, "compute", "create", "-n", "cpu-a", "-t", "amlcompute", "--size", "Standard_DS3_v2", "-o", "none")
    ok(capsys, "compute", "create", "-n", "cpu-b", "--type", "AmlCompute", "--no-wait", "-o", "none")
    assert ok(capsys, "compute", "list", "--query", "[].name") == ["cpu-a", "cpu-b"]
    assert ok(capsys, "compute", "list", "--type", "amlcompute", "-r", "1", "--query", "[].name") == ["cpu-a"]
    assert ok(capsys, "compute", "list", "--type", "ComputeInstance") == []
    table = run(capsys, "compute", "list", "-o", "table")[1].splitlines()
    assert re.split(r"\s{2,}", table[0].strip()) == ["Name", "Compute type", "State", "Instance type"]
    updated = ok(capsys, "compute", "update", "-n", "cpu-a", "--max-instances", "2", "--set", "tags.team=ml")
    assert (updated["max_instances"], updated["tags"], updated["size"]) == (2, {"team": "ml"}, "Standard_DS3_v2")
    assert "size cannot change" in fails(capsys, 1, "compute", "update", "-n", "cpu-a", "--set", "size=big")
    assert "--identity-type" in fails(capsys, 1, "compute", "update", "-n", "cpu-a", "--identity-type", "x")
    assert ok(capsys, "compute", "delete", "-n", "cpu-b", "--yes") is None
    assert ok(capsys, "compute", "list", "--query", "[].name") == ["cpu-a"]
    assert "not found" in fails(capsys, 3, "compute", "delete", "-n", "cpu-b", "-y")


def test_every_az_command_takes_workspace_subscription_and_az_forms(home, capsys):
    # -g/-w on every verb of an az noun, and --subscription (az's global argument): accepted and ignored.
    common = ["-g", "rg", "-w", "ws", "--subscription", "0000"]
    assert ok(capsys, "online-endpoint", "list", *common, "--local") == []
    assert ok(capsys, "online-endpoint", "list", "--local", "false") == []
    assert "not a valid value for '--local'" in run(capsys, "online-endpoint", "list", "--local", "maybe")[2]
    assert ok(capsys, "component", "list", *common) == []
    # az's job list prints how many it capped the list at, on stderr; --all-results does not.
    code, out, err = run(capsys, "job", "list", *common)
    assert (code, json.loads(out), err) == (0, [], "Displaying top 50 results from the list command.\n")
    assert run(capsys, "job", "list", "--all-results", "--include-archived")[1:] == ("[]\n", "")
    assert "not found" in fails(capsys, 3, "job", "archive", "-n", "nope", *common)
    # The local tracking-server noun is not az's: no -g there.
    assert fails(capsys, 2, "tracking-server", "show", "-g", "rg") == "ERROR: unrecognized arguments: -g rg"


def test_generic_update_applies_set_add_and_remove_in_the_order_given():
    shown = {"tags": {"a": "1"}, "items": [1], "count": 1}
    # (position, option, words) as parser.py's GenericUpdate keeps them: the lists hold one option each.
    sets = [(0, "--set", ["count=2", "tags.b=x y"]), (3, "--set", ["items[0]=9"])]
    adds = [(1, "--add", ["items", "2", "k=v"])]
    removes = [(2, "--remove", ["items", "0"])]
    updated = generic_update.apply(shown, sets, adds, removes)
    assert updated == {"tags": {"a": "1", "b": "x y"}, "items": [9, {"k": "v"}], "count": 2}
    assert shown["items"] == [1]  # the shown entity itself is left as it was
    assert generic_update.apply(shown, [(0, "--set", ["count=2"])], force_string=True)["count"] == "2"
    assert generic_update.apply(shown, [(0, "--set", ["fresh.key=1"])])["fresh"] == {"key": 1}
    with pytest.raises(Exception, match="index 5 doesn't exist"):
        generic_update.apply(shown, [(0, "--remove", ["items", "5"])])
    with pytest.raises(Exception, match="Empty key in --set"):
        generic_update.apply(shown, [(0, "--set", ["=1"])])
