"""The router's side of the inference servers: each server's health state, the process it runs as, and kept-alive
connections to it, one request at a time on each (answers parsed by httptools)."""

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import time

import httptools
import psutil

from aml_local import processes
from aml_local.endpoints.router.routing_table import ServerSpec

STOP_GRACE_S = 10  # a server being replaced gets this long after SIGTERM before SIGKILL
# Below gunicorn's default keep-alive (2 s): a pooled connection is dropped before the server closes it.
BACKEND_KEEPALIVE_S = 1.0


class Server:
    """One inference server (host:port), kept across routing table versions while it stays in the table."""

    def __init__(self, spec: ServerSpec, deployment: str):
        self.spec = spec
        self.deployment = deployment
        self.idle: list[BackendConnection] = []  # kept-alive connections, the most recently used last
        self.up = True  # the verbs hand over servers that answered their readiness probe; the first probe confirms
        self.failures = 0
        self.in_progress = 0
        self.retired = False  # left the routing table: takes no new request, drained then stopped by the verbs
        self.restarts = 0
        self.process: subprocess.Popen | None = None  # the process the router started, after a restart
        self.pid, self.started = spec.pid, spec.started
        self.grace_until = 0.0  # monotonic time before which failed probes are not counted (initial_delay)
        self.watcher: asyncio.Task | None = None

    def gone(self) -> bool:
        """Whether the server's process is known to have ended. Its port may be another program's by then (another
        endpoint's server or router, given the same free port): what answers there is not this deployment."""
        if self.process is not None:
            return self.process.poll() is not None  # the router's own child: reaped here
        if not self.pid or self.started is None:
            return False  # a server given without its process: only its probes tell
        return not processes.alive(self.pid, self.started)

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


def process_if_ours(pid: int | None, started: float | None):
    """The process with this pid if it is still the one recorded (same start time; a zombie too, whose group may
    hold the port until it has exited), else None."""
    if not pid or started is None:
        return None
    try:
        process = psutil.Process(pid)
    except psutil.Error:
        return None
    return None if processes.replaced(pid, started) else process


async def stop_process_group(pid: int):
    """SIGTERM to the server's process group (it was started in a session of its own), SIGKILL after the grace; it
    returns once no process of the group holds anything (its port free for the server started next), or the grace
    after the SIGKILL has passed too."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, sig)
        deadline = time.monotonic() + STOP_GRACE_S
        while time.monotonic() < deadline:
            if processes.group_gone(pid):  # reaps the leader too, when it is the router's child
                return
            await asyncio.sleep(0.1)


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


async def connect(server: Server, timeout: float) -> BackendConnection:
    loop = asyncio.get_running_loop()
    _, connection = await asyncio.wait_for(
        loop.create_connection(BackendConnection, server.spec.host, server.spec.port), timeout
    )
    connection.transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return connection


def idle_connection(server: Server) -> BackendConnection | None:
    """A kept-alive connection to server that the server has not closed, nor would be about to close (idle too long)."""
    now = time.monotonic()
    while server.idle:
        connection = server.idle.pop()
        if connection.usable and now - connection.last_used < BACKEND_KEEPALIVE_S:
            return connection
        connection.transport.close()
    return None
