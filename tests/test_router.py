"""The endpoint's front end (endpoints/router/server.py) against real small servers on 127.0.0.1: the stub inference
servers of tests/stub_inference_server.py, one process each, so they can be slow, fail, die and be restarted. Every
expectation is Azure's documented behaviour (the router's docstring cites the pages). Request counts and waits are
bounded; each test stops its own processes."""

import asyncio
import concurrent.futures
import contextlib
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import psutil
import pytest

from aml_local import AmlLocalError
from aml_local.endpoints.router import server as router_module
from aml_local.endpoints.router.client_side import IncomingRequest

REPO_ROOT = Path(__file__).resolve().parents[1]
STUB = Path(__file__).with_name("stub_inference_server.py")
KEYS = {"primary": "primary-key-for-tests", "secondary": "secondary-key-for-tests"}
FAST_PROBE = {"initial_delay": 0, "period": 0.2, "timeout": 0.5, "failure_threshold": 3}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, timeout: float, what: str, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, f"{what}: not within {timeout} s"
        time.sleep(interval)


def answers(port: int, path: str = "/") -> bool:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
    try:
        connection.request("GET", path)
        return connection.getresponse().status == 200
    except OSError:
        return False
    finally:
        connection.close()


def stop_group(pid: int):
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


class Client:
    """One keep-alive connection to a server on 127.0.0.1, as a browser or `requests` would hold."""

    def __init__(self, port: int, timeout: float = 10):
        self.port, self.timeout = port, timeout
        self.connection = None

    def call(self, method="POST", path="/score", body=b"{}", headers=None, key=KEYS["primary"]):
        """(status, headers with lower-case names, body bytes, seconds)."""
        all_headers = {"Content-Type": "application/json"} | ({"Authorization": f"Bearer {key}"} if key else {})
        all_headers |= headers or {}
        if self.connection is None:
            self.connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
        started = time.perf_counter()
        try:
            self.connection.request(method, path, body=body, headers=all_headers)
            response = self.connection.getresponse()
            raw = response.read()
        except Exception:
            self.close()
            raise
        elapsed = time.perf_counter() - started
        if response.getheader("Connection", "").lower() == "close":
            self.close()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, raw, elapsed

    def close(self):
        if self.connection is not None:
            self.connection.close()
            self.connection = None


def deployment(ports, *, max_concurrent=16, instance_count=None, timeout_ms=3000, probe=None, **extra):
    return {
        "instance_count": instance_count or len(ports),
        "max_concurrent_requests_per_instance": max_concurrent,
        "request_timeout_ms": timeout_ms,
        "liveness_probe": probe or FAST_PROBE,
        "servers": [{"host": "127.0.0.1", "port": port} for port in ports],
        **extra,
    }


