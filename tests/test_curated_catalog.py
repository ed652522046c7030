"""The curated-environment catalog (aml_local/assets/curated_environments.json): tools/curated_catalog.py writes it
from the azureml-assets snapshot in ../shared/azureml-assets; aml_local/assets/curated.py reads it.

Fast, except the one test that re-resolves three environments with uv (PyPI through uv's cache)."""

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from aml_local import AmlLocalError, cli
from aml_local.assets import curated, env_build

REPO = Path(__file__).resolve().parents[1]
ASSETS = REPO.parent / "shared" / "azureml-assets"
TOOL = REPO / "tools" / "curated_catalog.py"
CATALOG = json.loads(curated.CATALOG_FILE.read_text())
ENVIRONMENTS = CATALOG["environments"]
RETIRED = CATALOG["retired"]
# Retired names Azure's examples and docs still use (the catalog's `retired` table says where).
USED_RETIRED_NAMES = (
    "AzureML-tensorflow-2.12-cuda11",
    "AzureML-lightgbm-3.2-ubuntu18.04-py37-cpu",
    "AzureML-sklearn-0.24-ubuntu18.04-py37-cpu",
    "AzureML-sklearn-1.0-ubuntu20.04-py38-cpu",
    "AzureML-tensorflow-2.4-ubuntu18.04-py37-cuda11-gpu",
    "AzureML-pytorch-1.10-ubuntu18.04-py38-cuda11-gpu",
    "AzureML-minimal-ubuntu18.04-py37-cpu-inference",
)


def tool():
    spec = importlib.util.spec_from_file_location("curated_catalog", TOOL)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def without_resolution(catalog: dict) -> dict:
    copy = json.loads(json.dumps(catalog))
    for entry in copy["environments"].values():
        entry.pop("resolution", None)
    return copy


