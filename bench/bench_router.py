"""The endpoint router's cost and score.py's batch speed, side by side in one run on 127.0.0.1, with wrk as the load:

    python bench/bench_router.py [--model-dir DIR] [--seconds 3] [--rounds 3] [--workers 1] [--json-out FILE]

A deployment-like server (gunicorn + azureml-inference-server-http's app + src/score.py, one worker of the threaded
worker class, as a local deployment runs it) is called
1. directly,
2. through the endpoint router (aml_local/endpoints/router.py: asyncio on uvloop, httptools, with all of Azure's front
   end rules: key check, request ids, traffic draw, admission, timeouts, health),
3. through a minimal forwarder on the same stack (key check and a kept-alive connection only): the floor, what any
   proxy on this stack costs,
at 8 connections (wrk -t1 -c8), with single-image requests (endpoints/sample-request.json) and 30-image requests (186
KB of JSON, like the sample request of Azure's TF MNIST example), round after round so that background load falls on
all rows alike; for the two proxies also the CPU time they spend per request (user + system, from psutil), which
other load on the machine changes far less than requests/s. Then one 1,000-image request (6 MB) at a time, direct
and through the router, against the time orjson.loads (and json.loads) take to parse the same body in this process,
measured in the same loop (medians).
Without --model-dir, score.py serves an untrained model of train.py's default shape (784-256-128-10): the numpy
forward pass costs the same whatever the weights. Needs wrk (Debian: wrk).
"""

import argparse
import asyncio
import contextlib
import http.client
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson
import psutil

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "src"))
SAMPLE = REPO_ROOT / "endpoints/sample-request.json"
KEY = "bench-key-" + "x" * 32
WRK_SCRIPT = """
local file = assert(io.open(os.getenv("BODY_FILE"), "rb"))
wrk.method = "POST"
wrk.body = file:read("*a")
file:close()
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("BEARER_KEY")
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'RESULT {"requests": %d, "duration_us": %d, "non_2xx": %d, "socket_errors": %d, "p50_us": %d, "p99_us": %d}\\n',
    summary.requests, summary.duration, e.status, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
"""


def fail(message):
    sys.exit(f"error: {message}")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_answers(port, process, name, timeout=180):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            fail(f"{name} exited with code {process.returncode} before answering")
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        with contextlib.suppress(OSError):
            connection.request("GET", "/")
            if connection.getresponse().status == 200:
                return
        connection.close()
        time.sleep(0.3)
    fail(f"{name} did not answer GET / within {timeout} s")