class Endpoint:
    """A state folder, the stub servers and the router of one test."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.processes: list[subprocess.Popen] = []
        self.router: subprocess.Popen | None = None
        self.generation = 0
        self.port = 0

    def backend(self, name: str, *args: str, port: int | None = None) -> int:
        port = port or free_port()
        process = subprocess.Popen(
            [sys.executable, str(STUB), "--port", str(port), "--name", name, *args], start_new_session=True
        )
        self.processes.append(process)
        wait_for(lambda: answers(port), 10, f"stub server {name}")
        return port

    def write(self, deployments: dict, traffic: dict, mirror=None, port: int = 0, keys=KEYS, **extra):
        """routing.json as the verbs write it: a temporary file renamed over the old one."""
        self.generation += 1
        table = {
            "schema_version": 1,
            "generation": self.generation,
            "endpoint": "test-endpoint",
            "port": port,
            "keys": keys,
            "traffic": traffic,
            "mirror_traffic": mirror or {},
            "deployments": deployments,
            **extra,
        }
        temporary = self.folder / ".routing.json.tmp"
        temporary.write_text(json.dumps(table))
        os.replace(temporary, self.folder / "routing.json")
        return self.generation

    def state(self) -> dict:
        return json.loads((self.folder / "router.json").read_text())

    def start(self) -> int:
        log = open(self.folder / "router.log", "wb")  # noqa: SIM115 - the router's stderr for its whole life
        self.router = subprocess.Popen(
            [sys.executable, "-m", "aml_local.endpoints.router", "--state-dir", str(self.folder)],
            cwd=REPO_ROOT,
            stderr=log,
            start_new_session=True,
        )
        log.close()

        def started():
            assert self.router.poll() is None, (self.folder / "router.log").read_text()
            with contextlib.suppress(OSError, ValueError, KeyError):
                state = self.state()
                return state["pid"] == self.router.pid and state["port"]
            return False

        self.port = wait_for(started, 15, "router.json from the router")
        return self.port

    def applied(self, generation: int):
        wait_for(lambda: self.state()["generation"] == generation, 5, f"routing table generation {generation}")

    def close(self):
        if self.router is not None:
            with contextlib.suppress(OSError, ValueError):
                for servers in self.state()["deployments"].values():
                    for server in servers:
                        if server["restarts"] and server["pid"]:
                            stop_group(server["pid"])  # the servers the router started itself
            stop_group(self.router.pid)
            self.router.wait(timeout=10)
        for process in self.processes:
            stop_group(process.pid)
            process.wait(timeout=10)


@pytest.fixture
def endpoint(tmp_path):
    folder = tmp_path / "endpoint"
    folder.mkdir()
    made = Endpoint(folder)
    try:
        yield made
    finally:
        made.close()


def served_by(raw: bytes) -> str:
    return json.loads(raw)["server"]


def test_key_auth_either_key_and_the_open_routes(endpoint):
    blue = endpoint.backend("blue")
    endpoint.write({"blue": deployment([blue])}, {"blue": 100})
    client = Client(endpoint.start())
    for key in (None, "wrong-key", KEYS["primary"] + "x"):
        status, headers, raw, _ = client.call(key=key)
        assert status == 401 and headers["www-authenticate"] == "Bearer"
        assert "Authorization: Bearer <key>" in json.loads(raw)["message"]
    status, _, _, _ = client.call(key=None, headers={"Authorization": f"Basic {KEYS['primary']}"})
    assert status == 401
    for key in KEYS.values():
        status, headers, raw, _ = client.call(key=key)
        assert status == 200 and headers["azureml-model-deployment"] == "blue" and served_by(raw) == "blue"
        # The key stops at the router; the scoring script never sees it.
        assert "authorization" not in json.loads(raw)["headers"]
    # Open without a key, as today's gateway has them: the health route and the draw-a-digit page.
    assert client.call("GET", "/", b"", key=None)[:1] == (200,)
    status, headers, raw, _ = client.call("GET", "/draw/", b"", key=None)
    assert status == 200 and headers["content-type"].startswith("text/html") and b"<html" in raw.lower()
    assert client.call("GET", "/draw", b"", key=None)[1]["location"] == "/draw/"
    assert client.call("GET", "/draw/../router.json", b"", key=None)[0] == 404
    # /swagger.json needs the key, as today and as Azure's own example calls openapi_uri; it reaches the deployment.
    assert client.call("GET", "/swagger.json", b"", key=None)[0] == 401
    status, _, raw, _ = client.call("GET", "/swagger.json?version=3", b"")
    assert status == 200 and json.loads(raw)["path"] == "/swagger.json?version=3"


def test_traffic_is_drawn_per_request_by_the_weights(endpoint):
    blue, green = endpoint.backend("blue"), endpoint.backend("green")
    endpoint.write({"blue": deployment([blue]), "green": deployment([green])}, {"blue": 70, "green": 30})
    client = Client(endpoint.start())
    counts = {"blue": 0, "green": 0}
    request_ids = set()
    for _ in range(600):
        status, headers, raw, _ = client.call()
        assert status == 200 and headers["azureml-model-deployment"] == served_by(raw)
        counts[headers["azureml-model-deployment"]] += 1
        request_ids.add(headers["x-request-id"])
    assert 0.22 <= counts["green"] / 600 <= 0.38, counts  # 30% of 600: 180 +- 4.5 standard deviations
    assert len(request_ids) == 600 and all(uuid.UUID(value).version == 4 for value in request_ids)


def test_the_deployment_header_picks_a_deployment_whatever_its_weight(endpoint):
    blue, green = endpoint.backend("blue"), endpoint.backend("green")
    endpoint.write({"blue": deployment([blue]), "green": deployment([green])}, {"blue": 100, "green": 0})
    client = Client(endpoint.start())
    for _ in range(50):
        status, headers, raw, _ = client.call(headers={"azureml-model-deployment": "green"})
        assert (status, headers["azureml-model-deployment"], served_by(raw)) == (200, "green", "green")
    status, headers, raw, _ = client.call(headers={"azureml-model-deployment": "purple"})
    assert (
        status == 404
        and "'purple' is not a deployment of this endpoint (deployments: blue, green)" in json.loads(raw)["message"]
    )
    # No deployment with a positive weight: 404 for a request routed by weight; the header still reaches either.
    endpoint.applied(endpoint.write({"blue": deployment([blue]), "green": deployment([green])}, {}))
    status, _, raw, _ = client.call()
    assert status == 404 and "no deployment with traffic" in json.loads(raw)["message"]
    assert served_by(client.call(headers={"azureml-model-deployment": "blue"})[2]) == "blue"


def test_mirrored_copies_reach_the_mirror_and_never_touch_the_client(endpoint):
    blue = endpoint.backend("blue")
    # A mirror that is both slow (1 s) and failing (500): neither may show in the client's answers.
    shadow = endpoint.backend("shadow", "--sleep-ms", "1000", "--status", "500")
    deployments = {"blue": deployment([blue]), "shadow": deployment([shadow], max_concurrent=100, timeout_ms=5000)}
    endpoint.write(deployments, {"blue": 100, "shadow": 0}, mirror={"shadow": 50})
    client, shadow_client = Client(endpoint.start()), Client(shadow)
    started = time.monotonic()
    for _ in range(100):
        status, headers, raw, seconds = client.call()
        assert (status, headers["azureml-model-deployment"], served_by(raw)) == (200, "blue", "blue")
        assert seconds < 0.5
    assert time.monotonic() - started < 10

    def copies():
        return json.loads(shadow_client.call("GET", "/count", b"", key=None)[2])["count"]

    def settled():
        """The mirror's count once it stopped growing: copies are sent in the background, and each takes 1 s (on a
        busy machine the last ones arrive later than that)."""
        deadline, last = time.monotonic() + 20, -1
        while (now := copies()) != last and time.monotonic() < deadline:
            last = now
            time.sleep(1.5)
        return now

    mirrored = settled()
    assert 25 <= mirrored <= 75, mirrored  # 50% of 100: 50 +- 5 standard deviations
    # A request sent with the deployment header is never mirrored.
    for _ in range(30):
        assert client.call(headers={"azureml-model-deployment": "blue"})[0] == 200
    time.sleep(1.5)
    assert settled() == mirrored


def test_copies_piled_up_on_a_slow_mirror_never_make_its_first_live_requests_429(endpoint):
    blue, shadow = endpoint.backend("blue"), endpoint.backend("shadow", "--sleep-ms", "1500")
    # The shadow's capacity is 2 x 1 x 1 = 2: two copies in progress fill it for 1.5 s.
    deployments = {"blue": deployment([blue]), "shadow": deployment([shadow], max_concurrent=1, timeout_ms=5000)}
    endpoint.write(deployments, {"blue": 100, "shadow": 0}, mirror={"shadow": 50})
    port = endpoint.start()
    client = Client(port)
    for _ in range(20):
        assert client.call()[0] == 200
    endpoint.applied(endpoint.write(deployments, {"blue": 0, "shadow": 100}))

    def live_request(_):
        return Client(port).call()[0]

    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        assert list(pool.map(live_request, range(2))) == [200, 200]


def test_a_model_answer_other_than_200_becomes_424_with_the_model_status(endpoint):
    blue = endpoint.backend("blue")
    endpoint.write({"blue": deployment([blue])}, {"blue": 100})
    client = Client(endpoint.start())
    for model_status in (400, 415, 500):
        status, headers, raw, _ = client.call(path=f"/score?status={model_status}")
        assert status == 424
        assert headers["ms-azureml-model-error-statuscode"] == str(model_status)
        assert headers["ms-azureml-model-error-reason"] == "model_error"
        assert headers["content-type"] == "application/json"
        assert json.loads(raw) == {"message": f"stub blue answers {model_status}"}  # the model's own message


def test_beyond_twice_the_concurrency_of_all_instances_requests_get_429_at_once(endpoint):
    blue = endpoint.backend("blue")
    # 2 x max_concurrent_requests_per_instance (1) x instance_count (2) = 4 requests in progress at most.
    endpoint.write({"blue": deployment([blue], max_concurrent=1, instance_count=2, timeout_ms=5000)}, {"blue": 100})
    port = endpoint.start()

    def slow_request(_):
        return Client(port).call(path="/score?sleep_ms=1500")

    with concurrent.futures.ThreadPoolExecutor(10) as pool:
        results = list(pool.map(slow_request, range(10)))
    statuses = sorted(status for status, *_ in results)
    assert statuses == [200] * 4 + [429] * 6, statuses
    refused = [result for result in results if result[0] == 429]
    assert all(seconds < 0.5 for *_, seconds in refused)
    assert all("too many pending requests" in json.loads(raw)["message"] for _, _, raw, _ in refused)
    assert Client(port).call()[0] == 200  # the slots come back


def test_a_request_not_answered_within_request_timeout_ms_gets_408(endpoint):
    blue = endpoint.backend("blue")
    endpoint.write({"blue": deployment([blue], timeout_ms=300)}, {"blue": 100})
    client = Client(endpoint.start())
    status, headers, raw, seconds = client.call(path="/score?sleep_ms=3000")
    assert status == 408 and headers["azureml-model-deployment"] == "blue"
    assert "request_timeout_ms (300 ms)" in json.loads(raw)["message"]
    assert 0.25 <= seconds < 1.5
    assert client.call()[0] == 200


def test_a_body_over_the_limit_gets_413_before_it_is_read(endpoint):
    blue = endpoint.backend("blue")
    endpoint.write({"blue": deployment([blue], max_request_bytes=1000)}, {"blue": 100})
    port = endpoint.start()
    client = Client(port)
    assert client.call(body=b"x" * 1000)[0] == 200
    # Declared over the limit, nothing sent: the answer comes without waiting for the body.
    with socket.create_connection(("127.0.0.1", port), timeout=5) as connection:
        connection.sendall(
            f"POST /score HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEYS['primary']}\r\n"
            "Content-Length: 1001\r\n\r\n".encode()
        )
        head = connection.recv(65536)
    assert head.startswith(b"HTTP/1.1 413 ") and b"larger than 1000 bytes" in head
    # Chunked, no length up front: at most one byte past the limit is read.
    status, _, raw, _ = Client(port).call(body=iter([b"x" * 600, b"x" * 600]))
    assert status == 413 and "larger than 1000 bytes" in json.loads(raw)["message"]


def test_a_dead_server_is_restarted_after_failure_threshold_probes_and_fails_fast_meanwhile(endpoint):
    port = free_port()
    endpoint.backend("blue", port=port)
    original = endpoint.processes[-1]
    restart = {"argv": [sys.executable, str(STUB), "--port", str(port), "--name", "blue"], "cwd": str(REPO_ROOT)}
    probe = {"initial_delay": 1, "period": 0.3, "timeout": 0.5, "failure_threshold": 5}
    table = deployment([port], probe=probe)
    table["servers"][0] |= {"pid": original.pid, "restart": restart}
    endpoint.write({"blue": table}, {"blue": 100})
    client = Client(endpoint.start())
    assert client.call()[0] == 200
    stop_group(original.pid)
    original.wait()
    # Down: requests get 424 at once (no hang) until the restarted server answers its probe.
    status, headers, raw, seconds = client.call()
    assert status == 424 and seconds < 0.5
    assert headers["ms-azureml-model-error-reason"] == "liveness_probe_failed"
    assert "no inference server up" in json.loads(raw)["message"]
    wait_for(lambda: client.call()[0] == 200, 15, "the restarted server answering through the router", 0.2)
    (server,) = endpoint.state()["deployments"]["blue"]
    assert server["restarts"] == 1 and server["up"] and server["pid"] not in (None, original.pid)


def test_while_no_server_is_up_requests_get_424_at_once_never_a_hang(endpoint):
    blue, green = endpoint.backend("blue"), endpoint.backend("green")
    endpoint.write({"blue": deployment([blue]), "green": deployment([green])}, {"blue": 50, "green": 50})
    client = Client(endpoint.start())
    stop_group(endpoint.processes[0].pid)  # blue dies, no restart recorded for it
    endpoint.processes[0].wait()
    answered = {200: 0, 424: 0}
    for _ in range(60):
        status, headers, _, seconds = client.call()
        assert seconds < 0.5
        answered[status] += 1
        assert (status, headers["azureml-model-deployment"]) in ((200, "green"), (424, "blue"))
    assert answered[200] > 10 and answered[424] > 10, answered
    assert wait_for(lambda: not endpoint.state()["deployments"]["blue"][0]["up"], 3, "blue marked down")


def test_a_dead_servers_port_taken_by_another_program_is_never_its_deployment(endpoint):
    """Servers get free ports, so once one has died another endpoint's server or router may be given its port (CI
    saw a request to a killed deployment answered by a stranger there). The router knows its servers by process:
    requests get 424 and the probes keep it down, whatever answers on the port."""
    port = endpoint.backend("blue")
    original = endpoint.processes[-1]
    table = deployment([port])
    table["servers"][0] |= {"pid": original.pid, "started": psutil.Process(original.pid).create_time()}
    endpoint.write({"blue": table}, {"blue": 100})
    client = Client(endpoint.start())
    assert served_by(client.call()[2]) == "blue"
    stop_group(original.pid)
    original.wait()
    endpoint.backend("stranger", port=port)  # the same port, another program
    for _ in range(10):  # over several probe periods
        status, headers, raw, _ = Client(endpoint.port).call()
        assert status == 424 and headers["ms-azureml-model-error-reason"] == "liveness_probe_failed", raw
        time.sleep(FAST_PROBE["period"])
    (server,) = endpoint.state()["deployments"]["blue"]
    assert server["up"] is False


def test_instance_count_servers_share_the_requests(endpoint):
    first, second = endpoint.backend("blue"), endpoint.backend("blue")
    endpoint.write({"blue": deployment([first, second], instance_count=2)}, {"blue": 100})
    client = Client(endpoint.start())
    ports = [json.loads(client.call()[2])["port"] for _ in range(100)]
    assert {first, second} == set(ports) and min(ports.count(first), ports.count(second)) >= 30


def test_request_ids_and_the_client_request_id(endpoint):
    blue = endpoint.backend("blue")
    endpoint.write({"blue": deployment([blue])}, {"blue": 100})
    client = Client(endpoint.start())
    sent_id = "abc-DEF_123" + "!@#" + "x" * 50
    status, headers, raw, _ = client.call(headers={"x-ms-client-request-id": sent_id, "x-request-id": "not-a-guid"})
    received = json.loads(raw)["headers"]
    assert status == 200 and uuid.UUID(headers["x-request-id"]).version == 4
    assert received["x-request-id"] == headers["x-request-id"]  # the deployment logs the same id
    # Letters, digits, '-' and '_' only, at most 40 characters (the troubleshooting page, "Request tracing").
    expected = ("abc-DEF_123" + "x" * 50)[:40]
    assert headers["x-ms-client-request-id"] == received["x-ms-client-request-id"] == expected
    assert client.call(key="bad")[1]["x-request-id"]  # router-made answers carry one too


def test_routing_table_changes_mid_traffic_fail_no_request(endpoint):
    blue, green = endpoint.backend("blue"), endpoint.backend("green")
    deployments = {"blue": deployment([blue]), "green": deployment([green])}
    endpoint.write(deployments, {"blue": 100, "green": 0})
    port = endpoint.start()
    stop = threading.Event()
    problems, served = [], []

    def load():
        client = Client(port)
        while not stop.is_set():
            try:
                status, _, raw, _ = client.call()
            except (OSError, http.client.HTTPException) as err:
                problems.append(repr(err))
                continue
            if status != 200:
                problems.append(status)
            else:
                served.append(json.loads(raw)["port"])

    threads = [threading.Thread(target=load) for _ in range(4)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(0.5)
        endpoint.applied(endpoint.write(deployments, {"blue": 10, "green": 90}))  # canary, then all
        time.sleep(0.5)
        endpoint.applied(endpoint.write(deployments, {"blue": 0, "green": 100}))
        time.sleep(0.5)
        # green replaced: a new server, switched to, then the old one stopped once its requests are done
        new_green = endpoint.backend("green")
        deployments = {"blue": deployment([blue]), "green": deployment([new_green])}
        endpoint.applied(endpoint.write(deployments, {"blue": 0, "green": 100}))
        time.sleep(0.5)
        stop_group(endpoint.processes[1].pid)
        switched = len(served)
        time.sleep(0.5)
        endpoint.applied(endpoint.write({"green": deployment([new_green])}, {"green": 100}))  # blue deleted
        time.sleep(0.5)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=15)
    assert not problems, problems[:10]
    assert len(served) > 200
    assert set(served[switched:]) == {new_green}


def test_a_request_routed_just_before_a_table_change_follows_the_new_table(endpoint):
    """A request's head is routed by the table in force; if the table changes before it is sent, it goes by the new
    one: to its deployment's servers in force now (an update replaced them), or, when its deployment was deleted, to
    a deployment the new table chooses (the header's name: 404, as for any unknown name). A server that left the table
    never takes a request that was not already sent to it, so the verbs may stop it once those have ended."""
    old, new, blue = endpoint.backend("green"), endpoint.backend("green"), endpoint.backend("blue")
    both = {"green": deployment([old]), "blue": deployment([blue])}
    first = router_module.parse_table(table_with(traffic={"green": 100}, deployments=both))
    replaced = router_module.parse_table(
        table_with(traffic={"green": 100}, deployments={"green": deployment([new]), "blue": deployment([blue])})
    )
    green_deleted = router_module.parse_table(
        table_with(traffic={"blue": 100}, deployments={"blue": deployment([blue])})
    )
    emptied = router_module.parse_table(table_with(traffic={}, deployments={}))
    key = f"Bearer {KEYS['primary']}"

    async def routed_then(table, named=None):
        router = router_module.Router(endpoint.folder, first)
        router.apply(first)
        head = [(b"Authorization", key.encode()), (b"Content-Type", b"application/json")]
        headers = {"authorization": key}
        if named:
            head.append((b"azureml-model-deployment", named.encode()))
            headers["azureml-model-deployment"] = named
        request = IncomingRequest(method="POST", target=b"/score", raw_headers=head, body=[b"{}"])
        request.decision = router.decide("POST", "/score", headers)
        router.apply(table)
        answer = await router.answer(request)
        return answer, dict(answer.headers)

    answer, headers = asyncio.run(routed_then(replaced))
    assert answer.status == 200 and json.loads(answer.body)["port"] == new
    assert headers[b"azureml-model-deployment"] == b"green"
    answer, headers = asyncio.run(routed_then(green_deleted))
    assert answer.status == 200 and json.loads(answer.body)["port"] == blue
    assert headers[b"azureml-model-deployment"] == b"blue"
    answer, _ = asyncio.run(routed_then(green_deleted, named="green"))
    assert answer.status == 404 and "'green' is not a deployment of this endpoint" in json.loads(answer.body)["message"]
    answer, _ = asyncio.run(routed_then(emptied))
    assert answer.status == 404 and "has no deployment with traffic" in json.loads(answer.body)["message"]


def test_a_server_that_leaves_the_table_is_listed_draining_until_its_last_request_ends(endpoint):
    """router.json's `draining` names a server taken out of the table while a request sent to it is still in
    progress; the request is answered by it, and the server is off the list as soon as it is (what the deployment
    verbs wait on before they stop replaced servers)."""
    old, new = endpoint.backend("green"), endpoint.backend("green")
    endpoint.write({"green": deployment([old], timeout_ms=5000)}, {"green": 100})
    client = Client(endpoint.start())
    assert endpoint.state()["draining"] == []
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        slow = pool.submit(client.call, path="/score?sleep_ms=1500")
        counted = Client(old)  # the stub itself: its /count is the requests it has received
        wait_for(lambda: json.loads(counted.call("GET", "/count", b"", key=None)[2])["count"] == 1, 5, "the request")
        endpoint.applied(endpoint.write({"green": deployment([new], timeout_ms=5000)}, {"green": 100}))
        draining = endpoint.state()["draining"]
        assert [(server["port"], server["in_progress"]) for server in draining] == [(old, 1)]
        status, _, raw, _ = slow.result(timeout=10)
    assert status == 200 and json.loads(raw)["port"] == old
    wait_for(lambda: endpoint.state()["draining"] == [], 2, "the old server off the draining list")
    assert json.loads(client.call()[2])["port"] == new
    # A server that leaves the table with nothing in progress is never listed.
    endpoint.applied(endpoint.write({"green": deployment([old], timeout_ms=5000)}, {"green": 100}))
    assert endpoint.state()["draining"] == []


def test_a_table_that_breaks_a_rule_is_refused_and_the_old_one_stays(endpoint):
    blue, green = endpoint.backend("blue"), endpoint.backend("green")
    deployments = {"blue": deployment([blue]), "green": deployment([green])}
    endpoint.write(deployments, {"blue": 100})
    client = Client(endpoint.start())
    generation = endpoint.write(deployments, {"blue": 100}, mirror={"green": 60})
    wait_for(lambda: endpoint.state()["routing_error"], 5, "the refusal in router.json")
    assert "at most 50% of traffic can be mirrored" in endpoint.state()["routing_error"]
    assert endpoint.state()["generation"] == generation - 1
    assert client.call()[0] == 200


def test_the_router_keeps_its_port_and_refuses_a_taken_one(endpoint, tmp_path):
    blue = endpoint.backend("blue")
    wanted = free_port()
    endpoint.write({"blue": deployment([blue])}, {"blue": 100}, port=wanted)
    assert endpoint.start() == wanted
    other_port = free_port()
    endpoint.applied(endpoint.write({"blue": deployment([blue])}, {"blue": 100}, port=other_port))
    assert endpoint.state()["port"] == wanted and Client(wanted).call()[0] == 200
    # A second router for the same port: one line, exit code 2.
    second = tmp_path / "second"
    second.mkdir()
    (second / "routing.json").write_text(
        (endpoint.folder / "routing.json").read_text().replace(str(other_port), str(wanted))
    )
    result = subprocess.run(
        [sys.executable, "-m", "aml_local.endpoints.router", "--state-dir", str(second)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert f"port {wanted} on 127.0.0.1 is in use" in result.stderr


def test_a_missing_routing_table_is_one_line_and_exit_2(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "aml_local.endpoints.router", "--state-dir", str(tmp_path)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert (result.returncode, result.stderr.count("\n")) == (2, 1)
    assert "no routing table at" in result.stderr


def table_with(**changes):
    table = {
        "schema_version": 1,
        "endpoint": "e",
        "keys": dict(KEYS),
        "traffic": {"blue": 100},
        "deployments": {"blue": deployment([40001]), "green": deployment([40002])},
    }
    for path, value in changes.items():
        *parents, last = path.split("__")
        target = table
        for part in parents:
            target = target[part]
        target[last] = value
    return table


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"traffic": {"blue": 70}}, "traffic: the percentages add up to 70, not 100 (or 0)"),
        ({"traffic": {"purple": 100}}, "traffic.purple: no such deployment (deployments: blue, green)"),
        ({"traffic": {"blue": True}}, "traffic.blue: expected a whole percentage from 0 to 100, got true"),
        ({"mirror_traffic": {"green": 51}}, "at most 50% of traffic can be mirrored, got 51%"),
        ({"mirror_traffic": {"blue": 10}}, "deployment blue takes live traffic (100%); it cannot also mirror"),
        (
            {"traffic": {"blue": 100, "green": 0, "red": 0}, "mirror_traffic": {"green": 10, "red": 10}},
            "traffic.red: no such deployment",
        ),
        ({"keys__secondary": ""}, "keys: primary and secondary must be non-empty"),
        ({"deployments__blue__servers": [{"host": "10.0.0.1", "port": 1}]}, "expected a loopback address"),
        ({"deployments__blue__servers": [{"host": "127.0.0.1", "port": 70000}]}, "expected a port number"),
        ({"deployments__blue__request_timeout_ms": "5s"}, "deployments.blue.request_timeout_ms: expected int"),
        ({"deployments__blue__liveness_probe": {"period": 1}}, "deployments.blue.liveness_probe: missing"),
        ({"schema_version": 2}, "schema_version: this router reads version 1, got 2"),
    ],
)
def test_routing_table_rules_name_the_field(changes, message):
    with pytest.raises(AmlLocalError, match=r"^routing\.json: ") as raised:
        router_module.parse_table(table_with(**changes))
    assert message in str(raised.value)


def test_two_mirror_deployments_are_refused():
    table = table_with(traffic={"blue": 100}, mirror_traffic={"green": 10})
    table["deployments"]["red"] = deployment([40003])
    table["mirror_traffic"]["red"] = 10
    with pytest.raises(AmlLocalError, match="mirrored traffic goes to one deployment only, got green, red"):
        router_module.parse_table(table)


def test_a_valid_table_reads_as_written():
    parsed = router_module.parse_table(table_with(traffic={"blue": 70, "green": 30}))
    assert parsed.weighted == (("blue", 70), ("green", 30)) and parsed.mirror is None
    assert parsed.deployments["blue"].capacity == 2 * 16 * 1
    assert parsed.deployments["blue"].max_request_bytes == router_module.DEFAULT_MAX_REQUEST_BYTES
