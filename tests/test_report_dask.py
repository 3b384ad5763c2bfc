"""``edgelearn report --executor dask``: a sweep on the workers of a dask scheduler (a two-worker LocalCluster of
processes, one thread each) gives the local pool's files, resumes, and refuses a missing dask or scheduler."""
import importlib
import json
import socket
import sys

import pytest
from helpers import cli_one_line_error

from edgelearn.cli import main
from edgelearn.network import EMBEDDED_DIR
from edgelearn.report import SweepConfig, sweep
from edgelearn.report.sweep import PLAN_FILE, RUNS_DIR

sweep_mod = importlib.import_module("edgelearn.report.sweep")  # the package's ``sweep`` is the function

#: wall time of a run: the only field of a run's file that may differ between two executions of it
WALL_TIME = "seconds"


def tiny() -> SweepConfig:
    """2 rules x 2 word lengths x 1 seed on the embedded digits MLP, with tiny float references (online SGD and the
    config's optimiser)."""
    return SweepConfig(config=str(EMBEDDED_DIR / "digits-mlp.yaml"), rules=["drtp", "sdfa"], bits=[6, 8],
                       roundings=["preset"], seeds=1, epochs=1, n_train=120, n_test=60, float_reference=True)


@pytest.fixture(scope="module")
def scheduler():
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                  scheduler_port=0) as cluster:
        yield cluster.scheduler_address


def without_wall_time(path) -> tuple[dict, list[str]]:
    """A run file's fields less its wall time, and its lines less the wall time's."""
    text = path.read_text()
    data = json.loads(text)
    data.pop(WALL_TIME, None)
    return data, [line for line in text.splitlines() if not line.lstrip().startswith(f'"{WALL_TIME}":')]


def test_dask_sweep_gives_the_local_pools_files_written_by_the_client(tmp_path, scheduler, monkeypatch):
    cfg = tiny()
    local = sweep(cfg, tmp_path / "local", jobs=2, progress=False)
    written = []
    write = sweep_mod.write_json_atomic
    monkeypatch.setattr(sweep_mod, "write_json_atomic", lambda p, d, **kw: (written.append(p.name), write(p, d, **kw)))
    remote = sweep(cfg, tmp_path / "dask", progress=False, scheduler=scheduler)
    names = sorted(k.name for k in cfg.keys())
    assert sorted(local) == sorted(remote) == names and len(names) == 8
    # the client wrote every run file (and the plan): the workers need not share OUT's file system
    assert sorted(written) == sorted([PLAN_FILE] + [f"{n}.json" for n in names])
    a, b = tmp_path / "local", tmp_path / "dask"
    assert (a / PLAN_FILE).read_bytes() == (b / PLAN_FILE).read_bytes()
    assert sorted(p.name for p in (b / RUNS_DIR).iterdir()) == [f"{n}.json" for n in names]
    for n in names:
        # key by key and line by line, the wall time excepted; the float references have none: byte for byte
        assert without_wall_time(a / RUNS_DIR / f"{n}.json") == without_wall_time(b / RUNS_DIR / f"{n}.json"), n
        if n.startswith(("float-", "online-")):
            assert (a / RUNS_DIR / f"{n}.json").read_bytes() == (b / RUNS_DIR / f"{n}.json").read_bytes(), n
    fixed = json.loads((b / RUNS_DIR / "fixed-drtp-8b-preset-s0.json").read_text())
    assert fixed["complete"] and fixed["test_accuracy"] > 0.15  # it learned: 10 classes, chance 0.1


def test_dask_sweep_resumes_after_an_interrupt(tmp_path, scheduler, monkeypatch, capsys):
    cfg = tiny()
    cfg.float_reference = cfg.online_reference = False
    runs = tmp_path / RUNS_DIR
    write = sweep_mod.write_json_atomic

    def interrupted(path, data, **kw):
        write(path, data, **kw)
        if path.parent == runs:  # Ctrl-C once the first run has come back
            raise KeyboardInterrupt

    monkeypatch.setattr(sweep_mod, "write_json_atomic", interrupted)
    with pytest.raises(KeyboardInterrupt):
        sweep(cfg, tmp_path, progress=False, scheduler=scheduler)
    monkeypatch.undo()
    kept = sorted(p.name for p in runs.iterdir())
    assert len(kept) == 1
    before = (runs / kept[0]).read_bytes()
    again = sweep(cfg, tmp_path, progress=False, scheduler=scheduler)
    # the run already there is not recomputed (its file untouched), the three others are
    assert sorted(again) == sorted(k.name for k in cfg.keys() if f"{k.name}.json" != kept[0]) and len(again) == 3
    assert (runs / kept[0]).read_bytes() == before
    # the command line, same sweep: nothing left to run, and the report rendered from the client's files
    argv = ["report", "--rules", "drtp,sdfa", "--bits", "6,8", "--seeds", "1", "--epochs", "1", "--n-train", "120",
            "--n-test", "60", "--no-float-reference", "--quiet", "--out", str(tmp_path),
            "--executor", "dask", "--scheduler", scheduler]
    assert main(argv) == 0
    assert "ran 0 run(s); 4 already done" in capsys.readouterr().out
    assert (tmp_path / "report.md").exists()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _argv(out) -> list[str]:
    return ["report", "--rules", "drtp", "--bits", "8", "--seeds", "1", "--n-train", "60", "--n-test", "30",
            "--no-float-reference", "--quiet", "--out", str(out)]


def test_without_dask_one_line_names_the_extra(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed: ImportError
    out = tmp_path / "r"
    cli_one_line_error(capsys, _argv(out) + ["--executor", "dask", "--scheduler", "tcp://127.0.0.1:8786"],
                       "pip install 'edgelearn[cluster]'")
    assert not out.exists()


def test_an_unreachable_scheduler_is_refused_in_seconds(tmp_path, capsys, monkeypatch):
    pytest.importorskip("distributed")
    monkeypatch.setattr(sweep_mod, "SCHEDULER_TIMEOUT_S", 1)
    out = tmp_path / "r"
    address = f"tcp://127.0.0.1:{_closed_port()}"
    cli_one_line_error(capsys, _argv(out) + ["--executor", "dask", "--scheduler", address],
                       f"cannot reach the dask scheduler at {address}")
    cli_one_line_error(capsys, _argv(out) + ["--executor", "dask", "--scheduler", "no port"],
                       "cannot reach the dask scheduler at no port")
    assert not out.exists()


@pytest.mark.parametrize("extra", [["--executor", "dask"], ["--scheduler", "tcp://127.0.0.1:8786"]])
def test_executor_and_scheduler_go_together(tmp_path, capsys, extra):
    out = tmp_path / "r"
    cli_one_line_error(capsys, _argv(out) + extra, "--executor dask and --scheduler ADDRESS go together")
    assert not out.exists()
