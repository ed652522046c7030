"""Benchmark serving on 127.0.0.1, every server side by side in one run, with wrk as the load generator:

    python bench/bench_serve.py [--model-dir DIR] [--data-folder DIR] [--seconds 3] [--rounds 4] [--warmup 3]

1. the local deployment: `aml-local online-deployment create` of endpoints/blue-deployment.yml (with WORKER_COUNT=1 and
   max_concurrent_requests_per_instance=1),
   called with the endpoint's key, as `az ml online-endpoint invoke` would;
2. ours: azmlinfsrv (azureml-inference-server-http) running src/score.py, one worker;
3. the straightforward score.py (Keras model loaded once, json.loads + model(x) per request) under the same server;
4. `mlflow models serve` on the same model (--env-manager local, one worker);
plus, to show where the time goes, the server alone (a score.py that returns a constant) and both ours and the
server alone without the server's two log lines per request (QUIET_LOGGING below as logging.json, a file the server
reads from AML_APP_ROOT).

All of them are started first, then measured in turn, round after round (background load that comes and goes falls
on every row alike): single-image requests (endpoints/sample-request.json) for --seconds per round at 1 and at 8
connections, after --warmup seconds of the same; then one request holding the first 1,000 MNIST test images (the
median of 5 rounds). All servers run with the environment_variables of endpoints/blue-deployment.yml (one thread per
worker) but one worker. Without --model-dir, a model is trained first (src/train.py, 3 epochs, into a temporary
folder). Needs wrk (Debian: wrk).
"""

import argparse
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

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the faults/ library's wrk runner

import mnist_data
from faults import client

REPO_ROOT = Path(__file__).resolve().parents[1]
SAMPLE = REPO_ROOT / "endpoints/sample-request.json"
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
CONSTANT_SCORE = """
def init():
    pass


def run(raw_data):
    return {"predictions": [0]}
"""
# A logging.json for the server (it reads one from AML_APP_ROOT, else from the entry script's folder) without its two
# log lines per request: azmlinfsrv's own "POST /score 200 ..." and gunicorn's access log. Start-up, init(), print()
# and every warning and error are still logged.
QUIET_LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"azmlinfsrv": {"()": "azureml_inference_server_http.log_config.AMLLogFormatter"}},
    "handlers": {
        "stdout": {"class": "logging.StreamHandler", "stream": "ext://sys.stdout", "formatter": "azmlinfsrv"},
        "stderr": {"class": "logging.StreamHandler", "stream": "ext://sys.stderr", "formatter": "azmlinfsrv"},
    },
    "loggers": {
        "azmlinfsrv": {"level": "WARNING", "handlers": ["stdout"], "propagate": False},
        **{f"azmlinfsrv.{child}": {"level": "INFO"} for child in ("user_script", "swagger", "score", "print")},
        "gunicorn.access": {"level": "WARNING", "handlers": ["stdout"], "propagate": False},
        "gunicorn.error": {"level": "INFO", "handlers": ["stderr"], "propagate": False},
    },
}


def fail(message):
    sys.exit(f"error: {message}")


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


@contextlib.contextmanager
def server(name, command, env, port, health_path, scratch):
    """Start command in its own process group, wait until GET health_path answers 200, stop the whole group after."""
    log_path = scratch / f"server-{port}.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            command, env=env, cwd=scratch, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        deadline = time.monotonic() + 180
        while True:
            if process.poll() is not None:
                tail = log_path.read_text(errors="replace")[-3000:]
                fail(f"{name} exited with code {process.returncode} before answering; its log ends:\n{tail}")
            if time.monotonic() > deadline:
                fail(f"{name} did not answer GET {health_path} within 180 s (log: {log_path})")
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            with contextlib.suppress(OSError):  # refused while starting; a read timeout while init() runs
                connection.request("GET", health_path)
                if connection.getresponse().status == 200:
                    break
            connection.close()
            time.sleep(0.5)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_group(process)


def stop_group(process):
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):  # gunicorn stops its workers gracefully on SIGTERM
        process.wait(timeout=20)
    with contextlib.suppress(ProcessLookupError):  # whatever is left of the group (gunicorn workers, uvicorn)
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


