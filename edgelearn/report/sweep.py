"""The float-vs-fixed sweep: one fixed-point engine run (with its float twin) per (rule, bits, rounding, seed),
plus one float-reference run per (rule, seed). Every run writes one JSON file, atomically, under ``OUT/runs/``;
a run whose file exists and parses is never recomputed, so an interrupted sweep resumes where it stopped.
The runs go to a local process pool, or to the workers of a dask scheduler, which return each result for this
process to write.
Before anything is written, :func:`check` builds every back end of every run once, so a sweep that some run
would refuse is refused whole and leaves no ``plan.json`` behind to block the corrected command.
"""
from __future__ import annotations

import json
import multiprocessing
import os
import time
import uuid
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..errors import ClusterError, ConfigError
from ..fileio import write_json_atomic

RUNS_DIR = "runs"
PLAN_FILE = "plan.json"


@dataclass(frozen=True)
class RunKey:
    kind: str  # "fixed" (engine + float twin) or "float" (torch reference)
    rule: str
    seed: int
    bits: int = 0
    rounding: str = "preset"

    @property
    def name(self) -> str:
        if self.kind == "float":
            return f"float-{self.rule}-s{self.seed}"
        return f"fixed-{self.rule}-{self.bits}b-{self.rounding}-s{self.seed}"


@dataclass
class SweepConfig:
    config: str
    rules: list[str]
    bits: list[int]
    roundings: list[str]
    seeds: int
    epochs: int = 1
    dataset: str | None = None
    data_dir: str | None = None
    n_train: int | None = None
    n_test: int | None = None
    float_reference: bool = True

    def keys(self) -> list[RunKey]:
        keys = []
        for rule in self.rules:
            for seed in range(self.seeds):
                if self.float_reference:
                    keys.append(RunKey("float", rule, seed))
                for bits in self.bits:
                    for rnd in self.roundings:
                        keys.append(RunKey("fixed", rule, seed, bits, rnd))
        return keys


