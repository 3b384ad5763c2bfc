"""The float-vs-fixed sweep: one fixed-point engine run (with its float twin) per (rule, bits, rounding, seed),
plus per (rule, seed) one run of the float PyTorch reference with the engine's online algorithm (batch 1, plain SGD,
the twin's learning rates: :mod:`.online`) and one with the config's optimiser and batch. Every run writes one JSON
file, atomically, under ``OUT/runs/``; a run whose file exists and parses is never recomputed, so an interrupted
sweep resumes where it stopped.
The runs go to a local process pool, or to the workers of a dask scheduler, which return each result for this
process to write.
Before anything is written, :func:`check` builds every back end of every run once, so a sweep that some run
would refuse is refused whole and leaves no ``plan.json`` behind to block the corrected command.
"""
from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import signal
import threading
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


#: float-reference kinds: torch_ref with the engine's online algorithm, and with the config's optimiser and batch
FLOAT_KINDS = ("online", "float")
#: training samples (the first of each run's training set) whose activations and errors the histograms show
HIST_SAMPLES = 256
#: histogram bins per octave of |value|, and octaves shown beyond a format's LSB and its largest value
HIST_BINS_PER_OCTAVE = 2
HIST_MARGIN_OCTAVES = 3
#: tensors whose values the histograms show (engine counter names)
HIST_TENSORS = ("weight", "act", "error")


@dataclass(frozen=True)
class RunKey:
    kind: str  # "fixed" (engine + float twin), "online" (torch_ref, online SGD) or "float" (torch_ref, config's)
    rule: str
    seed: int
    bits: int = 0
    rounding: str = "preset"

    @property
    def name(self) -> str:
        if self.kind in FLOAT_KINDS:
            return f"{self.kind}-{self.rule}-s{self.seed}"
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
    float_reference: bool = True   # the config's optimiser and batch (e.g. Adam, batch 60)
    online_reference: bool = True  # the engine's online algorithm (online.ONLINE_RULES)
    curve_points: int = 10         # test-accuracy points per epoch
    curve_samples: int = 1000      # the first test samples, the held-out set of the learning curves

    def keys(self) -> list[RunKey]:
        from .online import ONLINE_RULES

        keys = []
        for rule in self.rules:
            for seed in range(self.seeds):
                if self.online_reference and rule in ONLINE_RULES:
                    keys.append(RunKey("online", rule, seed))
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


class _Curve:
    """Test accuracy on the held-out curve samples, before training and after every ``chunk`` samples."""

    def __init__(self, evaluate, x, y, n_train: int):
        self.evaluate, self.x, self.y, self.n = evaluate, x, y, n_train
        self.seen = 0
        self.epochs: list[float] = [0.0]
        self.acc: list[float] = [float(evaluate(x, y))]

    def __call__(self, n: int) -> None:
        self.seen += n
        self.epochs.append(self.seen / self.n)
        self.acc.append(float(self.evaluate(self.x, self.y)))


