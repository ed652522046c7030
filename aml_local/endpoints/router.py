"""The endpoint's front end: one process per local online endpoint, on one 127.0.0.1 port for the endpoint's whole
life, doing for each request what Azure's managed online endpoint front end does before a deployment sees it.

    python -m aml_local.endpoints.router --state-dir DIR

What it does, and where Azure documents it:

- Key auth: `Authorization: Bearer <primary or secondary key>`, compared in constant time; anything else gets 401
  with a JSON message. `GET`/`HEAD /` (the router's own health) and `GET /draw/...` (the draw-a-digit page, served
  from web/draw/ as aml_local's serving gateway serves it today) need no key; every other route, `/score` and
  `/swagger.json` included, needs one, as today's gateway (aml_local/serving.py) does and as Azure's own OpenAPI example
  calls openapi_uri (Azure/azureml-examples sdk/python/endpoints/online/managed/online-endpoints-openapi.ipynb).
- Traffic: a request goes to a deployment drawn at random by the `traffic` weights; the request header
  `azureml-model-deployment: <name>` sends it to that deployment whatever its weight (azure-ai-ml:
  azure/ai/ml/constants/_endpoint.py EndpointInvokeFields.MODEL_DEPLOYMENT; "Safe rollout for online endpoints",
  MicrosoftDocs/azure-ai-docs articles/machine-learning/how-to-safely-rollout-online-endpoints.md, "Test the new
  deployment"). No deployment with positive weight: 404 ("Troubleshoot online endpoint deployment and scoring",
  articles/machine-learning/how-to-troubleshoot-online-endpoints.md, HTTP status codes: "404 Not found: The endpoint
  doesn't have any valid deployment with positive weight"). A header naming no deployment of the endpoint: 404 too;
  the docs are silent on that case and 404 is the closest documented answer (our choice).
- Mirror traffic: `mirror_traffic` {deployment: percent} copies that share of the requests routed by weight (never
  one sent with the deployment header) to the mirror deployment; its answer is discarded, and the copy runs on its
  own, so it never delays, changes or fails the client's answer. The rules of the safe-rollout page ("Test the
  deployment with mirrored traffic": one mirror deployment, at most 50%, a deployment takes live or mirrored traffic,
  not both) are checked on every routing table; a table that breaks them is refused.
- Answers: each carries `azureml-model-deployment` (the deployment that answered, or was chosen) and `x-request-id`
  (a GUID; Azure "overrides this header to ensure it's a valid GUID"), and `x-ms-client-request-id` when the client
  sent one, kept to letters, digits, '-' and '_' and cut to 40 characters ("Request tracing" on the troubleshooting
  page). A model container's answer other than 200 becomes 424 with `ms-azureml-model-error-statuscode` (its status)
  and `ms-azureml-model-error-reason: model_error` (HTTP status codes: "424 Model error: If your model container
  returns a non-200 response, Azure returns a 424 ... check response headers ms-azureml-model-error-statuscode and
  ms-azureml-model-error-reason"; `model_error` is the reason value Azure endpoints send in recorded responses). The
  container's body and content type are passed on, so a client still reads the model's own message (our choice: the
  docs do not say what body a 424 has).
- Limits: at most 2 x max_concurrent_requests_per_instance x instance_count requests in progress per deployment;
  one more gets 429 at once ("429 Too many pending requests ... permits a maximum of 2 * max_concurrent_requests_per
  _instance * instance_count requests to process in parallel ... Requests that exceed this maximum are rejected").
  A request not answered within the deployment's request_timeout_ms gets 408 ("408 Request timeout: The model
  execution took longer than the timeout supplied in request_timeout_ms"). A body larger than the deployment's
  max_request_bytes (default 32 MiB, aml_local/serving.py's cap today; the docs give no number for managed online
  endpoints) gets 413 before any of it is read.
- Health: every server is probed with `GET /` (the inference server's liveness route) every liveness_probe.period
  seconds, with liveness_probe.timeout; a server that fails a probe, or refuses a connection, takes no new requests
  until a probe succeeds. After failure_threshold failures in a row (not counting those within initial_delay of its
  start) it is stopped, if still running, and started again from its `restart` argv. While none of a deployment's
  servers is up, its requests get 424 at once with `ms-azureml-model-error-reason: liveness_probe_failed` and no
  status code header: the docs tie 424 to failing probes ("If 424 comes with liveness or readiness probe failing,
  consider adjusting ProbeSettings"), and the container gave no status (the reason value is our choice). A server
  that drops a connection after the request was sent: the request is tried once more, then 502 (the closest
  documented code: "502 ... crashed in the run() method", in the Kubernetes online endpoints table).
- instance_count: N servers per deployment; each request goes to the server with the fewest requests in progress,
  taking turns among equals. Connections to the servers are kept alive and pooled.

The routing table: DIR/routing.json, written by the online-endpoint and online-deployment verbs (write a temporary
file in DIR, then rename it over routing.json: the router never reads half a table), mode 0600 (it holds the keys):

    {
      "schema_version": 1,
      "generation": 7,                      # the verbs add 1 per write; router.json reports the one in force
      "endpoint": "mnist-endpoint",
      "port": 41234,                        # 0 or absent: the router picks a free port and records it in router.json
      "keys": {"primary": "...", "secondary": "..."},
      "traffic": {"blue": 90, "green": 10}, # whole percentages adding up to 100, or all 0
      "mirror_traffic": {"green": 0},       # at most one deployment with a positive share, at most 50
      "deployments": {
        "blue": {
          "instance_count": 1,
          "max_concurrent_requests_per_instance": 4,
          "request_timeout_ms": 5000,
          "max_request_bytes": 33554432,    # optional, default 32 MiB
          "liveness_probe": {"initial_delay": 30, "period": 10, "timeout": 5, "failure_threshold": 6},
          "servers": [
            {"host": "127.0.0.1", "port": 40001,
             "pid": 1234, "started": 1767000000.5,     # optional: the process to stop before a restart (its create
                                                       # time as psutil gives it, so a reused pid is left alone)
             "restart": {"argv": ["python", "-m", "gunicorn", "--bind", "127.0.0.1:40001", "..."],
                         "env": {"...": "..."},        # the whole environment; absent: the router's own
                         "cwd": "/path/app",
                         "log": "/path/logs/inference-server.log"}}   # optional: appended to
          ]
        }
      }
    }

A new version is picked up within RELOAD_POLL_S (or at once on SIGHUP). Requests already in progress finish where they
started; new ones follow the new table; a server that stays in the table keeps its health and connections. A table
that cannot be read or breaks a rule is refused whole (the one in force stays, and router.json says why).

What the router writes: DIR/router.json, replaced atomically (write then rename) at start and at every change of the
table in force or of a server's health:

    {"pid": 4321, "started": 1767000000.1, "port": 41234, "state_dir": "...", "generation": 7,
     "applied_at": "2026-12-02T14:05:00+00:00", "routing_error": null,
     "deployments": {"blue": [{"host": "127.0.0.1", "port": 40001, "up": true, "failures": 0, "restarts": 1,
                               "pid": 5678, "started": 1767000100.2}]}}

(`pid`/`started` of a server: the process the router started for it, when it restarted one; else those of routing.json.)
SIGTERM or SIGINT: stop taking connections, let requests in progress finish (at most the longest request_timeout_ms),
exit 0; servers the router restarted keep running (they are the deployment's, stopped with it by the verbs, who find
them in router.json). A routing table that is missing or invalid at start, or a port that is taken: one line on
stderr, exit 2.

Life cycle, as the verbs drive it: `online-endpoint create` writes routing.json (no deployments, no traffic, port 0 or
a free port it chose) and starts this module in a session of its own with stderr to DIR/router.log; it is up when
router.json shows the child's pid and `GET /` answers 200, and the verbs then write the port it took into routing.json,
so that a router started again later takes the same one and scoring_uri never changes. A later command finds it by
router.json (pid and start time, as psutil reports them) and starts it again if it is gone. To replace a deployment's
servers without a failed request: start the new ones, wait for their readiness, write routing.json with them instead
of the old, wait until router.json shows that generation, wait the old deployment's request_timeout_ms (no request
lasts longer here), then stop the old servers.
"""

