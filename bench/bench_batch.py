"""Benchmark batch scoring of MNIST test images as PNG files, ours against the usual way (`make bench-batch`):

    python bench/bench_batch.py [--model-dir DIR] [--count 10000] [--baseline-sample 500] [--json-out FILE]

The same trained model (trained here, 3 epochs, without --model-dir) and the same PNG files (`mnist-data png`):
1. ours: endpoints/batch/endpoint.yml and deployment.yml created by aml-local in a throwaway AML_LOCAL_HOME, then
   timed from `aml-local batch-endpoint invoke` on the folder to the job Completed with its output written (`job
   stream` returns at the end; `job show` then says Completed; the downloaded score output has a line per image):
   src/batch_score.py decoding each mini-batch into one matrix and scoring it with one numpy forward pass, in the
   deployment's max_concurrency_per_instance worker processes. A first invoke on 100 images comes before, untimed,
   so that building the deployment's environment (once per machine) is not counted.
2. the method of azureml-examples' Keras MNIST batch driver (cli/endpoints/batch/deploy-models/mnist-classifier/
   deployment-keras/code/batch_driver.py): for each file, open it with Pillow, add a batch axis and call
   `model.predict` on that one image; here in this process, the model loaded first (not timed), on the first
   --baseline-sample files (it takes ~30 ms an image, so 10,000 would take minutes; the rate is per image either way).
Reports images/s of each and their ratio, and whether ours met the issue's targets (at most 30 s for 10,000 files,
at least 20x the baseline's images/s). Needs MNIST (MNIST_DATA or the cache).
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "src"))

import trained_model  # noqa: E402
from trained_model import fail  # noqa: E402

import mnist_data  # noqa: E402

TARGET_SECONDS = 30  # for 10,000 files, invoke to Completed (issue 23)
TARGET_RATIO = 20
WARM_UP_FILES = 100


class LocalBatchEndpoint:
    """The repository's batch endpoint and deployment, created by aml-local in a home of their own."""

    def __init__(self, scratch, model_dir):
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "AZUREML_", "AML_"))}
        self.env |= {"AML_LOCAL_HOME": str(scratch / "aml-local-home"), "TF_CPP_MIN_LOG_LEVEL": "2"}
        self.env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
        self.scratch = scratch
        self.name = yaml.safe_load((REPO_ROOT / "endpoints/batch/endpoint.yml").read_text())["name"]
        self.call("model", "create", "-f", "endpoints/model.yml", "--path", str(model_dir), "-o", "none")
        self.call("environment", "create", "-f", "environments/batch.yml", "-o", "none")
        self.call("batch-endpoint", "create", "-f", "endpoints/batch/endpoint.yml", "-o", "none")
        self.call("batch-deployment", "create", "-f", "endpoints/batch/deployment.yml", "--set-default", "-o", "none")

    def call(self, *args):
        aml_local = Path(sys.executable).parent / "aml-local"
        result = subprocess.run([str(aml_local), *args], env=self.env, cwd=REPO_ROOT, capture_output=True, text=True)
        if result.returncode:
            fail(f"aml-local {' '.join(args[:2])} failed: {(result.stderr or result.stdout).strip()[-2000:]}")
        return result.stdout.strip()

    def score(self, folder: Path) -> tuple[float, Path]:
        """(seconds from invoke to the job Completed with its output written, the output file)."""
        started = time.perf_counter()
        job = self.call(
            "batch-endpoint", "invoke", "-n", self.name, "--input", str(folder), "--query", "name", "-o", "tsv"
        )
        self.call("job", "stream", "-n", job)
        status = self.call("job", "show", "-n", job, "--query", "status", "-o", "tsv")
        if status != "Completed":
            fail(f"batch job {job} ended {status}")
        download = self.scratch / "scores" / job
        self.call("job", "download", "-n", job, "--output-name", "score", "--download-path", str(download))
        seconds = time.perf_counter() - started
        return seconds, next((download / "named-outputs" / "score").glob("*"))


def accuracy(scores: Path, labels: Path) -> tuple[int, float]:
    truth = dict(line.split(",") for line in labels.read_text().splitlines()[1:])
    predicted = dict(line.split()[:2] for line in scores.read_text().splitlines())
    right = sum(predicted.get(name) == label for name, label in truth.items())
    return len(predicted), right / len(truth)


