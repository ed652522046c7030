"""The training scenarios: train.py SIGKILLed again and again and resumed from its checkpoints, on a full disk, and
with a read-only model folder."""

import contextlib
import dataclasses
import json
import os
import random
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

from faults.aml import REPO_ROOT, clean_env, wait_until
from faults.checks import Check, judge, skipped
from faults.settings import Settings


@dataclasses.dataclass(frozen=True)
class Trainer:
    """src/train.py on data_folder (SGD, momentum 0.9), each run with its own MLflow sqlite store in its folder."""

    data_folder: Path
    env: dict[str, str] = dataclasses.field(default_factory=clean_env)

    def start(
        self, folder: Path, epochs: int, model: Path, checkpoints: Path, *extra, resume: Path | None = None
    ) -> subprocess.Popen:
        """A run in folder writing its model and checkpoints where given; its stdout and stderr together on .stdout."""
        env = self.env | {"MLFLOW_TRACKING_URI": f"sqlite:///{folder / 'mlflow.db'}", "PYTHONUNBUFFERED": "1"}
        command = [sys.executable, str(REPO_ROOT / "src/train.py"), "--epochs", str(epochs), "--momentum", "0.9"]
        command += ["--data-folder", str(self.data_folder), "--model-output", str(model)]
        command += ["--checkpoint-dir", str(checkpoints), *map(str, extra)]
        if resume:
            command += ["--resume-from", str(resume)]
        return subprocess.Popen(
            command, env=env, cwd=folder, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )


def train_model(trainer: Trainer, folder: Path, settings: Settings) -> Path:
    """A model trained for 3 epochs (with settings.training_args), for the endpoint scenarios to deploy."""
    folder.mkdir(parents=True, exist_ok=True)
    run = trainer.start(folder, 3, folder / "model", folder / "ckpt", *settings.training_args)
    output, _ = run.communicate(timeout=600)
    if run.returncode:
        raise RuntimeError(f"training the model failed: {output[-1000:]}")
    return folder / "model"


def checkpoint_epoch(folder: Path) -> int:
    import numpy as np

    with np.load(folder / "checkpoint.npz") as saved:
        return int(json.loads(str(saved["meta"]))["epoch"])


def printed_epochs(lines) -> list[int]:
    return [int(m[1]) for line in lines if (m := re.match(r"epoch (\d+)/\d+ ", line))]


def wait_for_checkpoint_write(folder: Path, run: subprocess.Popen, timeout: float):
    """Return as soon as a checkpoint is being written (its temporary file exists): watched from outside, polling
    every 0.2 ms (a write takes a few milliseconds)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and run.poll() is None:
        with contextlib.suppress(OSError):
            if any(name.startswith(".checkpoint-") for name in os.listdir(folder)):
                return
        time.sleep(0.0002)


def killed_and_resumed(trainer: Trainer, folder: Path, settings: Settings, reference: float) -> Check:
    """SIGKILL train.py again and again, resuming each time from its checkpoint folder. A "random" kill comes at a
    seeded random instant within the 1.5 s after the run's first epoch line (mid-epoch, or in a checkpoint write); a
    "during-write" kill as soon as a checkpoint's temporary file appears (watched from outside). It ends within 0.3
    points of the uninterrupted run's `reference` accuracy, no finished epoch trained twice, none lost."""
    name, epochs, rng = "training: SIGKILL and resume", settings.epochs, random.Random(settings.seed)
    folder.mkdir(parents=True, exist_ok=True)
    checkpoints = folder / "ckpt"
    # Taken from the end: the kills during a write first (each costs at most the epoch being saved), then the
    # random ones. The other way round, the random kills could finish the training before any write was hit.
    plan = ["random"] * settings.random_kills + ["during-write"] * settings.write_kills
    attempts, kills, in_write, behind, printed, problems, extra_tries = 0, 0, 0, 0, [], [], 0
    final = None
    while final is None and not problems:
        attempts += 1
        resume = checkpoints if (checkpoints / "checkpoint.npz").exists() else None
        resumed_from = checkpoint_epoch(checkpoints) if resume else 0
        model_dir = folder / f"model-{attempts}"
        run = trainer.start(folder, epochs, model_dir, checkpoints, *settings.training_args, resume=resume)
        lines = []
        reader = threading.Thread(target=lines.extend, args=(run.stdout,), daemon=True)
        reader.start()
        how = plan.pop() if plan else None
        if how is None and in_write == 0 and extra_tries < 6:  # a write lasts a few ms: try again, bounded
            how, extra_tries = "during-write", extra_tries + 1
        leftovers = set(checkpoints.glob(".checkpoint-*.tmp"))
        if how == "random":
            wait_until(lambda run=run, out=lines: printed_epochs(out) or run.poll() is not None, 300, interval=0.01)
            time.sleep(rng.uniform(0.0, 1.5))
        elif how == "during-write":
            wait_for_checkpoint_write(checkpoints, run, timeout=300)
        if how and run.poll() is None:
            run.kill()
            kills += 1
            run.wait()
            reader.join(5)
            printed += printed_epochs(lines)
            in_write += bool(set(checkpoints.glob(".checkpoint-*.tmp")) - leftovers)
            finished = max([resumed_from, *printed_epochs(lines)])
            # The next run resumes from the checkpoint: it must hold every epoch this run said it finished.
            saved = checkpoint_epoch(checkpoints) if (checkpoints / "checkpoint.npz").exists() else 0
            behind += max(0, finished - saved)
            continue
        run.wait(timeout=900)
        reader.join(5)
        printed += printed_epochs(lines)
        if run.returncode or not (model_dir / "test_metrics.json").exists():
            problems.append(f"run {attempts} exited {run.returncode}: {''.join(lines)[-300:]}")
        else:
            final = json.loads((model_dir / "test_metrics.json").read_text())["test_acc"]
    if problems:
        return judge(name, f"{kills} kills, {attempts} runs", problems=problems)
    # An epoch's line is printed after its checkpoint is written: an epoch printed twice was trained twice.
    trained_twice = len(printed) - len(set(printed))
    difference = abs(final - reference) * 100
    every_epoch = sorted(set(printed)) == list(range(1, epochs + 1))
    figure = (
        f"{kills} kills ({in_write} mid checkpoint write), {attempts} runs: test_acc {final:.4f} vs "
        f"{reference:.4f} uninterrupted ({difference:.2f} points); finished epochs redone {trained_twice}, "
        f"checkpoint behind {behind}, every epoch done {every_epoch}"
    )
    criteria = {
        "within 0.3 points of the uninterrupted run": difference <= 0.3,
        "no finished epoch trained twice": trained_twice == 0,
        "every resume from a checkpoint holding every finished epoch": behind == 0,
        "at least one kill during a checkpoint write": in_write >= 1,
        "every epoch done": every_epoch,
    }
    return judge(name, figure, criteria)


