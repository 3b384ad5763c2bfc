"""Downloading MNIST and CIFAR-10/100 with checksum verification, and verifying local copies.

Every archive is fetched (urllib only) into a temporary file inside the destination directory, its md5 is
checked against :data:`ARCHIVE_MD5`, and only then is it renamed into place, so a failed or tampered download
leaves nothing behind. CIFAR tarballs are extracted into a temporary folder after checking every member (no
absolute paths, no ``..``, only regular files and folders) and moved into place when complete.
"""
from __future__ import annotations

import contextlib
import hashlib
import http.client
import os
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import zlib
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

from ..errors import DataError
from ..fileio import make_temp
from .files import md5_of_file, one_line
from .mnist import MNIST_FILES, find_idx_file, mnist_dir
from .paths import resolve_data_dir

DEFAULT_BASE_URLS = {
    "mnist": "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "cifar10": "https://www.cs.toronto.edu/~kriz/",
    "cifar100": "https://www.cs.toronto.edu/~kriz/",
}
DOWNLOADABLE = tuple(DEFAULT_BASE_URLS)

# files fetched per dataset
DOWNLOAD_FILES = {
    "mnist": tuple(f"{stem}.gz" for stem in MNIST_FILES.values()),
    "cifar10": ("cifar-10-python.tar.gz",),
    "cifar100": ("cifar-100-python.tar.gz",),
}
# folder a CIFAR archive extracts to, and the files it must contain
ARCHIVE_FOLDER = {"cifar10": "cifar-10-batches-py", "cifar100": "cifar-100-python"}

# md5 of the published archives, checked before anything is moved into place (tests patch this dict)
ARCHIVE_MD5 = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
    "cifar-10-python.tar.gz": "c58f30108f718f92721af3b95e74349a",
    "cifar-100-python.tar.gz": "eb9058c3a382ffc7106e4002c42a8d85",
}

# md5 of the data files themselves (MNIST: decompressed IDX), used by verify()
CONTENT_MD5 = {
    "mnist": {
        "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
        "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
        "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
        "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
    },
    "cifar10": {
        "data_batch_1": "c99cafc152244af753f735de768cd75f",
        "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
        "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
        "data_batch_4": "634d18415352ddfa80567beed471001a",
        "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
        "test_batch": "40351d587109b95175f43aff81a1287e",
        "batches.meta": "5ff9c542aee3614f3951f8cda6e48888",
    },
    "cifar100": {
        "train": "16019d7e3df5f24257cddd939b257f8d",
        "test": "f0ef6b0ae62326f3e7ffdfab6717acfc",
        "meta": "7973b15100ade9c7d40fb424638fde48",
    },
}

_CHUNK = 1 << 16


def _check_downloadable(name: str) -> str:
    key = name.strip().lower() if isinstance(name, str) else name
    if key not in DOWNLOADABLE:
        raise DataError(f"cannot download '{name}': downloadable datasets are {', '.join(DOWNLOADABLE)} "
                        f"(digits ships with scikit-learn; synthetic, cosine and lowrank are generated)")
    return key


def _url(base_url: str, filename: str) -> str:
    scheme = urllib.parse.urlsplit(base_url).scheme
    if scheme not in ("http", "https", "file"):
        raise DataError(f"base URL {base_url!r} must start with http://, https:// or file://")
    return base_url.rstrip("/") + "/" + filename


@contextlib.contextmanager
def _progress(enabled: bool) -> Iterator[object | None]:
    if not enabled:
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, \
        TransferSpeedColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                  TimeRemainingColumn(), console=Console(stderr=True)) as bar:
        yield bar


def _fetch(url: str, dest_dir: Path, filename: str, *, bar, timeout: float) -> Path:
    """Download ``url`` to a temporary file in ``dest_dir`` and check its md5; returns the temporary path."""
    expected = ARCHIVE_MD5.get(filename)
    if expected is None:
        raise DataError(f"no known md5 for {filename}; refusing to download an unverifiable file")
    try:
        request = urllib.request.Request(url, headers={"User-Agent": "edgelearn-data"})
    except ValueError as exc:
        raise DataError(f"bad download URL {url!r}: {one_line(exc)}") from None
    try:
        fd, tmp_name = make_temp(dest_dir, prefix=f".{filename}.", suffix=".part")  # umask mode, not 0600
    except OSError as exc:
        raise DataError(f"cannot write to {dest_dir} ({one_line(exc)})") from None
    tmp = Path(tmp_name)
    h = hashlib.md5(usedforsecurity=False)
    ok = False
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(request, timeout=timeout) as resp:
            length = resp.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            task = bar.add_task(filename, total=total) if bar is not None else None
            written = 0
            while block := resp.read(_CHUNK):
                out.write(block)
                h.update(block)
                written += len(block)
                if task is not None:
                    bar.update(task, advance=len(block))
        if total is not None and written != total:
            raise DataError(f"download of {url} is incomplete: got {written} of {total} bytes")
        got = h.hexdigest()
        if got != expected:
            raise DataError(f"checksum mismatch for {filename} from {url}: expected md5 {expected}, got {got}")
        ok = True
        return tmp
    except urllib.error.HTTPError as exc:
        raise DataError(f"download of {url} failed: HTTP {exc.code} {one_line(exc.reason) if exc.reason else ''}"
                        .rstrip()) from None
    except urllib.error.URLError as exc:
        raise DataError(f"cannot download {url}: {one_line(exc.reason)}") from None
    except (OSError, http.client.HTTPException, ValueError) as exc:
        raise DataError(f"download of {url} failed: {type(exc).__name__}: {one_line(exc)}") from None
    finally:
        if not ok:
            tmp.unlink(missing_ok=True)


