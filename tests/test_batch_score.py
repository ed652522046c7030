"""src/batch_score.py, the batch deployment's scoring script: the rows run() returns for a mini-batch of image files
(one per readable file: its name, the predicted digit, that digit's probability; none for a file it cannot read, which
Azure counts as a failed item), the model it loads in init() (a tiny Keras model saved by MLflow), and the
`mnist-data png` verb that writes such files with their labels. The format is the docs page "Author scoring scripts
for batch deployments": run() returns a DataFrame whose rows are the output lines, one per file processed."""

import importlib.util
import os
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "src"))  # as on Azure: the code folder, src/, holds what batch_score imports

import mnist_data  # noqa: E402


def import_batch_score():
    """A fresh copy of src/batch_score.py (its model is module state, set by init())."""
    spec = importlib.util.spec_from_file_location("batch_score_under_test", REPO_ROOT / "src/batch_score.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def brightest_quarter(images):
    """A stand-in model: the probabilities of digits 0-3 follow how bright each quarter of the image is."""
    quarters = images.reshape(-1, 2, 14, 2, 14).sum(axis=(2, 4)).reshape(-1, 4)
    logits = np.concatenate([quarters, np.zeros((len(images), 6), np.float32)], axis=1)
    exp = np.exp(logits - logits.max(axis=1, keepdims=True))
    return exp / exp.sum(axis=1, keepdims=True)


def digit_with_bright_quarter(quarter):
    pixels = np.zeros((28, 28), np.uint8)
    row, column = divmod(quarter, 2)
    pixels[row * 14 : row * 14 + 14, column * 14 : column * 14 + 14] = 255
    return pixels


@pytest.fixture
def scorer(monkeypatch):
    batch_score = import_batch_score()
    monkeypatch.setattr(batch_score, "forward", brightest_quarter)
    return batch_score


def test_run_returns_one_row_per_file_with_its_name_digit_and_probability(scorer, tmp_path):
    paths = []
    for quarter in (2, 0, 3):
        path = tmp_path / f"image-{quarter}.png"
        Image.fromarray(digit_with_bright_quarter(quarter)).save(path)
        paths.append(str(path))
    rows = scorer.run(paths)
    assert list(rows.columns) == ["file", "digit", "probability"]
    assert rows["file"].tolist() == ["image-2.png", "image-0.png", "image-3.png"]  # names, in mini-batch order
    assert rows["digit"].tolist() == [2, 0, 3]
    images = np.stack([digit_with_bright_quarter(q) for q in (2, 0, 3)]).reshape(3, 784) / np.float32(255)
    expected = brightest_quarter(images)
    np.testing.assert_allclose(rows["probability"], expected[np.arange(3), [2, 0, 3]], rtol=1e-6)
    # What append_row writes of it: the values of each row, space-separated (column names are not written).
    line = rows.to_csv(sep=" ", header=False, index=False).splitlines()[0]
    assert line.split()[:2] == ["image-2.png", "2"]


def test_the_model_sees_float32_pixels_divided_by_255_as_in_training(scorer, tmp_path, monkeypatch):
    seen = []
    monkeypatch.setattr(scorer, "forward", lambda images: seen.append(images) or brightest_quarter(images))
    pixels = np.arange(784, dtype=np.uint32).reshape(28, 28).astype(np.uint8)
    Image.fromarray(pixels).save(tmp_path / "ramp.png")
    scorer.run([str(tmp_path / "ramp.png")])
    (images,) = seen
    assert images.dtype == np.float32 and images.shape == (1, 784)
    np.testing.assert_array_equal(images[0], pixels.reshape(784) / np.float32(255))


def test_a_file_that_is_not_a_28x28_image_gets_no_row_and_a_warning_naming_it(scorer, tmp_path, caplog):
    good = tmp_path / "good.png"
    Image.fromarray(digit_with_bright_quarter(1)).save(good)
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(good.read_bytes()[:40])  # a PNG cut short
    not_an_image = tmp_path / "notes.txt"
    not_an_image.write_text("not an image")
    too_big = tmp_path / "big.png"
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(too_big)
    colour = tmp_path / "colour.png"
    Image.fromarray(np.stack([digit_with_bright_quarter(3)] * 3, axis=2)).save(colour)  # RGB: read as grayscale
    paths = [str(p) for p in (corrupt, good, not_an_image, too_big, colour)]
    rows = scorer.run(paths)
    assert rows["file"].tolist() == ["good.png", "colour.png"]
    assert rows["digit"].tolist() == [1, 3]
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warned) == 3
    assert warned[0].startswith(f"{corrupt}: not scored")
    assert warned[1].startswith(f"{not_an_image}: not scored") and "cannot identify image file" in warned[1]
    assert warned[2] == f"{too_big}: not scored, not a 28x28 grayscale image: the image is 32x32, expected 28x28"