def one_image_at_a_time(model_dir: Path, files: list[Path]) -> tuple[float, int]:
    """The azureml-examples Keras batch driver's way, timed over files: (seconds, images scored)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import mlflow.keras
    import tensorflow as tf
    from PIL import Image

    model = mlflow.keras.load_model(str(model_dir))
    model.predict(np.zeros((1, 784), np.float32), verbose=0)  # Keras builds its predict function on the first call
    started = time.perf_counter()
    digits = []
    for path in files:
        pixels = np.array(Image.open(path)).reshape(784) / np.float32(255)  # our model takes flattened 0..1 pixels
        probabilities = model.predict(tf.expand_dims(pixels, axis=0), verbose=0)
        digits.append(int(tf.math.argmax(probabilities, axis=-1).numpy()[0]))
    return time.perf_counter() - started, len(digits)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    trained_model.add_arguments(parser)
    parser.add_argument("--count", type=int, default=10000, help="test images to score (10,000)")
    parser.add_argument("--baseline-sample", type=int, default=500, help="files the one-at-a-time way scores (500)")
    parser.add_argument("--json-out", help="also write the figures to this file as JSON")
    args = parser.parse_args()
    if args.count < 1 or args.baseline_sample < 1:
        fail("--count and --baseline-sample must be at least 1")
    trained_model.check_model_dir(args.model_dir)
    try:
        data_folder = mnist_data.resolve_data_folder(args.data_folder)
    except mnist_data.MnistDataError as e:
        fail(e)
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="bench-batch-") as scratch_name:
        scratch = Path(scratch_name)
        model_dir = trained_model.model_folder(args.model_dir, scratch, data_folder)
        try:
            pngs = mnist_data.write_pngs(args.count, scratch / "png", data_folder, log=lambda line: None)
            warm_up = mnist_data.write_pngs(WARM_UP_FILES, scratch / "warm-up", data_folder, log=lambda line: None)
        except mnist_data.MnistDataError as e:
            fail(e)
        print(f"{args.count} PNG files in {pngs / 'images'}; deploying endpoints/batch/*.yml with aml-local ...")
        endpoint = LocalBatchEndpoint(scratch, model_dir)
        endpoint.score(warm_up / "images")
        print("scoring them through the batch endpoint ...", flush=True)
        ours_seconds, scores = endpoint.score(pngs / "images")
        scored, ours_accuracy = accuracy(scores, pngs / "labels.csv")
        if scored != args.count:
            fail(f"the batch job wrote {scored} lines for {args.count} files ({scores})")
        files = sorted((pngs / "images").iterdir())[: args.baseline_sample]
        print(f"scoring {len(files)} of them one at a time with model.predict ...", flush=True)
        baseline_seconds, baseline_count = one_image_at_a_time(model_dir, files)
    ours_rate, baseline_rate = args.count / ours_seconds, baseline_count / baseline_seconds
    ratio = ours_rate / baseline_rate
    deployment = yaml.safe_load((REPO_ROOT / "endpoints/batch/deployment.yml").read_text())["settings"]
    print()
    print(f"{'method':<58} {'images':>7} {'seconds':>8} {'images/s':>9}")
    ours_name = f"batch endpoint, invoke to Completed ({deployment['max_concurrency_per_instance']} workers)"
    print(f"{ours_name:<58} {args.count:>7} {ours_seconds:>8.1f} {ours_rate:>9.0f}")
    baseline_name = "model.predict per image (azureml-examples' Keras driver)"
    print(f"{baseline_name:<58} {baseline_count:>7} {baseline_seconds:>8.1f} {baseline_rate:>9.0f}")
    print(f"ratio: {ratio:.1f}x the images/s; accuracy of the batch output against the labels: {ours_accuracy:.4f}")
    limit = TARGET_SECONDS * args.count / 10000
    print(
        f"targets: at most {limit:.0f} s: {'met' if ours_seconds <= limit else 'MISSED'}; at least {TARGET_RATIO}x: "
        f"{'met' if ratio >= TARGET_RATIO else 'MISSED'} (load average {load_before:.1f} before, on "
        f"{os.cpu_count()} cores)"
    )
    if args.json_out:
        figures = {
            "count": args.count,
            "ours_seconds": ours_seconds,
            "ours_images_per_s": ours_rate,
            "baseline_images": baseline_count,
            "baseline_seconds": baseline_seconds,
            "baseline_images_per_s": baseline_rate,
            "ratio": ratio,
            "accuracy": ours_accuracy,
            "load_average_before": load_before,
        }
        Path(args.json_out).write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
