"""The WSGI app a local online deployment runs under gunicorn (`aml_local.serving:build_app()`): the Azure ML inference
server's own Flask app, behind what Azure's gateway does before a request reaches the container.

- Key auth: every request needs `Authorization: Bearer <key>` with the endpoint's primary or secondary key, else
  401 with a JSON message. The keys are read from the file named by AML_LOCAL_KEYS_FILE (0600, written by
  `online-endpoint create`), never from argv, and never written to a log. `GET /` stays open: it is the
  liveness/readiness route, and Azure's probes send no key.
- Body size: a body larger than AML_LOCAL_MAX_REQUEST_BYTES (default 32 MiB) gets 413 with a JSON message, before
  any of it is read.

Both checks are a few dictionary look-ups and a constant-time comparison per request, so the scoring path costs
what the inference server costs.
"""

import hmac
import io
import json
import os
import sys

DEFAULT_MAX_REQUEST_BYTES = 32 * 1024 * 1024
_OPEN_METHODS = ("GET", "HEAD")


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
        return self.app(environ, start_response)

    def _too_large(self, environ, start_response):
        limit = self.max_request_bytes
        return self._reject(
            environ, start_response, "413 Request Entity Too Large", f"request body is larger than {limit} bytes"
        )


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

    return GatewayChecks(inference_app, keys, max_request_bytes)
