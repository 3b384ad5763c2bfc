"""The float-vs-fixed sweep: one fixed-point engine run (with its float twin) per (rule, bits, rounding, seed),
plus one float-reference run per (rule, seed). Every run writes one JSON file, atomically, under ``OUT/runs/``;
a run whose file exists and parses is never recomputed, so an interrupted sweep resumes where it stopped.
"""
from __future__ import annotations

import json
import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..errors import ConfigError
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

    return load_dataset(cfg.dataset or spec.dataset, cfg.data_dir, seed=seed, n_train=cfg.n_train, n_test=cfg.n_test)


def run_fixed(cfg: SweepConfig, key: RunKey) -> dict[str, Any]:
    """Engine and float twin, online mode, test accuracy after every epoch."""
    from ..fixed.engine import FixedEngine
    from ..network import load_network

    spec = load_network(cfg.config)
    ds = _dataset(cfg, spec, key.seed)
    kw: dict[str, Any] = {}
    if key.rounding != "preset":
        kw["rounding"] = [("weight", key.rounding), ("bias", key.rounding)]
    eng = FixedEngine(spec, bits=key.bits, seed=key.seed, rule=key.rule, **kw)
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

    torch.set_num_threads(1)
    spec = load_network(cfg.config)
    m = train(spec, key.rule, dataset=cfg.dataset, data_dir=cfg.data_dir, epochs=cfg.epochs, seed=key.seed,
              device="cpu", n_train=cfg.n_train, n_test=cfg.n_test, progress=False, probe=True)
    angles = [{layer["layer"]: layer["angle_to_bp"] for layer in e.get("layers", [])} for e in m["epochs"]]
    return {"test_accuracy": m["final"]["test_accuracy"], "curve": m["test_accuracy"], "angles": angles}


def _worker_init() -> None:
    """Child processes of the pool: one numba thread each (the pool already uses every core). Never set in the
    parent: numba refuses a changed NUMBA_NUM_THREADS once its thread pool has started."""
    os.environ.setdefault("NUMBA_NUM_THREADS", "1")


def _execute(cfg_dict: dict[str, Any], key_dict: dict[str, Any], path: str) -> str:
    """Run one key and write its JSON (in a pool worker, or in the calling process when jobs == 1)."""
    cfg, key = SweepConfig(**cfg_dict), RunKey(**key_dict)
    result = run_fixed(cfg, key) if key.kind == "fixed" else run_float(cfg, key)
    result.update({"key": asdict(key), "complete": True})
    write_json_atomic(Path(path), result)
    return key.name


def sweep(cfg: SweepConfig, out: str | os.PathLike, *, jobs: int | None = None, progress: bool = True) -> list[str]:
    """Run every missing run of ``cfg`` into ``out`` and return the names of the runs executed now."""
    out = Path(out)
    runs = out / RUNS_DIR
    runs.mkdir(parents=True, exist_ok=True)
    plan = {"config": asdict(cfg), "runs": [k.name for k in cfg.keys()]}
    plan_path = out / PLAN_FILE
    if plan_path.exists():
        try:
            old = json.loads(plan_path.read_text())
        except ValueError:
            old = None
        if old and old.get("config") != plan["config"]:
            raise ConfigError(f"{out} holds a sweep with other settings; use another --out")
    write_json_atomic(plan_path, plan)
    todo = [k for k in cfg.keys() if load_result(runs / f"{k.name}.json") is None]
    done: list[str] = []
    if not todo:
        return done
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    jobs = max(1, int(jobs or os.cpu_count() or 1))
    with Progress(TextColumn("[bold]sweep"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[last]}"),
                  TimeElapsedColumn(), disable=not progress) as bar:
        task = bar.add_task("sweep", total=len(todo), last="")
        if jobs == 1:
            for k in todo:
                done.append(_execute(asdict(cfg), asdict(k), str(runs / f"{k.name}.json")))
                bar.update(task, advance=1, last=k.name)
        else:
            # spawn, not fork: the parent may already run torch/numba thread pools (fork after OpenMP aborts)
            with ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn"),
                                     initializer=_worker_init) as pool:
                futs = [pool.submit(_execute, asdict(cfg), asdict(k), str(runs / f"{k.name}.json")) for k in todo]
                for fut in as_completed(futs):
                    done.append(fut.result())
                    bar.update(task, advance=1, last=done[-1])
    return done
