"""Security properties not covered by test_online_endpoint.py: the secrets scan `make lint` runs (and that it would
catch a planted key), the workflows' OIDC sign-in and least privilege, the endpoint's router comparing keys in
constant time, every key on every request; and the security scenario `make soak` runs (faults/endpoint.py) against a
real deployment through its endpoint: the key required, 127.0.0.1 only, no key or request body in any log."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from aml_local.endpoints.router import client_side
from faults import endpoint
from faults.settings import SHORT

REPO_ROOT = Path(__file__).resolve().parents[1]
HOOK = Path(sys.executable).parent / "detect-secrets-hook"
WORKFLOWS = sorted((REPO_ROOT / ".github/workflows").glob("*.yml"))
# Built at run time, so this file holds no key-shaped literal for the repository's own scan to find.
FAKE_AWS_KEY = "AKIA" + "Z7QX4JH2LMNPRS5T"
PLANTED_DB_VALUE = "h8Tq" + "-s3cr3t-Vw9xKp2"


def scan(*files) -> subprocess.CompletedProcess:
    """The scan `make lint` runs (from the repository, with its baseline) on the given files."""
    command = [str(HOOK), "--baseline", ".secrets.baseline", *map(str, files)]
    return subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)


def test_the_secrets_scan_passes_the_repo_and_catches_a_key_planted_in_a_copy(tmp_path):
    clean = scan("src/mnist_data.py", "aml_local/endpoints/router/client_side.py", "tests/test_security.py")
    assert clean.returncode == 0, clean.stdout + clean.stderr

    copy = tmp_path / "mnist_data.py"  # a copy of the file with hex checksums, plus a planted key and password
    copy.write_text(
        (REPO_ROOT / "src/mnist_data.py").read_text()
        + f'\nAWS_ACCESS_KEY_ID = "{FAKE_AWS_KEY}"\ndb_password = "{PLANTED_DB_VALUE}"\n'
    )
    caught = scan("src/mnist_data.py", copy)
    assert caught.returncode == 1, caught.stdout + caught.stderr
    locations = [line.split()[-1] for line in caught.stdout.splitlines() if line.startswith("Location:")]
    lines = len(copy.read_text().splitlines())
    assert sorted(locations) == [f"{copy}:{lines - 1}", f"{copy}:{lines}"], caught.stdout
    assert "AWS Access Key" in caught.stdout


def test_the_baseline_lets_through_only_the_mnist_checksums_and_the_cited_commit_ids():
    """No audited findings; two excluded line patterns: exactly the data module's four md5 checksums, and exactly
    the git commit ids the curated-environment table cites as its sources."""
    baseline = json.loads((REPO_ROOT / ".secrets.baseline").read_text())
    assert baseline["results"] == {}
    patterns = [f["pattern"] for f in baseline["filters_used"] if f["path"].endswith("should_exclude_line")]
    assert len(patterns) == 1 and len(patterns[0]) == 2
    checksums, commits = (re.compile(pattern) for pattern in patterns[0])
    sys.path.insert(0, str(REPO_ROOT / "src"))
    import mnist_data

    matched = [line for line in (REPO_ROOT / "src/mnist_data.py").read_text().splitlines() if checksums.search(line)]
    assert len(matched) == 4 and all(any(md5 in line for md5 in mnist_data.CHECKSUMS.values()) for line in matched)
    table = REPO_ROOT / "aml_local/assets/curated_environments.json"
    environments = json.loads(table.read_text())["environments"].values()
    cited = [value for env in environments for key, value in env.items() if key.endswith("_commit")]
    matched = [line for line in table.read_text().splitlines() if commits.search(line)]
    assert len(matched) == len(cited) > 0 and all(any(c in line for c in cited) for line in matched)
    # Nothing else in the repository is let through by the commit-id pattern.
    tracked = subprocess.run(["git", "ls-files"], cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    others = [
        path
        for path in tracked.stdout.split()
        if path != "aml_local/assets/curated_environments.json"
        and (REPO_ROOT / path).is_file()
        and any(commits.search(line) for line in (REPO_ROOT / path).read_text(errors="replace").splitlines())
    ]
    assert others == []


@pytest.mark.parametrize("path", WORKFLOWS, ids=[p.name for p in WORKFLOWS])
def test_workflows_grant_least_privilege_and_sign_in_to_azure_with_oidc(path):
    workflow = yaml.safe_load(path.read_text())
    permissions = workflow.get("permissions")
    assert isinstance(permissions, dict), f"{path.name}: top-level permissions must be an explicit map"
    allowed_writes = {"id-token"}  # only to request the OIDC token azure/login exchanges
    for scope, level in permissions.items():
        assert level in ("read", "none") or scope in allowed_writes, f"{path.name}: {scope}: {level}"
    text = path.read_text()
    assert "write-all" not in text and "pull_request_target" not in text
    for job_name, job in workflow["jobs"].items():
        job_permissions = job.get("permissions", {})
        assert all(level in ("read", "none") or scope in allowed_writes for scope, level in job_permissions.items())
        for step in job.get("steps", []):
            if str(step.get("uses", "")).startswith("azure/login@"):
                given = step.get("with", {})
                assert "creds" not in given and "client-secret" not in given, f"{job_name}: a stored secret"
                assert {"client-id", "tenant-id", "subscription-id"} <= set(given), f"{job_name}: not OIDC"
                assert permissions.get("id-token") == "write" or job_permissions.get("id-token") == "write"
            # Third-party actions are pinned to a release (a tag or a commit), never a moving branch.
            if "uses" in step:
                assert "@" in step["uses"] and not step["uses"].endswith(("@main", "@master")), step["uses"]


def test_the_router_compares_every_key_in_constant_time(monkeypatch):
    """hmac.compare_digest for both keys on every request, whichever matches, so timing says nothing."""
    calls = []

    def recording_compare(supplied, key):
        calls.append(key)
        return supplied == key

    monkeypatch.setattr(client_side.hmac, "compare_digest", recording_compare)
    keys = (b"primary-key", b"secondary-key")
    for header, expected in (("Bearer primary-key", True), ("Bearer secondary-key", True), ("Bearer wrong", False)):
        calls.clear()
        assert client_side.authorized(header, keys) is expected
        assert calls == list(keys), header


@pytest.mark.slow
def test_a_deployment_needs_the_key_listens_on_loopback_only_and_logs_no_key_or_body(mnist_deployment):
    aml, deployed = mnist_deployment
    checks = endpoint.security(aml, deployed.target, SHORT)
    assert [c.verdict for c in checks] == ["PASS", "PASS", "PASS"], "\n".join(map(str, checks))
