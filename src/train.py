"""Train an MNIST classifier (784 -> 256 -> 128 -> 10, plain SGD) as an Azure ML command job or locally:

    python src/train.py --data-folder /path/to/mnist --epochs 20

An epoch is one call of an XLA-compiled function that loops over its batches in-graph: no Python runs per
step (on 2 CPU cores, 12-14x faster per epoch than an eager GradientTape loop: bench/bench_train.py). When
TF_CONFIG names several workers (Azure ML `distribution: type: tensorflow`), the same loop runs under
MultiWorkerMirroredStrategy. Each epoch ends with a complete checkpoint; `--resume-from DIR` continues to
exactly the uninterrupted weights.
"""

import argparse
import contextlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import mnist_data

CHECKPOINT = "checkpoint.npz"
# Resuming with other values would train another model, or move validation images into the training set.
SAME_ON_RESUME = ("first_layer_neurons", "second_layer_neurons", "momentum", "seed", "validation_size", "train_subset")
MINIMUM = {"batch_size": 1, "first_layer_neurons": 1, "second_layer_neurons": 1, "epochs": 1}
MINIMUM |= {"validation_size": 0, "train_subset": 0}


def fail(message):
    print(f"error: {message}", file=sys.stderr, flush=True)
    sys.exit(2)


def parse_args():
    parser = argparse.ArgumentParser(description="Train the MNIST classifier.")
    parser.error = fail  # argparse would add its usage text: we promise one line
    parser.add_argument("--data-folder", help="MNIST folder (default: $MNIST_DATA, then the download cache)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--first-layer-neurons", type=int, default=256)
    parser.add_argument("--second-layer-neurons", type=int, default=128)
    parser.add_argument("--learning-rate", type=float, default=0.01)
    parser.add_argument("--momentum", type=float, default=0.0, help="SGD momentum (0: plain SGD)")
    parser.add_argument("--epochs", type=int, default=20, help="in total, counting the resumed ones")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--resume-from", default="", help="checkpoint folder to continue from ('': start fresh)")
    parser.add_argument("--checkpoint-dir", default="outputs/checkpoints")
    parser.add_argument("--model-output", default="outputs/model", help="folder for the final MLflow model")
    parser.add_argument("--validation-size", type=int, default=5000, help="0: validate on the test set")
    parser.add_argument("--train-subset", type=int, default=0, help="use the first N training images (0: all)")
    args = parser.parse_args()
    for name, minimum in MINIMUM.items():
        if getattr(args, name) < minimum:
            fail(f"--{name.replace('_', '-')} must be at least {minimum}, got {getattr(args, name)}")
    if not args.learning_rate > 0:
        fail(f"--learning-rate must be positive, got {args.learning_rate}")
    if not 0 <= args.momentum < 1:
        fail(f"--momentum must be in [0, 1), got {args.momentum}")
    return args


def cluster_role():
    """(number of workers, this worker's rank: 0 is the chief), from the TF_CONFIG that Azure ML sets."""
    config = json.loads(os.environ.get("TF_CONFIG") or "{}")
    cluster, task = config.get("cluster", {}), config.get("task", {})
    chiefs = len(cluster.get("chief", []))
    rank = task.get("index", 0) + (chiefs if task.get("type") == "worker" else 0)
    return max(1, chiefs + len(cluster.get("worker", []))), rank


def load_data(args):
    """(train, validation, test), each (float32 images (N, 784) in 0..1, int32 labels)."""
    try:
        mnist = mnist_data.load_mnist(mnist_data.resolve_data_folder(args.data_folder))
    except mnist_data.MnistDataError as e:
        fail(e)
    images, labels = mnist.train_images, mnist.train_labels.astype(np.int32)
    images, labels = images[: args.train_subset or None], labels[: args.train_subset or None]
    if args.validation_size > len(images) // 2:  # e.g. the offline 5,000-digit fallback under the YAML's 5000
        print(f"WARNING: --validation-size {args.validation_size} would hold out more than half of the {len(images)} "
              f"training images; holding out {len(images) // 12} (one twelfth, as 5,000 of MNIST's 60,000) instead",
              file=sys.stderr, flush=True)  # fmt: skip
        args.validation_size = len(images) // 12
    # The model sees pixels / 255 as float32: the 784 numbers in 0..1 that the endpoint receives, too.
    images = images.reshape(-1, 784) / np.float32(255)
    test = mnist.test_images.reshape(-1, 784) / np.float32(255), mnist.test_labels.astype(np.int32)
    if args.validation_size == 0:
        return (images, labels), test, test
    order = np.random.default_rng(args.seed).permutation(len(images))  # seeded: a resumed run holds out the same
    held_out, kept = order[: args.validation_size], np.sort(order[args.validation_size :])
    return (images[kept], labels[kept]), (images[held_out], labels[held_out]), test


