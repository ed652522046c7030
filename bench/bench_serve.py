"""Benchmark serving on 127.0.0.1, side by side in one run, with wrk as the load generator (`make bench-serve`):

    python bench/bench_serve.py [--model-dir DIR] [--workers 2] [--seconds 3] [--rounds 3] [--batch-rounds 7]

The same trained model (trained here, 3 epochs, without --model-dir), served seven ways:
1. direct to the deployment: `aml-local online-deployment create` of endpoints/blue-deployment.yml (--workers
   WORKER_COUNT) called on its server's own port, as the endpoint's router calls it (no key: a server has none);
2. through the router: the same deployment through its endpoint's scoring URI, with the key, as any client calls it
   (aml_local/endpoints/router/server.py on uvloop + httptools);
3. the same router code on the standard library's asyncio event loop instead of uvloop (a second router process on a
   copy of the routing table): what the event loop is worth;
4. a minimal forwarder on uvloop + httptools (key check, one pooled connection per client connection, nothing else):
   the floor under any proxy on that stack, so the router's own cost is the difference;
5. the straightforward score.py (Keras model called per request, json.loads) under the same inference server;
6. `mlflow models serve` on the same model (--env-manager local, --workers WORKER_COUNT);
7. the MLflow no-code deployment of the same registered model beside blue (endpoints/mlflow-deployment.yml: no scoring
   script, aml-local's mlflow_score.py in its place, Azure's `input_data` requests), with blue's server settings
   (its environment_variables and request_settings, by --set), called on its server's own port as row 1 is: the
   speed of the two ways to deploy this model (score.py or MLflow no-code), reported as the ratio of 7 to 1.
Every server is started first; then they are measured in turn, round after round, so that background load that comes
and goes falls on every row alike: single-image requests (endpoints/sample-request.json) and 30-image requests (186
KB of JSON, like the sample request of Azure's TF MNIST example) at 8 connections (wrk -t2 -c8), --seconds per round
after a warm-up; for the proxies also the CPU time they spend per request (user + system, psutil), which other load
on the machine changes far less than requests/s. Then one request holding the first 1,000 MNIST test images (6 MB),
one at a time to each, against the time orjson.loads and json.loads take to parse the same body in this process,
interleaved in the same loop (medians of --batch-rounds). Needs wrk (Debian: wrk) and MNIST (MNIST_DATA or the cache).
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
from urllib.parse import urlsplit

import orjson
import psutil
import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "src"))
sys.path.insert(0, str(REPO_ROOT))  # the faults/ library's wrk runner

import trained_model  # noqa: E402
from trained_model import fail  # noqa: E402

import mnist_data  # noqa: E402
from faults import client  # noqa: E402

SAMPLE = REPO_ROOT / "endpoints/sample-request.json"
NO_CODE = "MLflow no-code deployment (mlflow-deployment.yml), direct"
# The body each row takes: score.py's {"data": ...}, `mlflow models serve`'s {"inputs": ...}, or the {"input_data":
# ...} of Azure's MLflow no-code deployments (endpoints/sample-request-mlflow.json).
BODY_KIND = {"mlflow models serve": "mlflow", NO_CODE: "input_data"}
BATCH = 1000
STRAIGHTFORWARD_SCORE = """
import json
import os

import mlflow.keras
import numpy as np


def init():
    global model
    model = mlflow.keras.load_model(os.environ["AZUREML_MODEL_DIR"])


def run(raw_data):
    data = np.array(json.loads(raw_data)["data"], dtype=np.float32)
    probabilities = model(data).numpy()
    return {"predictions": probabilities.argmax(axis=1).tolist(), "probabilities": probabilities.tolist()}