import argparse
import asyncio
import collections
import contextlib
import datetime
import errno
import functools
import hmac
import http
import itertools
import json
import math
import os
import random
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote

import httptools
import psutil

from aml_local import AmlLocalError

ROUTING_FILE = "routing.json"
ROUTER_FILE = "router.json"
SCHEMA_VERSION = 1
DEFAULT_MAX_REQUEST_BYTES = 32 * 1024 * 1024  # aml_local/serving.py's cap today
RELOAD_POLL_S = 0.1  # how often routing.json is looked at (one stat() call)
STOP_GRACE_S = 10  # a server being replaced gets this long after SIGTERM before SIGKILL
# Below gunicorn's default keep-alive (2 s): a pooled connection is dropped before the server closes it.
BACKEND_KEEPALIVE_S = 1.0
MODEL_DEPLOYMENT = "azureml-model-deployment"
# https://www.rfc-editor.org/rfc/rfc9110#section-7.6.1 plus what the router sets itself (length, host, ids) and the key.
REQUEST_HEADERS_NOT_FORWARDED = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"expect",
        b"host",
        b"content-length",
        b"authorization",  # the router checked it; the scoring script has no use for the key
        b"x-request-id",
        b"x-ms-client-request-id",
    }
)
RESPONSE_HEADERS_NOT_FORWARDED = frozenset(
    {b"connection", b"keep-alive", b"transfer-encoding", b"content-length", b"date", b"server", b"x-request-id"}
)
CLIENT_REQUEST_ID_CHARS = re.compile(r"[^A-Za-z0-9_-]")
CLIENT_REQUEST_ID_MAX = 40
DRAW_PAGE_DIR = Path(__file__).resolve().parents[2] / "web" / "draw"
DRAW_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript", ".css": "text/css"}
UNAUTHORIZED = (
    "missing or invalid key: send 'Authorization: Bearer <key>' with a key from online-endpoint get-credentials"
)


def log(message: str):
    stamp = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    sys.stderr.write(f"{stamp} aml-local router: {message}\n")
    sys.stderr.flush()


# ---------------------------------------------------------------------------------------------------------------------
# The routing table, read and checked
# ---------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Probe:
    initial_delay: float
    period: float
    timeout: float
    failure_threshold: int


@dataclass(frozen=True)
class ServerSpec:
    host: str
    port: int
    pid: int | None
    started: float | None
    restart: dict | None  # {"argv": [...], "env": {...} | None, "cwd": str | None, "log": str | None}

    @property
    def address(self) -> tuple[str, int]:
        return self.host, self.port


@dataclass(frozen=True)
class DeploymentSpec:
    name: str
    instance_count: int
    max_concurrent_requests_per_instance: int
    request_timeout_ms: int
    max_request_bytes: int
    liveness_probe: Probe
    servers: tuple[ServerSpec, ...]

    @property
    def capacity(self) -> int:
        """Requests in progress at once, beyond which Azure answers 429."""
        return 2 * self.max_concurrent_requests_per_instance * self.instance_count


@dataclass(frozen=True)
class RoutingTable:
    generation: int
    endpoint: str
    port: int
    keys: tuple[bytes, ...]
    weighted: tuple[tuple[str, int], ...]  # deployments with a positive traffic share, and the share
    mirror: tuple[str, int] | None  # (deployment, percent) when a positive share is mirrored
    deployments: dict

    @functools.cached_property
    def draw(self) -> tuple[tuple[str, ...], tuple[int, ...]]:
        """(deployment names, cumulative weights) for random.choices, worked out once per table."""
        names = tuple(name for name, _ in self.weighted)
        return names, tuple(itertools.accumulate(percent for _, percent in self.weighted))