def _have(path: Path, filename: str) -> bool:
    """True when ``path`` exists and already has the published md5."""
    return path.is_file() and md5_of_file(path) == ARCHIVE_MD5.get(filename)


def _safe_members(tar: tarfile.TarFile, archive: str) -> list[tarfile.TarInfo]:
    members = tar.getmembers()
    for m in members:
        parts = PurePosixPath(m.name).parts
        if m.name.startswith(("/", "\\")) or PurePosixPath(m.name).is_absolute() or ".." in parts \
                or (parts and ":" in parts[0]):
            raise DataError(f"{archive}: unsafe member path '{m.name}' in archive; refusing to extract")
        if not (m.isfile() or m.isdir()):
            raise DataError(f"{archive}: member '{m.name}' is a link or special file; refusing to extract")
    return members


def extract_tar(archive: Path, dest_dir: Path, folder: str, *, label: str | None = None) -> Path:
    """Safely extract ``archive`` and move its top ``folder`` to ``dest_dir/folder`` once complete.

    ``label`` names the archive in error messages (default: its path).
    """
    label = label or str(archive)
    work = Path(tempfile.mkdtemp(dir=dest_dir, prefix=".edgelearn-extract-"))
    try:
        try:
            with tarfile.open(archive, "r:*") as tar:
                members = _safe_members(tar, label)
                if hasattr(tarfile, "data_filter"):
                    tar.extractall(work, members=members, filter="data")
                else:  # pragma: no cover - Python without extraction filters
                    tar.extractall(work, members=members)
        except (tarfile.TarError, EOFError, zlib.error) as exc:
            raise DataError(f"{label}: corrupt archive ({one_line(exc)})") from None
        except OSError as exc:
            raise DataError(f"{label}: cannot extract ({one_line(exc)})") from None
        src = work / folder
        if not src.is_dir():
            raise DataError(f"{label}: archive has no '{folder}/' folder")
        target = dest_dir / folder
        target.mkdir(exist_ok=True)
        for item in sorted(src.rglob("*")):
            rel = item.relative_to(src)
            if item.is_dir():
                (target / rel).mkdir(parents=True, exist_ok=True)
            else:
                (target / rel).parent.mkdir(parents=True, exist_ok=True)
                os.replace(item, target / rel)
        return target
    finally:
        shutil.rmtree(work, ignore_errors=True)


def download(name: str, dest_dir: str | os.PathLike, *, base_url: str | None = None, progress: bool = True,
             timeout: float = 60.0) -> Path:
    """Download dataset ``name`` (mnist, cifar10, cifar100) into ``dest_dir``; returns the folder holding its
    files, ready for ``load_dataset(name, <that folder>)``.

    MNIST: the four ``*.gz`` IDX files land directly in ``dest_dir``. CIFAR: the tarball is kept in ``dest_dir``
    and extracted to ``dest_dir/cifar-10-batches-py`` (``cifar-100-python``). Files already present with the
    right md5 are not fetched again. Each archive's md5 must match :data:`ARCHIVE_MD5` before it is moved into
    place; on any failure nothing new is left in ``dest_dir``.
    """
    key = _check_downloadable(name)
    dest = Path(dest_dir).expanduser()
    # the folders made here go again if the download fails (nothing left behind); deepest first
    created = [d for d in (dest, *dest.parents) if not d.exists()]
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"cannot create download directory {dest} ({one_line(exc)})") from None
    base = base_url or DEFAULT_BASE_URLS[key]
    files = DOWNLOAD_FILES[key]
    folder = ARCHIVE_FOLDER.get(key)
    if folder and all((dest / folder / f).is_file() for f in CONTENT_MD5[key] if f != "batches.meta"):
        return dest / folder
    needed = [f for f in files if not _have(dest / f, f)]
    fetched: dict[str, Path] = {}
    target = dest
    try:
        with _progress(progress) as bar:
            for filename in needed:
                fetched[filename] = _fetch(_url(base, filename), dest, filename, bar=bar, timeout=timeout)
        if folder is not None:
            archive = files[0]
            target = extract_tar(fetched.get(archive, dest / archive), dest, folder, label=str(dest / archive))
        for filename, tmp in fetched.items():
            os.replace(tmp, dest / filename)
        fetched.clear()
        created = []
    finally:
        for tmp in fetched.values():
            tmp.unlink(missing_ok=True)
        for d in created:
            with contextlib.suppress(OSError):  # rmdir: only while it is empty
                d.rmdir()
    return target


def verify(name: str, data_dir: str | os.PathLike | None = None) -> dict[str, str]:
    """Check a local copy against the original release's file md5s (MNIST: of the decompressed IDX files).

    Returns ``{file: md5}`` for the checked files; a missing file or a mismatch is a DataError.
    """
    key = _check_downloadable(name)
    expected = CONTENT_MD5[key]
    if key == "mnist":
        folder = mnist_dir(data_dir)
        paths = {}
        for stem in expected:
            path = find_idx_file(folder, stem)
            if path is None:
                raise DataError(f"{folder}: missing MNIST file {stem} (or {stem}.gz)")
            paths[stem] = path
    else:
        folder = resolve_data_dir(key, data_dir, lambda d: any((d / f).is_file() for f in expected),
                                  ", ".join(expected))
        paths = {f: folder / f for f in expected}
    result = {}
    for fname, path in paths.items():
        if not path.is_file():
            raise DataError(f"{folder}: missing {key} file {fname}")
        got = md5_of_file(path, decompress=path.suffix == ".gz")
        if got != expected[fname]:
            what = "decompressed content of " if path.suffix == ".gz" else ""
            raise DataError(f"checksum mismatch for {what}{path}: expected md5 {expected[fname]}, got {got}")
        result[path.name] = got
    return result