@contextlib.contextmanager
def started(name, command, port, scratch, env=None, cwd=None):
    log = open(scratch / f"{name.split()[0]}-{port}.log", "wb")  # noqa: SIM115 - the process's own output
    process = subprocess.Popen(command, env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    log.close()
    try:
        wait_until_answers(port, process, name)
        yield process
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=20)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def untrained_model(folder: Path) -> Path:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import mlflow.keras

    model = keras.Sequential(
        [
            keras.Input(shape=(784,)),
            keras.layers.Dense(256, activation="relu"),
            keras.layers.Dense(128, activation="relu"),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    mlflow.keras.save_model(model, str(folder / "model"))
    return folder / "model"


def wrk(port, body_file, seconds, script):
    env = {**os.environ, "BODY_FILE": str(body_file), "BEARER_KEY": KEY}
    command = ["wrk", "-t1", "-c8", f"-d{seconds}s", "--timeout", "10s", "-s", str(script)]
    result = subprocess.run(
        [*command, f"http://127.0.0.1:{port}/score"], env=env, capture_output=True, text=True, timeout=seconds + 60
    )
    lines = [line for line in result.stdout.splitlines() if line.startswith("RESULT ")]
    if result.returncode or not lines:
        fail(f"wrk failed ({result.returncode}): {result.stdout[-800:]} {result.stderr[-800:]}")
    numbers = json.loads(lines[-1].removeprefix("RESULT "))
    if numbers["non_2xx"] or numbers["socket_errors"] or not numbers["requests"]:
        fail(f"port {port}: {numbers['non_2xx']} non-2xx, {numbers['socket_errors']} socket errors: {numbers}")
    return numbers


def combined(runs):
    seconds = sum(run["duration_us"] for run in runs) / 1e6
    requests = sum(run["requests"] for run in runs)
    return {
        "rps": requests / seconds,
        "p50_ms": statistics.median(run["p50_us"] for run in runs) / 1e3,
        "p99_ms": max(run["p99_us"] for run in runs) / 1e3,
        "proxy_cpu_us_per_request": sum(run["proxy_cpu_s"] for run in runs) / requests * 1e6,
    }


def timed_post(connection, body):
    started_at = time.perf_counter()
    connection.request("POST", "/score", body, {"Content-Type": "application/json", "Authorization": f"Bearer {KEY}"})
    response = connection.getresponse()
    raw = response.read()
    elapsed = time.perf_counter() - started_at
    if response.status != 200:
        fail(f"a batch got {response.status}: {raw[:300]!r}")
    return elapsed, len(json.loads(raw)["predictions"])


def batch_times(ports, body, rounds):
    """Medians (ms) of one request of body on each port, and of orjson.loads / json.loads of it, interleaved."""
    connections = {name: http.client.HTTPConnection("127.0.0.1", port, timeout=60) for name, port in ports.items()}
    times = {name: [] for name in [*ports, "orjson.loads", "json.loads"]}
    for round_number in range(rounds + 1):  # the first round warms up
        for name, connection in connections.items():
            elapsed, _ = timed_post(connection, body)
            if round_number:
                times[name].append(elapsed)
        for name, parse in (("orjson.loads", orjson.loads), ("json.loads", json.loads)):
            started_at = time.perf_counter()
            parse(body)
            if round_number:
                times[name].append(time.perf_counter() - started_at)
    for connection in connections.values():
        connection.close()
    return {name: statistics.median(values) * 1e3 for name, values in times.items()}


class _Complete:
    """httptools callbacks: only the end of the backend's answer matters."""

    def __init__(self, done: asyncio.Event):
        self.done = done

    def on_message_complete(self):
        self.done.set()


# A minimal forwarder on uvloop + httptools: the floor under the router's own cost on the same stack.
# Key check, one pooled keep-alive connection per client connection, bodies with Content-Length only.
class _Forward(asyncio.Protocol):
    def __init__(self, backend_port):
        import httptools

        self.backend_port = backend_port
        self.parser = httptools.HttpRequestParser(self)
        self.backend = None
        self.queue = asyncio.Queue()
        self.headers, self.body, self.url = [], [], b""

    def connection_made(self, transport):
        self.transport = transport
        self.worker = asyncio.get_running_loop().create_task(self.serve())

    def data_received(self, data):
        self.parser.feed_data(data)

    def connection_lost(self, exc):
        self.worker.cancel()

    def on_url(self, url):
        self.url += url

    def on_header(self, name, value):
        self.headers.append((name, value))

    def on_body(self, body):
        self.body.append(body)

    def on_message_complete(self):
        self.queue.put_nowait((self.parser.get_method(), self.url, self.headers, b"".join(self.body)))
        self.headers, self.body, self.url = [], [], b""

    async def serve(self):
        import httptools

        while True:
            method, url, headers, body = await self.queue.get()
            keyed = any(n.lower() == b"authorization" and v == f"Bearer {KEY}".encode() for n, v in headers)
            if not keyed and not (method == b"GET" and url == b"/"):
                self.transport.write(b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n")
                continue
            forwarded = b"".join(
                n + b": " + v + b"\r\n" for n, v in headers if n.lower() not in (b"authorization", b"content-length")
            )
            head = method + b" " + url + b" HTTP/1.1\r\n" + forwarded + b"Content-Length: %d\r\n\r\n" % len(body)
            for attempt in (1, 2):  # a pooled connection the backend closed meanwhile: once more on a new one
                if self.backend is None:
                    self.backend = await asyncio.open_connection("127.0.0.1", self.backend_port)
                reader, writer = self.backend
                writer.write(head + body)
                done, parts = asyncio.Event(), []

                answer = httptools.HttpResponseParser(_Complete(done))
                while not done.is_set() and (chunk := await reader.read(65536)):
                    parts.append(chunk)
                    answer.feed_data(chunk)
                if done.is_set():
                    self.transport.write(b"".join(parts))  # status line, headers and body as the backend sent them
                    break
                writer.close()
                self.backend = None
                if attempt == 2:
                    self.transport.close()


def run_raw_forwarder(port, backend_port):
    import uvloop

    async def main():
        server = await asyncio.get_running_loop().create_server(lambda: _Forward(backend_port), "127.0.0.1", port)
        await server.serve_forever()

    uvloop.run(main())


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", help="an MLflow model folder as train.py saves it (default: an untrained one)")
    parser.add_argument("--seconds", type=int, default=3, help="of load per row and round (3)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds over all rows (3)")
    parser.add_argument("--batch-rounds", type=int, default=7, help="1,000-image requests per target (7)")
    parser.add_argument("--workers", type=int, default=1, help="gunicorn workers of the deployment-like server (1)")
    parser.add_argument("--json-out", help="also write the figures to this file as JSON")
    parser.add_argument("--raw-forwarder", nargs=2, type=int, metavar=("PORT", "BACKEND_PORT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.raw_forwarder:
        return run_raw_forwarder(*args.raw_forwarder)
    if not shutil.which("wrk"):
        fail("wrk is not installed (Debian/Ubuntu: apt-get install wrk)")
    import mnist_data

    try:
        mnist = mnist_data.load_mnist(mnist_data.resolve_data_folder(None))
    except mnist_data.MnistDataError as err:
        fail(err)
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="bench-router-") as scratch_name:
        scratch = Path(scratch_name)
        model_dir = Path(args.model_dir).resolve() if args.model_dir else untrained_model(scratch)
        images = mnist.test_images[:1000].reshape(1000, 784) / 255.0
        bodies = {"single": SAMPLE.read_bytes()}
        for name, count in (("30 images", 30), ("1,000 images", 1000)):
            bodies[name] = json.dumps({"data": images[:count].tolist()}).encode()
        body_files = {}
        for name, body in bodies.items():
            body_files[name] = scratch / f"{name.replace(' ', '-').replace(',', '')}.json"
            body_files[name].write_bytes(body)
        script = scratch / "post.lua"
        script.write_text(WRK_SCRIPT)

        backend_port, router_port, raw_port = free_port(), free_port(), free_port()
        deployment_env = {k: v for k, v in os.environ.items() if not k.startswith(("AZUREML_", "AML_", "MLFLOW_"))}
        deployment_env |= {
            "AML_APP_ROOT": str(REPO_ROOT / "src"),
            "AZUREML_ENTRY_SCRIPT": "score.py",
            "AZUREML_MODEL_DIR": str(model_dir),
            "SERVICE_NAME": "mnist-mlp",
            "AML_APP_INSIGHTS_ENABLED": "false",
            "TF_CPP_MIN_LOG_LEVEL": "2",
            "OMP_NUM_THREADS": "1",
            "OPENBLAS_NUM_THREADS": "1",
            "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]),
        }
        backend = [sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{backend_port}", "--workers"]
        backend += [str(args.workers), "--worker-class", "gthread", "--threads", "4", "--timeout", "300"]
        backend += ["--error-logfile", "-", "azureml_inference_server_http.server.entry:app"]
        state = scratch / "endpoint"
        state.mkdir()
        routing = {
            "schema_version": 1,
            "generation": 1,
            "endpoint": "bench",
            "port": router_port,
            "keys": {"primary": KEY, "secondary": KEY + "2"},
            "traffic": {"blue": 100},
            "deployments": {
                "blue": {  # blue-deployment.yml's request settings: 2 x 4 x 1 = 8 requests in progress
                    "instance_count": 1,
                    "max_concurrent_requests_per_instance": 4,
                    "request_timeout_ms": 5000,
                    "liveness_probe": {"initial_delay": 30, "period": 10, "timeout": 5, "failure_threshold": 6},
                    "servers": [{"host": "127.0.0.1", "port": backend_port}],
                }
            },
        }
        (state / "routing.json").write_text(json.dumps(routing))
        router = [sys.executable, "-m", "aml_local.endpoints.router", "--state-dir", str(state)]
        raw = [sys.executable, __file__, "--raw-forwarder", str(raw_port), str(backend_port)]
        print("starting the deployment-like server, the router and the minimal forwarder ...", flush=True)
        with (
            started(
                "deployment (gunicorn + azmlinfsrv app + score.py)", backend, backend_port, scratch, deployment_env
            ),
            started("router", router, router_port, scratch, cwd=REPO_ROOT) as router_process,
            started("minimal forwarder", raw, raw_port, scratch) as raw_process,
        ):
            targets = {"direct": (backend_port, None), "router": (router_port, psutil.Process(router_process.pid))}
            targets["minimal forwarder"] = (raw_port, psutil.Process(raw_process.pid))
            runs = {(name, body): [] for name in targets for body in ("single", "30 images")}
            for body in ("single", "30 images"):
                for port, _ in targets.values():
                    wrk(port, body_files[body], 2, script)  # warm-up
                for round_number in range(1, args.rounds + 1):
                    print(f"{body}: round {round_number} of {args.rounds} ...", flush=True)
                    for name, (port, proxy) in targets.items():
                        before = sum(proxy.cpu_times()[:2]) if proxy else 0.0
                        numbers = wrk(port, body_files[body], args.seconds, script)
                        numbers["proxy_cpu_s"] = sum(proxy.cpu_times()[:2]) - before if proxy else 0.0
                        runs[name, body].append(numbers)
            print("1,000-image requests ...", flush=True)
            batch = batch_times(
                {"direct": backend_port, "router": router_port}, bodies["1,000 images"], args.batch_rounds
            )
    figures = {
        "load_average_before": load_before,
        "load_average_after": os.getloadavg()[0],
        "wrk_8_connections": {f"{name} / {body}": combined(values) for (name, body), values in runs.items()},
        "batch_1000_ms": batch,
    }
    lines = [
        "| at 8 connections (wrk -t1 -c8) | single image: requests/s | p50 / p99 ms | proxy CPU per request "
        "| 30 images: requests/s | p50 / p99 ms | proxy CPU per request |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    direct = {body: figures["wrk_8_connections"][f"direct / {body}"]["rps"] for body in ("single", "30 images")}
    for name in targets:
        cells = [name]
        for body in ("single", "30 images"):
            numbers = figures["wrk_8_connections"][f"{name} / {body}"]
            share = "" if name == "direct" else f" ({numbers['rps'] / direct[body]:.2f}x direct)"
            cpu = "" if name == "direct" else f"{numbers['proxy_cpu_us_per_request']:.0f} us"
            cells += [f"{numbers['rps']:,.0f}{share}", f"{numbers['p50_ms']:.2f} / {numbers['p99_ms']:.2f}", cpu]
        lines.append("| " + " | ".join(cells) + " |")
    parse = batch["orjson.loads"]
    lines += [
        "",
        f"1,000 images in one request ({len(bodies['1,000 images']) / 1e6:.1f} MB), medians of {args.batch_rounds}:",
        f"- orjson.loads alone {parse:.0f} ms; json.loads alone {batch['json.loads']:.0f} ms",
        f"- direct: {batch['direct']:.0f} ms = {batch['direct'] / parse:.2f}x orjson's parse",
        f"- through the router: {batch['router']:.0f} ms = {batch['router'] / parse:.2f}x orjson's parse",
        f"load average {load_before:.1f} before, {figures['load_average_after']:.1f} after",
    ]
    print("\n".join(lines))
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
