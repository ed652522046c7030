"""The model the serving and batch benchmarks measure: src/train.py's MNIST model, 3 epochs, trained in a scratch
folder of the benchmark's (its own MLflow store there, no tracking variables of the caller's)."""

import os
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def fail(message):
    sys.exit(f"error: {message}")


def add_arguments(parser):
    """The benchmark's model and data: --model-dir (else one is trained) and --data-folder."""
    parser.add_argument("--model-dir", help="an MLflow model folder as train.py saves it (default: train one)")
    parser.add_argument("--data-folder", help="MNIST folder (default: $MNIST_DATA, then the download cache)")


def check_model_dir(model_dir):
    if model_dir and not (Path(model_dir) / "MLmodel").is_file():
        fail(f"--model-dir {model_dir} has no MLmodel file (pass the folder train.py's --model-output wrote)")


def train_model(scratch: Path, data_folder) -> Path:
    """The trained model's folder, scratch/model (as train.py's --model-output writes it)."""
    print("training a model (src/train.py, 3 epochs) ...", flush=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "AZUREML_", "TF_CONFIG"))}
    env |= {"MLFLOW_TRACKING_URI": f"sqlite:///{scratch / 'mlflow.db'}", "TF_CPP_MIN_LOG_LEVEL": "2"}
    command = [sys.executable, str(REPO_ROOT / "src/train.py"), "--data-folder", str(data_folder), "--epochs", "3"]
    command += ["--model-output", str(scratch / "model"), "--checkpoint-dir", str(scratch / "checkpoints")]
    result = subprocess.run(command, env=env, cwd=scratch, capture_output=True, text=True)
    if result.returncode:
        fail(f"training failed: {result.stderr[-2000:]}")
    return scratch / "model"


def model_folder(model_dir, scratch: Path, data_folder) -> Path:
    """--model-dir when given, else a model trained now in scratch."""
    return Path(model_dir).resolve() if model_dir else train_model(scratch, data_folder)
