"""The endpoint scenarios: load, requests past the concurrency limit, security, a server that died; and the two
deployments they run against (the trained model's, from the project's specs, and one whose run() sleeps)."""

import contextlib
import dataclasses
import json
import os
import random
import shutil
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

import psutil

from aml_local import processes
from faults import client
from faults.aml import Aml, wait_until
from faults.bad_requests import problem_with_refusal
from faults.checks import Check, judge
from faults.client import Target
from faults.settings import Settings

REPO_ROOT = Path(__file__).resolve().parents[1]
ENDPOINT = "mnist-endpoint"  # endpoints/endpoint.yml's name
SLEEPY_ENDPOINT = "sleepy-endpoint"

# A scoring script whose run() sleeps as long as the request asks.
SLEEPY_SCORE = """\
import json, time
def init():
    pass
def run(raw_data):
    time.sleep(float(json.loads(raw_data)["sleep"]))
    return {"slept": True}
"""
SLEEPY_DEPLOYMENT = """\
$schema: https://azuremlschemas.azureedge.net/latest/managedOnlineDeployment.schema.json
name: sleepy
endpoint_name: ENDPOINT_NAME
code_configuration:
  code: ./code
  scoring_script: sleepy.py
environment: azureml:mnist-inference@latest
instance_type: Standard_DS3_v2
instance_count: 1
request_settings:
  request_timeout_ms: 1500
  max_concurrent_requests_per_instance: 2
environment_variables:
  WORKER_COUNT: "1"
readiness_probe:
  initial_delay: 1
  period: 1
  failure_threshold: 60
"""
SLEEPY_ENDPOINT_SPEC = f"""\
$schema: https://azuremlschemas.azureedge.net/latest/managedOnlineEndpoint.schema.json
name: {SLEEPY_ENDPOINT}
auth_mode: key
"""


@dataclasses.dataclass(frozen=True)
class Deployment:
    """A running deployment: where to reach it, how to create it again (`online-deployment create` arguments), and
    a request it must answer right (a problem in words, or None), named for make soak's figure."""

    target: Target
    create_args: tuple[str, ...]
    probe: Callable[[Target], str | None]
    probe_says: str


def target_of(aml: Aml, endpoint: str, deployment: str) -> Target:
    """Where the endpoint scenarios reach `deployment`: the endpoint's scoring URI (its router, as a client calls it;
    the Target's requests name the deployment in the azureml-model-deployment header), its key, and the body limit
    the router holds the deployment to."""
    scoring_uri = aml.json("online-endpoint", "show", "-n", endpoint)["scoring_uri"]
    shown = aml.json("online-deployment", "show", "-n", deployment, "-e", endpoint)
    key = aml.json("online-endpoint", "get-credentials", "-n", endpoint)["primaryKey"]
    return Target(scoring_uri, key, endpoint, deployment, int(shown["properties"]["aml_local.max_request_bytes"]))


def server_pids(aml: Aml, target: Target) -> list[int]:
    """The deployment's servers (each gunicorn's master, the leader of its process group)."""
    shown = aml.json("online-deployment", "show", "-n", target.deployment, "-e", target.endpoint)
    return [int(pid) for pid in shown["properties"]["aml_local.pids"].split(",")]


def router_pid(aml: Aml, target: Target) -> int:
    state = json.loads((aml.home / "endpoints" / target.endpoint / "router.json").read_text())
    return int(state["pid"])


@contextlib.contextmanager
def mnist_deployment(aml: Aml, model_dir: Path, environment_variables: dict[str, str]):
    """The trained model registered with endpoints/model.yml and deployed with endpoints/endpoint.yml and
    blue-deployment.yml (taking all the traffic), with the given environment_variables changed: a Deployment.
    The endpoint is deleted after."""
    aml.run("model", "create", "-f", "endpoints/model.yml", "--path", model_dir, "-o", "none")
    aml.run("online-endpoint", "create", "-f", "endpoints/endpoint.yml", "-o", "none")
    try:
        sets = [
            a
            for name, value in environment_variables.items()
            for a in ("--set", f"environment_variables.{name}={value}")
        ]
        create = ("-f", "endpoints/blue-deployment.yml", *sets)
        aml.run("online-deployment", "create", *create, "--all-traffic", "-o", "none")
        yield Deployment(target_of(aml, ENDPOINT, "blue"), create, client.sample_problem, "scores the sample right")
    finally:
        aml.run("online-endpoint", "delete", "-n", ENDPOINT, "--yes", "-o", "none", check=False)


def sleep_request(target: Target, seconds: float) -> client.Answer:
    return client.score(target, json.dumps({"sleep": seconds}).encode())


