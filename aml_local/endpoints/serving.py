"""The WSGI app a local online deployment runs under gunicorn (`aml_local.endpoints.serving:build_app()`): the Azure
ML inference server's own Flask app, behind what Azure's gateway does before a request reaches the container.

- Key auth: every request needs `Authorization: Bearer <key>` with the endpoint's primary or secondary key, else
  401 with a JSON message. The keys are read from the file named by AML_LOCAL_KEYS_FILE (0600, written by
  `online-endpoint create`), never from argv, and never written to a log. `GET /` stays open: it is the
  liveness/readiness route, and Azure's probes send no key.
- Body size: a body larger than AML_LOCAL_MAX_REQUEST_BYTES (default 32 MiB) gets 413 with a JSON message, before
  any of it is read.
- Unparseable JSON: a JSON body that is not UTF-8/16/32 text or is nested too deeply gets 400 with a JSON message
  (the inference server 1.4.1 answers both with a 500, before run() is called).

- Concurrency and time, a local approximation of Azure's front end: at most AML_LOCAL_MAX_CONCURRENT requests
  (max_concurrent_requests_per_instance x instance_count) are inside the inference server at once, across all of
  its workers; a request that finds them all busy waits for one to finish, and if none does within
  AML_LOCAL_REQUEST_TIMEOUT_MS (request_timeout_ms, which on Azure covers queueing too) it gets 429 with a JSON
  message, as Azure answers "too many pending requests". A request inside the server that is not answered within
  what is left of request_timeout_ms gets 408 with a JSON message, as Azure answers a scoring timeout; its slot
  stays taken until run() really returns, so a stuck model makes later requests 429 rather than piling up.
  The slots are flock()ed files in AML_LOCAL_SLOTS_DIR, so the count is shared by the gunicorn workers and a
  worker that dies gives its slots back with its file descriptors. The server runs gunicorn's threaded worker
  so that waiting requests are inside the gateway (counted and timed), not unseen in the socket's listen queue.

The key and size checks are a few dictionary look-ups and a constant-time comparison per request; the slot is one
non-blocking flock() while one is free.
"""

import concurrent.futures
import fcntl
import hmac
import importlib.resources
import io
import json
import os
import re
import sys
import threading
import time
from pathlib import Path

DEFAULT_MAX_REQUEST_BYTES = 32 * 1024 * 1024
# The content types the inference server parses as JSON (flask's Request.is_json).
_JSON_TYPE = re.compile(r"^\s*application/(?:[\w.+-]*\+)?json\s*(?:;|$)", re.IGNORECASE)
SLOT_POLL_S = 0.01  # how often a waiting request looks for a slot freed by another worker process
_OPEN_METHODS = ("GET", "HEAD")
# The draw-a-digit page, served at GET /draw/ without a key: it asks for one and sends it on /score. Its files are
# package data (aml_local/draw/), found through the package so that an installed aml-local serves them too.
DRAW_PAGE_DIR = Path(str(importlib.resources.files("aml_local") / "draw"))
_DRAW_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript", ".css": "text/css"}


def draw_page(environ, start_response):
    """GET /draw/<file>: the page's own files, looked up by name (no path can reach outside its folder)."""
    if environ["PATH_INFO"] == "/draw":  # the page's relative links need the trailing slash
        start_response("301 Moved Permanently", [("Location", "/draw/"), ("Content-Length", "0")])
        return [b""]
    name = environ["PATH_INFO"].removeprefix("/draw/") or "index.html"
    files = {f.name: f for f in DRAW_PAGE_DIR.iterdir() if f.suffix in _DRAW_TYPES}
    if name not in files:
        return _json_response(start_response, "404 Not Found", f"the draw page has no file {name!r}")
    body = files[name].read_bytes()
    start_response("200 OK", [("Content-Type", _DRAW_TYPES[files[name].suffix]), ("Content-Length", str(len(body)))])
    return [body]


def _json_response(start_response, status: str, message: str, extra_headers=()):
    body = json.dumps({"message": message}).encode()
    headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body))), *extra_headers]
    start_response(status, headers)
    return [body]