"""
# The router's own serve() on the standard library's event loop (its main() runs it on uvloop).
STDLIB_ROUTER = "import asyncio, pathlib, sys; from aml_local.endpoints.router import server as router; "
STDLIB_ROUTER += "asyncio.run(router.serve(pathlib.Path(sys.argv[1])))"


def free_port():
    with socket.socket() as s:  # azmlinfsrv binds 0.0.0.0, so the port must be free there
        s.bind(("", 0))
        return s.getsockname()[1]


def post(url, body, key="", timeout=120):
    """(status, parsed JSON body, seconds) of one POST on a fresh connection."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    headers = {"Content-Type": "application/json"} | ({"Authorization": f"Bearer {key}"} if key else {})
    try:
        started = time.perf_counter()
        connection.request("POST", parts.path, body, headers)
        response = connection.getresponse()
        raw = response.read()
        elapsed = time.perf_counter() - started
    finally:
        connection.close()
    return response.status, json.loads(raw), elapsed


def body_kind(name):
    return BODY_KIND.get(name, "ours")


def predictions(answer) -> list:
    """The predictions in an answer: score.py's and mlflow's {"predictions": [...]}, or the no-code deployment's list
    (one row of probabilities per image)."""
    return answer.get("predictions", []) if isinstance(answer, dict) else answer


def answers(port, path) -> bool:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.request("GET", path)
        return connection.getresponse().status == 200
    except OSError:  # refused while starting; a read timeout while init() runs
        return False
    finally:
        connection.close()


@contextlib.contextmanager
def server(name, command, env, port, health_path, scratch, cwd=None):
    """Start command in its own process group, wait until GET health_path answers 200, stop the whole group after.
    Yields the process."""
    log_path = scratch / f"server-{port}.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            command, env=env, cwd=cwd or scratch, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        deadline = time.monotonic() + 180
        while not answers(port, health_path):
            if process.poll() is not None:
                tail = log_path.read_text(errors="replace")[-3000:]
                fail(f"{name} exited with code {process.returncode} before answering; its log ends:\n{tail}")
            if time.monotonic() > deadline:
                fail(f"{name} did not answer GET {health_path} within 180 s (log: {log_path})")
            time.sleep(0.5)
        yield process
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):  # gunicorn stops its workers gracefully on SIGTERM
            process.wait(timeout=20)
        with contextlib.suppress(ProcessLookupError):  # whatever is left of the group
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


@contextlib.contextmanager
def local_endpoint(model_dir, env, scratch, workers):
    """endpoints/*.yml deployed by aml-local into a throwaway AML_LOCAL_HOME: blue, and the MLflow no-code deployment
    beside it with blue's server settings; (scoring URI, key, blue's server port, the no-code deployment's server
    port, the endpoint's folder); deleted after."""
    aml_local = Path(sys.executable).parent / "aml-local"
    env = {**env, "AML_LOCAL_HOME": str(scratch / "aml-local-home")}

    def call(*args, check=True):
        result = subprocess.run([str(aml_local), *args], env=env, cwd=REPO_ROOT, capture_output=True, text=True)
        if check and result.returncode:
            fail(f"aml-local {' '.join(args[:2])} failed: {result.stderr.strip()[-2000:]}")
        return result

    endpoint = yaml.safe_load((REPO_ROOT / "endpoints/endpoint.yml").read_text())["name"]
    call("model", "create", "-f", "endpoints/model.yml", "--path", str(model_dir), "-o", "none")
    call("online-endpoint", "create", "-f", "endpoints/endpoint.yml", "-o", "none")
    try:
        create = ["online-deployment", "create", "-f", "endpoints/blue-deployment.yml", "--all-traffic"]
        shown = json.loads(call(*create, "--set", f"environment_variables.WORKER_COUNT={workers}").stdout)
        blue = yaml.safe_load((REPO_ROOT / "endpoints/blue-deployment.yml").read_text())
        settings = {**blue["environment_variables"], "WORKER_COUNT": workers}
        same = [f"environment_variables.{name}={value}" for name, value in settings.items()]
        same += [f"request_settings.{name}={value}" for name, value in blue["request_settings"].items()]
        no_code = ["online-deployment", "create", "-f", "endpoints/mlflow-deployment.yml", "--set", *same]
        shown_no_code = json.loads(call(*no_code).stdout)
        uri = call("online-endpoint", "show", "-n", endpoint, "--query", "scoring_uri", "-o", "tsv").stdout.strip()
        key = call("online-endpoint", "get-credentials", "-n", endpoint, "--query", "primaryKey", "-o", "tsv")
        port = int(shown["properties"]["aml_local.ports"].split(",")[0])
        no_code_port = int(shown_no_code["properties"]["aml_local.ports"].split(",")[0])
        yield uri, key.stdout.strip(), port, no_code_port, Path(env["AML_LOCAL_HOME"]) / "endpoints" / endpoint
    finally:
        deleted = call("online-endpoint", "delete", "-n", endpoint, "-o", "none", check=False)
        if deleted.returncode:
            print(f"WARNING: aml-local online-endpoint delete failed: {deleted.stderr.strip()[-500:]}", file=sys.stderr)