def _answers_at_once(target: Target) -> str | None:
    status = sleep_request(target, 0).status
    return None if status == 200 else f"a 0 s run() got {status}"


@contextlib.contextmanager
def sleepy_deployment(aml: Aml, folder: Path, endpoint: str | None = None):
    """A deployment named sleepy whose run() sleeps as long as the request asks (2 slots, request_timeout_ms 1500):
    into `endpoint` (it takes no traffic, and is deleted after), or, without one, into an endpoint of its own (it
    takes all the traffic; the endpoint is deleted after). A Deployment."""
    (folder / "code").mkdir(parents=True, exist_ok=True)
    (folder / "code" / "sleepy.py").write_text(SLEEPY_SCORE)
    # Its environment, azureml:mnist-inference@latest, is found as the project's own environments/*.yml.
    shutil.copytree(REPO_ROOT / "environments", folder / "environments", dirs_exist_ok=True)
    spec = folder / "sleepy.yml"
    spec.write_text(SLEEPY_DEPLOYMENT.replace("ENDPOINT_NAME", endpoint or SLEEPY_ENDPOINT))
    if endpoint is None:
        (folder / "endpoint.yml").write_text(SLEEPY_ENDPOINT_SPEC)
        aml.run("online-endpoint", "create", "-f", folder / "endpoint.yml", "-o", "none")
    try:
        aml.run("online-deployment", "create", "-f", spec, *([] if endpoint else ["--all-traffic"]), "-o", "none")
        yield Deployment(
            target_of(aml, endpoint or SLEEPY_ENDPOINT, "sleepy"), ("-f", str(spec)), _answers_at_once, "answers right"
        )
    finally:
        if endpoint is None:
            aml.run("online-endpoint", "delete", "-n", SLEEPY_ENDPOINT, "--yes", "-o", "none", check=False)
        else:
            aml.run("online-deployment", "delete", "-n", "sleepy", "-e", endpoint, "-o", "none", check=False)


# ---------------------------------------------------------------------------------------------------------------
# The scenarios.


def _server_rss(pids: list[int]) -> int:
    masters = [psutil.Process(pid) for pid in pids]
    return sum(p.memory_info().rss for master in masters for p in [master, *master.children(recursive=True)])


def load(aml: Aml, target: Target, settings: Settings) -> list[Check]:
    """wrk for settings.load_seconds at each of settings.load_connections, through the endpoint's router. Within the
    deployment's capacity (2 x max_concurrent_requests_per_instance x instance_count requests in progress, Azure's
    limit) every answer is a 2xx; beyond it the only other answer is 429 (no 5xx); either way no socket error and no
    request unanswered within request_timeout_ms. The servers' memory after all of it within 10% of after a warm-up;
    then the sample is still answered right."""
    shown = aml.json("online-deployment", "show", "-n", target.deployment, "-e", target.endpoint)
    timeout_s = shown["request_settings"]["request_timeout_ms"] / 1000
    capacity = 2 * shown["request_settings"]["max_concurrent_requests_per_instance"] * shown["instance_count"]

    def run(connections, seconds):
        # wrk's timeout is the deployment's request_timeout_ms: a request still unanswered then counts as hung.
        return client.wrk(
            target.scoring_uri, client.SAMPLE, connections, seconds, target.key, target.deployment, timeout_s=timeout_s
        )

    pids = server_pids(aml, target)
    warm_up = min(settings.load_connections[0], capacity)
    run(warm_up, min(settings.warmup_seconds, settings.load_seconds))  # every worker has served
    rss_warm = _server_rss(pids)
    checks = []
    for connections in settings.load_connections:
        numbers = run(connections, settings.load_seconds)
        rps = numbers["requests"] / (numbers["duration_us"] / 1e6)
        statuses = numbers["statuses"]
        figure = (
            f"{numbers['requests']} req, {rps:.0f}/s, p50 {numbers['p50_us'] / 1e3:.1f} ms, "
            f"p99 {numbers['p99_us'] / 1e3:.1f} ms, max {numbers['max_us'] / 1e3:.0f} ms, "
            f"statuses {statuses}, errors {numbers['socket_errors']}"
        )
        succeeded = sum(count for status, count in statuses.items() if 200 <= status < 300)
        criteria = {
            "no socket error or timeout": numbers["socket_errors"] == 0,
            "requests were answered 2xx": succeeded,
        }
        if connections <= capacity:
            criteria[f"every answer a 2xx (within the capacity of {capacity})"] = numbers["non_2xx"] == 0
            name = f"load {connections} conns {settings.load_seconds}s"
        else:
            criteria[f"only 2xx or 429 beyond the capacity of {capacity}"] = set(statuses) - {429} <= set(
                range(200, 300)
            )
            name = f"load {connections} conns (> {capacity}) {settings.load_seconds}s"
        checks.append(judge(name, figure, criteria))
    rss_end = _server_rss(pids)
    change = (rss_end - rss_warm) / rss_warm
    figure = f"RSS {rss_warm / 2**20:.0f} MiB after warm-up, {rss_end / 2**20:.0f} MiB at end ({change:+.1%})"
    checks.append(judge("load memory (RSS within 10%)", figure, {"within 10%": abs(change) <= 0.10}))
    return [*checks, client.good_request(target, "load")]