def _fail(where: str, message: str):
    raise AmlLocalError(f"{ROUTING_FILE}: {where}: {message}")


def _field(container: dict, key: str, where: str, kind, *, required=True, default=None):
    if key not in container:
        if required:
            _fail(where, f"missing {key!r}")
        return default
    value = container[key]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    # bool is an int in Python, never a count or a port here
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
        names = " or ".join(k.__name__ for k in kinds)
        _fail(f"{where}.{key}" if where else key, f"expected {names}, got {json.dumps(value)[:60]}")
    return value


def _number(container, key, where, *, minimum, integer=False, required=True, default=None):
    value = _field(container, key, where, int if integer else (int, float), required=required, default=default)
    if value is not None and (not math.isfinite(value) or value < minimum):
        _fail(f"{where}.{key}", f"expected a number >= {minimum}, got {value}")
    return value


def _port(container, key, where, *, allow_zero=False):
    value = _field(container, key, where, int, required=not allow_zero, default=0)
    if not (0 if allow_zero else 1) <= value <= 65535:
        _fail(f"{where}.{key}" if where else key, f"expected a port number from 1 to 65535, got {value}")
    return value


def _restart_spec(raw, where) -> dict | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        _fail(where, "expected an object with argv (and env, cwd, log)")
    argv = _field(raw, "argv", where, list)
    if not argv or not all(isinstance(part, str) and part for part in argv):
        _fail(f"{where}.argv", "expected a non-empty list of non-empty strings")
    env = _field(raw, "env", where, dict, required=False)
    if env is not None and not all(isinstance(k, str) and isinstance(v, str) for k, v in env.items()):
        _fail(f"{where}.env", "expected an object of string values")
    return {
        "argv": list(argv),
        "env": dict(env) if env is not None else None,
        "cwd": _field(raw, "cwd", where, str, required=False),
        "log": _field(raw, "log", where, str, required=False),
    }


def _server_spec(raw, where) -> ServerSpec:
    if not isinstance(raw, dict):
        _fail(where, "expected an object with host and port")
    host = _field(raw, "host", where, str)
    if host not in ("127.0.0.1", "localhost", "::1"):
        _fail(f"{where}.host", f"expected a loopback address (127.0.0.1), got {host!r}")
    return ServerSpec(
        host=host,
        port=_port(raw, "port", where),
        pid=_number(raw, "pid", where, minimum=1, integer=True, required=False),
        started=_number(raw, "started", where, minimum=0, required=False),
        restart=_restart_spec(raw.get("restart"), f"{where}.restart"),
    )


def _deployment_spec(name: str, raw) -> DeploymentSpec:
    where = f"deployments.{name}"
    if not isinstance(raw, dict):
        _fail(where, "expected an object")
    probe_raw = _field(raw, "liveness_probe", where, dict)
    probe_where = f"{where}.liveness_probe"
    probe = Probe(
        initial_delay=_number(probe_raw, "initial_delay", probe_where, minimum=0),
        period=_number(probe_raw, "period", probe_where, minimum=0.01),
        timeout=_number(probe_raw, "timeout", probe_where, minimum=0.01),
        failure_threshold=_number(probe_raw, "failure_threshold", probe_where, minimum=1, integer=True),
    )
    servers_raw = _field(raw, "servers", where, list)
    servers = tuple(_server_spec(item, f"{where}.servers[{i}]") for i, item in enumerate(servers_raw))
    if len({server.address for server in servers}) != len(servers):
        _fail(f"{where}.servers", "the same host and port appear twice")
    return DeploymentSpec(
        name=name,
        instance_count=_number(raw, "instance_count", where, minimum=1, integer=True),
        max_concurrent_requests_per_instance=_number(
            raw, "max_concurrent_requests_per_instance", where, minimum=1, integer=True
        ),
        request_timeout_ms=_number(raw, "request_timeout_ms", where, minimum=1, integer=True),
        max_request_bytes=_number(
            raw, "max_request_bytes", where, minimum=0, integer=True, required=False, default=DEFAULT_MAX_REQUEST_BYTES
        ),
        liveness_probe=probe,
        servers=servers,
    )


def _shares(raw: dict, key: str, deployments: dict) -> dict:
    shares = _field(raw, key, "", dict, required=False, default={})
    for name, percent in shares.items():
        if name not in deployments:
            known = ", ".join(sorted(deployments)) or "none"
            _fail(f"{key}.{name}", f"no such deployment (deployments: {known})")
        if isinstance(percent, bool) or not isinstance(percent, int) or not 0 <= percent <= 100:
            _fail(f"{key}.{name}", f"expected a whole percentage from 0 to 100, got {json.dumps(percent)[:30]}")
    return shares


def parse_table(raw) -> RoutingTable:
    """The routing table in routing.json's shape, checked whole; AmlLocalError naming the first bad field."""
    if not isinstance(raw, dict):
        raise AmlLocalError(f"{ROUTING_FILE}: expected a JSON object")
    version = _field(raw, "schema_version", "", int)
    if version != SCHEMA_VERSION:
        _fail("schema_version", f"this router reads version {SCHEMA_VERSION}, got {version}")
    keys_raw = _field(raw, "keys", "", dict)
    keys = tuple(_field(keys_raw, which, "keys", str).encode() for which in ("primary", "secondary"))
    if not all(keys):
        _fail("keys", "primary and secondary must be non-empty")
    deployments_raw = _field(raw, "deployments", "", dict)
    deployments = {name: _deployment_spec(name, spec) for name, spec in deployments_raw.items()}
    traffic = _shares(raw, "traffic", deployments)
    if sum(traffic.values()) not in (0, 100):
        _fail("traffic", f"the percentages add up to {sum(traffic.values())}, not 100 (or 0)")
    mirrored = {name: p for name, p in _shares(raw, "mirror_traffic", deployments).items() if p > 0}
    # The safe-rollout page's rules for mirrored traffic.
    if len(mirrored) > 1:
        _fail("mirror_traffic", f"mirrored traffic goes to one deployment only, got {', '.join(sorted(mirrored))}")
    if sum(mirrored.values()) > 50:
        _fail("mirror_traffic", f"at most 50% of traffic can be mirrored, got {sum(mirrored.values())}%")
    for name in mirrored:
        if traffic.get(name, 0) > 0:
            _fail("mirror_traffic", f"deployment {name} takes live traffic ({traffic[name]}%); it cannot also mirror")
    return RoutingTable(
        generation=_number(raw, "generation", "", minimum=0, integer=True, required=False, default=0),
        endpoint=_field(raw, "endpoint", "", str),
        port=_port(raw, "port", "", allow_zero=True),
        keys=keys,
        weighted=tuple((name, percent) for name, percent in traffic.items() if percent > 0),
        mirror=next(iter(mirrored.items()), None),
        deployments=deployments,
    )


