"""The router's side of its clients: one asyncio protocol per client connection (requests parsed by httptools,
answered in order, kept alive), the answers the router makes itself, the key check, and the draw-a-digit page."""

import asyncio
import collections
import errno
import hmac
import http
import importlib.resources
import json
import socket
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote

import httptools

from aml_local import AmlLocalError
from aml_local.endpoints.router.routing_table import DeploymentSpec

# The draw-a-digit page, served at GET /draw/ without a key: it asks for one and sends it on /score. Its files are
# package data (aml_local/draw/), found through the package so that an installed aml-local serves them too.
DRAW_PAGE_DIR = Path(str(importlib.resources.files("aml_local") / "draw"))
DRAW_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript", ".css": "text/css"}


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


def header(name: str, value: str) -> tuple[bytes, bytes]:
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


class ClientConnection(asyncio.Protocol):
    """One client connection: requests parsed by httptools, answered in order, kept alive as the client asks."""

    def __init__(self, router):
        # router: the Router (aml_local.endpoints.router) that decides on each request's head and answers it
        self.router = router
        self.parser = httptools.HttpRequestParser(self)
        self.transport = None
        self.request = IncomingRequest()
        self.waiting: collections.deque[IncomingRequest] = collections.deque()
        self.busy = False  # a request is being answered
        self.closed = False
        # One task per connection answers its requests in order, and waits on `wake` between them: a kept-alive
        # connection costs no new task per request (a task is the largest cost of a request here after the socket).
        self.answering = False
        self.wake: asyncio.Future | None = None

    # asyncio.Protocol
    def connection_made(self, transport):
        self.transport = transport
        transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.router.connections.add(self)

    def connection_lost(self, exc):
        self.closed = True
        self.router.connections.discard(self)
        self._wake_up()

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
        self.busy = True
        if not self.answering:
            self.answering = True
            self.router._spawn(self._answer_in_order())
        else:
            self._wake_up()

    def _wake_up(self):
        if self.wake is not None and not self.wake.done():
            self.wake.set_result(None)

    async def _answer_in_order(self):
        try:
            while not self.closed:
                if not self.waiting:
                    self.busy = False
                    self.wake = asyncio.get_running_loop().create_future()
                    await self.wake
                    continue
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
            self.answering = False

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