def _chunk(cfg: SweepConfig, n_train: int) -> int:
    return max(1, -(-n_train // cfg.curve_points))


def opportunities(eng, samples: int, inputs: int) -> dict[str, dict[str, int]]:
    """Per layer and tensor of ``eng.counters``: the number of values that could overflow or round to zero in
    ``samples`` online training steps after ``inputs`` input samples were quantized (counted ones). The engine
    counts events only; these are derived from the shapes (docs/reports.md, "Rates"):

    - input: every quantized input value; accum, act, deriv: one value per output of every training forward pass
      (the general accumulation path counts every partial sum: the bias assignment and one per input);
    - weight / bias / update: one increment per weight / bias of a learning layer per step (zero inputs included:
      their increment is an exact 0, neither an overflow nor a rounded-away update);
    - error: one per output of a layer that gets a signal, plus, below an ldfa layer, its r bottleneck values,
      assigned to that layer's error format.
    """
    from ..fixed import engine_kernels as K

    counters = eng.counters
    out: dict[str, dict[str, int]] = {}
    sizes = eng.sizes
    for k, name in enumerate(eng.layer_names):
        n_in, n_out = sizes[k], sizes[k + 1]
        learns = eng.rules[k] != "shallow"
        per: dict[str, int] = {}
        for t in counters[name]:
            if t == "input":
                per[t] = inputs * n_in
            elif t == "accum":
                general = int(eng.P[k, K.ACC_PATH]) == K.ACC_GENERAL
                per[t] = samples * n_out * ((n_in + 1) if general else 1)
            elif t in ("act", "deriv"):
                per[t] = samples * n_out
            elif t == "weight":
                per[t] = samples * n_in * n_out if learns else 0
            elif t == "bias":
                per[t] = samples * n_out if learns else 0
            elif t == "update":
                per[t] = samples * (n_in + 1) * n_out if learns else 0
            elif t == "error":
                per[t] = samples * n_out if learns else 0
        out[name] = per
    for k in range(len(sizes) - 2):  # a hidden signal through ldfa's bottleneck: r values in the error format above
        if eng.rules[k] not in ("drtp", "sdfa", "dfa", "shallow") and int(eng.P[k + 1, K.PROP_B]) == K.PROP_LOWRANK:
            r = eng.B[k + 1].shape[0] - sizes[k + 1]
            out[eng.layer_names[k + 1]]["error"] += samples * r
    return out


def _log_hist(values, lo: float, n_bins: int) -> dict[str, Any]:
    """Counts of log2|v| in ``n_bins`` bins of 1/HIST_BINS_PER_OCTAVE octave from ``lo`` (values beyond the ends
    are counted in the end bins), and the exact zeros apart."""
    import numpy as np

    v = np.abs(np.asarray(values, dtype=np.float64).ravel())
    nz = v[v > 0]
    idx = np.clip(np.floor((np.log2(nz) - lo) * HIST_BINS_PER_OCTAVE).astype(np.int64), 0, n_bins - 1)
    return {"zero": int(v.size - nz.size), "counts": np.bincount(idx, minlength=n_bins).astype(int).tolist()}


def histograms(eng, twin, x, y) -> dict[str, dict[str, Any]]:
    """Per layer, of weights (all), activations and errors (``x``, ``y``: a few training samples, one online step
    each on copies of the engine and the twin): log2|v| histograms of the fixed-point values and of the twin's
    float values on the axis of the tensor's format (its LSB and largest value), zeros apart."""
    import math

    import numpy as np

    from ..fixed.engine_io import clone_engine
    from ..fixed.twin import FloatTwin

    e = clone_engine(eng)
    t = FloatTwin.from_engine(e)  # a copy of the twin: its structure from the engine, its own trained state
    for dst, src in ((t.W, twin.W), (t.b, twin.b), (t.B, twin.B)):
        for a, b in zip(dst, src):
            a[...] = b
    X = e.quantize_inputs(x, count=False)
    L = len(eng.sizes) - 1
    vals: dict[str, list[list]] = {n: [[] for _ in range(L)] for n in ("act", "error")}
    tvals: dict[str, list[list]] = {n: [[] for _ in range(L)] for n in ("act", "error")}
    xf = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    for i in range(len(X)):
        e.step(X[i], int(y[i]))
        t.step(xf[i], int(y[i]))
        for k in range(L):
            # the engine's and the twin's work arrays hold the last step's layer outputs and delivered signals
            vals["act"][k].append(np.array(e._acts[k + 1]))
            vals["error"][k].append(np.array(e._ds[k]))
            tvals["act"][k].append(np.array(t._xs[k + 1]))
            tvals["error"][k].append(np.array(t._ds[k]))
    out: dict[str, dict[str, Any]] = {}
    for k, lp in enumerate(eng.precision.layers):
        learns = eng.rules[k] != "shallow"
        per: dict[str, Any] = {}
        for tname in HIST_TENSORS:
            if tname == "error" and not learns:
                continue
            fmt = getattr(lp, tname)
            if tname == "weight":
                fixed, float_ = fmt.to_float(eng.W[k].astype(np.int64)), twin.W[k]
            else:
                fixed = fmt.to_float(np.concatenate(vals[tname][k]))
                float_ = np.concatenate(tvals[tname][k])
            lo = math.log2(fmt.lsb) - HIST_MARGIN_OCTAVES
            hi = math.log2(max(abs(fmt.max_value), abs(fmt.min_value))) + HIST_MARGIN_OCTAVES
            n_bins = int(round((hi - lo) * HIST_BINS_PER_OCTAVE))
            per[tname] = {"format": str(fmt), "lsb": fmt.lsb, "min": fmt.min_value, "max": fmt.max_value,
                          "lo": lo, "bins_per_octave": HIST_BINS_PER_OCTAVE,
                          "fixed": _log_hist(fixed, lo, n_bins), "twin": _log_hist(float_, lo, n_bins)}
        out[lp.name] = per
    return out


def run_fixed(cfg: SweepConfig, key: RunKey) -> dict[str, Any]:
    """Engine and float twin, online mode: test accuracy after every epoch (full test set) and ``curve_points``
    times per epoch (the curve samples), counters with their opportunities, histograms at the end."""
    from ..network import load_network

    spec = load_network(cfg.config)
    ds = _dataset(cfg, spec, key.seed)
    eng = _engine(key, spec)
    twin = eng.float_twin()
    curve, twin_curve = [], []
    N = len(ds.x_train)
    xc, yc = ds.x_test[:cfg.curve_samples], ds.y_test[:cfg.curve_samples]
    pts, twin_pts = _Curve(eng.evaluate, xc, yc, N), _Curve(twin.evaluate, xc, yc, N)
    chunk = _chunk(cfg, N)
    t0 = time.perf_counter()
    for _ in range(cfg.epochs):
        eng.fit(ds.x_train, ds.y_train, epochs=1, callback=pts, chunk=chunk)
        twin.fit(ds.x_train, ds.y_train, epochs=1, callback=twin_pts, chunk=chunk)
        curve.append(float(eng.evaluate(ds.x_test, ds.y_test)))
        twin_curve.append(float(twin.evaluate(ds.x_test, ds.y_test)))
    seconds = time.perf_counter() - t0
    counters = eng.counters
    opps = opportunities(eng, cfg.epochs * N, cfg.epochs * N)
    hist = histograms(eng, twin, ds.x_train[:HIST_SAMPLES], ds.y_train[:HIST_SAMPLES])
    return {"test_accuracy": curve[-1], "float_test_accuracy": twin_curve[-1], "curve": curve,
            "twin_curve": twin_curve, "curve_epochs": pts.epochs, "curve_points": pts.acc,
            "twin_curve_points": twin_pts.acc, "curve_samples": int(len(xc)), "counters": counters,
            "opportunities": opps, "histograms": hist, "formats": eng.formats(), "seconds": seconds,
            "n_train": int(N), "n_test": int(len(ds.x_test))}


def run_online(cfg: SweepConfig, key: RunKey) -> dict[str, Any]:
    """torch_ref with the engine's online algorithm, from the state and learning rates of the engine at the
    sweep's largest word length (its float twin), in the engine's sample order."""
    from ..network import load_network
    from .online import OnlineReference

    spec = load_network(cfg.config).with_rule(key.rule)
    ds = _dataset(cfg, spec, key.seed)
    bits = max(cfg.bits)
    ref = OnlineReference(spec, key.rule, _engine(RunKey("fixed", key.rule, key.seed, bits), spec).float_twin())
    N = len(ds.x_train)
    xc, yc = ds.x_test[:cfg.curve_samples], ds.y_test[:cfg.curve_samples]
    pts = _Curve(ref.evaluate, xc, yc, N)
    curve = []
    for _ in range(cfg.epochs):
        ref.fit_epoch(ds.x_train, ds.y_train, callback=pts, chunk=_chunk(cfg, N))
        curve.append(ref.evaluate(ds.x_test, ds.y_test))
    return {"test_accuracy": curve[-1], "curve": curve, "curve_epochs": pts.epochs, "curve_points": pts.acc,
            "lr_bits": bits, "learning_rates": ref.lrs, "label": "float (online SGD)"}


def run_float(cfg: SweepConfig, key: RunKey) -> dict[str, Any]:
    """The float PyTorch reference of the same rule (its own optimiser and learning rate from the config)."""
    import torch

    from ..network import load_network
    from ..train import train

    spec = load_network(cfg.config)
    m = train(spec, key.rule, **_float_args(cfg, key), threads=torch.get_num_threads())  # set by sweep()
    angles = [{layer["layer"]: layer["angle_to_bp"] for layer in e.get("layers", [])} for e in m["epochs"]]
    return {"test_accuracy": m["final"]["test_accuracy"], "curve": m["test_accuracy"], "angles": angles,
            "label": float_label(spec)}


def float_label(spec) -> str:
    """The float reference's name in tables and legends: its optimiser and batch, e.g. 'float (Adam, batch 60)'."""
    opt = str(spec.train.get("optimizer", "adam")).lower()
    name = {"adam": "Adam", "adamw": "AdamW", "sgd": "SGD", "rmsprop": "RMSprop"}.get(opt, opt)
    return f"float ({name}, batch {int(spec.train.get('batch_size', 32))})"


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
    for name, v in (("seeds", cfg.seeds), ("epochs", cfg.epochs), ("curve points", cfg.curve_points),
                    ("curve samples", cfg.curve_samples)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ConfigError(f"the number of {name} must be a positive integer, got {v!r}")
    if out is not None:
        _check_plan(Path(out), cfg)
    load_data(spec, cfg.dataset, cfg.data_dir, 0, cfg.n_train, cfg.n_test)
    for rule in cfg.rules:
        for bits in cfg.bits:
            for rnd in cfg.roundings:
                _engine(RunKey("fixed", rule, 0, bits, rnd), spec).float_twin()
    if cfg.online_reference:
        from .online import ONLINE_RULES, OnlineReference

        for rule in cfg.rules:
            if rule in ONLINE_RULES:
                OnlineReference(spec.with_rule(rule), rule,
                                _engine(RunKey("fixed", rule, 0, max(cfg.bits)), spec).float_twin())
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
    run = {"fixed": run_fixed, "online": run_online, "float": run_float}[key.kind]
    result = run(cfg, key)
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
                try:
                    with _sigint_ignored():  # the workers start now (on submit) and inherit it
                        futs = [pool.submit(_execute, asdict(cfg), asdict(k), str(runs / f"{k.name}.json"))
                                for k in todo]
                    for fut in as_completed(futs):
                        done.append(fut.result())
                        bar.update(task, advance=1, last=done[-1])
                except KeyboardInterrupt:
                    _stop_pool(pool)
                    raise
    return done


@contextlib.contextmanager
def _sigint_ignored():
    """Ctrl-C ignored while pool workers are spawned: a spawned interpreter keeps an ignored SIGINT, so Ctrl-C
    reaches the parent alone, which stops the pool (no traceback from every worker). The main thread only."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.SIG_DFL if previous is None else previous)  # None: set outside Python


def _stop_pool(pool: ProcessPoolExecutor) -> None:
    """Drop the queued runs and end the running ones (their results are written atomically: nothing half)."""
    workers = list((getattr(pool, "_processes", None) or {}).values())  # the executor has no public handle
    pool.shutdown(wait=False, cancel_futures=True)
    for w in workers:
        w.terminate()
    for w in workers:
        w.join()
