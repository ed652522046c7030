"""A scoring endpoint as its clients call it: by URI, with the key, naming the deployment. 127.0.0.1 only."""

import dataclasses
import http.client
import json
import os
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import NamedTuple
from urllib.parse import urlsplit

from faults.checks import Check, judge

REPO_ROOT = Path(__file__).resolve().parents[1]
SAMPLE = REPO_ROOT / "endpoints/sample-request.json"
SAMPLE_LABEL = 7  # endpoints/sample-request.json is MNIST test image 0, a 7
JSON = {"Content-Type": "application/json"}
# Azure's endpoint router sends a request to the deployment this header names, whatever the traffic split ("Test
# the green deployment in isolation": https://learn.microsoft.com/azure/machine-learning/how-to-safely-rollout-online-endpoints).
# The local endpoint's router routes by it the same way (aml_local/endpoints/router/server.py).
DEPLOYMENT_HEADER = "azureml-model-deployment"


@dataclasses.dataclass(frozen=True)
class Target:
    """Where an endpoint scenario sends its requests: the endpoint's one scoring URI (its router), the key, and the
    deployment its requests name in the azureml-model-deployment header."""

    scoring_uri: str
    key: str
    endpoint: str
    deployment: str
    max_request_bytes: int  # the body size past which the router answers 413

    def __post_init__(self):
        loopback(self.scoring_uri)

    @property
    def openapi_uri(self) -> str:
        # As az ml online-endpoint show gives it: the scoring URI's /score replaced by /swagger.json.
        return self.scoring_uri.removesuffix("/score") + "/swagger.json"

    def headers(self, key: str | None = None, extra: dict | None = None) -> dict:
        """The deployment header, Authorization with `key` (default the target's; "" for none), then `extra`."""
        key = self.key if key is None else key
        return (
            {DEPLOYMENT_HEADER: self.deployment} | ({"Authorization": f"Bearer {key}"} if key else {}) | (extra or {})
        )


def loopback(url: str) -> tuple[str, int, str]:
    """(host, port, path) of a URL on 127.0.0.1; anything else is refused: fault scenarios stay on this machine."""
    parts = urlsplit(url)
    if parts.scheme != "http" or parts.hostname != "127.0.0.1" or not parts.port:
        raise ValueError(f"{url}: fault scenarios only talk to http://127.0.0.1:PORT")
    return parts.hostname, parts.port, parts.path or "/"


class Answer(NamedTuple):
    status: int
    content_type: str
    body: bytes
    seconds: float


def request(url: str, body: bytes, headers: dict, method: str = "POST", timeout: float = 30.0) -> Answer:
    """One request on a fresh connection. OSError when nothing answers."""
    host, port, path = loopback(url)
    connection = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        started = time.perf_counter()
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        raw = response.read()
        return Answer(response.status, response.getheader("Content-Type", ""), raw, time.perf_counter() - started)
    finally:
        connection.close()


def score(target: Target, body: bytes, headers: dict | None = JSON, key: str | None = None) -> Answer:
    """POST body to the target's scoring URI with the given headers (default: JSON), its key unless `key` says."""
    return request(target.scoring_uri, body, target.headers(key, headers))


def openapi(target: Target, key: str | None = None) -> Answer:
    """GET the service's swagger document, with the target's key unless `key` says otherwise ("" for none)."""
    return request(target.openapi_uri, b"", target.headers(key), method="GET")


def sample_problem(target: Target) -> str | None:
    """None when endpoints/sample-request.json is answered 200 with its digit and ten probabilities."""
    answer = score(target, SAMPLE.read_bytes())
    if answer.status != 200:
        return f"the sample request got {answer.status}: {answer.body[:200]!r}"
    result = json.loads(answer.body)
    probabilities = result.get("probabilities") or [[]]
    if result.get("predictions") != [SAMPLE_LABEL] or len(probabilities[0]) != 10:
        return f"the sample request (a {SAMPLE_LABEL}) was answered {str(result)[:200]}"
    return None


def good_request(target: Target, after: str) -> Check:
    """The check that the sample request is still answered right, after what `after` names."""
    problem = sample_problem(target)
    return judge(
        f"{after} then a good request", "answered 200 with the right digit", problems=[problem] if problem else []
    )


