"""Output paths and output files of every command that writes: a bad --out is refused before any work, with one
line and nothing written; --out may be relative whatever folder a step runs in; files get the user's umask."""
from __future__ import annotations

import contextlib
import importlib
import os
import stat
from pathlib import Path

import pytest
from helpers import cli_one_line_error
from test_download import serve_mnist, server  # noqa: F401  (server: the loopback HTTP fixture)

from edgelearn import fileio
from edgelearn.cli import main
from edgelearn.errors import OutputError

#: command -> (argv before the output folder, its flag, (module, attribute) of the command's first real work)
COMMANDS = {
    "simulate": (["simulate", "-q", "--epochs", "1"], "--out", ("edgelearn.data", "load_dataset")),
    "train": (["train", "-q", "--epochs", "1"], "--out", ("edgelearn.train", "train")),
    "rtl": (["rtl"], "--out", ("edgelearn.commands.rtl", "engine_from_args")),
    "export-hls": (["export-hls", "--no-hls4ml"], "--out", ("edgelearn.commands.export_hls", "engine_from_args")),
    "report": (["report", "-q", "--rules", "drtp", "--bits", "8", "--seeds", "1"], "--out",
               ("edgelearn.report", "sweep")),
    "reproduce": (["reproduce", "drtp-synthetic", "-q"], "--out", ("edgelearn.report.reproduce", "reproduce")),
    "data download": (["data", "download", "mnist", "--base-url", "http://127.0.0.1:9/", "--no-progress"],
                      "--data-dir", ("edgelearn.data.download", "download")),
}


def tree(folder: Path) -> dict[str, tuple[int, bytes]]:
    """Every entry below ``folder`` with its mode and (for files) content."""
    return {str(p.relative_to(folder)): (p.lstat().st_mode, p.read_bytes() if p.is_file() else b"")
            for p in sorted(folder.rglob("*"))}


@pytest.fixture
def no_work(monkeypatch):
    """Make each command's first real work fail loudly: a refused --out must be refused before it."""
    def boom(*args, **kwargs):
        raise AssertionError("the command started working before checking its output path")

    for _, _, (module, attr) in COMMANDS.values():
        monkeypatch.setattr(importlib.import_module(module), attr, boom)


@contextlib.contextmanager
def umask(mask: int):
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# ------------------------------------------------------------------------------------------------ refused --out
def _refused(capsys, monkeypatch, tmp_path, command: str, out: str, match: str) -> None:
    argv, flag, _ = COMMANDS[command]
    monkeypatch.chdir(tmp_path)
    before = tree(tmp_path)
    cli_one_line_error(capsys, [*argv, flag, out], match)
    assert tree(tmp_path) == before, "something was written"


@pytest.mark.parametrize("command", COMMANDS)
def test_out_is_an_existing_file(capsys, monkeypatch, tmp_path, no_work, command):
    (tmp_path / "f").write_text("keep me\n")
    _refused(capsys, monkeypatch, tmp_path, command, "f", "f: exists and is not a directory")


@pytest.mark.parametrize("command", COMMANDS)
def test_out_below_a_file(capsys, monkeypatch, tmp_path, no_work, command):
    (tmp_path / "f").write_text("keep me\n")
    _refused(capsys, monkeypatch, tmp_path, command, "f/run/sub", f"{tmp_path.resolve() / 'f'} is not a directory")


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs Linux's /proc")
@pytest.mark.parametrize("command", COMMANDS)
def test_out_where_nobody_may_write(capsys, monkeypatch, tmp_path, no_work, command):
    # /proc refuses new entries even to root, whose permission bits are never enforced
    _refused(capsys, monkeypatch, tmp_path, command, "/proc/edgelearn-out/run", "cannot write in /proc")


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores permission bits (the /proc test covers the check)")
@pytest.mark.parametrize("command", COMMANDS)
def test_out_in_a_read_only_folder(capsys, monkeypatch, tmp_path, no_work, command):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        _refused(capsys, monkeypatch, tmp_path, command, "ro", "cannot write in")
        _refused(capsys, monkeypatch, tmp_path, command, "ro/new", "cannot write in")
    finally:
        ro.chmod(0o755)


