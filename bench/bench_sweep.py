"""Benchmark early termination: the same sweep (jobs/sweep.yml) with its Bandit policy and without any policy.

    python bench/bench_sweep.py [--file jobs/sweep.yml] [--set inputs.epochs=10 ...]

Both runs use the YAML's seeded random sampling, so they try the same hyperparameters; each runs through
`aml-local job create --stream` into its own throwaway store. Reported per run: wall time, trial-epochs run
(the primary-metric values the trials logged), the best trial's validation_acc and its test accuracy, and the
trials stopped early. Data: MNIST_DATA when set, else the data module's cache or download.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]


def sweep_file(source: Path, folder: Path, with_policy: bool) -> Path:
    """A copy of the sweep YAML (code path made absolute), with or without its early_termination block."""
    spec = yaml.safe_load(source.read_text())
    spec["trial"]["code"] = str((source.parent / spec["trial"]["code"]).resolve())
    # The copy lives outside the project, where azureml:mnist@latest cannot be looked up: give the folder.
    sys.path.insert(0, str(REPO_ROOT / "src"))
    import mnist_data

    spec["inputs"]["mnist"]["path"] = str(mnist_data.resolve_data_folder(None))
    if not with_policy:
        spec.pop("early_termination", None)
    path = folder / ("with-policy.yml" if with_policy else "without-policy.yml")
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def run_sweep(label, spec: Path, home: Path, overrides):
    env = {**os.environ, "AML_LOCAL_HOME": str(home)}
    command = [str(Path(sys.executable).parent / "aml-local"), "job", "create", "-f", str(spec), "--stream"]
    command += ["-n", "bench", "-o", "none"]
    for override in overrides:
        command += ["--set", override]
    print(f"[{label}] {' '.join(command)}", flush=True)
    started = time.perf_counter()
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    for line in process.stdout:
        if line.startswith(("[sweep", "ERROR", "WARNING")):
            print(f"[{label}] {line}", end="", flush=True)
    code = process.wait()
    wall = time.perf_counter() - started
    if code:
        sys.exit(f"[{label}] the sweep failed (exit {code}); see {home}/jobs/bench")
    trials = json.loads((home / "jobs/bench/trials.json").read_text())
    shown = json.loads(
        subprocess.run(
            [command[0], "job", "show", "-n", "bench"], env=env, capture_output=True, text=True, check=True
        ).stdout
    )
    best = shown["properties"]["best_child_run_id"]
    test_metrics = json.loads((home / "jobs" / best / "outputs/model/test_metrics.json").read_text())
    return {
        "wall_s": wall,
        "trial_epochs": sum(t["intervals"] for t in trials),
        "best": best,
        "best_validation_acc": float(shown["properties"]["score"]),
        "best_test_acc": test_metrics["test_acc"],
        "stopped": [t["trial"] for t in trials if t["status"] == "Canceled"],
        "trials": trials,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--file", default=str(REPO_ROOT / "jobs/sweep.yml"))
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="passed to job create")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-sweep-") as tmp:
        folder = Path(tmp)
        results = {}
        for label, with_policy in (("bandit", True), ("no policy", False)):
            spec = sweep_file(Path(args.file), folder, with_policy)
            results[label] = run_sweep(label, spec, folder / label.replace(" ", "-"), args.set)
    bandit, plain = results["bandit"], results["no policy"]
    print("\n| sweep | wall time | trial-epochs | best trial | best validation_acc | its test_acc | stopped early |")
    print("|---|---|---|---|---|---|---|")
    for label, r in results.items():
        print(
            f"| {label} | {r['wall_s']:.0f} s | {r['trial_epochs']} | {r['best'].removeprefix('bench_')} "
            f"| {r['best_validation_acc']:.4f} | {r['best_test_acc']:.4f} | {len(r['stopped'])} |"
        )
    saved = 1 - bandit["trial_epochs"] / plain["trial_epochs"]
    print(
        f"\nBandit saved {saved:.0%} of trial-epochs ({plain['trial_epochs']} -> {bandit['trial_epochs']}) and "
        f"{1 - bandit['wall_s'] / plain['wall_s']:.0%} of wall time; best test_acc "
        f"{bandit['best_test_acc']:.4f} vs {plain['best_test_acc']:.4f} "
        f"({(bandit['best_test_acc'] - plain['best_test_acc']) * 100:+.2f} points)."
    )
    print("Targets: at least 30% of trial-epochs saved, best within 0.2 points.")
    for label, r in results.items():
        print(f"\n{label} trials:")
        for t in r["trials"]:
            params = {k: v for k, v in t.items() if k not in ("trial", "status", "intervals", "seconds", "message")}
            print(f"  {t['trial']}: {t['status']}, {t['intervals']} epochs, {params}")


if __name__ == "__main__":
    main()
