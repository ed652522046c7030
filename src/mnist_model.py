"""The registered MNIST MLP as a function from images to digit probabilities, for both scoring scripts: the online
one (score.py, under azureml-inference-server-http) and the batch one (batch_score.py, under a batch deployment).
Both call load_forward() once per worker, in init(), and then only the function it returns.

Where the model is: the one MLflow model (a folder with an MLmodel file) under AZUREML_MODEL_DIR, which Azure sets
for online and batch deployments alike; how deep it sits depends on how the model was registered.

Speed: one image costs ~25 us as numpy matrix products over the Dense layers' weights, against ~250 us through a
concrete tf.function and ~1,750 us through Keras' model(x); load_forward() checks the products against the Keras
model on a probe batch and falls back to the tf.function when the model is not a plain Dense stack or they disagree.

Only numpy is imported at module level: TensorFlow, Keras and MLflow load in load_forward(), so a scoring script
that imports this module starts fast and its checks of the input run before any of them is needed. A batch worker
may skip them altogether (keras_check=False): the weights are read from the saved .keras file with h5py, since
importing TensorFlow to check the same products costs each worker ~6 s of CPU and ~700 MB.
"""

import io
import json
import logging
import os
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import numpy as np

PIXELS = 28 * 28  # the model's input: a 28x28 image flattened row by row, each 0..255 pixel divided by 255
DIGITS = 10
PROBE_TOLERANCE = 1e-5  # largest difference in any probability allowed between the numpy path and Keras


class Forward(NamedTuple):
    """A loaded model: `function` maps float32 images (n, 784) in [0, 1] to probabilities (n, 10)."""

    function: Callable[[np.ndarray], np.ndarray]
    backend: str  # how function computes: "numpy" or "tf.function"
    folder: Path  # the MLflow model folder it was loaded from


def find_mlflow_model(model_dir):
    """The one folder under model_dir that holds an MLmodel file. Registration decides the layout: on Azure,
    AZUREML_MODEL_DIR/<registered folder>/MLmodel; a folder registered by its contents has MLmodel at the top."""
    if not model_dir:
        raise RuntimeError("AZUREML_MODEL_DIR is not set: it must name the folder of the deployed model")
    root = Path(model_dir)
    if not root.is_dir():
        raise RuntimeError(f"AZUREML_MODEL_DIR={model_dir} is not a folder")
    found = [Path(folder) for folder, _, files in os.walk(root, followlinks=True) if "MLmodel" in files]
    found.sort(key=lambda folder: (len(folder.parts), folder))
    distinct = {}  # MLmodel content -> shallowest folder: byte-identical copies of one model count once
    for folder in found:
        distinct.setdefault((folder / "MLmodel").read_bytes(), folder)
    if not distinct:
        raise RuntimeError(f"no MLflow model (an MLmodel file) under {root}: deploy the folder train.py saves")
    if len(distinct) > 1:
        names = ", ".join(str(folder.relative_to(root)) for folder in distinct.values())
        raise RuntimeError(f"{len(distinct)} different MLflow models under {root} ({names}): deploy exactly one")
    return next(iter(distinct.values()))


def numpy_forward(model):
    """The model as numpy matrix products over its weights, or None when it is not a plain stack of Dense layers
    with relu/linear/softmax activations (anything else may compute something the products would not)."""
    import keras

    if not isinstance(model, keras.Sequential) or model.dtype_policy.name != "float32":
        return None
    layers = []
    for layer in model.layers:
        config = layer.get_config()
        if type(layer) is not keras.layers.Dense or config["activation"] not in ("relu", "linear", "softmax"):
            return None
        kernel, *bias = layer.get_weights()
        layers.append((kernel, bias[0] if bias else np.float32(0), config["activation"]))

    return matrix_products(layers)


def matrix_products(layers):
    """images (n, 784) -> probabilities (n, 10) through layers: (kernel, bias, activation) each."""

    def forward(images):
        x = images
        for kernel, bias, activation in layers:
            x = x @ kernel
            x += bias
            if activation == "relu":
                np.maximum(x, 0, out=x)
            elif activation == "softmax":
                x -= x.max(axis=1, keepdims=True)  # exp of the largest is 1: no overflow
                np.exp(x, out=x)
                x /= x.sum(axis=1, keepdims=True)
        return x

    return forward