@contextlib.contextmanager
def local_deployment(model_dir, env, scratch):
    """endpoints/*.yml deployed by aml-local into a throwaway AML_LOCAL_HOME: (scoring URI, key); deleted after."""
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
        # One worker, so one request at a time (the YAML's rule: max_concurrent_requests_per_instance = WORKER_COUNT);
        # the gateway queues the others for up to request_timeout_ms.
        one_worker = ("environment_variables.WORKER_COUNT=1", "request_settings.max_concurrent_requests_per_instance=1")
        call(*create, "--set", one_worker[0], "--set", one_worker[1], "-o", "none")
        uri = call("online-endpoint", "show", "-n", endpoint, "--query", "scoring_uri", "-o", "tsv").stdout.strip()
        key = call("online-endpoint", "get-credentials", "-n", endpoint, "--query", "primaryKey", "-o", "tsv")
        yield uri, key.stdout.strip()
    finally:
        deleted = call("online-endpoint", "delete", "-n", endpoint, "-o", "none", check=False)
        if deleted.returncode:
            print(f"WARNING: aml-local online-endpoint delete failed: {deleted.stderr.strip()[-500:]}", file=sys.stderr)


def wrk(url, body_file, connections, seconds, key=""):
    """wrk's numbers for one run (requests, duration_us, p50_us, p99_us); every response must be a 2xx."""
    try:
        numbers = client.wrk(url, body_file, connections, seconds, key=key, threads=1, timeout_s=10)
    except RuntimeError as err:
        fail(err)
    if numbers["non_2xx"] or not numbers["requests"]:
        fail(f"{url}: {numbers['non_2xx']} of {numbers['requests']} responses were not 2xx")
    return numbers


def combined(runs):
    """One row's rounds as one measurement: requests/s over all of them, the median p50 and the worst p99 (ms)."""
    seconds = sum(run["duration_us"] for run in runs) / 1e6
    return {
        "rps": sum(run["requests"] for run in runs) / seconds,
        "p50": statistics.median(run["p50_us"] for run in runs) / 1e3,
        "p99": max(run["p99_us"] for run in runs) / 1e3,
    }


def check_sample(name, url, single, key):
    status, answer, _ = post(url, single.read_bytes(), key)
    predicted = answer.get("predictions") if isinstance(answer, dict) else None
    if status != 200 or not isinstance(predicted, list) or len(predicted) != 1:
        fail(f"{name}: the sample request got {status} {str(answer)[:300]}")


def score_batch(name, url, batch, key):
    """(seconds, digits) for one request holding the BATCH images."""
    status, answer, seconds = post(url, batch.read_bytes(), key)
    if status != 200 or len(answer.get("predictions", [])) != BATCH:
        fail(f"{name}: the batch of {BATCH} got {status} {str(answer)[:300]}")
    # Ours answers digits; mlflow models serve answers the probabilities, as "predictions".
    return seconds, [max(range(10), key=p.__getitem__) if isinstance(p, list) else p for p in answer["predictions"]]


def train_model(scratch, data_folder):
    print("training a model (src/train.py, 3 epochs) ...", flush=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "AZUREML_", "TF_CONFIG"))}
    env |= {"MLFLOW_TRACKING_URI": f"sqlite:///{scratch / 'mlflow.db'}", "TF_CPP_MIN_LOG_LEVEL": "2"}
    command = [sys.executable, str(REPO_ROOT / "src/train.py"), "--data-folder", str(data_folder), "--epochs", "3"]
    command += ["--model-output", str(scratch / "model"), "--checkpoint-dir", str(scratch / "checkpoints")]
    result = subprocess.run(command, env=env, cwd=scratch, capture_output=True, text=True)
    if result.returncode:
        fail(f"training failed: {result.stderr[-2000:]}")
    return scratch / "model"


def in_process_costs(model_dir):
    """Microseconds per single-image request spent in our run() and its parts, measured in this process."""
    import importlib.util

    os.environ["AZUREML_MODEL_DIR"] = str(model_dir)
    spec = importlib.util.spec_from_file_location("score_under_bench", REPO_ROOT / "src/score.py")
    score = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(score)
    score.init()
    body = SAMPLE.read_text()
    data = json.loads(body)["data"]
    images = score.images_from(data)

    def microseconds(call, repeat=3000):
        call()
        started = time.perf_counter()
        for _ in range(repeat):
            call()
        return (time.perf_counter() - started) / repeat * 1e6

    return {
        "json.loads of the body (the server's)": microseconds(lambda: json.loads(body)),
        "checks (images_from)": microseconds(lambda: score.images_from(data)),
        f"model ({score.backend})": microseconds(lambda: score.forward(images)),
        "run() in all": microseconds(lambda: score.run(data)),
    }