def load_result(path: Path) -> dict[str, Any] | None:
    """A finished run's result, or None when the file is missing, truncated or not a result."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("complete") is True else None


def _dataset(cfg: SweepConfig, spec, seed: int):
    from ..data import load_dataset

    # the config's dataset parameters, as the float reference (train.load_data) reads them
    return load_dataset(cfg.dataset or spec.dataset, cfg.data_dir, seed=seed, n_train=cfg.n_train, n_test=cfg.n_test,
                        **spec.dataset_params)


def _engine(key: RunKey, spec):
    """The fixed-point engine of a run (its float twin is ``float_twin()`` of it)."""
    from ..fixed.engine import FixedEngine

    kw: dict[str, Any] = {}
    if key.rounding != "preset":
        kw["rounding"] = [("weight", key.rounding), ("bias", key.rounding)]
    return FixedEngine(spec, bits=key.bits, seed=key.seed, rule=key.rule, **kw)


def _float_args(cfg: SweepConfig, key: RunKey) -> dict[str, Any]:
    """Keyword arguments of ``train`` for a float-reference run."""
    return {"dataset": cfg.dataset, "data_dir": cfg.data_dir, "epochs": cfg.epochs, "seed": key.seed,
            "device": "cpu", "n_train": cfg.n_train, "n_test": cfg.n_test, "progress": False, "probe": True}


def run_fixed(cfg: SweepConfig, key: RunKey) -> dict[str, Any]:
    """Engine and float twin, online mode, test accuracy after every epoch."""
    from ..network import load_network

    spec = load_network(cfg.config)
    ds = _dataset(cfg, spec, key.seed)
    eng = _engine(key, spec)
    twin = eng.float_twin()
    curve, twin_curve = [], []
    t0 = time.perf_counter()
    for _ in range(cfg.epochs):
        eng.fit(ds.x_train, ds.y_train, epochs=1)
        twin.fit(ds.x_train, ds.y_train, epochs=1)
        curve.append(float(eng.evaluate(ds.x_test, ds.y_test)))
        twin_curve.append(float(twin.evaluate(ds.x_test, ds.y_test)))
    counters = eng.counters
    totals = {"overflow": 0, "zero": 0}
    for tensors in counters.values():
        for tname, c in tensors.items():
            if tname != "input":
                totals["overflow"] += int(c.get("overflow", 0))
            if tname in ("weight", "bias"):
                totals["zero"] += int(c.get("zero", 0))
    return {"test_accuracy": curve[-1], "float_test_accuracy": twin_curve[-1], "curve": curve,
            "twin_curve": twin_curve, "counters": counters, "overflow_events": totals["overflow"],
            "zero_updates": totals["zero"], "formats": eng.formats(), "seconds": time.perf_counter() - t0,
            "n_train": int(len(ds.x_train)), "n_test": int(len(ds.x_test))}


def run_float(cfg: SweepConfig, key: RunKey) -> dict[str, Any]:
    """The float PyTorch reference of the same rule (its own optimiser and learning rate from the config)."""
    import torch

    from ..network import load_network
    from ..train import train

    spec = load_network(cfg.config)
    m = train(spec, key.rule, **_float_args(cfg, key), threads=torch.get_num_threads())  # set by sweep()
    angles = [{layer["layer"]: layer["angle_to_bp"] for layer in e.get("layers", [])} for e in m["epochs"]]
    return {"test_accuracy": m["final"]["test_accuracy"], "curve": m["test_accuracy"], "angles": angles}


def _check_plan(out: Path, cfg: SweepConfig) -> None:
    """Refuse an ``out`` that holds the plan of a sweep with other settings (its runs would be mixed with ours)."""
    plan_path = out / PLAN_FILE
    if plan_path.exists():
        try:
            old = json.loads(plan_path.read_text())
        except ValueError:
            old = None
        if isinstance(old, dict) and old.get("config") != asdict(cfg):
            raise ConfigError(f"{out} holds a sweep with other settings; use another --out")


def check(cfg: SweepConfig, out: str | os.PathLike | None = None) -> None:
    """Refuse, before anything is written, a sweep that any of its runs would refuse: the settings, the plan
    already in ``out``, the data (loaded and matched with the network as the runs load it), then every back end
    of every rule -- the engine and its float twin for each word length and rounding, and the float reference
    (built, given its optimiser and trained for 0 epochs) -- cheapest first, so a refused rule costs no training."""
    from ..fixed.formats import ROUNDING
    from ..fixed.presets import preset
    from ..network import RULES, load_network
    from ..train import load_data, train

    spec = load_network(cfg.config)
    for name, values in (("rules", cfg.rules), ("word lengths", cfg.bits), ("rounding modes", cfg.roundings)):
        if not values:
            raise ConfigError(f"the sweep has no {name}")
    for r in cfg.rules:
        if r not in RULES:
            raise ConfigError(f"unknown rule {r!r}; choose from {', '.join(RULES)}")
    for b in cfg.bits:
        preset(b)  # the word-length range of the presets
    for r in cfg.roundings:
        if r != "preset" and r.removeprefix("AP_") not in ROUNDING:
            raise ConfigError(f"unknown rounding mode {r!r}; choose from preset, {', '.join(ROUNDING)}")
    for name, v in (("seeds", cfg.seeds), ("epochs", cfg.epochs)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ConfigError(f"the number of {name} must be a positive integer, got {v!r}")
    if out is not None:
        _check_plan(Path(out), cfg)
    load_data(spec, cfg.dataset, cfg.data_dir, 0, cfg.n_train, cfg.n_test)
    for rule in cfg.rules:
        for bits in cfg.bits:
            for rnd in cfg.roundings:
                _engine(RunKey("fixed", rule, 0, bits, rnd), spec).float_twin()
    if cfg.float_reference:
        for rule in cfg.rules:
            train(spec, rule, **{**_float_args(cfg, RunKey("float", rule, 0)), "epochs": 0, "probe": False})


def _worker_init(threads: int = 1) -> None:
    """Child processes of the pool: ``threads`` threads each, 1 by default (the pool already uses every core).
    NUMBA_NUM_THREADS is never set in the parent: numba refuses a changed one once its thread pool has started."""
    from ..threads import apply_threads

    os.environ.setdefault("NUMBA_NUM_THREADS", str(threads))
    apply_threads(threads, numba=True)


def _result(cfg_dict: dict[str, Any], key_dict: dict[str, Any]) -> dict[str, Any]:
    """One key's run: the content of its JSON file."""
    cfg, key = SweepConfig(**cfg_dict), RunKey(**key_dict)
    result = run_fixed(cfg, key) if key.kind == "fixed" else run_float(cfg, key)
    result.update({"key": asdict(key), "complete": True})
    return result


def _execute(cfg_dict: dict[str, Any], key_dict: dict[str, Any], path: str) -> str:
    """Run one key and write its JSON (in a pool worker, or in the calling process when jobs == 1)."""
    write_json_atomic(Path(path), _result(cfg_dict, key_dict))
    return RunKey(**key_dict).name


#: seconds to wait for a dask scheduler to answer before the sweep is refused
SCHEDULER_TIMEOUT_S = 5


