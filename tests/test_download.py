"""The downloader, offline: a loopback HTTP server (127.0.0.1, port 0) serves small generated files, and the
checksum tables are patched to their md5s."""
from __future__ import annotations

import functools
import gzip
import hashlib
import http.server
import io
import pickle
import tarfile
import threading
from pathlib import Path

import numpy as np
import pytest

from edgelearn.cli import main
from edgelearn.data import download as dl
from edgelearn.data import load_dataset
from edgelearn.data.idx import encode_idx
from edgelearn.errors import DataError
from needs import SHARED_DATA, require_data

SHARED_MNIST = SHARED_DATA / "mnist"


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    requests: list[str]

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:
        self.requests.append(self.path)
        super().do_GET()


@pytest.fixture
def server(tmp_path, monkeypatch):
    """(root folder served, base URL, list of requested paths)."""
    root = tmp_path / "srv"
    root.mkdir()
    requests: list[str] = []
    handler = functools.partial(type("H", (_QuietHandler,), {"requests": requests}), directory=str(root))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    try:
        yield root, f"http://127.0.0.1:{httpd.server_address[1]}/", requests
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def serve_mnist(root: Path, monkeypatch) -> dict[str, np.ndarray]:
    """Tiny valid MNIST gz files in ``root``, with ARCHIVE_MD5 patched to their md5s."""
    rng = np.random.default_rng(0)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (16, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": (np.arange(16) % 10).astype(np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (6, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": (np.arange(6) % 10).astype(np.uint8),
    }
    for stem, arr in arrays.items():
        data = gzip.compress(encode_idx(arr), mtime=0)
        (root / f"{stem}.gz").write_bytes(data)
        monkeypatch.setitem(dl.ARCHIVE_MD5, f"{stem}.gz", md5(data))
        monkeypatch.setitem(dl.CONTENT_MD5["mnist"], stem, md5(encode_idx(arr)))
    return arrays


def make_tar(members: dict[str, bytes], *, symlink: tuple[str, str] | None = None) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        if symlink:
            info = tarfile.TarInfo(symlink[0])
            info.type = tarfile.SYMTYPE
            info.linkname = symlink[1]
            tar.addfile(info)
    return buf.getvalue()


def cifar_members(n: int = 6) -> dict[str, bytes]:
    rng = np.random.default_rng(1)

    def batch(k):
        return pickle.dumps({b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                             b"labels": [int(v) for v in rng.integers(0, 10, n)]}, protocol=2)

    return {
        "cifar-10-batches-py/data_batch_1": batch(1),
        "cifar-10-batches-py/test_batch": batch(2),
        "cifar-10-batches-py/batches.meta": pickle.dumps({b"label_names": [b"c%d" % i for i in range(10)]}, 2),
    }


def serve_cifar(root: Path, monkeypatch, data: bytes) -> None:
    (root / "cifar-10-python.tar.gz").write_bytes(data)
    monkeypatch.setitem(dl.ARCHIVE_MD5, "cifar-10-python.tar.gz", md5(data))


def files_in(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) if folder.exists() else []


# ------------------------------------------------------------------------------------------------------ MNIST
def test_download_mnist_good(server, tmp_path, monkeypatch):
    root, base, requests = server
    arrays = serve_mnist(root, monkeypatch)
    dest = tmp_path / "dest" / "mnist"
    out = dl.download("mnist", dest, base_url=base, progress=False, timeout=10)
    assert out == dest
    assert files_in(dest) == sorted(f"{s}.gz" for s in arrays)
    for name in files_in(dest):
        assert (dest / name).read_bytes() == (root / name).read_bytes()
    ds = load_dataset("mnist", dest)
    np.testing.assert_array_equal(ds.y_train, arrays["train-labels-idx1-ubyte"])
    assert ds.x_test.shape == (6, 1, 28, 28)
    assert len(requests) == 4
    # already there with the right md5: nothing is fetched again
    assert dl.download("mnist", dest, base_url=base, progress=False, timeout=10) == dest
    assert len(requests) == 4
    assert set(dl.verify("mnist", dest)) == {f"{s}.gz" for s in arrays}


def test_download_with_progress_bar(server, tmp_path, monkeypatch, capsys):
    root, base, _ = server
    serve_mnist(root, monkeypatch)
    dl.download("mnist", tmp_path / "d", base_url=base, progress=True, timeout=10)
    assert len(files_in(tmp_path / "d")) == 4
    assert "train-images" in capsys.readouterr().err


def test_checksum_mismatch_leaves_nothing(server, tmp_path, monkeypatch):
    root, base, _ = server
    serve_mnist(root, monkeypatch)
    monkeypatch.setitem(dl.ARCHIVE_MD5, "t10k-images-idx3-ubyte.gz", "0" * 32)
    dest = tmp_path / "dest"
    with pytest.raises(DataError) as ei:
        dl.download("mnist", dest, base_url=base, progress=False, timeout=10)
    msg = str(ei.value)
    assert "\n" not in msg and "checksum mismatch" in msg and "t10k-images-idx3-ubyte.gz" in msg
    assert "0" * 32 in msg and md5((root / "t10k-images-idx3-ubyte.gz").read_bytes()) in msg
    assert files_in(dest) == []  # not even the files that did verify, nor any temporary file


def test_http_404(server, tmp_path, monkeypatch):
    root, base, _ = server
    serve_mnist(root, monkeypatch)
    (root / "t10k-labels-idx1-ubyte.gz").unlink()
    dest = tmp_path / "dest"
    with pytest.raises(DataError) as ei:
        dl.download("mnist", dest, base_url=base, progress=False, timeout=10)
    msg = str(ei.value)
    assert "\n" not in msg and "HTTP 404" in msg and "t10k-labels-idx1-ubyte.gz" in msg
    assert files_in(dest) == []