def read_checkpoint(folder, args):
    """(completed epoch, model weights + optimizer variables) from folder, checked against args."""
    path = Path(folder) / CHECKPOINT
    if not path.is_file():
        fail(f"--resume-from {folder}: no {CHECKPOINT} there (pass --resume-from '' to start fresh)")
    try:
        with np.load(path) as saved:
            meta = json.loads(str(saved["meta"]))
            epoch, state = int(meta["epoch"]), [saved[f"arr_{i}"] for i in range(meta["arrays"])]
    except Exception as e:  # a damaged zip, a missing array, bad JSON: all mean "not one of our checkpoints"
        fail(f"{path}: unreadable checkpoint ({type(e).__name__}: {e})")
    changed = [f"--{n.replace('_', '-')} {meta.get(n)}" for n in SAME_ON_RESUME if meta.get(n) != getattr(args, n)]
    if changed:
        fail(f"{path} was trained with {', '.join(changed)}: resume with the same values, or start fresh")
    return epoch, state


def save_checkpoint(folder, epoch, state, args):
    meta = {"epoch": epoch, "arrays": len(state)} | {name: getattr(args, name) for name in SAME_ON_RESUME}
    # Write aside, then rename: a kill at any moment leaves the old or the new checkpoint, never half of one.
    aside = None
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".checkpoint-", suffix=".tmp", delete=False) as f:
            aside = f.name
            np.savez(f, *state, meta=np.array(json.dumps(meta)))
            f.flush()
            os.fsync(f.fileno())
        os.replace(aside, folder / CHECKPOINT)
    except OSError as e:  # a full disk, a folder made read-only meanwhile: the previous checkpoint stays usable
        if aside:
            Path(aside).unlink(missing_ok=True)
        fail(f"cannot write the epoch {epoch} checkpoint to {folder}: {e.strerror or e}")