def oversized_status(target: Target, declared: int) -> tuple[int, bytes]:
    """Declare a body of `declared` bytes and send none of it: the router must answer without waiting for it.
    (status, body) of the answer."""
    host, port, path = loopback(target.scoring_uri)
    head = {"Host": host, **target.headers(), "Content-Type": "application/json", "Content-Length": str(declared)}
    lines = [f"POST {path} HTTP/1.1", *(f"{k}: {v}" for k, v in head.items()), "Connection: close", "", ""]
    with socket.create_connection((host, port), timeout=10) as connection:
        connection.sendall("\r\n".join(lines).encode())
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
    status_line, _, rest = answer.partition(b"\r\n")
    return int(status_line.split()[1]), rest.partition(b"\r\n\r\n")[2]


# wrk posts BODY_FILE on every request, with the key and the deployment header when given; done() prints its numbers
# as one JSON line.
WRK_SCRIPT = """
local file = assert(io.open(os.getenv("BODY_FILE"), "rb"))
wrk.method = "POST"
wrk.body = file:read("*a")
file:close()
wrk.headers["Content-Type"] = "application/json"
local key = os.getenv("BEARER_KEY")
if key and key ~= "" then wrk.headers["Authorization"] = "Bearer " .. key end
local deployment = os.getenv("DEPLOYMENT")
if deployment and deployment ~= "" then wrk.headers["azureml-model-deployment"] = deployment end

-- Answers counted by status in each thread (a global of its Lua state), added up in done().
local threads = {}
function setup(thread) table.insert(threads, thread) end
statuses = {}
function response(status, headers, body) statuses[status] = (statuses[status] or 0) + 1 end

function done(summary, latency, requests)
  local e = summary.errors
  local counts = {}
  for _, thread in ipairs(threads) do
    for status, count in pairs(thread:get("statuses")) do
      table.insert(counts, string.format('"%d": %d', status, count))
    end
  end
  io.write(string.format(
    'RESULT {"requests": %d, "duration_us": %d, "non_2xx": %d, "connect": %d, "read": %d, "write": %d, ' ..
    '"timeout": %d, "p50_us": %d, "p99_us": %d, "max_us": %d, "statuses": [{%s}]}\\n',
    summary.requests, summary.duration, e.status, e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(99), latency.max, table.concat(counts, "}, {")))
end
"""


def wrk(
    url: str,
    body_file: Path,
    connections: int,
    seconds: int,
    key: str = "",
    deployment: str = "",
    threads: int = 2,
    timeout_s: float = 5,
) -> dict:
    """wrk's numbers for one run: requests, duration_us, non_2xx, connect/read/write/timeout errors (and their sum,
    socket_errors), p50_us, p99_us, max_us, and statuses ({status: answers}). A request unanswered after timeout_s
    counts as a timeout."""
    loopback(url)
    with tempfile.TemporaryDirectory(prefix="wrk-") as folder:
        script = Path(folder) / "post.lua"
        script.write_text(WRK_SCRIPT)
        env = {**os.environ, "BODY_FILE": str(body_file), "BEARER_KEY": key, "DEPLOYMENT": deployment}
        command = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--timeout", f"{timeout_s:g}s"]
        result = subprocess.run(
            [*command, "-s", str(script), url], env=env, capture_output=True, text=True, timeout=seconds + 60
        )
    lines = [line for line in result.stdout.splitlines() if line.startswith("RESULT ")]
    if result.returncode or not lines:
        raise RuntimeError(f"wrk failed ({result.returncode}): {result.stdout[-500:]} {result.stderr[-500:]}")
    numbers = json.loads(lines[-1].removeprefix("RESULT "))
    numbers["socket_errors"] = sum(numbers[kind] for kind in ("connect", "read", "write", "timeout"))
    totals = {}
    for per_thread in numbers["statuses"]:  # one {status: count} per wrk thread
        for status, count in per_thread.items():
            totals[int(status)] = totals.get(int(status), 0) + count
    numbers["statuses"] = dict(sorted(totals.items()))
    return numbers