def test_unreachable_server_and_bad_arguments(tmp_path):
    with pytest.raises(DataError, match="cannot download"):
        dl.download("mnist", tmp_path / "d", base_url="http://127.0.0.1:9/", progress=False, timeout=2)
    assert files_in(tmp_path / "d") == []
    with pytest.raises(DataError, match="http://, https:// or file://"):
        dl.download("mnist", tmp_path / "d", base_url="ftp://example.org/", progress=False)
    with pytest.raises(DataError, match="cannot download 'digits'"):
        dl.download("digits", tmp_path / "d", progress=False)


def test_file_url_mirror(tmp_path, monkeypatch):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    serve_mnist(mirror, monkeypatch)
    out = dl.download("mnist", tmp_path / "d", base_url=mirror.as_uri(), progress=False)
    assert len(files_in(out)) == 4


# ------------------------------------------------------------------------------------------------------ CIFAR
def test_download_cifar10_good(server, tmp_path, monkeypatch):
    root, base, _ = server
    members = cifar_members()
    serve_cifar(root, monkeypatch, make_tar(members))
    dest = tmp_path / "dest"
    out = dl.download("cifar10", dest, base_url=base, progress=False, timeout=10)
    assert out == dest / "cifar-10-batches-py"
    assert files_in(dest) == ["cifar-10-batches-py", "cifar-10-batches-py/batches.meta",
                              "cifar-10-batches-py/data_batch_1", "cifar-10-batches-py/test_batch",
                              "cifar-10-python.tar.gz"]
    ds = load_dataset("cifar10", dest)
    assert ds.x_train.shape == (6, 3, 32, 32) and ds.extra["label_names"][3] == "c3"


@pytest.mark.parametrize("bad_name", ["cifar-10-batches-py/../../evil.txt", "/tmp/edgelearn-evil.txt",
                                      "../evil.txt"])
def test_tar_with_unsafe_path_is_rejected(server, tmp_path, monkeypatch, bad_name):
    root, base, _ = server
    members = cifar_members()
    members[bad_name] = b"gotcha"
    serve_cifar(root, monkeypatch, make_tar(members))
    dest = tmp_path / "a" / "dest"
    with pytest.raises(DataError) as ei:
        dl.download("cifar10", dest, base_url=base, progress=False, timeout=10)
    msg = str(ei.value)
    assert "\n" not in msg and "unsafe member path" in msg and bad_name in msg
    assert files_in(dest) == []
    assert not (tmp_path / "a" / "evil.txt").exists() and not (tmp_path / "evil.txt").exists()
    assert not Path("/tmp/edgelearn-evil.txt").exists()


def test_tar_with_symlink_is_rejected(server, tmp_path, monkeypatch):
    root, base, _ = server
    serve_cifar(root, monkeypatch, make_tar(cifar_members(), symlink=("cifar-10-batches-py/x", "/etc/passwd")))
    with pytest.raises(DataError, match="link or special file"):
        dl.download("cifar10", tmp_path / "dest", base_url=base, progress=False, timeout=10)
    assert files_in(tmp_path / "dest") == []


def test_corrupt_tar_is_rejected(server, tmp_path, monkeypatch):
    root, base, _ = server
    serve_cifar(root, monkeypatch, gzip.compress(b"not a tar archive" * 100))
    with pytest.raises(DataError, match="corrupt archive"):
        dl.download("cifar10", tmp_path / "dest", base_url=base, progress=False, timeout=10)
    assert files_in(tmp_path / "dest") == []


# ----------------------------------------------------------------------------------------------------- verify
def test_verify_mismatch(tmp_path, monkeypatch):
    serve_mnist(tmp_path, monkeypatch)
    assert len(dl.verify("mnist", tmp_path)) == 4
    monkeypatch.setitem(dl.CONTENT_MD5["mnist"], "train-labels-idx1-ubyte", "f" * 32)
    with pytest.raises(DataError) as ei:
        dl.verify("mnist", tmp_path)
    assert "checksum mismatch" in str(ei.value) and "train-labels-idx1-ubyte.gz" in str(ei.value)
    assert main(["data", "verify", "mnist", "--data-dir", str(tmp_path)]) == 2


@pytest.mark.data
def test_verify_real_mnist(capsys):
    require_data(SHARED_MNIST, "real MNIST")
    result = dl.verify("mnist", SHARED_MNIST)
    assert result["train-images-idx3-ubyte.gz"] == "6bbc9ace898e44ae57da46a324031adb"
    assert result["t10k-labels-idx1-ubyte.gz"] == "27ae3e4e09519cfbb04c329615203637"
    assert main(["data", "verify", "mnist", "--data-dir", str(SHARED_MNIST)]) == 0
    assert "4 files match" in capsys.readouterr().out


# -------------------------------------------------------------------------------------------------------- CLI
def test_cli_download(server, tmp_path, monkeypatch, capsys):
    root, base, _ = server
    serve_mnist(root, monkeypatch)
    dest = tmp_path / "cli"
    assert main(["data", "download", "mnist", "--dir", str(dest), "--base-url", base, "--no-progress"]) == 0
    assert str(dest) in capsys.readouterr().out
    assert len(files_in(dest)) == 4
    (root / "train-images-idx3-ubyte.gz").unlink()
    assert main(["data", "download", "mnist", "--dir", str(tmp_path / "cli2"), "--base-url", base,
                 "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "HTTP 404" in err[0]