def test_a_mini_batch_of_unreadable_files_gives_an_empty_frame(scorer, tmp_path):
    (tmp_path / "a.png").write_bytes(b"")
    rows = scorer.run([str(tmp_path / "a.png")])
    assert rows.empty and list(rows.columns) == ["file", "digit", "probability"]


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword")  # Keras' own, saving
def test_init_loads_the_registered_model_and_run_agrees_with_keras(tmp_path, monkeypatch, caplog):
    import keras
    import mlflow.keras

    keras.utils.set_random_seed(0)
    keras.layers.Dense(1)  # the model's layers are then dense_1 on, not named as the saved file names them
    dense = [keras.layers.Dense(32, activation="relu"), keras.layers.Dense(10, activation="softmax")]
    model = keras.Sequential([keras.Input(shape=(784,)), *dense])
    # Requirements given: MLflow's inference of them (a subprocess importing the model) is most of save_model's time.
    mlflow.keras.save_model(model, str(tmp_path / "azureml-models/mnist-mlp/1/model"), pip_requirements=["keras"])
    pixels = np.random.default_rng(0).integers(0, 256, (5, 28, 28), dtype=np.uint8)
    paths = []
    for index, image in enumerate(pixels):
        Image.fromarray(image).save(tmp_path / f"{index:05d}.png")
        paths.append(str(tmp_path / f"{index:05d}.png"))
    batch_score = import_batch_score()
    monkeypatch.setenv("AZUREML_MODEL_DIR", str(tmp_path / "azureml-models/mnist-mlp/1"))
    with caplog.at_level("INFO", logger="batch_score"):
        batch_score.init()
    # The weights were read from the saved file with h5py, not through Keras (each worker saves ~6 s of CPU).
    assert "from its saved weights (TensorFlow not loaded)" in caplog.text
    rows = batch_score.run(paths)
    expected = model(pixels.reshape(5, 784) / np.float32(255), training=False).numpy()
    assert rows["file"].tolist() == [f"{i:05d}.png" for i in range(5)]
    assert rows["digit"].tolist() == expected.argmax(axis=1).tolist()
    np.testing.assert_allclose(rows["probability"], expected.max(axis=1), atol=1e-5)


def test_the_png_verb_writes_the_test_images_named_by_index_and_their_labels_beside(write_mnist, tiny_mnist, tmp_path):
    data = write_mnist(tmp_path / "mnist")
    out = tmp_path / "out"
    assert mnist_data.main(["png", "--count", "7", "--out", str(out), "--data-folder", str(data)]) == 0
    _, _, test_images, test_labels = tiny_mnist
    names = sorted(os.listdir(out / "images"))
    assert names == [f"{index:05d}.png" for index in range(7)]
    for index, name in enumerate(names):
        with Image.open(out / "images" / name) as image:
            assert (image.mode, image.size) == ("L", (28, 28))
            np.testing.assert_array_equal(np.asarray(image), test_images[index])
    lines = (out / "labels.csv").read_text().splitlines()
    assert lines == ["file,label"] + [f"{name},{label}" for name, label in zip(names, test_labels[:7], strict=True)]
    assert sorted(os.listdir(out)) == ["images", "labels.csv"]  # the labels are not in the folder that is scored


def test_the_png_verb_refuses_a_used_folder_and_a_count_beyond_the_test_set(write_mnist, tmp_path, capsys):
    data = write_mnist(tmp_path / "mnist")
    used = tmp_path / "used"
    used.mkdir()
    (used / "keep.txt").write_text("mine")
    assert mnist_data.main(["png", "--count", "3", "--out", str(used), "--data-folder", str(data)]) == 2
    assert f"error: {used}: already exists and is not an empty folder" in capsys.readouterr().err
    assert sorted(os.listdir(used)) == ["keep.txt"]
    assert mnist_data.main(["png", "--count", "11", "--out", str(tmp_path / "new"), "--data-folder", str(data)]) == 2
    assert "--count 11: expected 1 to 10" in capsys.readouterr().err
    assert not (tmp_path / "new").exists()


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword")  # Keras' own, saving
def test_a_saved_model_that_is_not_a_plain_dense_stack_is_left_to_keras(tmp_path):
    import keras
    import mlflow.keras

    import mnist_model

    layers = [keras.layers.Dense(16, activation="tanh"), keras.layers.Dense(10, activation="softmax")]
    # Requirements given: their inference (a subprocess importing the model) is most of save_model's time.
    tanh = keras.Sequential([keras.Input(shape=(784,)), *layers])
    mlflow.keras.save_model(tanh, str(tmp_path / "tanh"), pip_requirements=["keras"])
    assert mnist_model.saved_weights_forward(tmp_path / "tanh") is None  # tanh: not what the products compute
    assert mnist_model.saved_weights_forward(tmp_path) is None  # no data/model.keras at all