def main():
    # Every input is checked before TensorFlow is imported (seconds, and noise on stderr): bad input fails at once.
    args = parse_args()
    num_workers, rank = cluster_role()
    is_chief = rank == 0
    (x_train, y_train), (x_val, y_val), (x_test, y_test) = load_data(args)
    checkpoint_dir, model_dir = Path(args.checkpoint_dir), Path(args.model_output)
    if not is_chief:  # the Keras multi-worker recipe: the others write the same files, to a folder deleted at exit
        scratch = tempfile.TemporaryDirectory(prefix="mnist-worker-")
        checkpoint_dir, model_dir = Path(scratch.name, "checkpoints"), Path(scratch.name, "model")
    for folder in (checkpoint_dir, model_dir):  # find out now, not after the last epoch
        try:
            folder.mkdir(parents=True, exist_ok=True)
            tempfile.TemporaryFile(dir=folder).close()
        except OSError as e:
            fail(f"cannot write to {folder}: {e.strerror or e}")
    if any(model_dir.iterdir()):
        fail(f"--model-output {model_dir} is not empty (MLflow saves a model only into an empty folder)")
    completed, state = read_checkpoint(args.resume_from, args) if args.resume_from else (0, None)

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")  # TensorFlow's C++ INFO lines say nothing users need
    import keras
    import mlflow
    import tensorflow as tf

    # MultiWorkerMirroredStrategy must be created before any other TensorFlow op runs.
    strategy = tf.distribute.MultiWorkerMirroredStrategy() if num_workers > 1 else tf.distribute.get_strategy()
    keras.utils.set_random_seed(args.seed)
    with strategy.scope():
        model = keras.Sequential(
            [
                keras.Input(shape=(784,)),
                keras.layers.Dense(args.first_layer_neurons, activation="relu"),
                keras.layers.Dense(args.second_layer_neurons, activation="relu"),
                keras.layers.Dense(10, activation="softmax"),
            ]
        )
        optimizer = keras.optimizers.SGD(learning_rate=args.learning_rate, momentum=args.momentum)
        optimizer.build(model.trainable_variables)  # its variables must exist before the compiled loop runs
    if state:
        model.set_weights(state[: len(model.weights)])
        for variable, value in zip(optimizer.variables, state[len(model.weights) :], strict=True):
            variable.assign(value)
        optimizer.learning_rate.assign(args.learning_rate)  # the command line decides, not the checkpoint
        print(f"resuming from {args.resume_from} after epoch {completed}", flush=True)
    images, labels = tf.constant(x_train), tf.constant(y_train)  # handed to TensorFlow once, not every epoch

    def train_step(x, y):  # one SGD step on this worker's share of a batch -> [summed loss, number correct]
        with tf.GradientTape() as tape:
            probabilities = model(x, training=True)
            losses = keras.losses.sparse_categorical_crossentropy(y, probabilities)
            # Divided by --batch-size, like tf.nn.compute_average_loss: the workers' gradients add up to the batch
            # mean, and the smaller last batch takes a smaller step instead of overweighting its few images.
            loss = tf.reduce_sum(losses) / args.batch_size
        optimizer.apply(tape.gradient(loss, model.trainable_variables), model.trainable_variables)
        correct = tf.argmax(probabilities, axis=1, output_type=tf.int32) == y
        return tf.stack([tf.reduce_sum(losses), tf.reduce_sum(tf.cast(correct, tf.float32))])

    # One call per epoch: the batch loop runs in-graph, XLA-compiled in one process (XLA can't compile collectives).
    @tf.function(jit_compile=num_workers == 1)
    def train_batches(batches):  # int32 [steps, batch size / workers]: indices into the training images
        totals = tf.zeros([2])
        for i in tf.range(tf.shape(batches)[0]):
            x, y = tf.gather(images, batches[i]), tf.gather(labels, batches[i])
            totals += strategy.reduce("sum", strategy.run(train_step, args=(x, y)), axis=None)
        return totals

    @tf.function(jit_compile=True)  # a whole evaluation set in one call: one large matrix product per layer
    def evaluate(images, labels):
        probabilities = model(images, training=False)
        loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(labels, probabilities))
        return loss, tf.argmax(probabilities, axis=1, output_type=tf.int32)

    with mlflow.start_run() if is_chief else contextlib.nullcontext():  # joins the job's run when there is one
        if is_chief:
            mlflow.log_params(vars(args))
        history = []  # this process's epochs, for the training-curves picture
        for epoch in range(completed + 1, args.epochs + 1):
            start = time.perf_counter()
            # The order depends only on (seed, epoch): a resumed run sees the batches of an uninterrupted one.
            order = np.random.default_rng([args.seed, epoch]).permutation(len(x_train)).astype(np.int32)
            full = len(order) // args.batch_size * args.batch_size
            # The full batches, then the smaller last one (one more shape, compiled once): no image is dropped.
            # --batch-size is global: each worker takes every num_workers-th image of each batch.
            batches = [order[:full].reshape(-1, args.batch_size), order[full:].reshape(1, -1)]
            totals = sum(train_batches(b[:, rank::num_workers]) for b in batches if b.size)
            training_loss, training_acc = totals.numpy() / len(order)
            validation_loss, predicted = evaluate(x_val, y_val)
            state = model.get_weights() + [variable.numpy() for variable in optimizer.variables]
            save_checkpoint(checkpoint_dir, epoch, state, args)
            metrics = {
                "training_acc": float(training_acc),
                "validation_acc": float(np.mean(predicted.numpy() == y_val)),
                "training_loss": float(training_loss),
                "validation_loss": float(validation_loss),
                "epoch_time_s": time.perf_counter() - start,
            }
            shown = "  ".join(f"{name}={value:.4f}" for name, value in list(metrics.items())[:4])
            print(f"epoch {epoch}/{args.epochs}  {shown}  {metrics['epoch_time_s']:.2f}s", flush=True)
            history.append({"epoch": epoch, **metrics})
            if is_chief:  # asynchronous: a remote tracking server must not hold up the epochs
                mlflow.log_metrics(metrics, step=epoch, synchronous=False)

        test_loss, predicted = (value.numpy() for value in evaluate(x_test, y_test))
        test_acc, test_loss = float(np.mean(predicted == y_test)), float(test_loss)
        per_class = {str(digit): float(np.mean(predicted[y_test == digit] == digit)) for digit in range(10)}
        # The served model needs only MLflow and Keras: float32 (-1, 784) in, probabilities (-1, 10) out.
        signature = mlflow.models.infer_signature(x_test[:1], model(x_test[:1]).numpy())
        # Pinned requirements: letting MLflow infer them reloads the model in a subprocess (about 6 s).
        requirements = [f"tensorflow-cpu=={tf.__version__}", f"keras=={keras.__version__}"]
        summary = {"test_acc": test_acc, "test_loss": test_loss, "per_class_acc": per_class}
        try:
            mlflow.keras.save_model(model, str(model_dir), signature=signature, pip_requirements=requirements)
            (model_dir / "test_metrics.json").write_text(json.dumps(summary, indent=2) + "\n")
        except OSError as e:  # a full disk: say so in one line (the last checkpoint can be resumed from)
            fail(f"cannot write the model to {model_dir}: {e.strerror or e}")
        if is_chief:
            mlflow.log_metrics({f"test_acc_class_{digit}": acc for digit, acc in per_class.items()})
            mlflow.log_metrics({"test_acc": test_acc, "test_loss": test_loss})  # per class: also in test_metrics.json
            import plots  # matplotlib, imported only for the pictures: curves, confusion matrix, worst mistakes

            plots.log_training_figures(history, x_test, y_test, model(x_test, training=False).numpy())
            mlflow.log_artifacts(str(model_dir), artifact_path="model")  # the saved folder, not a second copy
    print(f"test_acc={test_acc:.4f}  model: {model_dir.resolve() if is_chief else 'not kept (not the chief)'}")


if __name__ == "__main__":
    main()