def test_train_checks_every_variant_and_the_default_folder_first(capsys, monkeypatch, tmp_path, no_work):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").write_text("")  # the default output root is a file
    cli_one_line_error(capsys, ["train", "-q"], "runs is not a directory")
    out = tmp_path / "all"
    out.mkdir()
    (out / "full").write_text("")  # the second variant's folder is a file: refused before the first one runs
    cli_one_line_error(capsys, ["train", "-c", "experiments/ldfa-fig3e-vgg", "--variant", "all", "--smoke",
                                "--out", "all"], "full: exists and is not a directory")


def test_output_dir_is_absolute_and_creates_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    p = fileio.output_dir("a/b")
    assert p == tmp_path.resolve() / "a" / "b" and not (tmp_path / "a").exists()
    assert list(tmp_path.iterdir()) == []  # the write probe is gone
    (tmp_path / "d").mkdir()
    assert fileio.output_dir("d", staged=True) == tmp_path.resolve() / "d"
    (tmp_path / "x").write_text("")
    with pytest.raises(OutputError, match="--data-dir x: exists"):
        fileio.output_dir("x", "--data-dir")


# ------------------------------------------------------------------------------------------------ relative --out
# rtl --check with a relative --out: tests/test_rtl_cli.py::test_check_icarus_on_the_embedded_default


# ------------------------------------------------------------------------------------------------ file modes
@pytest.mark.parametrize("mask", [0o022, 0o027], ids=["umask022", "umask027"])
def test_atomic_writers_follow_the_umask(tmp_path, mask):
    with umask(mask):
        fileio.write_text_atomic(tmp_path / "t.txt", "x")
        fileio.write_bytes_atomic(tmp_path / "b.bin", b"x")
        fileio.write_json_atomic(tmp_path / "j.json", {"a": 1})
    for name in ("t.txt", "b.bin", "j.json"):
        assert mode(tmp_path / name) == 0o666 & ~mask, name
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.bin", "j.json", "t.txt"]


def test_atomic_open_leaves_nothing_on_failure(tmp_path):
    (tmp_path / "old.json").write_text("old")
    with pytest.raises(RuntimeError), fileio.atomic_open(tmp_path / "old.json") as fh:
        fh.write("half")
        raise RuntimeError
    assert [p.name for p in tmp_path.iterdir()] == ["old.json"]
    assert (tmp_path / "old.json").read_text() == "old"


def test_simulate_and_train_outputs_follow_the_umask(capsys, tmp_path):
    with umask(0o027):
        assert main(["simulate", "-q", "--epochs", "1", "--n-train", "40", "--n-test", "20", "--no-twin",
                     "--out", str(tmp_path / "sim")]) == 0
        assert main(["train", "-q", "--epochs", "1", "--n-train", "64", "--n-test", "32", "--no-probe",
                     "--device", "cpu", "--out", str(tmp_path / "tr")]) == 0
    capsys.readouterr()
    for rel in ("sim/results.json", "sim/weights.npz", "sim/weights.json", "tr/metrics.json", "tr/checkpoint.pt"):
        assert mode(tmp_path / rel) == 0o640, rel
    assert not list(tmp_path.rglob(".*")), "a temporary file was left behind"


def test_downloaded_files_follow_the_umask(server, tmp_path, monkeypatch, capsys):
    root, base, _ = server
    arrays = serve_mnist(root, monkeypatch)
    with umask(0o027):
        assert main(["data", "download", "mnist", "--data-dir", str(tmp_path / "dest"), "--base-url", base,
                     "--no-progress"]) == 0
    capsys.readouterr()
    assert sorted(p.name for p in (tmp_path / "dest").iterdir()) == sorted(f"{s}.gz" for s in arrays)
    for p in (tmp_path / "dest").iterdir():
        assert mode(p) == 0o640, p.name