def run_cli(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_the_tool_writes_the_committed_catalog_from_the_snapshot(tmp_path):
    output = tmp_path / "catalog.json"
    result = subprocess.run(
        [sys.executable, TOOL, "--assets", ASSETS, "--output", output, "--no-resolve"],
        capture_output=True, text=True, timeout=120, cwd=REPO,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    written = json.loads(output.read_text())
    assert without_resolution(written) == without_resolution(CATALOG)
    # Deterministic: sorted keys, and the same bytes a second time.
    assert output.read_text() == json.dumps(written, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    again = tmp_path / "again.json"
    subprocess.run([sys.executable, TOOL, "--assets", ASSETS, "--output", again, "--no-resolve"], check=True)
    assert again.read_text() == output.read_text()


def test_every_environment_of_the_snapshot_is_in_the_catalog():
    names = {
        yaml.safe_load(path.read_text())["name"]
        for path in ASSETS.glob("assets/**/environments/*/asset.yaml")
        if yaml.safe_load(path.read_text()).get("type") == "environment"
    }
    assert len(names) == 60 and names == set(ENVIRONMENTS)
    commit, date = re.search(
        r"commit\s+([0-9a-f]{40})\s*\((\d{4}-\d{2}-\d{2})\)", (ASSETS / "SOURCE.md").read_text()
    ).groups()
    assert CATALOG["snapshot"]["date"] == date and CATALOG["snapshot"]["environments"] == len(names)
    for name, entry in ENVIRONMENTS.items():
        assert entry["aliases"] == [f"AzureML-{name}"] and entry["source_commit"] == commit
        assert (ASSETS / entry["source"] / "asset.yaml").is_file() and entry["exclude_newer"] == date
        assert entry["image"] and "{{" not in entry["image"] and entry["description"]
        # azureml-assets' one template, kept as it is written (the engine pins it as of the date); no other.
        assert not any("{{" in line.replace("=={{latest-pypi-version}}", "") for line in entry["pip"] + entry["conda"])
        assert (entry["resolution"]["outcome"], bool(entry["resolution"]["reason"])) in {
            ("resolved", False),
            ("failed", True),
        }
    assert any("snapshot" in line and "commit date" in line for line in CATALOG["_about"])


def test_what_an_environment_installs_is_read_from_its_conda_file_and_dockerfile():
    lightgbm = ENVIRONMENTS["lightgbm-3.3"]
    assert lightgbm["python"] == "3.10" and lightgbm["image"] == "mcr.microsoft.com/azureml/openmpi5.0-ubuntu24.04"
    # The Dockerfile's later `pip install --upgrade 'distributed>=2026.1.0'` replaces the conda file's pin; its
    # install into /opt/miniconda (not the job's Python) is left out.
    assert "distributed>=2026.1.0" in lightgbm["pip"] and "distributed~=2021.10.0" not in lightgbm["pip"]
    assert {"aiohttp>=3.14.0", "protobuf>=6.33.5", "lightgbm>=4.6.0"} <= set(lightgbm["pip"])
    # azureml-assets' own template, kept: the engine pins it to the newest release as of the catalog's date.
    assert "azureml-core=={{latest-pypi-version}}" in lightgbm["pip"]
    # Its later `pip install --upgrade` security fixes are resolved after the first install, as pip installed them.
    assert {"protobuf>=6.33.5", "cryptography==48.0.1"} <= set(lightgbm["overrides"])
    assert lightgbm["gpu"] is False and lightgbm["runtime"] is None
    tensorflow = ENVIRONMENTS["tensorflow-2.16-cuda12"]
    assert tensorflow["gpu"] is True and "horovod[tensorflow]==0.28.1" in tensorflow["pip"]
    assert tensorflow["image"] == "nvcr.io/nvidia/cuda:12.8.1-cudnn-devel-ubuntu22.04"  # the final stage's FROM
    acpt = ENVIRONMENTS["acpt-pytorch-2.8-cuda12.6"]
    assert acpt["python"] == "3.10" and "py310" in acpt["image"]  # from the image, as nothing else says
    assert ENVIRONMENTS["designer-r"]["runtime"] == "R"
    assert [name for name, entry in ENVIRONMENTS.items() if entry["runtime"]] == ["designer-r"]


@pytest.mark.parametrize("name", ["sklearn-1.5", "lightgbm-3.3", "tensorflow-2.16-cuda12", "acpt-pytorch-2.8-cuda12.6"])
def test_both_name_forms_give_the_same_spec(name):
    forms = [
        f"azureml:AzureML-{name}@latest",
        f"azureml:AzureML-{name}:7",
        f"azureml://registries/azureml/environments/{name}/labels/latest",
        f"azureml://registries/azureml/environments/{name}/versions/7",
    ]
    specs = [env_build.spec_from_environment(form, source="job.yml") for form in forms]
    assert len({spec.hash for spec in specs}) == 1
    spec = specs[0]
    assert spec.exclude_newer == "2026-07-23T23:59:59Z" and spec.requirements and spec.runtime is None
    assert any(ENVIRONMENTS[name]["source"] in note for note in spec.notes)


def test_every_environment_gives_a_spec_and_gpu_packages_go_through_the_gpu_rule(monkeypatch):
    # No R here, whatever the machine has: the R environment is refused at create, every other one gives a spec.
    monkeypatch.setenv("PATH", os.pathsep.join(f for f in os.environ["PATH"].split(os.pathsep)
                                               if not (Path(f) / "Rscript").exists()))  # fmt: skip
    python_environments = {name: entry for name, entry in ENVIRONMENTS.items() if not entry["runtime"]}
    assert set(ENVIRONMENTS) - set(python_environments) == {"designer-r"}
    with pytest.raises(AmlLocalError, match=r"runs R, and this machine has no Rscript"):
        curated.spec_for("azureml://registries/azureml/environments/designer-r/labels/latest", source="job.yml")
    pythons = {}
    for name in python_environments:
        spec = curated.spec_for(f"azureml://registries/azureml/environments/{name}/labels/latest", source="job.yml")
        assert spec.runtime is None and spec.requirements, name
        pythons[name] = spec.python
    assert {name: f"=={entry['python']}.*" for name, entry in python_environments.items() if entry["python"]} == {
        name: python for name, python in pythons.items() if ENVIRONMENTS[name]["python"]
    }
    spec = curated.spec_for("azureml:AzureML-tensorflow-2.16-cuda12@latest", source="job.yml")
    texts = [r.text for r in spec.requirements]
    assert "tensorflow==2.16.2" in texts and not any(t.startswith("horovod") for t in texts)


def test_the_retired_names_run_as_their_successors_with_a_note_and_sources():
    assert set(USED_RETIRED_NAMES) <= set(RETIRED)
    for name, record in RETIRED.items():
        successor = record["successor"]
        assert successor in ENVIRONMENTS and record["basis"] in ("documented", "our reading") and record["note"]
        assert record["sources"] and all(url.startswith("https://") for url in record["sources"])
        for reference in (f"azureml:{name}@latest", f"azureml:{name}:22", f"azureml://registries/azureml/environments/"
                          f"{name.removeprefix('AzureML-')}/labels/latest"):  # fmt: skip
            spec = curated.spec_for(reference, source="job.yml")
            assert spec.hash == curated.spec_for(f"azureml:AzureML-{successor}@latest", source="x").hash
            assert any(f"{name} is retired: it runs as {successor}" in note for note in spec.notes)
    # Names the examples use that are current in the registry: not retired.
    for name in ("AzureML-sklearn-1.0", "AzureML-tensorflow-2.16-cuda11"):
        assert name not in RETIRED and curated.spec_for(f"azureml:{name}@latest", source="x").requirements


@pytest.mark.parametrize(
    "reference",
    ["azureml:AzureML-pytorch-9.9-cuda99:3", "azureml://registries/azureml/environments/nope/labels/latest"],
)
def test_an_unknown_curated_name_is_a_one_line_error(reference):
    with pytest.raises(AmlLocalError) as raised:
        curated.spec_for(reference, source="job.yml")
    message = str(raised.value)
    assert message.startswith(f"job.yml: environment {reference}: ") and "\n" not in message
    assert re.search(
        r"not in the azureml registry's catalog of 60 environments \(azureml-assets at commit "
        r"[0-9a-f]{12}, 2026-07-23\); `aml-local environment list --registry-name azureml`",
        message,
    )


def test_environment_list_and_show_with_the_azureml_registry(home, capsys):
    code, out, err = run_cli(capsys, "environment", "list", "--registry-name", "azureml")
    assert code == 0, err
    listed = json.loads(out)
    assert [item["name"] for item in listed] == sorted(ENVIRONMENTS)
    # az ml environment list's transform_environment_list (azext_mlv2/manual/_format.py) keeps the name, the latest
    # version (the catalog has no registry version numbers) and a version's version, whatever the output format.
    assert listed[0] == {"name": listed[0]["name"]}
    code, out, err = run_cli(capsys, "environment", "list", "--registry-name", "azureml", "-r", "2", "-o", "tsv",
                             "--query", "[].name")  # fmt: skip
    assert code == 0 and out.split() == sorted(ENVIRONMENTS)[:2]
    code, out, err = run_cli(capsys, "environment", "show", "--registry-name", "azureml", "-n", "sklearn-1.5",
                             "--version", "41")  # fmt: skip
    shown = json.loads(out)
    assert code == 0 and shown["name"] == "sklearn-1.5" and shown["version"] == "41"
    assert shown["id"] == "azureml://registries/azureml/environments/sklearn-1.5/versions/41"
    assert shown["properties"]["aml_local.python"] == "3.10" and shown["tags"]["Scikit-learn"] == "1.5"
    code, out, err = run_cli(capsys, "environment", "show", "--registry-name", "azureml", "-n",
                             "AzureML-lightgbm-3.2-ubuntu18.04-py37-cpu", "--label", "latest")  # fmt: skip
    shown = json.loads(out)
    assert code == 0 and shown["name"] == "lightgbm-3.3" and shown["properties"]["aml_local.retired"]["sources"]
    code, _, err = run_cli(capsys, "environment", "show", "--registry-name", "azureml", "-n", "nope")
    assert code == 3 and "not in the azureml registry's catalog" in err
    code, _, err = run_cli(capsys, "environment", "list", "--registry-name", "contoso")
    assert code == 1 and "only the azureml registry" in err


def test_environment_list_lists_the_registered_ones(home, capsys):
    code, out, _ = run_cli(capsys, "environment", "list")
    assert code == 0 and json.loads(out) == []
    for _ in range(2):
        code, _, err = run_cli(capsys, "environment", "create", "-f", REPO / "environments" / "train.yml",
                               "--version", str(_ + 1), "-o", "none")  # fmt: skip
        assert code == 0, err
    code, out, _ = run_cli(capsys, "environment", "list")
    assert json.loads(out) == [{"name": "mnist-train", "latest version": "2"}]  # transform_environment_list
    code, out, _ = run_cli(capsys, "environment", "list", "-n", "mnist-train")
    assert json.loads(out) == [{"name": "mnist-train", "version": "2"}, {"name": "mnist-train", "version": "1"}]
    code, out, _ = run_cli(capsys, "environment", "list", "-o", "table")
    # transform_environment, the table, reads latest_version, which the transform has renamed: None, a column that
    # knack's table leaves out (az's table is the name alone).
    assert [line.split() for line in out.splitlines()] == [["Name"], ["-----------"], ["mnist-train"]]


@pytest.mark.slow
def test_three_environments_resolve_with_uv_as_the_catalog_records():
    """uv against PyPI (through uv's cache), as the engine resolves them: each resolves again as the catalog says
    (a Dockerfile's later `pip install --upgrade` resolved after the first install, as pip installed it)."""
    module = tool()
    for name in ("lightgbm-3.3", "sklearn-1.5", "tensorflow-2.16-cuda12"):
        result = module.resolve(name, ENVIRONMENTS[name])
        assert ENVIRONMENTS[name]["resolution"]["outcome"] == "resolved"
        assert (result["outcome"], result["reason"]) == ("resolved", None), name
        assert result["packages"] > 100 and result["spec_hash"] == ENVIRONMENTS[name]["resolution"]["spec_hash"]