def read_table(path: Path) -> RoutingTable:
    try:
        text = path.read_bytes()
    except FileNotFoundError:
        raise AmlLocalError(f"no routing table at {path}: the online-endpoint verbs write it") from None
    except OSError as err:
        raise AmlLocalError(f"{path}: cannot read it ({err.strerror})") from None
    try:
        raw = json.loads(text)
    except ValueError as err:
        raise AmlLocalError(f"{path}: not valid JSON ({err})") from None
    return parse_table(raw)


def write_json_atomically(path: Path, document: dict):
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(temporary, "w") as handle:
        json.dump(document, handle, indent=1)
    os.replace(temporary, path)


# ---------------------------------------------------------------------------------------------------------------------
# Servers: health, probes and restarts
# ---------------------------------------------------------------------------------------------------------------------


class Server:
    """One inference server (host:port), kept across routing table versions while it stays in the table."""

    def __init__(self, spec: ServerSpec, deployment: str):
        self.spec = spec
        self.deployment = deployment
        self.idle: list[BackendConnection] = []  # kept-alive connections, the most recently used last
        self.up = True  # the verbs hand over servers that answered their readiness probe; the first probe confirms
        self.failures = 0
        self.in_progress = 0
        self.restarts = 0
        self.process: subprocess.Popen | None = None  # the process the router started, after a restart
        self.pid, self.started = spec.pid, spec.started
        self.grace_until = 0.0  # monotonic time before which failed probes are not counted (initial_delay)
        self.watcher: asyncio.Task | None = None

    def describe(self) -> dict:
        return {
            "host": self.spec.host,
            "port": self.spec.port,
            "up": self.up,
            "failures": self.failures,
            "restarts": self.restarts,
            "pid": self.pid,
            "started": self.started,
        }


def _process_if_ours(pid: int | None, started: float | None):
    """The process with this pid if it is still the one recorded (same start time), else None."""
    if not pid or started is None:
        return None
    try:
        process = psutil.Process(pid)
        if abs(process.create_time() - started) < 1 and process.status() != psutil.STATUS_ZOMBIE:
            return process
    except psutil.Error:
        pass
    return None