def stdlib_router_state(endpoint_dir: Path, scratch: Path) -> tuple[Path, int]:
    """A copy of the endpoint's routing table for a second router (its own port; no restarts of the servers)."""
    table = json.loads((endpoint_dir / "routing.json").read_text())
    port = free_port()
    table["port"] = port
    for deployment in table["deployments"].values():
        for one_server in deployment["servers"]:
            one_server.pop("restart", None)
    folder = scratch / "stdlib-router"
    folder.mkdir()
    (folder / "routing.json").write_text(json.dumps(table))
    return folder, port


class _Complete:
    """httptools callbacks: only the end of the backend's answer matters."""

    def __init__(self, done: asyncio.Event):
        self.done = done

    def on_message_complete(self):
        self.done.set()


# A minimal forwarder on uvloop + httptools: the floor under the router's own cost on the same stack.
# Key check, one pooled keep-alive connection per client connection, bodies with Content-Length only.
class _Forward(asyncio.Protocol):
    def __init__(self, backend_port, key):
        import httptools

        self.backend_port, self.key = backend_port, f"Bearer {key}".encode()
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
            keyed = any(n.lower() == b"authorization" and v == self.key for n, v in headers)
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


def run_minimal_forwarder(port, backend_port):
    import uvloop

    key = sys.stdin.readline().strip()

    async def main():
        listening = await asyncio.get_running_loop().create_server(
            lambda: _Forward(backend_port, key), "127.0.0.1", port
        )
        await listening.serve_forever()

    uvloop.run(main())


def wrk(url, body_file, seconds, key="", warmup=False):
    """wrk's numbers for one run at 8 connections (wrk -t2 -c8); every response must be a 2xx, no socket error, and a
    measured run must have answers (a warm-up may end before a slow server's first: `mlflow models serve` on a loaded
    machine takes seconds per request)."""
    try:
        numbers = client.wrk(url, body_file, 8, seconds, key=key, threads=2, timeout_s=10)
    except RuntimeError as err:
        fail(err)
    if numbers["non_2xx"] or numbers["socket_errors"] or not (numbers["requests"] or warmup):
        fail(f"{url}: {numbers['statuses']} statuses, {numbers['socket_errors']} socket errors")
    return numbers


def combined(runs):
    """One row's rounds as one measurement: requests/s over all of them, the median p50, the worst p99 (ms), and the
    proxy's CPU time per request (us) when there is a proxy."""
    seconds = sum(run["duration_us"] for run in runs) / 1e6
    requests = sum(run["requests"] for run in runs)
    return {
        "rps": requests / seconds,
        "p50": statistics.median(run["p50_us"] for run in runs) / 1e3,
        "p99": max(run["p99_us"] for run in runs) / 1e3,
        "proxy_cpu_us": sum(run.get("proxy_cpu_s", 0.0) for run in runs) / requests * 1e6,
    }