def overload(target: Target, clients: int, per_client: int, sleep_s: float) -> tuple[dict[int, int], float]:
    """`clients` threads at once, each sending per_client requests whose run() sleeps sleep_s: ({status: count},
    the slowest answer's seconds). A request nothing answered counts as status -1 and 30 s."""
    statuses, slowest, lock = {}, [0.0], threading.Lock()

    def one_client():
        for _ in range(per_client):
            try:
                status, _, _, seconds = sleep_request(target, sleep_s)
            except OSError:
                status, seconds = -1, 30.0
            with lock:
                statuses[status] = statuses.get(status, 0) + 1
                slowest[0] = max(slowest[0], seconds)

    threads = [threading.Thread(target=one_client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return dict(sorted(statuses.items())), slowest[0]


def overload_and_stuck(aml: Aml, target: Target, settings: Settings) -> list[Check]:
    """Against the sleepy deployment, through the endpoint's router: more requests at once than its capacity (2 x
    max_concurrent_requests_per_instance x instance_count in progress) get only 200, 429 (at once, past the capacity)
    or 408 (not answered within request_timeout_ms), never later than the timeout + 0.5 s; a run() stuck for 10 s
    gets 408 at the timeout, while the server's other thread still serves."""
    settings_shown = aml.json("online-deployment", "show", "-n", target.deployment, "-e", target.endpoint)[
        "request_settings"
    ]
    timeout_ms, slots = settings_shown["request_timeout_ms"], settings_shown["max_concurrent_requests_per_instance"]
    clients, per_client, sleep_s = (
        settings.overload_clients,
        settings.overload_requests_per_client,
        settings.overload_sleep_s,
    )
    statuses, slowest = overload(target, clients, per_client, sleep_s)
    figure = (
        f"{clients} clients x {per_client} of a {sleep_s} s run(), capacity {2 * slots}: statuses {statuses}; slowest "
        f"{slowest:.2f} s (request_timeout {timeout_ms / 1000:.1f} s)"
    )
    criteria = {
        "only 200, 408 or 429": set(statuses) <= {200, 408, 429},
        "at least 2 answered 200": statuses.get(200, 0) >= 2,
        f"at least one 429 ({clients} at once, capacity {2 * slots})": statuses.get(429, 0) >= 1,
        "none answered later than request_timeout_ms + 0.5 s": slowest <= timeout_ms / 1000 + 0.5,
    }
    checks = [judge("overload: 429 past the capacity", figure, criteria)]

    status, content_type, raw, seconds = sleep_request(target, 10)
    refusal = problem_with_refusal(status, content_type, raw)
    message = json.loads(raw).get("message", "") if refusal is None else ""
    # The stuck run() still holds one of the server's threads; the other serves. Once it returns, both do.
    other_slot = sleep_request(target, 0).status
    freed = wait_until(lambda: sleep_request(target, 0).status == 200, 15)
    criteria = {
        "408": status == 408,
        f"a JSON message ({refusal})": refusal is None,
        f"the message names request_timeout_ms ({timeout_ms} ms)": f"request_timeout_ms ({timeout_ms} ms)" in message,
        "answered at the timeout (-0.1 s, +1 s)": timeout_ms / 1000 - 0.1 <= seconds < timeout_ms / 1000 + 1,
        f"the other slot serves meanwhile (got {other_slot})": other_slot == 200,
        "a request is answered within 15 s after": bool(freed),
    }
    checks.append(judge("overload: stuck run() times out", f"a 10 s run(): {status} after {seconds:.2f} s", criteria))
    return checks


def security(aml: Aml, target: Target, settings: Settings) -> list[Check]:
    """401 without a key, with a wrong one, with the key less its last character, and for /swagger.json without
    one; the router and the servers listen on 127.0.0.1 only; neither key nor a request's body is written to the
    server's log, the router's, or anywhere in the store but the endpoint's routing table (routing.json, 0600)."""
    body = client.SAMPLE.read_bytes()
    answers = [
        client.score(target, body, key="").status,
        client.score(target, body, key="wrong-" + target.key).status,
        client.score(target, body, key=target.key[:-1]).status,
        client.openapi(target, key="").status,
    ]
    figure = f"no key, wrong key, key minus a character, swagger without key: {answers}"
    checks = [judge("security: key required", figure, {"all 401": answers == [401] * 4})]

    leaders = [psutil.Process(pid) for pid in [router_pid(aml, target), *server_pids(aml, target)]]
    listening = {
        f"{c.laddr.ip}:{c.laddr.port}"
        for leader in leaders
        for p in [leader, *leader.children(recursive=True)]
        for c in p.net_connections()
        if c.status == psutil.CONN_LISTEN
    }
    criteria = {"it listens": bool(listening), "on 127.0.0.1 only": all(a.startswith("127.0.0.1:") for a in listening)}
    checks.append(judge("security: listens on 127.0.0.1 only", ", ".join(sorted(listening)), criteria))

    marker = f"BODY-MARKER-{random.Random(settings.seed).randrange(10**9)}"
    client.score(target, json.dumps({"data": [[marker]]}).encode())
    client.score(target, json.dumps({"note": marker}).encode(), key="")
    keys = aml.json("online-endpoint", "get-credentials", "-n", target.endpoint)
    shown = aml.json("online-deployment", "show", "-n", target.deployment, "-e", target.endpoint)
    log = Path(shown["properties"]["aml_local.log_file"])
    leaks = []
    for path in {*aml.home.rglob("*"), log}:
        if not path.is_file() or path.name == "routing.json" or path.suffix in (".db", ".npz", ".keras", ".h5"):
            continue
        text = path.read_text(errors="replace")
        for secret, what in (
            (keys["primaryKey"], "primary key"),
            (keys["secondaryKey"], "secondary key"),
            (marker, "body"),
        ):
            if secret in text:
                leaks.append(f"{what} in {path.relative_to(aml.home.parent)}")
    figure = f"searched the server log and {aml.home.name}/ for both keys and a request body: {leaks or 'none found'}"
    checks.append(judge("security: no key or body in logs", figure, problems=sorted(leaks)))
    return checks


def recovery(aml: Aml, deployment: Deployment) -> list[Check]:
    """The servers' process groups SIGKILLed: `show` says Failed, not running, and the endpoint's router answers
    the deployment's requests with 424 at once (Azure's answer while a deployment's probes fail), never a hang;
    `create` with the same spec starts it again in place (its share of the traffic kept) and it answers right; a
    second `create` while it runs is refused, not a replacement behind its users' backs."""
    target = deployment.target
    traffic_before = aml.json("online-endpoint", "show", "-n", target.endpoint)["traffic"]
    pids = server_pids(aml, target)
    for pid in pids:
        os.killpg(pid, signal.SIGKILL)
    gone = wait_until(lambda: all(processes.group_gone(pid) for pid in pids), 15)
    try:
        answered = client.score(target, b"{}")
        answer = f"{answered.status} after {answered.seconds:.2f} s"
    except OSError as err:
        answered, answer = None, f"no answer ({err})"
    shown = aml.json("online-deployment", "show", "-n", target.deployment, "-e", target.endpoint)
    state, message = shown["provisioning_state"], shown["properties"].get("aml_local.status_message", "")
    criteria = {
        "its processes ended within 15 s": gone,
        f"the endpoint answers 424 at once for it ({answer})": answered is not None
        and answered.status == 424
        and answered.seconds < 2,
        "Failed": state == "Failed",
        "says it is not running": "not running" in message,
    }
    checks = [judge("recovery: show a dead server", f"{state}: {message}; the endpoint answered {answer}", criteria)]

    started = time.monotonic()
    shown = aml.json("online-deployment", "create", *deployment.create_args)  # no --all-traffic: its share is kept
    traffic = aml.json("online-endpoint", "show", "-n", target.endpoint)["traffic"]
    again = target_of(aml, target.endpoint, target.deployment)
    problem = deployment.probe(again)
    figure = f"create again: {shown['provisioning_state']} in {time.monotonic() - started:.0f} s, traffic {traffic}"
    figure += f", {deployment.probe_says}" if problem is None else f", {problem}"
    replaced = aml.run("online-deployment", "create", *deployment.create_args, check=False)
    criteria = {
        "Succeeded": shown["provisioning_state"] == "Succeeded",
        f"its share of the traffic kept ({traffic_before})": traffic == traffic_before
        and traffic.get(target.deployment, 0) > 0,
        "it answers right": problem is None,
        "create while it runs is refused (exit 1, already exists)": replaced.returncode == 1
        and "already exists" in replaced.stderr,
    }
    checks.append(judge("recovery: create again restarts it", figure, criteria))
    return checks