def _last_line(output: str) -> str:
    return output.strip().splitlines()[-1] if output.strip() else ""


def disk_full(trainer: Trainer, folder: Path, settings: Settings) -> Check:
    """A 256 KiB tmpfs as the checkpoint folder: train.py exits 2 with one `error:` line naming the epoch's checkpoint
    and the full disk, no traceback, and no partial checkpoint left. Skipped where a tmpfs cannot be mounted."""
    name, tiny_disk = "training: disk full", folder / "tiny-disk"
    tiny_disk.mkdir(parents=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(tiny_disk)], capture_output=True, text=True
    )
    if mounted.returncode:
        return skipped(name, f"cannot mount a 256 KiB tmpfs: {mounted.stderr.strip()}")
    try:
        run = trainer.start(folder, 1, folder / "full-model", tiny_disk, *settings.short_run_args)
        output, _ = run.communicate(timeout=300)
        last = _last_line(output)
        criteria = {
            "exit 2": run.returncode == 2,
            "no traceback": "Traceback" not in output,
            "the last line names the epoch 1 checkpoint": last.startswith(
                "error: cannot write the epoch 1 checkpoint to"
            ),
            "and the full disk": "No space left on device" in last,
            f"no partial checkpoint left ({os.listdir(tiny_disk)})": os.listdir(tiny_disk) == [],
        }
        return judge(name, f"exit {run.returncode}: {last[:130]}", criteria)
    finally:
        subprocess.run(["umount", str(tiny_disk)], check=False)


def read_only_output(trainer: Trainer, folder: Path) -> Check:
    """A read-only bind mount as the model folder: train.py exits 2 with one `error: cannot write to` line, no
    traceback. Skipped where a bind mount cannot be made."""
    name, source, read_only = "training: unwritable output", folder / "ro-source", folder / "read-only"
    source.mkdir(parents=True)
    read_only.mkdir()
    bound = subprocess.run(["mount", "--bind", "-o", "ro", str(source), str(read_only)], capture_output=True)
    if bound.returncode:
        return skipped(name, "cannot make a read-only bind mount")
    try:
        run = trainer.start(folder, 1, read_only / "model", folder / "ro-ckpt")
        output, _ = run.communicate(timeout=300)
        last = _last_line(output)
        criteria = {
            "exit 2": run.returncode == 2,
            "one `error: cannot write to` line": last.startswith("error: cannot write to"),
            "no traceback": "Traceback" not in output,
        }
        return judge(name, f"exit {run.returncode}: {last[:130]}", criteria)
    finally:
        subprocess.run(["umount", str(read_only)], check=False)


def training_faults(trainer: Trainer, folder: Path, settings: Settings) -> list[Check]:
    """An uninterrupted run of settings.epochs, then the same run killed and resumed; a full disk; a read-only
    output folder."""
    reference_dir = folder / "train-reference"
    reference_dir.mkdir(parents=True)
    run = trainer.start(
        reference_dir, settings.epochs, reference_dir / "model", reference_dir / "ckpt", *settings.training_args
    )
    output, _ = run.communicate(timeout=900)
    if run.returncode:
        killed = judge("training: SIGKILL and resume", "the uninterrupted run failed", problems=[output[-300:]])
    else:
        reference = json.loads((reference_dir / "model" / "test_metrics.json").read_text())["test_acc"]
        killed = killed_and_resumed(trainer, folder / "train-killed", settings, reference)
    return [killed, disk_full(trainer, folder / "disk-full", settings), read_only_output(trainer, folder / "read-only")]
