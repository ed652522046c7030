"""The pictures of a training run and of the data: matplotlib Figures (no pyplot, so nothing needs a display
and each PNG is drawn by the Agg backend), used by train.py, evaluate.py and explore.py.
"""

import numpy as np
from matplotlib.figure import Figure


def confusion_matrix_figure(labels, predicted):
    counts = np.zeros((10, 10), dtype=int)
    np.add.at(counts, (labels, predicted), 1)
    figure = Figure(figsize=(7, 6))
    axes = figure.subplots()
    figure.colorbar(axes.imshow(counts, cmap="Blues"))
    axes.set(xticks=range(10), yticks=range(10), xlabel="predicted", ylabel="true", title="MNIST test set")
    for (true, guess), n in np.ndenumerate(counts):
        axes.text(guess, true, n, ha="center", va="center", fontsize=7, color="w" if n > counts.max() / 2 else "k")
    return figure


def training_curves_figure(history):
    """Loss and accuracy per epoch, training and validation; history: one dict of train.py's metrics per epoch."""
    epochs = [row["epoch"] for row in history]
    figure = Figure(figsize=(10, 4))
    for axes, quantity in zip(figure.subplots(1, 2), ("loss", "acc"), strict=True):
        for split, style in (("training", "-o"), ("validation", "-s")):
            axes.plot(epochs, [row[f"{split}_{quantity}"] for row in history], style, markersize=3, label=split)
        name = "accuracy" if quantity == "acc" else "loss (cross-entropy)"
        axes.set(xlabel="epoch", ylabel=name, title=f"{name} per epoch")
        axes.grid(alpha=0.3)
        axes.legend()
    figure.tight_layout()
    return figure


def most_confused(labels, probabilities, count=16):
    """Indices of the wrong predictions made with the highest confidence, most confident first."""
    predicted = probabilities.argmax(axis=1)
    wrong = np.flatnonzero(predicted != labels)
    return wrong[np.argsort(-probabilities[wrong, predicted[wrong]], kind="stable")][:count]


def most_confused_figure(images, labels, probabilities, count=16):
    """The test images the model got wrong most confidently, each titled true -> predicted (probability)."""
    chosen = most_confused(labels, probabilities, count)
    columns = 8
    rows = max(1, -(-len(chosen) // columns))
    figure = Figure(figsize=(columns * 1.3, rows * 1.55 + 0.4))
    grid = np.atleast_1d(figure.subplots(rows, columns)).ravel()
    for axes in grid:
        axes.axis("off")
    for axes, index in zip(grid, chosen, strict=False):
        guess = int(probabilities[index].argmax())
        axes.imshow(np.reshape(images[index], (28, 28)), cmap="gray_r")
        axes.set_title(f"{labels[index]} -> {guess} ({probabilities[index, guess]:.2f})", fontsize=8)
    title = "most confident mistakes on the test set: true -> predicted (probability)"
    figure.suptitle(title if len(chosen) else "no mistakes on the test set", fontsize=10)
    figure.tight_layout()
    return figure


def digit_grid_figure(images, labels, per_class=10, title="MNIST training images"):
    """The first per_class images of each digit, one row per digit, each titled with its label."""
    figure = Figure(figsize=(per_class * 0.8, 10 * 0.9 + 0.4))
    grid = figure.subplots(10, per_class)
    for digit in range(10):
        members = np.flatnonzero(labels == digit)[:per_class]
        for column, axes in enumerate(grid[digit]):
            axes.axis("off")
            if column < len(members):
                axes.imshow(images[members[column]], cmap="gray_r")
                axes.set_title(str(digit), fontsize=7, pad=1)
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    return figure


def mean_images_figure(images, labels):
    """The mean image of each digit: where its ink usually is."""
    figure = Figure(figsize=(10, 1.6))
    for digit, axes in enumerate(figure.subplots(1, 10)):
        members = images[labels == digit]
        axes.imshow(members.mean(axis=0) if len(members) else np.zeros((28, 28)), cmap="magma")
        axes.set_title(f"{digit} (n={len(members):,})", fontsize=8)
        axes.axis("off")
    figure.suptitle("mean training image per digit", fontsize=10)
    figure.tight_layout()
    return figure


def class_counts_figure(train_counts, test_counts):
    figure = Figure(figsize=(8, 3.5))
    axes = figure.subplots()
    digits = np.arange(10)
    axes.bar(digits - 0.2, train_counts, width=0.4, label=f"train ({sum(train_counts):,})")
    axes.bar(digits + 0.2, test_counts, width=0.4, label=f"test ({sum(test_counts):,})")
    axes.set(xticks=digits, xlabel="digit", ylabel="images", title="images per digit")
    axes.legend()
    figure.tight_layout()
    return figure


def log_training_figures(history, images, labels, probabilities):
    """train.py's pictures, as artifacts of the active MLflow run."""
    import mlflow

    predicted = probabilities.argmax(axis=1)
    mlflow.log_figure(confusion_matrix_figure(labels, predicted), "confusion_matrix.png")
    if history:  # a run resumed after its last epoch trains none
        mlflow.log_figure(training_curves_figure(history), "training_curves.png")
    mlflow.log_figure(most_confused_figure(images, labels, probabilities), "most_confused.png")
