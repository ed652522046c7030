"""The endpoint's front end: one process per local online endpoint, on one 127.0.0.1 port for the endpoint's whole
life, doing for each request what Azure's managed online endpoint front end does before a deployment sees it.

    python -m aml_local.endpoints.router --state-dir DIR

What it does, and where Azure documents it:

- Key auth: `Authorization: Bearer <primary or secondary key>`, compared in constant time; anything else gets 401
  with a JSON message. `GET`/`HEAD /` (the router's own health) and `GET /draw/...` (the draw-a-digit page, package
  data in aml_local/draw/, served by the router itself) need no key; every other route, `/score` and `/swagger.json`
  (the endpoint's openapi_uri) included, needs one, as Azure's own OpenAPI example calls openapi_uri with the key
  (Azure/azureml-examples sdk/python/endpoints/online/managed/online-endpoints-openapi.ipynb).
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
  own, so it never delays, changes or fails the client's answer. Copies in progress are counted apart from clients'
  requests (at most the mirror's capacity of them; beyond it a copy is skipped), so copies piled up on a slow mirror
  never make a client's request 429, not even just after traffic moves to it (our choice: the docs do not say how
  copies count). The rules of the safe-rollout page ("Test the
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
  max_request_bytes (default 32 MiB, our choice: the docs give no number for managed online endpoints) gets 413
  before any of it is read.
- Health: every server is probed with `GET /` (the inference server's liveness route) every liveness_probe.period
  seconds, with liveness_probe.timeout; a server that fails a probe, or refuses a connection, takes no new requests
  until a probe succeeds. A server is known by its process (pid and start time), not by its port alone: once that
  process has ended, the server is down whatever answers on the port (a freed port may be given to another endpoint's
  server or router; on Azure each deployment has a container of its own). After failure_threshold failures in a row (not
  counting those within initial_delay of its start) it is stopped, if still running, and started again from its
  `restart` argv. While none of a deployment's servers is up, its requests get 424 at once with
  `ms-azureml-model-error-reason: liveness_probe_failed` and no status code header: the docs tie 424 to failing probes
  ("If 424 comes with liveness or readiness probe failing, consider adjusting ProbeSettings"), and the container gave no
  status (the reason value is our choice). A server that drops a connection after the request was sent: the request is
  tried once more, then 502 (the closest documented code: "502 ... crashed in the run() method", in the Kubernetes
  online endpoints table).
- instance_count: N servers per deployment; each request goes to the server with the fewest requests in progress,
  taking turns among equals. Connections to the servers are kept alive and pooled.


The routing table (routing.json, written by the verbs) and the state written back (router.json): their schemas and
rules are in aml_local/endpoints/router/routing_table.py.

Life cycle, as the verbs drive it (endpoints/online/routing.py): `online-endpoint create` writes routing.json (no
deployments, no traffic, port 0 or the one AML_LOCAL_PORT names) and starts this module in a session of its own with
stderr to DIR/router.log; it is up when router.json shows the child's pid and `GET /` answers 200, and the verbs then
write the port it took into routing.json, so that a router started again later takes the same one and scoring_uri never
changes. A later command finds it by router.json (pid and start time, as psutil reports them) and starts it again if it
is gone. To replace a deployment's servers without a failed request: start the new ones, wait for their readiness, write
routing.json with them instead of the old, wait until router.json shows that generation, wait until router.json's
`draining` list no longer names the old servers (the requests already sent to them have ended; at most the old
deployment's request_timeout_ms, the longest a request lasts here), then stop the old servers.
"""

import argparse
import asyncio
import contextlib
import datetime
import itertools
import os
import random
import re
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psutil

from aml_local import AmlLocalError
from aml_local.endpoints.router.client_side import (
    Answer,
    ClientConnection,
    IncomingRequest,
    Route,
    authorized,
    draw_page,
    header,
    json_answer,
    listening_socket,
)
from aml_local.endpoints.router.routing_table import (
    DEFAULT_MAX_REQUEST_BYTES,
    ROUTER_FILE,
    ROUTING_FILE,
    DeploymentSpec,
    Probe,
    RoutingTable,
    parse_table,
    read_table,
    write_json_atomically,
)
from aml_local.endpoints.router.upstream import (
    ConnectionDropped,
    Server,
    connect,
    idle_connection,
    process_if_ours,
    stop_process_group,
)