class GatewayChecks:
    """WSGI middleware: the key and body-size checks, then the wrapped app."""

    def __init__(self, app, keys: list[bytes], max_request_bytes: int, log=sys.stderr):
        if not keys or not all(keys):
            raise ValueError("GatewayChecks needs at least one non-empty key")
        self.app = app
        self.keys = keys
        self.max_request_bytes = max_request_bytes
        self.log = log

    def _authorized(self, header: str) -> bool:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer":
            return False
        supplied = token.strip().encode()
        # Compare against every key, each in constant time, so the time taken says nothing about which matched.
        matches = [hmac.compare_digest(supplied, key) for key in self.keys]
        return any(matches)

    def _reject(self, environ, start_response, status, message, extra_headers=()):
        # One line in the server log, without the Authorization header or any of the body.
        self.log.write(f"aml-local gateway: {status.split()[0]} {environ['REQUEST_METHOD']} {environ['PATH_INFO']}\n")
        self.log.flush()
        return _json_response(start_response, status, message, extra_headers)

    def __call__(self, environ, start_response):
        if environ.get("PATH_INFO") == "/" and environ.get("REQUEST_METHOD") in _OPEN_METHODS:
            return self.app(environ, start_response)
        if environ.get("REQUEST_METHOD") == "GET" and (environ.get("PATH_INFO", "") + "/").startswith("/draw/"):
            return draw_page(environ, start_response)
        if not self._authorized(environ.get("HTTP_AUTHORIZATION", "")):
            return self._reject(
                environ,
                start_response,
                "401 Unauthorized",
                "missing or invalid key: send 'Authorization: Bearer <key>' with a key from "
                "online-endpoint get-credentials",
                [("WWW-Authenticate", "Bearer")],
            )
        length = environ.get("CONTENT_LENGTH")
        if length:
            try:
                size = int(length)
            except ValueError:
                return self._reject(environ, start_response, "400 Bad Request", "Content-Length is not a number")
            if size > self.max_request_bytes:
                return self._too_large(environ, start_response)
        elif "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower():
            # No length up front: read at most one byte past the limit, then hand the app what was read.
            body = environ["wsgi.input"].read(self.max_request_bytes + 1)
            if len(body) > self.max_request_bytes:
                return self._too_large(environ, start_response)
            environ["wsgi.input"] = io.BytesIO(body)
            environ["CONTENT_LENGTH"] = str(len(body))
        if _JSON_TYPE.match(environ.get("CONTENT_TYPE", "")) and environ.get("CONTENT_LENGTH", "0") != "0":
            return self._refuse_unparseable(environ, start_response)
        return self.app(environ, start_response)

    def _refuse_unparseable(self, environ, start_response):
        """Run the app on a JSON body kept aside; if it answers 500 because the body cannot be parsed at all, answer
        400 saying why. The inference server (1.4.1) catches only JSONDecodeError from json.loads: a body that is not
        UTF-8/16/32 text (UnicodeDecodeError) or nested too deeply (RecursionError) becomes a 500 before run() is
        called. Checked only after a 500, so a good request costs nothing more."""
        body = environ["wsgi.input"].read(int(environ["CONTENT_LENGTH"]))
        environ["wsgi.input"] = io.BytesIO(body)
        answered = []

        def capture(status, headers, exc_info=None):
            answered[:] = [status, headers]
            return lambda data: None  # the write() callable of WSGI; Flask never uses it

        result = self.app(environ, capture)
        if answered[0].startswith("500"):
            reason = _unparseable(body)
            if reason:
                if hasattr(result, "close"):
                    result.close()
                return self._reject(environ, start_response, "400 Bad Request", reason)
        start_response(*answered)
        return result

    def _too_large(self, environ, start_response):
        limit = self.max_request_bytes
        return self._reject(
            environ, start_response, "413 Request Entity Too Large", f"request body is larger than {limit} bytes"
        )


class SharedSlots:
    """At most `count` holders at once across processes: slot i is an exclusive flock() on the file slot-i. Within
    one process the held slots are tracked under a lock, because flock() on an already locked descriptor succeeds.
    A waiter is woken at once by a release in its own process, and looks again every SLOT_POLL_S for a release in
    another (flock has no wake-up that can be bounded by a deadline)."""

    def __init__(self, folder: Path, count: int):
        folder.mkdir(parents=True, exist_ok=True)
        self.descriptors = [os.open(folder / f"slot-{i}", os.O_RDWR | os.O_CREAT, 0o600) for i in range(count)]
        self.held = set()
        self.freed = threading.Condition()

    def _take_one(self) -> int | None:  # with self.freed held
        for index, descriptor in enumerate(self.descriptors):
            if index in self.held:
                continue
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue
            self.held.add(index)
            return index
        return None

    def try_acquire(self) -> int | None:
        with self.freed:
            return self._take_one()

    def acquire(self, deadline: float) -> int | None:
        with self.freed:
            while True:
                index = self._take_one()
                remaining = deadline - time.monotonic()
                if index is not None or remaining <= 0:
                    return index
                self.freed.wait(min(remaining, SLOT_POLL_S))

    def release(self, index: int):
        with self.freed:
            fcntl.flock(self.descriptors[index], fcntl.LOCK_UN)
            self.held.discard(index)
            self.freed.notify()


