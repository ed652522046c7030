"""Reading MNIST IDX files (mnist_data.load_mnist), the verify/where CLI, and the real data when present."""

import gzip
import hashlib
import time

import numpy as np
import pytest

import mnist_data
from mnist_data import FILES, MnistDataError, load_mnist, main

pytestmark = pytest.mark.usefixtures("clean_data_env")

TRAIN_IMAGES, TRAIN_LABELS = FILES["train_images"], FILES["train_labels"]


def assert_tiny(data, tiny_mnist):
    assert isinstance(data, mnist_data.Mnist)
    for got, want in zip(data, tiny_mnist, strict=True):
        assert got.dtype == np.uint8
        np.testing.assert_array_equal(got, want)
    assert data.train_images.shape == (20, 28, 28) and data.test_labels.shape == (10,)


@pytest.mark.parametrize("gz", [True, False], ids=["gz", "raw"])
def test_loads_files_from_a_nested_subfolder(tmp_path, write_mnist, tiny_mnist, gz):
    write_mnist(tmp_path / "mount" / "INPUT_data" / "mnist", gz=gz)
    data = load_mnist(tmp_path / "mount")
    assert_tiny(data, tiny_mnist)
    data.train_images[0, 0, 0] = 7  # writable: callers may shuffle or normalise in place


def test_mixed_gz_and_raw_and_str_path(tmp_path, write_mnist, idx_files, tiny_mnist):
    write_mnist(tmp_path, gz=True, files={k: v for k, v in idx_files.items() if "images" in k})
    write_mnist(tmp_path, gz=False, files={k: v for k, v in idx_files.items() if "labels" in k})
    assert_tiny(load_mnist(str(tmp_path)), tiny_mnist)


@pytest.mark.parametrize("shallow, deep", [(".", "old"), ("b", "a/deeper")])
def test_shallowest_copy_wins(tmp_path, write_mnist, idx_files, make_idx, tiny_mnist, shallow, deep):
    write_mnist(tmp_path / shallow)
    other = dict(idx_files, **{TRAIN_LABELS: make_idx(np.zeros(20, np.uint8))})
    write_mnist(tmp_path / deep, files=other)  # "a/deeper" is walked before "b": depth decides, not order
    assert_tiny(load_mnist(tmp_path), tiny_mnist)


@pytest.mark.parametrize("layout", ["gz-and-raw", "two-subfolders"])
def test_two_candidates_at_the_same_depth_is_an_error(tmp_path, write_mnist, layout):
    if layout == "gz-and-raw":
        write_mnist(tmp_path)
        write_mnist(tmp_path, gz=False)
    else:
        write_mnist(tmp_path / "a")
        write_mnist(tmp_path / "b")
    with pytest.raises(MnistDataError, match="two candidates for train-images-idx3-ubyte") as err:
        load_mnist(tmp_path)
    first, second = ("train-images-idx3-ubyte", "train-images-idx3-ubyte.gz")
    if layout == "two-subfolders":
        first, second = ("a/train-images-idx3-ubyte.gz", "b/train-images-idx3-ubyte.gz")
    assert first in str(err.value) and second in str(err.value)


def test_ignores_partial_downloads(tmp_path, write_mnist, idx_files, tiny_mnist):
    write_mnist(tmp_path)
    (tmp_path / f"{TRAIN_IMAGES}.gz.part").write_bytes(b"half a download")
    assert_tiny(load_mnist(tmp_path), tiny_mnist)


def _gz_corrupt(raw: bytes) -> bytes:
    data = bytearray(gzip.compress(raw, mtime=0))
    data[-8] ^= 0xFF  # the stored CRC: decompression succeeds, the check fails
    return bytes(data)


def _bad_files(make_idx, tiny_mnist, idx_files):
    """case -> (file name, its bytes, gzip it when writing?, words the error message must contain)."""
    images = idx_files[TRAIN_IMAGES]
    return {
        "truncated": (TRAIN_IMAGES, images[:-100], True, ["truncated", "15696 bytes", "got 15596"]),
        "trailing-bytes": (TRAIN_IMAGES, images + b"\0", False, ["trailing bytes"]),
        "corrupt-gzip-crc": (TRAIN_IMAGES + ".gz", _gz_corrupt(images), False, ["corrupt", "CRC"]),
        "truncated-gzip": (TRAIN_IMAGES + ".gz", gzip.compress(images)[:-20], False, ["corrupt or truncated gzip"]),
        "not-gzip": (TRAIN_IMAGES + ".gz", images, False, ["corrupt or truncated gzip"]),
        "wrong-magic": (TRAIN_IMAGES, make_idx(tiny_mnist[0], magic=2049), True, ["magic number 2049", "2051"]),
        "labels-magic": (TRAIN_LABELS, make_idx(tiny_mnist[1], magic=2051), True, ["magic number 2051", "2049"]),
        "wrong-dims": (TRAIN_IMAGES, make_idx(np.zeros((20, 32, 32), np.uint8)), True, ["32x32", "28x28"]),
        "empty": (TRAIN_LABELS, b"", False, ["0 bytes", "too short"]),
        "count-mismatch": (TRAIN_LABELS, make_idx(np.zeros(19, np.uint8)), True, ["20 images", "19 labels"]),
        "label-out-of-range": (TRAIN_LABELS, make_idx(np.full(20, 10, np.uint8)), True, ["label 10", "0..9"]),
    }