__all__ = ["DEFAULT_MAX_REQUEST_BYTES", "main", "parse_table", "read_table", "serve"]

RELOAD_POLL_S = 0.1  # how often routing.json is looked at (one stat() call)
MODEL_DEPLOYMENT = "azureml-model-deployment"
MODEL_DEPLOYMENT_HEADER = MODEL_DEPLOYMENT.encode()  # as header() writes it in the router's answer headers
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
UNAUTHORIZED = (
    "missing or invalid key: send 'Authorization: Bearer <key>' with a key from online-endpoint get-credentials"
)


def log(message: str):
    stamp = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    sys.stderr.write(f"{stamp} aml-local router: {message}\n")
    sys.stderr.flush()


class Router:
    def __init__(self, state_dir: Path, table: RoutingTable):
        self.state_dir = state_dir
        self.routing_path = state_dir / ROUTING_FILE
        self.router_path = state_dir / ROUTER_FILE
        self.table = table
        self.servers: dict[tuple[str, int], Server] = {}
        # Servers that left the table with requests still on them: router.json lists them until their last request
        # ends, and the verbs stop a replaced server once it is off that list. No new request reaches them: one routed
        # by an older table is routed again by the one in force (answer), so only requests already sent count.
        self.draining: dict[tuple[str, int], Server] = {}
        self.in_progress: dict[str, int] = {}  # clients' requests, per deployment name, across table versions
        # Mirrored copies in progress, per deployment, counted apart: copies piled up on a slow mirror must not make
        # its first live requests 429 when traffic moves to it (a copy never fails a client's request).
        self.mirrored: dict[str, int] = {}
        self.turn = 0  # rotates the choice among equally busy servers
        self.port = 0
        self.applied_at = ""
        self.routing_error: str | None = None
        self.background: set[asyncio.Task] = set()  # mirror copies, drains: kept referenced until done
        self.connections: set = set()  # clients' connections, for a graceful stop
        self.routing_stat = None
        self.reload_now = asyncio.Event()
        # Request ids are version-4 GUIDs (Azure "overrides [x-request-id] to ensure it's a valid GUID"): 64 random
        # bits drawn once per router, then a count, unique per router and without uuid4's syscall per request.
        random_bits = uuid.uuid4().hex
        self.request_id_prefix = f"{random_bits[:8]}-{random_bits[8:12]}-4{random_bits[13:16]}-{random_bits[16:20]}-"
        self.request_ids = itertools.count(int(random_bits[20:], 16))

    def next_request_id(self) -> str:
        return f"{self.request_id_prefix}{next(self.request_ids) & 0xFFFFFFFFFFFF:012x}"

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
                "draining": [
                    server.describe() | {"in_progress": server.in_progress} for server in self.draining.values()
                ],
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
                if server.in_progress:
                    self.draining[address] = server
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
            f"mirror {dict([table.mirror]) if table.mirror else 'none'}, deployments: "
            + (", ".join(f"{n} on {len(d.servers)} server(s)" for n, d in table.deployments.items()) or "none")
        )

    def _retire(self, server: Server):
        server.retired = True
        if server.watcher is not None:
            server.watcher.cancel()
        for connection in server.idle:  # never used again: requests go to the servers in the table only
            connection.transport.close()
        server.idle.clear()
        if server.process is not None and server.process.poll() is None:
            # Started by the router, so stopped by it, after the longest time a request on it can take.
            drain = max((d.request_timeout_ms for d in self.table.deployments.values()), default=0) / 1000
            self._spawn(self._stop_after(server.process, drain + 1))

    def _drained(self, server: Server):
        """A retired server's last request ended: off router.json's draining list, so the verbs may stop it."""
        if self.draining.get(server.spec.address) is server:
            del self.draining[server.spec.address]
            self.write_state()

    async def _stop_after(self, process: subprocess.Popen, seconds: float):
        await asyncio.sleep(seconds)
        await stop_process_group(process.pid)
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
            connection = await connect(server, timeout)
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
            # A server whose process has ended is down whatever answers on its port now.
            healthy = not server.gone() and await self._probe(server, probe.timeout)
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
            await stop_process_group(running.pid)
            running.wait()
        elif process_if_ours(server.pid, server.started) is not None:
            await stop_process_group(server.pid)
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
        request_id = self.next_request_id()
        answer_headers = [header("x-request-id", request_id)]
        client_request_id = headers.get("x-ms-client-request-id")
        if client_request_id is not None:
            client_request_id = CLIENT_REQUEST_ID_CHARS.sub("", client_request_id)[:CLIENT_REQUEST_ID_MAX]
            answer_headers.append(header("x-ms-client-request-id", client_request_id))
        if not authorized(headers.get("authorization", ""), table.keys):
            return json_answer(401, UNAUTHORIZED, [*answer_headers, (b"WWW-Authenticate", b"Bearer")])
        named = headers.get(MODEL_DEPLOYMENT, "").strip()
        deployment = self.choose(table, named, answer_headers)
        if isinstance(deployment, Answer):
            return deployment
        answer_headers.append(header(MODEL_DEPLOYMENT, deployment.name))
        length = headers.get("content-length")
        if length is not None and int(length) > deployment.max_request_bytes:
            return self.too_large(deployment, answer_headers)
        return Route(deployment, bool(named), answer_headers, request_id, client_request_id)

    @staticmethod
    def choose(table: RoutingTable, named: str, answer_headers: list) -> DeploymentSpec | Answer:
        """The deployment a request goes to: the one its header names, else one drawn by the traffic weights."""
        if named:
            deployment = table.deployments.get(named)
            if deployment is None:
                known = ", ".join(sorted(table.deployments)) or "none"
                return json_answer(
                    404,
                    f"{MODEL_DEPLOYMENT}: {named!r} is not a deployment of this endpoint (deployments: {known})",
                    answer_headers,
                )
            return deployment
        if table.weighted:
            names, cumulative = table.draw
            return table.deployments[random.choices(names, cum_weights=cumulative)[0]]
        return json_answer(
            404,
            f"endpoint {table.endpoint} has no deployment with traffic; give one traffic "
            f"(online-endpoint update --traffic) or name one in the {MODEL_DEPLOYMENT} header",
            answer_headers,
        )

    @staticmethod
    def too_large(deployment: DeploymentSpec, headers: list) -> Answer:
        limit = deployment.max_request_bytes
        # The body is never read: the connection cannot carry another request.
        return json_answer(413, f"request body is larger than {limit} bytes", headers, close=True)

    async def answer(self, request: IncomingRequest) -> Answer:
        """The answer to a whole request whose head was routed."""
        route: Route = request.decision
        # The table may have changed since the request's head was routed: the deployment's servers and limits now in
        # force. A deployment deleted meanwhile is chosen again by the table in force (the header's name: 404 now), so
        # a server that left the table never takes a request that was not already sent to it when it left.
        deployment = self.table.deployments.get(route.deployment.name)
        if deployment is None:
            chosen_by = route.deployment.name if route.named else ""
            headers = [item for item in route.answer_headers if item[0] != MODEL_DEPLOYMENT_HEADER]
            deployment = self.choose(self.table, chosen_by, headers)
            if isinstance(deployment, Answer):
                return deployment
            route.answer_headers = [*headers, header(MODEL_DEPLOYMENT, deployment.name)]
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

    def _server(self, address: tuple[str, int], deployment: str) -> Server | None:
        server = self.servers.get(address)
        return server if server is not None and server.deployment == deployment else None

    def _pick(self, deployment: DeploymentSpec, excluded: set) -> Server | None:
        candidates = [
            server
            for spec in deployment.servers
            if (server := self._server(spec.address, deployment.name)) is not None
            and server.up
            and server not in excluded
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
            # A request tried again after a dropped connection follows the table in force (servers that left it are
            # never picked).
            deployment = self.table.deployments.get(deployment.name, deployment)
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
                connection = idle_connection(server)
                if connection is None:
                    if server.gone():
                        self._set_up(server, False)
                        refused.add(server)
                        continue
                    try:
                        connection = await connect(server, remaining)
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
                if server.retired and not server.in_progress:
                    self._drained(server)
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
        if self.mirrored.get(name, 0) >= deployment.capacity:
            return  # the mirror is full: the copy is skipped, as a 429 to it would be discarded anyway
        self.mirrored[name] = self.mirrored.get(name, 0) + 1

        async def send_copy():
            try:
                await self._forward(deployment, head, body, head_only, [])
            except Exception as err:  # nothing of the copy may reach the client or stop the router
                log(f"mirror copy to {name} failed: {type(err).__name__}")
            finally:
                self.mirrored[name] -= 1

        self._spawn(send_copy())


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