async def _stop_process_group(pid: int):
    """SIGTERM to the server's process group (it was started in a session of its own), SIGKILL after the grace."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_S
    while time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        if not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
            return
        await asyncio.sleep(0.1)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


# ---------------------------------------------------------------------------------------------------------------------
# Talking to the servers: kept-alive connections, one request at a time on each
# ---------------------------------------------------------------------------------------------------------------------


class ConnectionDropped(Exception):
    """The server closed the connection, or sent something that is not HTTP, before its whole answer came."""


class BackendConnection(asyncio.Protocol):
    """A connection to one inference server; answers are read with httptools (llhttp, Node.js' parser)."""

    def __init__(self):
        self.transport = None
        self.parser = httptools.HttpResponseParser(self)
        self.waiter: asyncio.Future | None = None
        self.usable = True
        self.last_used = 0.0
        self.headers: list = []
        self.body: list = []
        self.head_only = False

    def connection_made(self, transport):
        self.transport = transport

    def connection_lost(self, exc):
        self.usable = False
        self._fail(ConnectionDropped("the server closed the connection"))

    def data_received(self, data):
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as err:
            self.usable = False
            self.transport.close()
            self._fail(ConnectionDropped(f"not an HTTP answer ({err})"))

    def on_header(self, name: bytes, value: bytes):
        self.headers.append((name, value))

    def on_headers_complete(self):
        if self.head_only:  # an answer to HEAD has no body, whatever its Content-Length says: done, and not reusable
            self.usable = False
            self._done(False)
            self.transport.close()

    def on_body(self, body: bytes):
        self.body.append(body)

    def on_message_complete(self):
        self._done(self.parser.should_keep_alive())

    def _done(self, keep_alive: bool):
        if self.waiter is not None and not self.waiter.done():
            status = self.parser.get_status_code()
            self.waiter.set_result((status, self.headers, b"".join(self.body), keep_alive))

    def _fail(self, error: Exception):
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(error)

    def send(self, parts: list, head_only: bool) -> asyncio.Future:
        self.headers, self.body, self.head_only = [], [], head_only
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.writelines(parts)  # head and body as they are: a 6 MB body is not copied once more
        return self.waiter

    def expire(self):
        """The deadline passed: give up on this answer and on the connection."""
        self.usable = False
        self.transport.close()
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(TimeoutError())


async def _connect(server: Server, timeout: float) -> BackendConnection:
    loop = asyncio.get_running_loop()
    _, connection = await asyncio.wait_for(
        loop.create_connection(BackendConnection, server.spec.host, server.spec.port), timeout
    )
    connection.transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return connection


def _idle_connection(server: Server) -> BackendConnection | None:
    """A kept-alive connection to server that the server has not closed, nor would be about to close (idle too long)."""
    now = time.monotonic()
    while server.idle:
        connection = server.idle.pop()
        if connection.usable and now - connection.last_used < BACKEND_KEEPALIVE_S:
            return connection
        connection.transport.close()
    return None


@dataclass
class Answer:
    """An HTTP answer to a client: status, headers (name, value pairs of bytes) and body."""

    status: int
    headers: list
    body: bytes = b""
    close: bool = False  # close the client's connection after it (a body left unread)


def json_answer(status: int, message: str, headers=(), close=False) -> Answer:
    return Answer(
        status, [(b"Content-Type", b"application/json"), *headers], json.dumps({"message": message}).encode(), close
    )


def _header(name: str, value: str) -> tuple[bytes, bytes]:
    return name.encode("latin-1"), value.encode("latin-1")


@dataclass
class Route:
    """Where a request goes, decided from its head: the deployment, and the headers of the router's answer."""

    deployment: DeploymentSpec
    named: bool  # sent with the azureml-model-deployment header: never mirrored
    answer_headers: list
    request_id: str
    client_request_id: str | None


@dataclass
class IncomingRequest:
    method: str = ""
    target: bytes = b""
    raw_headers: list = field(default_factory=list)
    headers: dict = field(default_factory=dict)  # lower-case name -> value, as str
    decision: object = None  # an Answer (refused or served by the router) or a Route
    body: list = field(default_factory=list)
    size: int = 0
    too_large: bool = False
    keep_alive: bool = True


# ---------------------------------------------------------------------------------------------------------------------
# The front end
# ---------------------------------------------------------------------------------------------------------------------


class Router:
    def __init__(self, state_dir: Path, table: RoutingTable):
        self.state_dir = state_dir
        self.routing_path = state_dir / ROUTING_FILE
        self.router_path = state_dir / ROUTER_FILE
        self.table = table
        self.servers: dict[tuple[str, int], Server] = {}
        self.in_progress: dict[str, int] = {}  # per deployment name, across table versions
        self.turn = 0  # rotates the choice among equally busy servers
        self.port = 0
        self.applied_at = ""
        self.routing_error: str | None = None
        self.background: set[asyncio.Task] = set()  # mirror copies, drains: kept referenced until done
        self.connections: set = set()  # clients' connections, for a graceful stop
        self.routing_stat = None
        self.reload_now = asyncio.Event()

    # -- state on disk -------------------------------------------------------------------------------------------

    def write_state(self):
        deployments = {
            name: [self.servers[s.address].describe() for s in spec.servers if s.address in self.servers]
            for name, spec in self.table.deployments.items()
        }
        write_json_atomically(
            self.router_path,
            {
                "pid": os.getpid(),
                "started": psutil.Process().create_time(),
                "port": self.port,
                "state_dir": str(self.state_dir),
                "generation": self.table.generation,
                "applied_at": self.applied_at,
                "routing_error": self.routing_error,
                "deployments": deployments,
            },
        )

    def apply(self, table: RoutingTable):
        """Make table the one in force. Servers that stay keep their state; new ones are probed at once; those that
        left stop being probed (a process the router started for one is stopped once its requests are done)."""
        wanted = {}
        for name, spec in table.deployments.items():
            for server_spec in spec.servers:
                server = self.servers.get(server_spec.address)
                if server is None or server.deployment != name:
                    server = Server(server_spec, name)
                elif server_spec.pid != server.spec.pid or server_spec.started != server.spec.started:
                    # The verbs started a new process on the same port: that one is the server now.
                    server.pid, server.started, server.process = server_spec.pid, server_spec.started, None
                server.spec = server_spec
                wanted[server_spec.address] = server
        for address, server in self.servers.items():
            if wanted.get(address) is not server:
                self._retire(server)
        self.servers = wanted
        self.table = table
        for server in wanted.values():
            if server.watcher is None:
                server.watcher = asyncio.get_running_loop().create_task(self._watch(server))
        self.applied_at = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
        self.routing_error = None
        self.write_state()
        log(
            f"routing table generation {table.generation} in force: traffic {dict(table.weighted) or 'none'}, "
            f"mirror {dict([table.mirror]) if table.mirror else 'none'}, "
            + ", ".join(f"{n} on {len(d.servers)} server(s)" for n, d in table.deployments.items())
        )

    def _retire(self, server: Server):
        if server.watcher is not None:
            server.watcher.cancel()
        if server.process is not None and server.process.poll() is None:
            # Started by the router, so stopped by it, after the longest time a request on it can take.
            drain = max((d.request_timeout_ms for d in self.table.deployments.values()), default=0) / 1000
            self._spawn(self._stop_after(server.process, drain + 1))

    async def _stop_after(self, process: subprocess.Popen, seconds: float):
        await asyncio.sleep(seconds)
        await _stop_process_group(process.pid)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=1)

    def _spawn(self, coroutine):
        task = asyncio.get_running_loop().create_task(coroutine)
        self.background.add(task)
        task.add_done_callback(self.background.discard)

    async def watch_routing_table(self):
        """Reload routing.json when it changes (a new file renamed over it) or on SIGHUP."""
        while True:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.reload_now.wait(), RELOAD_POLL_S)
            forced = self.reload_now.is_set()
            self.reload_now.clear()
            try:
                stat = os.stat(self.routing_path)
                seen = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
            except OSError:
                seen = None
            if seen == self.routing_stat and not forced:
                continue
            self.routing_stat = seen
            try:
                table = read_table(self.routing_path)
            except AmlLocalError as err:
                if str(err) != self.routing_error:
                    log(f"routing table refused, the one in force stays: {err}")
                    self.routing_error = str(err)
                    self.write_state()
                continue
            if table.port and self.port and table.port != self.port:
                log(f"routing.json asks for port {table.port}; the endpoint keeps port {self.port} while it runs")
            self.apply(table)

    # -- health ----------------------------------------------------------------------------------------------------

    async def _probe(self, server: Server, timeout: float) -> bool:
        """GET / on its own connection: 200 within timeout, or a failure."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        try:
            connection = await _connect(server, timeout)
        except (OSError, TimeoutError):
            return False
        timer = loop.call_at(deadline, connection.expire)
        try:
            head = f"GET / HTTP/1.1\r\nHost: {server.spec.host}:{server.spec.port}\r\nConnection: close\r\n\r\n"
            status, *_ = await connection.send([head.encode()], head_only=False)
            return status == 200
        except (ConnectionDropped, TimeoutError):
            return False
        finally:
            timer.cancel()
            connection.transport.close()

    def _set_up(self, server: Server, up: bool):
        if server.up != up:
            server.up = up
            log(f"{server.deployment} server {server.spec.port}: {'up' if up else 'down'}")
            self.write_state()

    async def _watch(self, server: Server):
        while True:
            spec = self.table.deployments.get(server.deployment)
            if spec is None:
                return
            probe = spec.liveness_probe
            if server.process is not None and server.process.poll() is not None:
                server.process.wait()  # reap it: it is ours
            healthy = await self._probe(server, probe.timeout)
            if healthy:
                server.failures = 0
                self._set_up(server, True)
            else:
                self._set_up(server, False)
                if time.monotonic() >= server.grace_until:
                    server.failures += 1
                if server.failures >= probe.failure_threshold and server.spec.restart:
                    await self._restart(server, probe)
            await asyncio.sleep(probe.period)

    async def _restart(self, server: Server, probe: Probe):
        restart = server.spec.restart
        log(f"{server.deployment} server {server.spec.port}: {server.failures} failed liveness probes, restarting it")
        running = server.process if server.process is not None and server.process.poll() is None else None
        if running is not None:
            await _stop_process_group(running.pid)
            running.wait()
        elif _process_if_ours(server.pid, server.started) is not None:
            await _stop_process_group(server.pid)
        log_file = open(restart["log"], "ab") if restart["log"] else subprocess.DEVNULL  # noqa: SIM115
        try:
            process = subprocess.Popen(
                restart["argv"],
                env=restart["env"],
                cwd=restart["cwd"],
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group, as the verbs start servers
            )
        except OSError as err:
            log(f"{server.deployment} server {server.spec.port}: cannot start {restart['argv'][0]} ({err.strerror})")
            server.failures = 0  # try again after another failure_threshold probes
            return
        finally:
            if restart["log"]:
                log_file.close()
        server.process, server.pid = process, process.pid
        try:
            server.started = psutil.Process(process.pid).create_time()
        except psutil.Error:
            server.started = None
        server.restarts += 1
        server.failures = 0
        server.grace_until = time.monotonic() + probe.initial_delay
        self.write_state()

    # -- requests --------------------------------------------------------------------------------------------------

    def decide(self, method: str, path: str, headers: dict) -> Answer | Route:
        """What to do with a request, from its head alone: answer it here (open routes, 401, 404, 413) or route it."""
        if path == "/" and method in ("GET", "HEAD"):
            # The router's own liveness, as the inference server's GET /.
            return Answer(200, [(b"Content-Type", b"text/plain; charset=utf-8")], b"Healthy")
        if method == "GET" and (path == "/draw" or path.startswith("/draw/")):
            return draw_page(path)
        table = self.table
        request_id = str(uuid.uuid4())
        answer_headers = [_header("x-request-id", request_id)]
        client_request_id = headers.get("x-ms-client-request-id")
        if client_request_id is not None:
            client_request_id = CLIENT_REQUEST_ID_CHARS.sub("", client_request_id)[:CLIENT_REQUEST_ID_MAX]
            answer_headers.append(_header("x-ms-client-request-id", client_request_id))
        if not authorized(headers.get("authorization", ""), table.keys):
            return json_answer(401, UNAUTHORIZED, [*answer_headers, (b"WWW-Authenticate", b"Bearer")])
        named = headers.get(MODEL_DEPLOYMENT, "").strip()
        if named:
            deployment = table.deployments.get(named)
            if deployment is None:
                known = ", ".join(sorted(table.deployments)) or "none"
                return json_answer(
                    404,
                    f"{MODEL_DEPLOYMENT}: {named!r} is not a deployment of this endpoint (deployments: {known})",
                    answer_headers,
                )
        elif table.weighted:
            names, cumulative = table.draw
            deployment = table.deployments[random.choices(names, cum_weights=cumulative)[0]]
        else:
            return json_answer(
                404,
                f"endpoint {table.endpoint} has no deployment with traffic; give one traffic "
                f"(online-endpoint update --traffic) or name one in the {MODEL_DEPLOYMENT} header",
                answer_headers,
            )
        answer_headers.append(_header(MODEL_DEPLOYMENT, deployment.name))
        length = headers.get("content-length")
        if length is not None and int(length) > deployment.max_request_bytes:
            return self.too_large(deployment, answer_headers)
        return Route(deployment, bool(named), answer_headers, request_id, client_request_id)

    @staticmethod
    def too_large(deployment: DeploymentSpec, headers: list) -> Answer:
        limit = deployment.max_request_bytes
        # The body is never read: the connection cannot carry another request.
        return json_answer(413, f"request body is larger than {limit} bytes", headers, close=True)

    async def answer(self, request: IncomingRequest) -> Answer:
        """The answer to a whole request whose head was routed."""
        route: Route = request.decision
        deployment = route.deployment
        if request.too_large:
            return self.too_large(deployment, route.answer_headers)
        name = deployment.name
        if self.in_progress.get(name, 0) >= deployment.capacity:
            return json_answer(
                429,
                f"too many pending requests: deployment {name} has {deployment.capacity} requests in progress "
                "(2 x max_concurrent_requests_per_instance x instance_count)",
                route.answer_headers,
            )
        body = b"".join(request.body)
        lines = [f"{request.method} ".encode(), request.target, b" HTTP/1.1\r\n"]
        for key, value in request.raw_headers:
            if key.lower() not in REQUEST_HEADERS_NOT_FORWARDED:
                lines += [key, b": ", value, b"\r\n"]
        lines.append(f"x-request-id: {route.request_id}\r\n".encode())
        if route.client_request_id:
            lines.append(f"x-ms-client-request-id: {route.client_request_id}\r\n".encode("latin-1"))
        lines.append(f"Content-Length: {len(body)}\r\n".encode())
        head = b"".join(lines)  # Host is added per server
        head_only = request.method == "HEAD"
        table = self.table
        if not route.named and table.mirror is not None and random.random() * 100 < table.mirror[1]:
            self._mirror(table, head, body, head_only)
        self.in_progress[name] = self.in_progress.get(name, 0) + 1
        try:
            return await self._forward(deployment, head, body, head_only, route.answer_headers)
        finally:
            self.in_progress[name] -= 1

    def _pick(self, deployment: DeploymentSpec, excluded: set) -> Server | None:
        candidates = [
            server
            for spec in deployment.servers
            if (server := self.servers.get(spec.address)) is not None and server.up and server not in excluded
        ]
        if not candidates:
            return None
        self.turn += 1
        start = self.turn % len(candidates)
        ordered = candidates[start:] + candidates[:start]
        return min(ordered, key=lambda server: server.in_progress)

    async def _forward(self, deployment, head: bytes, body: bytes, head_only: bool, answer_headers: list) -> Answer:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + deployment.request_timeout_ms / 1000
        refused: set[Server] = set()
        dropped = 0
        while True:
            server = self._pick(deployment, refused)
            if server is None:
                return json_answer(
                    424,
                    f"deployment {deployment.name} has no inference server up (its liveness probe is failing); "
                    f"see online-deployment get-logs --name {deployment.name}",
                    [*answer_headers, (b"ms-azureml-model-error-reason", b"liveness_probe_failed")],
                )
            remaining = deadline - loop.time()
            if remaining <= 0:
                return self._timed_out(deployment, answer_headers)
            server.in_progress += 1
            try:
                connection = _idle_connection(server)
                if connection is None:
                    try:
                        connection = await _connect(server, remaining)
                    except TimeoutError:
                        return self._timed_out(deployment, answer_headers)
                    except OSError:
                        # Nothing was sent: out of rotation until a probe finds it again; another server is tried.
                        self._set_up(server, False)
                        refused.add(server)
                        continue
                host = f"Host: {server.spec.host}:{server.spec.port}\r\n\r\n".encode()
                timer = loop.call_at(deadline, connection.expire)
                try:
                    status, headers, payload, keep_alive = await connection.send([head, host, body], head_only)
                except TimeoutError:
                    return self._timed_out(deployment, answer_headers)
                except ConnectionDropped as err:
                    # A kept-alive connection the server had just closed, or a server that died with the request:
                    # once more (a fresh connection, or another server), then 502.
                    dropped += 1
                    for stale in server.idle:  # kept alive alongside it: likely closed too
                        stale.transport.close()
                    server.idle.clear()
                    if dropped < 2:
                        continue
                    return json_answer(
                        502,
                        f"deployment {deployment.name}'s inference server dropped the connection ({err}); "
                        f"see online-deployment get-logs --name {deployment.name}",
                        answer_headers,
                    )
                finally:
                    timer.cancel()
                if keep_alive and connection.usable:
                    connection.last_used = time.monotonic()
                    server.idle.append(connection)
                else:
                    connection.transport.close()
            finally:
                server.in_progress -= 1
            out = [(key, value) for key, value in headers if key.lower() not in RESPONSE_HEADERS_NOT_FORWARDED]
            out += answer_headers
            if status != 200:
                out += [
                    (b"ms-azureml-model-error-statuscode", str(status).encode()),
                    (b"ms-azureml-model-error-reason", b"model_error"),
                ]
                status = 424
            return Answer(status, out, payload)

    @staticmethod
    def _timed_out(deployment: DeploymentSpec, headers: list) -> Answer:
        return json_answer(
            408, f"request timed out after request_timeout_ms ({deployment.request_timeout_ms} ms)", headers
        )

    def _mirror(self, table: RoutingTable, head: bytes, body: bytes, head_only: bool):
        """Send a copy to the mirror deployment on its own task: its answer is dropped, its failures stay there."""
        name = table.mirror[0]
        deployment = table.deployments[name]
        if self.in_progress.get(name, 0) >= deployment.capacity:
            return  # the mirror is full: the copy is skipped, as a 429 to it would be discarded anyway
        self.in_progress[name] = self.in_progress.get(name, 0) + 1

        async def send_copy():
            try:
                await self._forward(deployment, head, body, head_only, [])
            except Exception as err:  # nothing of the copy may reach the client or stop the router
                log(f"mirror copy to {name} failed: {type(err).__name__}")
            finally:
                self.in_progress[name] -= 1

        self._spawn(send_copy())


class ClientConnection(asyncio.Protocol):
    """One client connection: requests parsed by httptools, answered in order, kept alive as the client asks."""

    def __init__(self, router: Router):
        self.router = router
        self.parser = httptools.HttpRequestParser(self)
        self.transport = None
        self.request = IncomingRequest()
        self.waiting: collections.deque[IncomingRequest] = collections.deque()
        self.busy = False  # a request is being answered
        self.closed = False

    # asyncio.Protocol
    def connection_made(self, transport):
        self.transport = transport
        transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.router.connections.add(self)

    def connection_lost(self, exc):
        self.closed = True
        self.router.connections.discard(self)

    def data_received(self, data):
        if self.closed:
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._refuse(json_answer(400, "protocol upgrades are not served here", close=True))
        except httptools.HttpParserError as err:
            self._refuse(json_answer(400, f"malformed HTTP request ({err})", close=True))

    # httptools callbacks
    def on_message_begin(self):
        self.request = IncomingRequest()

    def on_url(self, url: bytes):
        self.request.target += url

    def on_header(self, name: bytes, value: bytes):
        self.request.raw_headers.append((name, value))

    def on_headers_complete(self):
        request = self.request
        request.method = self.parser.get_method().decode("ascii")
        request.headers = {
            name.decode("latin-1").lower(): value.decode("latin-1") for name, value in request.raw_headers
        }
        path = unquote(httptools.parse_url(request.target).path.decode("latin-1"))
        request.decision = self.router.decide(request.method, path, request.headers)
        idle = not self.busy and not self.waiting
        if isinstance(request.decision, Answer) and request.decision.close and idle:
            self._refuse(request.decision)  # 413 without reading the body
        elif "100-continue" in request.headers.get("expect", "").lower() and idle:
            if isinstance(request.decision, Route):
                self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            else:  # refused: say so now, rather than have the client send a body for nothing
                request.decision.close = True
                self._refuse(request.decision)

    def on_body(self, body: bytes):
        request = self.request
        if not isinstance(request.decision, Route) or request.too_large:
            return  # answered without its body
        request.size += len(body)
        if request.size > request.decision.deployment.max_request_bytes:
            request.too_large, request.body = True, []  # chunked: stop keeping it one byte past the limit
        else:
            request.body.append(body)

    def on_message_complete(self):
        if self.closed:
            return
        self.request.keep_alive = self.parser.should_keep_alive()
        self.waiting.append(self.request)
        if len(self.waiting) > 1:
            self.transport.pause_reading()  # pipelined requests: no more is read until these are answered
        if not self.busy:
            self.busy = True
            self.router._spawn(self._answer_in_order())

    async def _answer_in_order(self):
        try:
            while self.waiting and not self.closed:
                request = self.waiting.popleft()
                decision = request.decision
                answer = decision if isinstance(decision, Answer) else await self.router.answer(request)
                self._write(answer, request.method == "HEAD", request.keep_alive and not answer.close)
                if answer.close or not request.keep_alive:
                    self.closed = True
                    self.transport.close()
                    return
                self.transport.resume_reading()
        finally:
            self.busy = False

    def _refuse(self, answer: Answer):
        self._write(answer, False, False)
        self.closed = True
        self.transport.close()

    def _write(self, answer: Answer, head_only: bool, keep_alive: bool):
        if self.transport.is_closing():
            return
        phrase = http.HTTPStatus(answer.status).phrase if answer.status in _KNOWN_STATUSES else "Unknown"
        lines = [f"HTTP/1.1 {answer.status} {phrase}\r\n".encode()]
        for key, value in answer.headers:
            lines += [key, b": ", value, b"\r\n"]
        lines.append(f"Content-Length: {len(answer.body)}\r\n".encode())
        if not keep_alive:
            lines.append(b"Connection: close\r\n")
        lines.append(b"\r\n")
        if not head_only:
            lines.append(answer.body)
        self.transport.write(b"".join(lines))


_KNOWN_STATUSES = frozenset(status.value for status in http.HTTPStatus)


def authorized(header: str, keys: tuple[bytes, ...]) -> bool:
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer":
        return False
    supplied = token.strip().encode()
    # Every key compared, each in constant time: the time taken says nothing about which one matched.
    matches = [hmac.compare_digest(supplied, key) for key in keys]
    return any(matches)


def draw_page(path: str) -> Answer:
    """GET /draw/<file>: the page's own files, looked up by name (no path can reach outside its folder)."""
    if path == "/draw":  # the page's relative links need the trailing slash
        return Answer(301, [(b"Location", b"/draw/")])
    name = path.removeprefix("/draw/") or "index.html"
    files = {f.name: f for f in DRAW_PAGE_DIR.iterdir() if f.suffix in DRAW_TYPES}
    if name not in files:
        return json_answer(404, f"the draw page has no file {name!r}")
    return Answer(200, [(b"Content-Type", DRAW_TYPES[files[name].suffix].encode())], files[name].read_bytes())