def batch_times(targets, bodies, rounds):
    """Medians (ms) of one 1,000-image request to each target (a fresh connection each: a kept-alive one would be
    closed by some servers between rounds), and of orjson.loads / json.loads of our body, measured interleaved in
    one loop."""
    times = {name: [] for name in [*targets, "orjson.loads", "json.loads"]}
    ours = bodies["ours"]
    for round_number in range(rounds + 1):  # the first round warms up
        for name, (url, key) in targets.items():
            status, answer, seconds = post(url, bodies[body_kind(name)], key)
            if status != 200 or len(predictions(answer)) != BATCH:
                fail(f"{name}: the batch of {BATCH} got {status} {str(answer)[:300]}")
            if round_number:
                times[name].append(seconds)
        for name, parse in (("orjson.loads", orjson.loads), ("json.loads", json.loads)):
            started = time.perf_counter()
            parse(ours)
            if round_number:
                times[name].append(time.perf_counter() - started)
    return {name: statistics.median(values) * 1e3 for name, values in times.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    trained_model.add_arguments(parser)
    parser.add_argument("--workers", type=int, default=2, help="worker processes per server (2: one per core here)")
    parser.add_argument("--seconds", type=int, default=3, help="of load per row, body and round (3)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds over all rows (3)")
    parser.add_argument("--warmup", type=int, default=2, help="seconds of load per row and body before the rounds")
    parser.add_argument("--batch-rounds", type=int, default=7, help="1,000-image requests per row (7)")
    parser.add_argument("--json-out", help="also write the figures to this file as JSON")
    parser.add_argument("--minimal-forwarder", nargs=2, type=int, metavar=("PORT", "BACKEND"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.minimal_forwarder:
        return run_minimal_forwarder(*args.minimal_forwarder)
    if min(args.seconds, args.rounds, args.warmup, args.batch_rounds, args.workers) < 1:
        fail("--seconds, --rounds, --warmup, --batch-rounds and --workers must be at least 1")
    if not shutil.which("wrk"):
        fail("wrk is not installed (Debian/Ubuntu: apt-get install wrk)")
    trained_model.check_model_dir(args.model_dir)
    try:
        data_folder = mnist_data.resolve_data_folder(args.data_folder)
        mnist = mnist_data.load_mnist(data_folder)
    except mnist_data.MnistDataError as e:
        fail(e)
    bin_dir = Path(sys.executable).parent
    deployment = yaml.safe_load((REPO_ROOT / "endpoints/blue-deployment.yml").read_text())
    server_env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "AZUREML_", "AML_", "TF_CONFIG"))}
    server_env |= {k: str(v) for k, v in deployment["environment_variables"].items() if k != "WORKER_COUNT"}
    server_env |= {"TF_CPP_MIN_LOG_LEVEL": "2", "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
    load_before = os.getloadavg()[0]

    with tempfile.TemporaryDirectory(prefix="bench-serve-") as scratch_name:
        scratch = Path(scratch_name)
        model_dir = trained_model.model_folder(args.model_dir, scratch, data_folder)
        images = mnist.test_images[:BATCH].reshape(BATCH, 784) / 255.0
        bodies = {
            "single": {
                "ours": SAMPLE.read_bytes(),
                "mlflow": json.dumps({"inputs": json.loads(SAMPLE.read_text())["data"]}).encode(),
                "input_data": (REPO_ROOT / "endpoints/sample-request-mlflow.json").read_bytes(),
            },
            "30 images": {"ours": json.dumps({"data": images[:30].tolist()}).encode()},
            "1,000 images": {"ours": json.dumps({"data": images.tolist()}).encode()},
        }
        for size in ("30 images", "1,000 images"):
            count = 30 if size == "30 images" else BATCH
            bodies[size]["mlflow"] = json.dumps({"inputs": images[:count].tolist()}).encode()  # MLflow's format
            bodies[size]["input_data"] = json.dumps({"input_data": images[:count].tolist()}).encode()  # Azure's
        files = {}
        for size, kinds in bodies.items():
            for kind, body in kinds.items():
                files[size, kind] = scratch / f"{kind}-{size.replace(' ', '-').replace(',', '')}.json"
                files[size, kind].write_bytes(body)
        (scratch / "straightforward").mkdir()
        (scratch / "straightforward" / "score.py").write_text(STRAIGHTFORWARD_SCORE)

        with contextlib.ExitStack() as running:
            print(
                f"starting the local endpoint (aml-local, blue-deployment.yml, {args.workers} workers) ...", flush=True
            )
            uri, key, direct_port, no_code_port, endpoint_dir = running.enter_context(
                local_endpoint(model_dir, server_env, scratch, args.workers)
            )
            router_pid = json.loads((endpoint_dir / "router.json").read_text())["pid"]
            state, stdlib_port = stdlib_router_state(endpoint_dir, scratch)
            print("starting the router on the standard library's event loop ...", flush=True)
            stdlib = running.enter_context(
                server(
                    "router (stdlib asyncio)",
                    [sys.executable, "-c", STDLIB_ROUTER, str(state)],
                    {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")])},
                    stdlib_port,
                    "/",
                    scratch,
                    cwd=REPO_ROOT,
                )
            )
            forwarder_port = free_port()
            print("starting the minimal forwarder ...", flush=True)
            forwarder_command = [sys.executable, __file__, "--minimal-forwarder", str(forwarder_port), str(direct_port)]
            forwarder = subprocess.Popen(forwarder_command, stdin=subprocess.PIPE, text=True, start_new_session=True)
            forwarder.stdin.write(key + "\n")  # the key on stdin, never in argv
            forwarder.stdin.close()
            running.callback(lambda: (forwarder.kill(), forwarder.wait()))
            deadline = time.monotonic() + 30
            while not answers(forwarder_port, "/"):
                if forwarder.poll() is not None or time.monotonic() > deadline:
                    fail("the minimal forwarder did not start")
                time.sleep(0.2)

            def azmlinfsrv(entry_script):
                port = free_port()
                command = [str(bin_dir / "azmlinfsrv"), "--entry_script", str(entry_script)]
                command += ["--worker_count", str(args.workers), "--model_dir", str(model_dir), "--port", str(port)]
                return command, {**server_env, "AML_APP_ROOT": str(Path(entry_script).parent)}, port, "/"

            def mlflow_serve():
                port = free_port()
                command = [str(bin_dir / "mlflow"), "models", "serve", "-m", str(model_dir), "--env-manager", "local"]
                command += ["-w", str(args.workers), "-h", "127.0.0.1", "-p", str(port)]
                return command, server_env, port, "/ping"

            others = {}
            for name, how, route in (
                (
                    "straightforward score.py (Keras per request), azmlinfsrv",
                    azmlinfsrv(scratch / "straightforward/score.py"),
                    "/score",
                ),
                ("mlflow models serve", mlflow_serve(), "/invocations"),
            ):
                print(f"starting {name} ...", flush=True)
                command, env, port, health = how
                running.enter_context(server(name, command, env, port, health, scratch))
                others[name] = f"http://127.0.0.1:{port}{route}"
            targets = {  # name -> (URL, key, the proxy process whose CPU is counted)
                "direct to the deployment": (f"http://127.0.0.1:{direct_port}/score", "", None),
                "**through the router (uvloop + httptools)**": (uri, key, psutil.Process(router_pid)),
                "the router on stdlib asyncio": (
                    f"http://127.0.0.1:{stdlib_port}/score",
                    key,
                    psutil.Process(stdlib.pid),
                ),
                "minimal forwarder (uvloop + httptools)": (
                    f"http://127.0.0.1:{forwarder_port}/score",
                    key,
                    psutil.Process(forwarder.pid),
                ),
                **{name: (url, "", None) for name, url in others.items()},
                NO_CODE: (f"http://127.0.0.1:{no_code_port}/score", "", None),
            }
            for name, (url, target_key, _) in targets.items():
                status, answer, _ = post(url, bodies["single"][body_kind(name)], target_key)
                if status != 200 or len(predictions(answer)) != 1:
                    fail(f"{name}: the sample request got {status} {str(answer)[:300]}")
            runs = {(name, size): [] for name in targets for size in ("single", "30 images")}
            for size in ("single", "30 images"):
                for name, (url, target_key, _) in targets.items():
                    wrk(url, files[size, body_kind(name)], args.warmup, target_key, warmup=True)
                for round_number in range(1, args.rounds + 1):
                    print(f"{size}, 8 connections: round {round_number} of {args.rounds} ...", flush=True)
                    for name, (url, target_key, proxy) in targets.items():
                        body_file = files[size, body_kind(name)]
                        before = sum(proxy.cpu_times()[:2]) if proxy else 0.0
                        numbers = wrk(url, body_file, args.seconds, target_key)
                        numbers["proxy_cpu_s"] = sum(proxy.cpu_times()[:2]) - before if proxy else 0.0
                        runs[name, size].append(numbers)
            print("1,000-image requests ...", flush=True)
            batch_targets = {name: (url, target_key) for name, (url, target_key, _) in targets.items()}
            batch = batch_times(batch_targets, bodies["1,000 images"], args.batch_rounds)
    figures = {name: {size: combined(runs[name, size]) for size in ("single", "30 images")} for name in targets}
    direct = figures["direct to the deployment"]
    lines = [
        f"wrk -t2 -c8, {args.rounds} rounds of {args.seconds} s per cell (requests/s over all rounds, median p50, "
        f"worst p99); {args.workers} worker(s) per server; {os.cpu_count()} CPUs, load average {load_before:.1f} at "
        f"the start, {os.getloadavg()[0]:.1f} at the end",
        "",
        "| | single image: requests/s | p50 / p99 ms | 30 images: requests/s | p50 / p99 ms | proxy CPU per request "
        "(single / 30) | 1,000 images |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name in targets:
        cells = [name]
        for size in ("single", "30 images"):
            numbers = figures[name][size]
            share = f" ({numbers['rps'] / direct[size]['rps']:.2f}x)" if targets[name][2] else ""
            cells += [f"{numbers['rps']:,.0f}{share}", f"{numbers['p50']:.2f} / {numbers['p99']:.2f}"]
        proxy = [f"{figures[name][size]['proxy_cpu_us']:.0f}" for size in ("single", "30 images")]
        cells.append(f"{proxy[0]} / {proxy[1]} us" if targets[name][2] else "")
        cells.append(f"{batch[name]:.0f} ms ({batch[name] / batch['orjson.loads']:.2f}x orjson)")
        lines.append("| " + " | ".join(cells) + " |")
    router = figures["**through the router (uvloop + httptools)**"]
    lines += [
        "",
        f"1,000 images in one request ({len(bodies['1,000 images']['ours']) / 1e6:.1f} MB), medians of "
        f"{args.batch_rounds}: orjson.loads alone {batch['orjson.loads']:.0f} ms, json.loads alone "
        f"{batch['json.loads']:.0f} ms",
        "targets, through the router: single image >= 0.75x direct: "
        f"{router['single']['rps'] / direct['single']['rps']:.2f}x; "
        f">= 1,000 requests/s: {router['single']['rps']:,.0f}; p99 < 20 ms: {router['single']['p99']:.1f} ms; "
        f"30 images >= 400 requests/s: {router['30 images']['rps']:,.0f}; "
        "1,000 images <= 1.5x orjson: "
        f"{batch['**through the router (uvloop + httptools)**'] / batch['orjson.loads']:.2f}x",
    ]
    # The two ways to deploy this model, as the README's "score.py or MLflow no-code" advice quotes them.
    no_code = {
        "rps_single": figures[NO_CODE]["single"]["rps"] / direct["single"]["rps"],
        "rps_30_images": figures[NO_CODE]["30 images"]["rps"] / direct["30 images"]["rps"],
        "time_1000_images": batch[NO_CODE] / batch["direct to the deployment"],
    }
    lines.append(
        "MLflow no-code deployment vs score.py (blue), both direct to their server: requests/s "
        f"{no_code['rps_single']:.3g}x (single image), {no_code['rps_30_images']:.3g}x (30 images); 1,000 images in "
        f"{no_code['time_1000_images']:.3g}x the time"
    )
    print("\n" + "\n".join(lines))
    if args.json_out:
        figures_out = {"figures": figures, "batch_ms": batch, "mlflow_no_code_vs_score_py": no_code}
        Path(args.json_out).write_text(json.dumps(figures_out, indent=1))


if __name__ == "__main__":
    main()