def _dask_client(scheduler: str):
    """A ``distributed.Client`` connected to ``scheduler``; :class:`ClusterError` when dask is not installed or the
    scheduler does not answer within :data:`SCHEDULER_TIMEOUT_S`."""
    try:
        from distributed import Client
    except ImportError:
        raise ClusterError("--executor dask needs dask.distributed: pip install 'edgelearn[cluster]'") from None
    try:
        return Client(scheduler, timeout=SCHEDULER_TIMEOUT_S, set_as_default=False)
    except (OSError, ValueError) as exc:  # OSError: no answer in time; ValueError: a malformed address
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ClusterError(f"cannot reach the dask scheduler at {scheduler}: {reason}") from None


def _dask_task(cfg_dict: dict[str, Any], key_dict: dict[str, Any], threads: int) -> dict[str, Any]:
    """One key's run on a dask worker, on ``threads`` threads like a pool worker. It returns the result instead of
    writing it: the client writes every file, so ``OUT`` need not be on a file system the workers share."""
    _worker_init(threads)
    return _result(cfg_dict, key_dict)


def _sweep_dask(scheduler: str, cfg: SweepConfig, todo: list[RunKey], runs: Path, threads: int, bar,
                task) -> list[str]:
    """Run ``todo`` on the workers of a dask scheduler, each file written by this process as its result arrives,
    so an interrupted sweep keeps every run that came back. A failed run does not stop the others; the first
    failure is raised once all have ended."""
    from distributed import KilledWorker
    from distributed import as_completed as dask_completed

    done: list[str] = []
    with _dask_client(scheduler) as client:
        # a key of this sweep alone: a scheduler shares a task among all clients that submit its key
        token = uuid.uuid4().hex[:12]
        futs = {client.submit(_dask_task, asdict(cfg), asdict(k), threads, key=f"edgelearn-{k.name}-{token}"): k
                for k in todo}
        error: BaseException | None = None
        for fut in dask_completed(futs, loop=client.loop):  # this client's: it is not the default one
            k = futs[fut]
            try:
                result = fut.result()
            except KilledWorker:  # the scheduler gave up after the run's workers died, several times
                error = error or ClusterError(f"run {k.name}: the dask workers running it died, several times "
                                              f"(out of memory? their job ended?)")
                continue
            except Exception as exc:  # noqa: BLE001 - the run's own error, raised below after the other runs
                error = error or exc
                continue
            write_json_atomic(runs / f"{k.name}.json", result)
            done.append(k.name)
            bar.update(task, advance=1, last=k.name)
        if error is not None:
            raise error
    return done


def sweep(cfg: SweepConfig, out: str | os.PathLike, *, jobs: int | None = None, progress: bool = True,
          threads: int = 1, scheduler: str | None = None) -> list[str]:
    """Run every missing run of ``cfg`` into ``out`` and return the names of the runs executed now, each run on
    ``threads`` CPU threads; a sweep that :func:`check` refuses writes nothing. ``scheduler``: the address of a
    dask scheduler whose workers run the runs instead of a local pool (``jobs`` is then unused)."""
    out = Path(out)
    if scheduler is not None:
        _dask_client(scheduler).close()  # no dask or no scheduler: refused at once, before any work
    runs = out / RUNS_DIR
    todo = [k for k in cfg.keys() if load_result(runs / f"{k.name}.json") is None]
    if not todo and (out / PLAN_FILE).exists():  # a finished sweep: nothing will run, only its plan must match
        _check_plan(out, cfg)
    else:
        check(cfg, out)
    runs.mkdir(parents=True, exist_ok=True)
    plan = {"config": asdict(cfg), "runs": [k.name for k in cfg.keys()]}
    write_json_atomic(out / PLAN_FILE, plan)
    done: list[str] = []
    if not todo:
        return done
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    jobs = max(1, int(jobs or os.cpu_count() or 1))
    with Progress(TextColumn("[bold]sweep"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[last]}"),
                  TimeElapsedColumn(), disable=not progress) as bar:
        task = bar.add_task("sweep", total=len(todo), last="")
        if scheduler is not None:
            done = _sweep_dask(scheduler, cfg, todo, runs, threads, bar, task)
        elif jobs == 1:
            from ..threads import apply_threads

            apply_threads(threads, numba=True)
            for k in todo:
                done.append(_execute(asdict(cfg), asdict(k), str(runs / f"{k.name}.json")))
                bar.update(task, advance=1, last=k.name)
        else:
            # spawn, not fork: the parent may already run torch/numba thread pools (fork after OpenMP aborts)
            with ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn"),
                                     initializer=_worker_init, initargs=(threads,)) as pool:
                futs = [pool.submit(_execute, asdict(cfg), asdict(k), str(runs / f"{k.name}.json")) for k in todo]
                for fut in as_completed(futs):
                    done.append(fut.result())
                    bar.update(task, advance=1, last=done[-1])
    return done
