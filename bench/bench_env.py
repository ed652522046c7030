"""Benchmark a run's own environment layer (aml_local/assets/env_layer.py) and what a job pays for it.

    python bench/bench_env.py [--repeat 20] [--jobs 5]

Side by side, in one run, on this machine:
- making a run's layer over the project venv and over a venv in the environment cache (median and worst of
  --repeat), against `python -m venv --without-pip` and `uv venv` making a bare venv (the cheapest alternatives);
- a hello-world job (`echo hello` in environments/train.yml's environment, which the project venv satisfies) from
  `aml-local job create --stream` to its end, --jobs times, in a throwaway store: the layer is part of each.
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import uv

from aml_local.assets import env_layer

REPO_ROOT = Path(__file__).resolve().parents[1]


def timed(action, repeat: int) -> list[float]:
    seconds = []
    for _ in range(repeat):
        started = time.perf_counter()
        action()
        seconds.append(time.perf_counter() - started)
    return seconds


def row(name: str, seconds: list[float]) -> str:
    return f"{name:<48} {statistics.median(seconds) * 1000:9.1f} {max(seconds) * 1000:9.1f}"


def cached_venv(folder: Path) -> Path:
    """A venv as the environment cache holds one (<hash>/venv beside complete.json), with one package."""
    venv = folder / "cached" / "venv"
    subprocess.run([uv.find_uv_bin(), "venv", "-q", "--seed", str(venv), "--python", sys.executable], check=True)
    subprocess.run(
        [uv.find_uv_bin(), "pip", "install", "-q", "--python", str(venv / "bin" / "python"), "six"], check=True
    )
    (folder / "cached" / "complete.json").write_text("{}")
    return venv


def hello_jobs(count: int, folder: Path) -> list[float]:
    # In the project (git-ignored .aml-local/), so that azureml:mnist-train@latest is its environments/train.yml.
    job = REPO_ROOT / ".aml-local" / "bench" / "hello.yml"
    job.parent.mkdir(parents=True, exist_ok=True)
    job.write_text(
        "$schema: https://azuremlschemas.azureedge.net/latest/commandJob.schema.json\n"
        f"command: echo hello\nenvironment: azureml:mnist-train@latest\ncode: {REPO_ROOT / 'src'}\n"
    )
    env = {**os.environ, "AML_LOCAL_HOME": str(folder / "store")}
    aml_local = Path(sys.executable).parent / "aml-local"
    seconds = []
    for index in range(count):
        started = time.perf_counter()
        answer = subprocess.run(
            [str(aml_local), "job", "create", "-f", str(job), "-n", f"hello_{index}", "--stream"],
            env=env, capture_output=True, text=True, check=False,
        )  # fmt: skip
        seconds.append(time.perf_counter() - started)
        if answer.returncode != 0 or "hello" not in answer.stdout:
            raise SystemExit(f"the hello job failed: {answer.stderr[-500:]}")
    return seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--jobs", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-env-") as tmp:
        folder = Path(tmp)
        lower = cached_venv(folder)
        print(f"{'what (ms)':<48} {'median':>9} {'worst':>9}")
        print(row("layer over the project venv", timed(lambda: env_layer.make(sys.prefix, folder / "l1"), args.repeat)))
        print(row("layer over a cached venv", timed(lambda: env_layer.make(lower, folder / "l2"), args.repeat)))
        venv_bare = [sys.executable, "-m", "venv", "--without-pip", "--clear", str(folder / "v1")]
        print(row("python -m venv --without-pip (for comparison)", timed(lambda: subprocess.run(venv_bare), 5)))
        uv_bare = [uv.find_uv_bin(), "venv", "-q", "--clear", str(folder / "v2"), "--python", sys.executable]
        print(row("uv venv (for comparison)", timed(lambda: subprocess.run(uv_bare), 5)))
        print(row(f"hello-world job end to end (x{args.jobs})", hello_jobs(args.jobs, folder)))


if __name__ == "__main__":
    main()
