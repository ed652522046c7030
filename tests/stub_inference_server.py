"""A stand-in for a deployment's inference server, for the router's tests and benchmark: standard library only, HTTP/1.1
with keep-alive, one thread per connection, on 127.0.0.1.

    python tests/stub_inference_server.py --port PORT --name NAME

- GET / answers 200 "Healthy" (the liveness route the router probes);
- GET /count answers {"count": N}: the requests other than GET / and /count it has received;
- any other request answers 200 with {"server": NAME, "port": PORT, "method", "path", "body_bytes", "headers"} after
  reading the whole body; the query can ask for `status=CODE` (answered with that status and a JSON message) and
  `sleep_ms=MS` (answered after that long), so that tests can make a deployment fail or be slow per request;
- --status and --sleep-ms set the same for every request.
"""

import argparse
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument("--status", type=int, default=200)
    parser.add_argument("--sleep-ms", type=int, default=0)
    args = parser.parse_args()
    counted = {"count": 0}
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as gunicorn's workers
        disable_nagle_algorithm = True  # headers and body leave at once, not 40 ms apart (delayed ACK)
        wbufsize = 64 * 1024  # one write per answer, flushed by the server after each request

        def log_message(self, *_):  # no line per request
            pass

        def _send(self, status, document, content_type="application/json"):
            body = document if isinstance(document, bytes) else json.dumps(document).encode()
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("x-stub-server", args.name)
            self.end_headers()
            self.wfile.write(body)

        def _answer(self):
            parts = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            if parts.path == "/" and self.command in ("GET", "HEAD"):
                return self._send(200, b"Healthy", "text/plain")
            if parts.path == "/count":
                with lock:
                    return self._send(200, {"count": counted["count"]})
            with lock:
                counted["count"] += 1
            query = {key: values[-1] for key, values in parse_qs(parts.query).items()}
            sleep_ms = int(query.get("sleep_ms", args.sleep_ms))
            status = int(query.get("status", args.status))
            if sleep_ms:
                time.sleep(sleep_ms / 1000)
            if status != 200:
                return self._send(status, {"message": f"stub {args.name} answers {status}"})
            return self._send(
                200,
                {
                    "server": args.name,
                    "port": args.port,
                    "method": self.command,
                    "path": self.path,
                    "body_bytes": len(body),
                    "headers": {key.lower(): value for key, value in self.headers.items()},
                },
            )

        do_GET = do_POST = do_PUT = do_HEAD = _answer

    ThreadingHTTPServer.daemon_threads = True
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.serve_forever()


if __name__ == "__main__":
    main()
