"""Benchmark src/train.py against bench/reference_train.py: same data, settings and machine, one after the other.

    python bench/bench_train.py [--epochs 20] [--data-folder DIR]

Both train the seed's model (SGD lr 0.01, batch 64, 256/128 units) and validate on the test set every epoch
(train.py with --validation-size 0, logging into a throwaway MLflow sqlite db). Wall time is the whole
process, imports included. Thread counts are TensorFlow's defaults unless TF_NUM_INTRAOP_THREADS /
TF_NUM_INTEROP_THREADS are set in the environment, which both runs inherit.
"""

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import mnist_data

REPO_ROOT = Path(__file__).resolve().parents[1]
EPOCH_LINE = re.compile(r"^epoch (\d+)/\d+ .*?([\d.]+)s$")


def run(name, command, env, cwd):
    """Run command, echoing its stdout with a [name] prefix; (stdout lines, wall seconds). Exits on failure."""
    started = time.perf_counter()
    with tempfile.TemporaryFile("w+") as stderr:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=stderr, text=True, env=env, cwd=cwd)
        lines = []
        for line in process.stdout:
            print(f"[{name}] {line}", end="", flush=True)
            lines.append(line.rstrip("\n"))
        code = process.wait()
        wall = time.perf_counter() - started
        if code:
            stderr.seek(0)
            print(stderr.read()[-4000:], file=sys.stderr)
            sys.exit(f"error: {name} failed with exit code {code} (its stderr is above)")
    return lines, wall


def epoch_seconds(lines):
    seconds = [float(m.group(2)) for m in map(EPOCH_LINE.match, lines) if m]
    later = seconds[1:] or seconds
    return seconds[0], sum(later) / len(later)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--data-folder", help="MNIST folder (default: $MNIST_DATA, then the download cache)")
    args = parser.parse_args()
    if args.epochs < 1:
        sys.exit("error: --epochs must be at least 1")
    try:  # resolve (and check) once, so both runs read the very same files
        data_folder = mnist_data.resolve_data_folder(args.data_folder)
        mnist = mnist_data.load_mnist(data_folder)
    except mnist_data.MnistDataError as e:
        sys.exit(f"error: {e}")

    env = {k: v for k, v in os.environ.items() if k not in ("TF_CONFIG", "MLFLOW_RUN_ID")}
    env["TF_CPP_MIN_LOG_LEVEL"] = env.get("TF_CPP_MIN_LOG_LEVEL", "2")
    common = ["--data-folder", str(data_folder), "--epochs", str(args.epochs)]
    with tempfile.TemporaryDirectory(prefix="bench-train-") as scratch:
        reference_lines, reference_wall = run(
            "reference", [sys.executable, str(REPO_ROOT / "bench/reference_train.py"), *common], env, scratch
        )
        reference = json.loads(reference_lines[-1])
        env["MLFLOW_TRACKING_URI"] = f"sqlite:///{Path(scratch) / 'mlflow.db'}"
        ours = [sys.executable, str(REPO_ROOT / "src/train.py"), *common, "--validation-size", "0"]
        ours += ["--model-output", "model", "--checkpoint-dir", "checkpoints"]
        our_lines, our_wall = run("train.py", ours, env, scratch)
        our_test = json.loads((Path(scratch) / "model/test_metrics.json").read_text())["test_acc"]
    our_validation = float(re.search(r"validation_acc=([\d.]+)", [x for x in our_lines if EPOCH_LINE.match(x)][-1])[1])

    reference_first, reference_later = epoch_seconds(reference_lines)
    our_first, our_later = epoch_seconds(our_lines)
    threads = os.environ.get("TF_NUM_INTRAOP_THREADS", "default")
    print(f"\n{args.epochs} epochs on {os.cpu_count()} CPUs (intra-op threads: {threads})")
    print(f"data: {data_folder} ({len(mnist.train_images)} training, {len(mnist.test_images)} test images)")
    rows = [
        ("wall time, whole process (s)", f"{reference_wall:.1f}", f"{our_wall:.1f}"),
        ("first epoch (s)", f"{reference_first:.2f}", f"{our_first:.2f}"),
        ("later epochs, mean (s)", f"{reference_later:.2f}", f"{our_later:.2f}"),
        ("final validation acc (test set)", f"{reference['test_acc']:.4f}", f"{our_validation:.4f}"),
        ("final test acc", f"{reference['test_acc']:.4f}", f"{our_test:.4f}"),
    ]
    print(f"{'':34}{'reference':>12}{'train.py':>12}")
    for label, left, right in rows:
        print(f"{label:34}{left:>12}{right:>12}")
    print(
        f"speed-up (reference / train.py): {reference_wall / our_wall:.1f}x wall time, "
        f"{reference_later / our_later:.1f}x per epoch after the first"
    )


if __name__ == "__main__":
    main()
