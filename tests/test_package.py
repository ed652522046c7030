"""aml-local as an installed package: the wheel carries every sub-package and the package data, an installed copy keeps
its store in the current folder (a checkout keeps one at its root), and a job run there leaves that store out of its
code snapshot."""

import os
import shutil
import subprocess
import sys
import textwrap
import tomllib
import zipfile

from aml_local import store
from aml_local.endpoints.router import client_side
from aml_local.jobs import verbs as job

REPO_ROOT = store.REPO_ROOT


def _build_wheel(tmp_path):
    """The wheel `pip install .` would install, built by setuptools' PEP 517 hook from a copy of what it reads."""
    source = tmp_path / "source"
    source.mkdir()
    shutil.copy(REPO_ROOT / "pyproject.toml", source)
    for folder in ("aml_local", "src"):
        shutil.copytree(REPO_ROOT / folder, source / folder, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    # A sub-package with a data file, as the ones to come (jobs/, endpoints/, assets/): found without naming it.
    (source / "aml_local" / "probe").mkdir()
    (source / "aml_local" / "probe" / "__init__.py").write_text("")
    (source / "aml_local" / "probe" / "table.json").write_text("{}")
    hook = "import sys, setuptools.build_meta as backend; print(backend.build_wheel(sys.argv[1]))"
    built = subprocess.run(
        [sys.executable, "-c", hook, str(tmp_path / "dist")], cwd=source, capture_output=True, text=True, timeout=120
    )
    assert built.returncode == 0, built.stderr[-3000:]
    return tmp_path / "dist" / built.stdout.split()[-1]


def test_the_wheel_carries_every_sub_package_and_the_package_data(tmp_path):
    with zipfile.ZipFile(_build_wheel(tmp_path)) as wheel:
        names = set(wheel.namelist())
        metadata = wheel.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
        entry_points = wheel.read(next(n for n in names if n.endswith(".dist-info/entry_points.txt"))).decode()
    package = REPO_ROOT / "aml_local"
    modules = {f"aml_local/{p.relative_to(package).as_posix()}" for p in package.rglob("*.py")}
    data = {f"aml_local/{p.relative_to(package).as_posix()}" for p in package.rglob("*.json")}
    assert {"aml_local/draw/index.html", "aml_local/draw/draw.js", "aml_local/draw/draw.css"} <= names
    assert {"aml_local/probe/__init__.py", "aml_local/probe/table.json"} <= names
    assert modules | data <= names, sorted(modules | data - names)
    assert "mnist_data.py" in names
    assert "aml-local = aml_local.cli:main" in entry_points
    # pip installs what METADATA requires: [project] dependencies, unconditionally.
    required = {line.removeprefix("Requires-Dist: ") for line in metadata.splitlines() if "extra ==" not in line}
    runtime = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert set(runtime) <= required


def test_the_draw_page_is_found_through_the_package():
    answer = client_side.draw_page("/draw/")  # as the endpoint's router serves it
    assert answer.status == 200 and dict(answer.headers)[b"Content-Type"].startswith(b"text/html")
    assert b'src="draw.js"' in answer.body


def test_a_checkout_keeps_one_store_at_its_root_wherever_it_runs(tmp_path, monkeypatch):
    monkeypatch.delenv("AML_LOCAL_HOME", raising=False)
    monkeypatch.chdir(tmp_path)
    assert store.home() == (REPO_ROOT / ".aml-local").resolve()


def test_an_installed_package_keeps_its_store_in_the_current_folder(tmp_path, monkeypatch):
    site_packages = tmp_path / "site-packages"  # where an installed aml_local lives: no pyproject.toml beside it
    site_packages.mkdir()
    monkeypatch.setattr(store, "REPO_ROOT", site_packages)
    monkeypatch.delenv("AML_LOCAL_HOME", raising=False)
    monkeypatch.chdir(tmp_path)
    assert store.home() == tmp_path / ".aml-local"
    assert (tmp_path / ".aml-local").is_dir() and not list(site_packages.iterdir())
    monkeypatch.setenv("AML_LOCAL_HOME", str(tmp_path / "elsewhere"))
    assert store.home() == tmp_path / "elsewhere"


def test_an_installed_mnist_data_caches_in_the_current_folder(tmp_path):
    site_packages = tmp_path / "venv" / "lib" / "site-packages"
    site_packages.mkdir(parents=True)
    workdir = tmp_path / "work"
    workdir.mkdir()
    shutil.copy(REPO_ROOT / "src" / "mnist_data.py", site_packages)
    env = {k: v for k, v in os.environ.items() if k not in ("MNIST_CACHE", "AML_LOCAL_HOME")}
    env["PYTHONPATH"] = str(site_packages)
    shown = subprocess.run(
        [sys.executable, "-c", "import mnist_data; print(mnist_data.default_cache_dir())"],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.strip() == str(workdir / ".aml-local" / "cache" / "mnist")


def test_a_job_without_code_leaves_the_store_beside_it_out_of_its_snapshot(tmp_path, monkeypatch):
    # An installed aml-local run from a folder holding the job YAML: the store is ./.aml-local, and a job with no
    # `code:` snapshots that folder. The store must not be copied into itself.
    monkeypatch.setenv("AML_LOCAL_HOME", str(tmp_path / ".aml-local"))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "hello.yml").write_text(
        textwrap.dedent(
            """\
            $schema: https://azuremlschemas.azureedge.net/latest/commandJob.schema.json
            command: echo hello > ${{outputs.result}}/greeting.txt
            outputs:
              result:
                type: uri_folder
            environment:
              image: mcr.microsoft.com/azureml/openmpi5.0-ubuntu24.04:latest
            compute: azureml:cpu-cluster
            """
        )
    )
    with open(os.devnull, "w") as quiet:
        shown = job.create("hello.yml", stream=True, echo=quiet)
    assert shown["status"] == "Completed"
    job_dir = tmp_path / ".aml-local" / "jobs" / shown["name"]
    # The snapshot holds the YAML's folder less the store, plus the ./logs and ./outputs every Azure ML job gets.
    assert sorted(p.name for p in (job_dir / "code").iterdir()) == ["hello.yml", "logs", "outputs"]
    assert (job_dir / "outputs" / "result" / "greeting.txt").read_text() == "hello\n"
