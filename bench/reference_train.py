"""The reference trainer that src/train.py is benchmarked against (bench/bench_train.py runs both).

The plain way to write it: an eager tf.GradientTape loop over NumPy batches taken from a per-epoch
permutation, SGD lr 0.01, batch 64, 784-256-128-10, and the whole test set evaluated after every epoch.
Prints one line per epoch, then a JSON line: {"epoch_seconds": [...], "test_acc": ..., "wall_s": ...}.
"""

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import keras
import numpy as np
import tensorflow as tf

import mnist_data


def main():
    started = time.perf_counter()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-folder", help="MNIST folder (default: $MNIST_DATA, then the download cache)")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--learning-rate", type=float, default=0.01)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    try:
        mnist = mnist_data.load_mnist(mnist_data.resolve_data_folder(args.data_folder))
    except mnist_data.MnistDataError as e:
        sys.exit(f"error: {e}")
    x_train = mnist.train_images.reshape(-1, 784).astype(np.float32) / 255
    x_test = mnist.test_images.reshape(-1, 784).astype(np.float32) / 255
    y_train, y_test = mnist.train_labels.astype(np.int64), mnist.test_labels.astype(np.int64)

    keras.utils.set_random_seed(args.seed)
    model = keras.Sequential(
        [
            keras.Input(shape=(784,)),
            keras.layers.Dense(256, activation="relu"),
            keras.layers.Dense(128, activation="relu"),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    optimizer = keras.optimizers.SGD(learning_rate=args.learning_rate)
    loss_fn = keras.losses.SparseCategoricalCrossentropy()
    rng = np.random.default_rng(args.seed)

    epoch_seconds, test_acc = [], 0.0
    for epoch in range(1, args.epochs + 1):
        epoch_start = time.perf_counter()
        order = rng.permutation(len(x_train))
        for first in range(0, len(order), args.batch_size):
            batch = order[first : first + args.batch_size]
            with tf.GradientTape() as tape:
                loss = loss_fn(y_train[batch], model(x_train[batch], training=True))
            grads = tape.gradient(loss, model.trainable_variables)
            optimizer.apply_gradients(zip(grads, model.trainable_variables, strict=True))
        test_acc = float(np.mean(np.argmax(model(x_test, training=False), axis=1) == y_test))
        epoch_seconds.append(time.perf_counter() - epoch_start)
        print(f"epoch {epoch}/{args.epochs}  test_acc={test_acc:.4f}  {epoch_seconds[-1]:.2f}s", flush=True)

    wall = time.perf_counter() - started
    print(json.dumps({"epoch_seconds": epoch_seconds, "test_acc": test_acc, "wall_s": wall}), flush=True)


if __name__ == "__main__":
    main()