class AdmissionControl:
    """WSGI middleware: a shared cap on requests inside the wrapped app (429 past it) and a deadline on each request
    (408 past it), both from the deployment's request_settings. Open routes (`GET /`) are never held back."""

    def __init__(self, app, slots: SharedSlots, timeout_ms: int, log=sys.stderr):
        self.app = app
        self.slots = slots
        self.timeout_s = timeout_ms / 1000
        self.timeout_ms = timeout_ms
        self.log = log
        # One thread per slot this process may hold: the app runs there, so the request's own thread can stop
        # waiting for it at the deadline.
        self.runner = concurrent.futures.ThreadPoolExecutor(len(slots.descriptors), thread_name_prefix="score")

    def _run_in_slot(self, environ, slot):
        try:
            captured = []

            def start_response(status, headers, exc_info=None):
                captured[:] = [status, headers]

            body_parts = self.app(environ, start_response)
            try:
                body = b"".join(body_parts)
            finally:
                if hasattr(body_parts, "close"):
                    body_parts.close()
            return captured[0], captured[1], body
        finally:
            self.slots.release(slot)

    def _answer(self, environ, start_response, status, message):
        self.log.write(f"aml-local gateway: {status.split()[0]} {environ['REQUEST_METHOD']} {environ['PATH_INFO']}\n")
        self.log.flush()
        return _json_response(start_response, status, message)

    def __call__(self, environ, start_response):
        if environ.get("PATH_INFO") == "/" and environ.get("REQUEST_METHOD") in _OPEN_METHODS:
            return self.app(environ, start_response)
        deadline = time.monotonic() + self.timeout_s
        # The body is read here, in the request's own thread, so a slow client holds no slot while it sends.
        length = int(environ.get("CONTENT_LENGTH") or 0)  # checked to be a number within the limit by GatewayChecks
        environ["wsgi.input"] = io.BytesIO(environ["wsgi.input"].read(length) if length > 0 else b"")
        slot = self.slots.acquire(deadline)
        if slot is None:
            return self._answer(
                environ,
                start_response,
                "429 Too Many Requests",
                f"too many pending requests: all {len(self.slots.descriptors)} slots "
                f"(max_concurrent_requests_per_instance x instance_count) stayed busy for request_timeout_ms "
                f"({self.timeout_ms} ms)",
            )
        future = self.runner.submit(self._run_in_slot, environ, slot)
        try:
            status, headers, body = future.result(timeout=max(0.0, deadline - time.monotonic()))
        except concurrent.futures.TimeoutError:
            return self._answer(
                environ,
                start_response,
                "408 Request Timeout",
                f"request timed out after request_timeout_ms ({self.timeout_ms} ms)",
            )
        start_response(status, headers)
        return [body]


def _unparseable(body: bytes) -> str | None:
    """Why json.loads cannot read body at all (not text, nested too deeply), or None."""
    try:
        json.loads(body)
    except UnicodeDecodeError as err:
        return f"the body is not UTF-8 (or UTF-16/32) text: byte {err.start} cannot be decoded"
    except RecursionError:
        return "the body's JSON is nested too deeply to parse"
    except ValueError:
        return None
    return None


def read_keys(path: str) -> list[bytes]:
    with open(path) as handle:
        keys = json.load(handle)
    return [keys["primaryKey"].encode(), keys["secondaryKey"].encode()]


def build_app():
    keys_file = os.environ.pop("AML_LOCAL_KEYS_FILE", None)  # the scoring script has no need to know where
    if not keys_file:
        raise RuntimeError("AML_LOCAL_KEYS_FILE is not set: start deployments with aml-local online-deployment create")
    keys = read_keys(keys_file)
    max_request_bytes = int(os.environ.get("AML_LOCAL_MAX_REQUEST_BYTES") or DEFAULT_MAX_REQUEST_BYTES)
    # Importing entry builds the inference server's app: its config comes from the environment, and the
    # scoring script's init() runs here, once per worker, as in the Azure ML container.
    from azureml_inference_server_http.server.entry import app as inference_app

    slots_dir = os.environ.get("AML_LOCAL_SLOTS_DIR")
    if not slots_dir:
        return GatewayChecks(inference_app, keys, max_request_bytes)
    slots = SharedSlots(Path(slots_dir), int(os.environ["AML_LOCAL_MAX_CONCURRENT"]))
    admitted = AdmissionControl(inference_app, slots, int(os.environ["AML_LOCAL_REQUEST_TIMEOUT_MS"]))
    return GatewayChecks(admitted, keys, max_request_bytes)