def saved_weights_forward(folder: Path):
    """The model's products read from the MLflow keras flavour's saved file (data/model.keras: Keras 3's zip of
    config.json and model.weights.h5) with h5py, without Keras or TensorFlow; or None when the file is missing or
    its config is not exactly what numpy_forward accepts (a float32 Sequential of Dense layers, relu/linear/softmax,
    784 in and 10 out), so the caller loads the model through Keras instead."""
    archive = folder / "data" / "model.keras"
    if not archive.is_file():
        return None
    import h5py  # Keras' own dependency; only here, so the online path never needs it

    with zipfile.ZipFile(archive) as saved:
        config = json.loads(saved.read("config.json"))
        weights_file = io.BytesIO(saved.read("model.weights.h5"))

    def float32(layer_config):
        return (layer_config.get("dtype") or {}).get("config", {}).get("name") == "float32"

    if config.get("class_name") != "Sequential" or not float32(config.get("config", {})):
        return None
    first, *dense = config["config"].get("layers", [])
    if first.get("class_name") != "InputLayer" or first["config"].get("batch_shape") != [None, PIXELS] or not dense:
        return None
    layers = []
    with h5py.File(weights_file, "r") as weights:
        for index, layer in enumerate(dense):
            settings = layer["config"]
            if layer["class_name"] != "Dense" or settings.get("activation") not in ("relu", "linear", "softmax"):
                return None
            # Keras' saving_lib names a container's layers in the file by class, counted in order (dense, dense_1,
            # ...), not by layer.name: a model built after others in one process has layers named dense_7 and on.
            group = weights.get(f"layers/dense{f'_{index}' if index else ''}/vars")
            if not float32(settings) or group is None or len(group) != (2 if settings.get("use_bias") else 1):
                return None
            kernel = np.asarray(group["0"], np.float32)
            bias = np.asarray(group["1"], np.float32) if settings.get("use_bias") else np.float32(0)
            layers.append((kernel, bias, settings["activation"]))
    shapes = [PIXELS, *(kernel.shape[1] for kernel, _, _ in layers)]
    if [kernel.shape[0] for kernel, _, _ in layers] != shapes[:-1] or shapes[-1] != DIGITS:
        return None
    return matrix_products(layers)


def load_forward(model_dir, logger: logging.Logger, keras_check: bool = True) -> Forward:
    """Load the MLflow model under model_dir and pick the fastest way to run it that matches Keras within
    PROBE_TOLERANCE on a probe batch; logger says which was picked and why. keras_check=False: when the saved file
    is a plain Dense stack, its weights as numpy products without loading Keras (tests/test_batch_score.py holds
    them to Keras on a trained model); anything else still goes through Keras and the probe."""
    if not keras_check:
        folder = find_mlflow_model(model_dir)
        products = saved_weights_forward(folder)
        if products is not None:
            logger.info(f"scoring {folder} with numpy, from its saved weights (TensorFlow not loaded)")
            return Forward(products, "numpy", folder)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")  # TensorFlow's C++ INFO lines say nothing users need
    import mlflow.keras
    import tensorflow as tf

    folder = find_mlflow_model(model_dir)
    model = mlflow.keras.load_model(str(folder))
    if tuple(model.input_shape) != (None, PIXELS) or tuple(model.output_shape) != (None, DIGITS):
        raise RuntimeError(f"{folder}: model takes {model.input_shape} and gives {model.output_shape}, not 784 -> 10")
    # Random images, blank and saturated ones, and a batch of one (a different matrix-product path in BLAS).
    probe = np.random.default_rng(0).random((64, PIXELS), dtype=np.float32)
    probe = np.concatenate([probe, np.zeros((1, PIXELS), np.float32), np.ones((1, PIXELS), np.float32)])
    expected = model(probe, training=False).numpy()
    candidate = numpy_forward(model)
    if candidate is not None:
        difference = max(np.abs(candidate(probe) - expected).max(), np.abs(candidate(probe[:1]) - expected[:1]).max())
        if difference <= PROBE_TOLERANCE:
            logger.info(f"scoring {folder} with numpy (largest difference from Keras on the probe: {difference:.1e})")
            return Forward(candidate, "numpy", folder)
        logger.warning(f"numpy products differ from Keras by {difference:.1e} on the probe: using TensorFlow")
    else:
        logger.info(f"{folder} is not a plain Dense stack: scoring with a concrete tf.function")
    # One traced graph for any batch size: no retracing, and none of Keras' per-call bookkeeping.
    call = tf.function(lambda images: model(images, training=False))
    concrete = call.get_concrete_function(tf.TensorSpec([None, PIXELS], tf.float32))
    return Forward(lambda images: concrete(images).numpy(), "tf.function", folder)
