"""Azure ML batch scoring script for the MNIST MLP (endpoints/batch/deployment.yml): the batch deployment calls init()
once per worker process and run(mini_batch) once per mini-batch of input files.

Input: image files of one handwritten digit each, 28x28 8-bit grayscale, white on black as in MNIST (what
`mnist-data png` writes). Output: run() returns a pandas DataFrame with one row per file it scored: the file's name,
the predicted digit and that digit's probability; with output_action append_row the deployment appends every row to
one file (the docs page "Author scoring scripts for batch deployments": "each row/element represents a single file
processed", and a DataFrame's column names are not written).

A file that cannot be read as such an image (corrupt, truncated, another size) gets no row and a WARNING line naming
it and why: Azure counts each input without an output row as a failed item against error_threshold (the same page:
"Each returned output element indicates one successful run of an input element"), and the other files of the
mini-batch are scored.

Speed: the mini-batch is decoded into one uint8 matrix and scored with one call of the model's forward pass (numpy
matrix products, shared with the online scoring script through mnist_model.py), not image by image.
"""

import logging
import os

import numpy as np
import pandas as pd
from PIL import Image

from mnist_model import PIXELS, load_forward

SIDE = 28
logger = logging.getLogger("batch_score")
forward = None  # images (n, 784) float32 in [0, 1] -> probabilities (n, 10), set by init()


def init():
    """Load the model once per worker (AZUREML_MODEL_DIR is where the deployment puts it)."""
    global forward
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    forward = load_forward(os.environ.get("AZUREML_MODEL_DIR"), logger, keras_check=False).function


def read_digit(path, into):
    """Decode one image file into the (28, 28) uint8 array `into`; OSError or ValueError names what is wrong."""
    with Image.open(path) as image:
        if image.size != (SIDE, SIDE):
            raise ValueError(f"the image is {image.size[0]}x{image.size[1]}, expected {SIDE}x{SIDE}")
        into[:] = np.asarray(image if image.mode == "L" else image.convert("L"))


def run(mini_batch):
    """Score a mini-batch of image file paths: one row (file, digit, probability) per file that could be read."""
    pixels = np.empty((len(mini_batch), SIDE, SIDE), np.uint8)
    names = []
    for path in mini_batch:
        try:
            read_digit(path, pixels[len(names)])
        except (OSError, ValueError) as error:  # Pillow's UnidentifiedImageError is an OSError
            logger.warning(f"{path}: not scored, not a {SIDE}x{SIDE} grayscale image: {error}")
            continue
        names.append(os.path.basename(path))
    images = pixels[: len(names)].reshape(-1, PIXELS) / np.float32(255)  # float32 in [0, 1], as train.py scales them
    probabilities = forward(images)
    digits = probabilities.argmax(axis=1)
    return pd.DataFrame(
        {"file": names, "digit": digits, "probability": probabilities[np.arange(len(names)), digits]},
        columns=["file", "digit", "probability"],
    )
