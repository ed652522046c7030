"""src/explore.py (pictures, class counts, a request for one test image) and src/plots.py (the pictures a training
run logs: curves, confusion matrix, most confident mistakes)."""

import csv
import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
PNG = b"\x89PNG\r\n\x1a\n"
sys.path.insert(0, str(REPO_ROOT / "src"))

import plots  # noqa: E402 (src/ is not a package: the jobs upload it as their code folder)


def explore(*argv, cwd):
    env = {k: v for k, v in os.environ.items() if k != "MNIST_DATA"}
    return subprocess.run(
        [sys.executable, str(REPO_ROOT / "src/explore.py"), *map(str, argv)], cwd=cwd, env=env, capture_output=True,
        text=True, timeout=120,
    )  # fmt: skip


def test_explore_writes_the_pictures_and_the_class_counts(tmp_path, write_mnist, tiny_mnist):
    data = write_mnist(tmp_path / "mnist")
    result = explore("--data-folder", data, "--output", tmp_path / "out", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    out = tmp_path / "out"
    for name in ("samples.png", "mean_images.png", "class_counts.png"):
        assert (out / name).read_bytes().startswith(PNG), name
    train_counts = np.bincount(tiny_mnist[1], minlength=10).tolist()
    test_counts = np.bincount(tiny_mnist[3], minlength=10).tolist()
    assert json.loads((out / "class_counts.json").read_text()) == {"train": train_counts, "test": test_counts}
    with open(out / "class_counts.csv") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["digit", "train", "test"]
    assert [[int(v) for v in row] for row in rows[1:]] == [[d, train_counts[d], test_counts[d]] for d in range(10)]
    assert "train      2      2" in result.stdout and f"{sum(test_counts):>6}" in result.stdout


def test_a_sample_request_is_the_test_image_over_255_in_the_endpoint_format(tmp_path, write_mnist, tiny_mnist):
    data = write_mnist(tmp_path / "mnist")
    result = explore("--data-folder", data, "--sample", 3, "--request-file", tmp_path / "r/three.json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert f"MNIST test image 3, label {tiny_mnist[3][3]}" in result.stdout
    request = json.loads((tmp_path / "r/three.json").read_text())
    assert list(request) == ["data"] and len(request["data"]) == 1
    assert request["data"][0] == (tiny_mnist[2][3].reshape(784) / 255.0).tolist()
    # The default file is named after the image, under --output.
    assert explore("--data-folder", data, "--sample", 0, "--output", tmp_path / "o", cwd=tmp_path).returncode == 0
    assert (tmp_path / "o/request-test-0.json").is_file()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--sample", "10"], "error: --sample 10: expected a test image index from 0 to 9\n"),
        (["--sample", "-1"], "error: --sample -1: expected a test image index from 0 to 9\n"),
        (["--sample", "seven"], "error: argument --sample: invalid int value: 'seven'\n"),
    ],
)
def test_bad_explore_arguments_fail_in_one_line(tmp_path, write_mnist, argv, message):
    result = explore("--data-folder", write_mnist(tmp_path / "mnist"), *argv, cwd=tmp_path)
    assert result.returncode == 2 and result.stderr == message and result.stdout == ""


def test_a_missing_data_folder_is_named(tmp_path):
    result = explore("--data-folder", tmp_path / "nowhere", cwd=tmp_path)
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert "nowhere" in result.stderr and "does not exist" in result.stderr


def test_sample_zero_of_real_mnist_is_the_projects_sample_request(real_mnist_dir, tmp_path):
    result = explore(
        "--data-folder", real_mnist_dir, "--sample", 0, "--request-file", tmp_path / "0.json", cwd=tmp_path
    )
    assert result.returncode == 0 and "label 7" in result.stdout
    sample = json.loads((REPO_ROOT / "endpoints/sample-request.json").read_text())
    assert json.loads((tmp_path / "0.json").read_text()) == sample


def test_most_confused_are_the_most_confident_mistakes():
    labels = np.array([0, 1, 2, 3, 4])
    probabilities = np.full((5, 10), 0.01)
    probabilities[0, 0] = 0.9  # right
    probabilities[1, 7] = 0.6  # wrong, less sure
    probabilities[2, 5] = 0.95  # wrong, most sure
    probabilities[3, 3] = 0.5  # right
    probabilities[4, 9] = 0.8  # wrong
    assert plots.most_confused(labels, probabilities).tolist() == [2, 4, 1]
    assert plots.most_confused(labels, probabilities, count=1).tolist() == [2]
    assert plots.most_confused(labels[[0, 3]], probabilities[[0, 3]]).tolist() == []


def test_a_training_runs_pictures_are_logged_to_mlflow(tmp_path, seed_store):
    import mlflow

    rng = np.random.default_rng(0)
    images, labels = rng.random((40, 784), dtype=np.float32), np.arange(40) % 10
    probabilities = rng.dirichlet(np.ones(10), size=40)
    history = [
        {"epoch": e, "training_loss": 1 / e, "validation_loss": 1.1 / e, "training_acc": 1 - 0.1 / e,
         "validation_acc": 1 - 0.12 / e}
        for e in (1, 2, 3)
    ]  # fmt: skip
    seed_store(tmp_path)
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    try:
        artifacts = (tmp_path / "artifacts").as_uri()  # not ./mlruns in the working directory
        with mlflow.start_run(experiment_id=mlflow.create_experiment("plots", artifact_location=artifacts)) as run:
            plots.log_training_figures(history, images, labels, probabilities)
        names = {a.path for a in mlflow.MlflowClient().list_artifacts(run.info.run_id)}
        assert {"confusion_matrix.png", "training_curves.png", "most_confused.png"} <= names
        folder = pathlib.Path(mlflow.get_run(run.info.run_id).info.artifact_uri.removeprefix("file://"))
        assert (folder / "training_curves.png").read_bytes().startswith(PNG)
    finally:
        mlflow.set_tracking_uri("")


def test_the_model_card_shows_the_confusion_matrix_and_the_most_confident_mistakes(
    trained_model_dir, small_mnist_dir, tmp_path, seed_store
):
    seed_store(tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "AZUREML_"))}
    env |= {"MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}", "PYTHONPATH": str(REPO_ROOT / "src")}
    argv = ["--model", trained_model_dir, "--data-folder", small_mnist_dir, "--output", tmp_path / "card"]
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "src/evaluate.py"), *map(str, argv)], cwd=tmp_path, env=env,
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    card = (tmp_path / "card/model_card.md").read_text()
    for picture in ("confusion_matrix.png", "most_confused.png"):
        assert (tmp_path / "card" / picture).read_bytes().startswith(PNG) and f"]({picture})" in card