def table(rows):
    lines = [
        "| | requests/s, 1 conn | p50 / p99 ms, 1 conn | requests/s, 8 conns | p50 / p99 ms, 8 conns | 1,000 images |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in rows:
        cells = [row["name"]]
        for connections in (1, 8):
            numbers = row[connections]
            cells += [f"{numbers['rps']:,.0f}", f"{numbers['p50']:.2f} / {numbers['p99']:.2f}"]
        cells.append(f"{row['batch_ms']:.0f} ms" if "batch_ms" in row else "")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", help="an MLflow model folder as train.py saves it (default: train one)")
    parser.add_argument("--data-folder", help="MNIST folder (default: $MNIST_DATA, then the download cache)")
    parser.add_argument("--seconds", type=int, default=3, help="of load per server and round (3)")
    parser.add_argument("--rounds", type=int, default=4, help="rounds over all servers, per connection count (4)")
    parser.add_argument("--warmup", type=int, default=3, help="seconds of load per server before the rounds (3)")
    args = parser.parse_args()
    if min(args.seconds, args.rounds, args.warmup) < 1:
        fail("--seconds, --rounds and --warmup must be at least 1")
    if not shutil.which("wrk"):
        fail("wrk is not installed (Debian/Ubuntu: apt-get install wrk)")
    if args.model_dir and not (Path(args.model_dir) / "MLmodel").is_file():
        fail(f"--model-dir {args.model_dir} has no MLmodel file (pass the folder train.py's --model-output wrote)")
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
        model_dir = Path(args.model_dir).resolve() if args.model_dir else train_model(scratch, data_folder)
        images = mnist.test_images[:BATCH].reshape(BATCH, 784) / 255.0
        labels = mnist.test_labels[:BATCH].tolist()
        batch = scratch / "batch.json"
        mlflow_single, mlflow_batch = scratch / "mlflow.json", scratch / "mlflow-batch.json"
        batch.write_text(json.dumps({"data": images.tolist()}))
        mlflow_single.write_text(json.dumps({"inputs": json.loads(SAMPLE.read_text())["data"]}))  # MLflow's format
        mlflow_batch.write_text(json.dumps({"inputs": images.tolist()}))
        for folder, source in (("straightforward", STRAIGHTFORWARD_SCORE), ("constant", CONSTANT_SCORE)):
            (scratch / folder).mkdir()
            (scratch / folder / "score.py").write_text(source)
        (scratch / "quiet").mkdir()
        (scratch / "quiet/logging.json").write_text(json.dumps(QUIET_LOGGING))

        def azmlinfsrv(entry_script, app_root):
            """How to start one azmlinfsrv worker; app_root is where the server looks for logging.json."""

            def start():  # -> (command, env, port, health route, scoring route)
                port = free_port()
                command = [str(bin_dir / "azmlinfsrv"), "--entry_script", str(entry_script), "--worker_count", "1"]
                command += ["--model_dir", str(model_dir), "--port", str(port)]
                return command, {**server_env, "AML_APP_ROOT": str(app_root)}, port, "/", "/score"

            return start

        def mlflow_serve():
            port = free_port()
            command = [str(bin_dir / "mlflow"), "models", "serve", "-m", str(model_dir), "--env-manager", "local"]
            command += ["-w", "1", "-h", "127.0.0.1", "-p", str(port)]
            return command, server_env, port, "/ping", "/invocations"

        ours, constant, quiet = REPO_ROOT / "src/score.py", scratch / "constant/score.py", scratch / "quiet"
        straightforward = scratch / "straightforward/score.py"
        candidates = [  # (row name, how to start its server, single-image body, batch body)
            ("ours: azmlinfsrv + src/score.py", azmlinfsrv(ours, REPO_ROOT / "src"), SAMPLE, batch),
            ("straightforward score.py, same server", azmlinfsrv(straightforward, scratch), SAMPLE, batch),
            ("mlflow models serve", mlflow_serve, mlflow_single, mlflow_batch),
            ("server alone (constant score.py)", azmlinfsrv(constant, scratch), SAMPLE, None),
            ("ours, no per-request log lines (logging.json)", azmlinfsrv(ours, quiet), SAMPLE, batch),
            ("server alone, no per-request log lines", azmlinfsrv(constant, quiet), SAMPLE, None),
        ]
        with contextlib.ExitStack() as running:
            # Every server is started first and measured in turn, round after round: background load that comes
            # and goes (other processes on this machine) falls on all rows alike instead of on whichever ran then.
            print("starting the local deployment (aml-local, endpoints/blue-deployment.yml) ...", flush=True)
            uri, key = running.enter_context(local_deployment(model_dir, server_env, scratch))
            servers = [("**local deployment: aml-local + blue-deployment.yml, with key**", uri, SAMPLE, batch, key)]
            for name, start, single, batch_body in candidates:
                print(f"starting {name} ...", flush=True)
                command, env, port, health, route = start()
                base_url = running.enter_context(server(name, command, env, port, health, scratch))
                servers.append((name, base_url + route, single, batch_body, ""))
            for name, url, single, _, key in servers:
                check_sample(name, url, single, key)
            runs = {(name, connections): [] for name, *_ in servers for connections in (1, 8)}
            for connections in (1, 8):
                for _name, url, single, _, key in servers:
                    wrk(url, single, connections, args.warmup, key)
                for round_number in range(1, args.rounds + 1):
                    print(f"{connections} connection(s), round {round_number} of {args.rounds} ...", flush=True)
                    for name, url, single, _, key in servers:
                        runs[name, connections].append(wrk(url, single, connections, args.seconds, key))
            batches = {name: [] for name, *_ in servers}
            for _ in range(6):  # the first round warms up
                for name, url, _, batch_body, key in servers:
                    if batch_body is not None:
                        batches[name].append(score_batch(name, url, batch_body, key))
        rows = []
        for name, *_ in servers:
            row = {"name": name, 1: combined(runs[name, 1]), 8: combined(runs[name, 8])}
            if batches[name]:
                digits = batches[name][-1][1]
                row["batch_ms"] = statistics.median(seconds for seconds, _ in batches[name][1:]) * 1e3
                row["batch_acc"] = sum(d == label for d, label in zip(digits, labels, strict=True)) / BATCH
                row["digits"] = digits
            rows.append(row)
        costs = in_process_costs(model_dir)

    deployed, ours_row, plain, served, alone, _, alone_quiet = rows
    print(
        f"\nsingle-image requests on 127.0.0.1, one worker each, {args.rounds} rounds of {args.seconds} s per cell "
        "(wrk -t1; requests/s over all rounds, median p50, worst p99)"
    )
    print(f"{os.cpu_count()} CPUs; load average {load_before:.1f} at the start, {os.getloadavg()[0]:.1f} at the end\n")
    print(table(rows))
    print()
    for connections in (1, 8):
        d, o, p, m = (row[connections]["rps"] for row in (deployed, ours_row, plain, served))
        print(
            f"{connections} conn: deployment / straightforward {d / p:.1f}x, ours / straightforward {o / p:.1f}x, "
            f"ours / mlflow models serve {o / m:.0f}x"
        )
    print(
        f"batch of {BATCH}: straightforward / ours {plain['batch_ms'] / ours_row['batch_ms']:.1f}x, "
        f"mlflow models serve / ours {served['batch_ms'] / ours_row['batch_ms']:.1f}x"
    )
    agree = sum(a == b for a, b in zip(ours_row["digits"], plain["digits"], strict=True))
    print(
        f"accuracy on those {BATCH}: ours {ours_row['batch_acc']:.4f}, straightforward {plain['batch_acc']:.4f}, "
        f"mlflow {served['batch_acc']:.4f}; ours and Keras give the same digit for {agree} of {BATCH}"
    )
    print("in-process, per single-image request (us): " + ", ".join(f"{k} {v:.0f}" for k, v in costs.items()))
    server_us, server_quiet_us = 1e6 / alone[1]["rps"], 1e6 / alone_quiet[1]["rps"]
    print(
        f"the server alone takes {server_us:.0f} us per request at 1 conn ({server_quiet_us:.0f} us with its "
        f"per-request log lines off): its ceiling is {alone[1]['rps']:,.0f} requests/s on one worker"
    )
    for label, row in (("local deployment", deployed), ("ours", ours_row)):
        rps = row[1]["rps"]
        print(
            f"targets, {label}: >= 1,000 requests/s on one worker: {'met' if rps >= 1000 else 'NOT met'} "
            f"({rps:,.0f}); >= 2.5x the straightforward score.py: "
            f"{'met' if rps >= 2.5 * plain[1]['rps'] else 'NOT met'} ({rps / plain[1]['rps']:.1f}x)"
        )


if __name__ == "__main__":
    main()
