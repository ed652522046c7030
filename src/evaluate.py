"""Evaluate a trained MNIST model on the test set and write its model card (a pipeline's second step):

    python src/evaluate.py --model outputs/model --data-folder /path/to/mnist --output card/

The card folder gets model_card.md (metrics, per-class accuracy, the training parameters when the model
came from a tracked run), metrics.json, confusion_matrix.png and most_confused.png (the most confident mistakes);
the metrics are logged to MLflow too.
"""

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

import mnist_data


def fail(message):
    print(f"error: {message}", file=sys.stderr, flush=True)
    sys.exit(2)


def find_model(folder: Path) -> Path:
    """The folder holding MLmodel: the given one, or the single one below it (a registered model's layout)."""
    if (folder / "MLmodel").is_file():
        return folder
    found = sorted(p.parent for p in folder.rglob("MLmodel"))
    if len(found) != 1:
        fail(f"--model {folder}: expected one MLflow model (an MLmodel file) there, found {len(found)}")
    return found[0]


def main():
    parser = argparse.ArgumentParser(description="Evaluate the MNIST model on the test set; write a model card.")
    parser.error = fail
    parser.add_argument("--model", required=True, help="MLflow model folder (train.py's --model-output)")
    parser.add_argument("--data-folder", help="MNIST folder (default: $MNIST_DATA, then the download cache)")
    parser.add_argument("--output", default="outputs/model_card", help="folder for the model card")
    args = parser.parse_args()
    model_dir = find_model(Path(args.model))
    try:
        data_folder = mnist_data.resolve_data_folder(args.data_folder)
        mnist = mnist_data.load_mnist(data_folder)
    except mnist_data.MnistDataError as e:
        fail(e)
    output = Path(args.output)
    try:
        output.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        fail(f"--output {output}: cannot create it ({e.strerror})")

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
    import mlflow

    from plots import confusion_matrix_figure, most_confused_figure

    model = mlflow.keras.load_model(str(model_dir))
    images = mnist.test_images.reshape(-1, 784) / np.float32(255)
    labels = mnist.test_labels.astype(np.int64)
    probabilities = model.predict(images, batch_size=1000, verbose=0)
    predicted = probabilities.argmax(axis=1)
    test_acc = float(np.mean(predicted == labels))
    test_loss = float(-np.mean(np.log(np.clip(probabilities[np.arange(len(labels)), labels], 1e-7, 1))))
    per_class = {str(d): float(np.mean(predicted[labels == d] == d)) for d in range(10)}
    confused = np.zeros((10, 10), dtype=int)
    np.add.at(confused, (labels, predicted), 1)
    np.fill_diagonal(confused, 0)
    worst = sorted(((int(confused[t, p]), t, p) for t in range(10) for p in range(10) if confused[t, p]), reverse=True)

    metrics = {"test_acc": test_acc, "test_loss": test_loss, "test_images": len(labels)}
    (output / "metrics.json").write_text(json.dumps(metrics | {"per_class_acc": per_class}, indent=2) + "\n")
    confusion_matrix_figure(labels, predicted).savefig(output / "confusion_matrix.png", dpi=100)
    most_confused_figure(images, labels, probabilities).savefig(output / "most_confused.png", dpi=100)
    trained = model_dir / "test_metrics.json"
    lines = [
        "# Model card: MNIST MLP",
        "",
        f"Model: `{model_dir}` (MLflow keras flavour; input float32 (N, 784) pixels / 255, output 10 probabilities).",
        f"Evaluated on the {len(labels):,} MNIST test images (from {data_folder}).",
        "",
        "| metric | value |",
        "|---|---|",
        f"| test accuracy | {test_acc:.4f} |",
        f"| test loss (cross-entropy) | {test_loss:.4f} |",
        "",
        "| digit | accuracy |",
        "|---|---|",
        *[f"| {d} | {acc:.4f} |" for d, acc in per_class.items()],
        "",
        "Most frequent confusions (true -> predicted: count): "
        + (", ".join(f"{t} -> {p}: {n}" for n, t, p in worst[:5]) or "none"),
        "",
        "![confusion matrix](confusion_matrix.png)",
        "",
        "The test images it got wrong most confidently (true -> predicted, probability):",
        "",
        "![most confident mistakes](most_confused.png)",
    ]
    if trained.is_file():
        lines += ["", f"Training reported test accuracy {json.loads(trained.read_text())['test_acc']:.4f}."]
    (output / "model_card.md").write_text("\n".join(lines) + "\n")
    with mlflow.start_run():  # joins the step's run when aml-local or Azure ML started one
        mlflow.log_metrics({"test_acc": test_acc, "test_loss": test_loss})
        mlflow.log_artifacts(str(output), artifact_path="model_card")
    print(f"test_acc={test_acc:.4f}  model card: {(output / 'model_card.md').resolve()}")


if __name__ == "__main__":
    main()