def listening_socket(port: int) -> socket.socket:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind(("127.0.0.1", port))
        listener.listen(1024)
    except OSError as err:
        listener.close()
        if err.errno == errno.EADDRINUSE:
            raise AmlLocalError(f"port {port} on 127.0.0.1 is in use: the router cannot listen there") from None
        raise AmlLocalError(f"cannot listen on 127.0.0.1:{port} ({err.strerror})") from None
    listener.setblocking(False)
    return listener


async def serve(state_dir: Path):
    table = read_table(state_dir / ROUTING_FILE)
    router = Router(state_dir, table)
    listener = listening_socket(table.port)
    router.port = listener.getsockname()[1]
    stat = os.stat(router.routing_path)
    router.routing_stat = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: ClientConnection(router), sock=listener)
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    loop.add_signal_handler(signal.SIGHUP, router.reload_now.set)
    router.apply(table)
    log(f"endpoint {table.endpoint} listening on 127.0.0.1:{router.port} (pid {os.getpid()})")
    watcher = loop.create_task(router.watch_routing_table())
    try:
        await stop.wait()
    finally:
        log("stopping: requests in progress finish first")
        server.close()  # no new connections
        watcher.cancel()
        for server_state in router.servers.values():
            if server_state.watcher is not None:
                server_state.watcher.cancel()
        longest = max((d.request_timeout_ms for d in router.table.deployments.values()), default=0) / 1000
        deadline = time.monotonic() + longest + 1
        while any(connection.busy for connection in router.connections) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        for connection in list(router.connections):
            connection.transport.close()


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m aml_local.endpoints.router", description=__doc__.splitlines()[0])
    parser.add_argument("--state-dir", required=True, help="the endpoint's folder: routing.json in, router.json out")
    args = parser.parse_args(argv)
    state_dir = Path(args.state_dir).resolve()
    import uvloop

    try:
        if not state_dir.is_dir():
            raise AmlLocalError(f"--state-dir {args.state_dir}: not a folder")
        uvloop.run(serve(state_dir))
    except AmlLocalError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