@pytest.mark.parametrize(
    "case",
    ["truncated", "trailing-bytes", "corrupt-gzip-crc", "truncated-gzip", "not-gzip", "wrong-magic",
     "labels-magic", "wrong-dims", "empty", "count-mismatch", "label-out-of-range"],
)  # fmt: skip
def test_bad_file_names_the_file_and_the_problem(tmp_path, write_mnist, make_idx, tiny_mnist, idx_files, case):
    name, content, compress, words = _bad_files(make_idx, tiny_mnist, idx_files)[case]
    write_mnist(tmp_path, files={k: v for k, v in idx_files.items() if not name.startswith(k)})
    path = tmp_path / (name + ".gz" if compress else name)
    path.write_bytes(gzip.compress(content) if compress else content)
    with pytest.raises(MnistDataError) as err:
        load_mnist(tmp_path)
    message = str(err.value)
    assert str(path) in message and "\n" not in message
    for word in words:
        assert word in message


def test_missing_file_names_it_and_the_folder(tmp_path, write_mnist, idx_files):
    write_mnist(tmp_path, files={k: v for k, v in idx_files.items() if k != TRAIN_LABELS})
    with pytest.raises(MnistDataError, match=r"missing train-labels-idx1-ubyte\[\.gz\]") as err:
        load_mnist(tmp_path)
    assert str(tmp_path) in str(err.value) and "t10k" not in str(err.value)


def test_missing_or_not_a_folder(tmp_path):
    with pytest.raises(MnistDataError, match="does not exist") as err:
        load_mnist(tmp_path / "nope")
    assert str(tmp_path / "nope") in str(err.value)
    (tmp_path / "file").write_text("x")
    with pytest.raises(MnistDataError, match="not a folder"):
        load_mnist(tmp_path / "file")


def test_empty_folder_lists_all_four_missing(tmp_path):
    with pytest.raises(MnistDataError) as err:
        load_mnist(tmp_path)
    assert all(name in str(err.value) for name in FILES.values())


# --------------------------------------------------------------------------------------------------- CLI


def test_cli_verify_bad_folder_is_one_line_exit_2(tmp_path, write_mnist, idx_files, capsys):
    write_mnist(tmp_path, files=dict(idx_files, **{TRAIN_IMAGES: idx_files[TRAIN_IMAGES][:-5]}))
    assert main(["verify", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err
    assert "train-images-idx3-ubyte.gz" in err and "truncated" in err


def test_cli_verify_missing_folder_and_usage_errors(tmp_path, capsys):
    assert main(["verify", str(tmp_path / "nope")]) == 2
    assert capsys.readouterr().err == f"error: {tmp_path / 'nope'}: data folder does not exist\n"
    assert main(["frobnicate"]) == 2
    assert main(["fetch", "--timeout", "soon"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and all(line.startswith("error: ") for line in err)


def test_cli_verify_tiny_folder_reports_counts_and_non_standard_checksums(tmp_path, write_mnist, capsys):
    write_mnist(tmp_path / "sub")
    assert main(["verify", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "20 train and 10 test images" in out
    assert "train images per digit 0-9: 2 2 2 2 2 2 2 2 2 2" in out
    assert "md5 differs from the published MNIST file" in out and "t10k-labels-idx1-ubyte.gz" in out


def test_cli_where_prefers_data_folder_and_never_downloads(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MNIST_MIRRORS", "http://127.0.0.1:9/")  # a fetch would fail; where must not try
    assert main(["where", "--data-folder", str(tmp_path)]) == 0
    assert capsys.readouterr().out == f"{tmp_path}\n"
    assert main(["where", "--cache", str(tmp_path / "cache")]) == 0
    captured = capsys.readouterr()
    assert captured.out == f"{tmp_path / 'cache'}\n" and "not filled yet" in captured.err
    assert not (tmp_path / "cache").exists()
    assert main(["where", "--data-folder", str(tmp_path / "nope")]) == 2


# ----------------------------------------------------------------------------------------- real MNIST


TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def test_real_mnist(real_mnist_dir):
    began = time.perf_counter()
    data = load_mnist(real_mnist_dir)
    assert time.perf_counter() - began < 5  # about 0.3 s here, almost all of it gunzip
    assert data.train_images.shape == (60000, 28, 28) and data.train_labels.shape == (60000,)
    assert data.test_images.shape == (10000, 28, 28) and data.test_labels.shape == (10000,)
    assert all(a.dtype == np.uint8 for a in data)
    assert np.bincount(data.train_labels).tolist() == TRAIN_COUNTS
    assert np.bincount(data.test_labels).tolist() == TEST_COUNTS
    assert round(float(data.train_images.mean()), 6) == 33.318421


def test_real_mnist_checksum_table(real_mnist_dir):
    for name, md5 in mnist_data.CHECKSUMS.items():
        assert mnist_data._gz_md5(real_mnist_dir / f"{name}.gz") == md5
    assert sorted(mnist_data.CHECKSUMS) == sorted(FILES.values())


def test_cli_verify_real_mnist(real_mnist_dir, capsys):
    assert main(["verify", str(real_mnist_dir)]) == 0
    out = capsys.readouterr().out
    assert "60000 train and 10000 test images" in out
    assert "all four files match the published MNIST checksums" in out


def test_md5_is_of_decompressed_content(tmp_path, idx_files):
    raw = idx_files[TRAIN_LABELS]
    for level in (1, 9):  # different gzip settings, same content: same checksum
        path = tmp_path / f"{level}.gz"
        path.write_bytes(gzip.compress(raw, compresslevel=level))
        assert mnist_data._gz_md5(path) == hashlib.md5(raw).hexdigest()
