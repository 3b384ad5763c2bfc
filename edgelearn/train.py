"""Training loop of the float reference: data, optimiser, learning-rate schedule, augmentation, progress bar,
checkpoints with resume (per epoch and every N steps), metrics.json; one process, or several under ``torchrun``
(:mod:`edgelearn.torch_ref.distributed`); mixed precision on CUDA; ``smoke`` mode for CI.

The ``train:`` section of a network description (``edgelearn.network.TRAIN_KEYS``)::

    optimizer: adam            # adam | adamw | sgd | rmsprop
    lr: 6.0e-4                 # or a mapping rule -> lr with an optional default
    batch_size: 32             # the *global* batch: split over the processes of a torchrun job
    epochs: 160
    weight_decay: 4.0e-4       # coupled L2 (adam, sgd, rmsprop) or decoupled (adamw), on every trained tensor
    amsgrad: true              # adam / adamw
    betas: [0.9, 0.999]        # adam / adamw
    eps: 1.0e-8                # adam / adamw / rmsprop
    momentum: 0.9              # sgd / rmsprop
    nesterov: false            # sgd
    alpha: 0.99                # rmsprop smoothing constant
    schedule: {type: exponential, gamma: 0.975}   # per epoch; or cosine {eta_min}, step {step_size, gamma},
                                                  # multistep {milestones, gamma}, constant; all take warmup_epochs
    augment: {crop: 4, flip: true}                # random crop with zero padding 4, horizontal flip (images)
    normalize: true            # standardise inputs per channel with the training set's mean and std
    sync_bn: auto              # torchrun on CUDA: SyncBatchNorm (auto = on); the CPU/gloo backend has none
    eval_batch_size: 1000
    init: he_uniform           # or torch
    zero_init: [fa, dfa, sdfa, drtp]   # fully connected layers with these rules start from zero weights
"""
from __future__ import annotations

import contextlib
import functools
import json
import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .errors import ConfigError, DataError
from .fileio import atomic_open, write_json_atomic  # noqa: F401  (write_json_atomic re-exported for scripts)
from .network import NetworkSpec, network_from_dict
from .threads import apply_threads, check_threads, default_threads
from .torch_ref import build_model, convert_network
from .torch_ref import distributed as tdist

CHECKPOINT = "checkpoint.pt"
METRICS = "metrics.json"

#: smoke mode: widths divided by WIDTH_DIV (at least MIN_WIDTH), a few steps on random data
SMOKE = {"width_div": 16, "min_width": 2, "batch_size": 8, "n_train": 16, "n_test": 16, "epochs": 2}


def pick_device(device: str | None = "auto") -> torch.device:
    """``auto`` -> CUDA when available, else CPU; anything else is passed to torch (with a clear error)."""
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise ConfigError(f"unknown device {device!r}; use auto, cpu, cuda or cuda:N") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} requested but CUDA is not available on this machine")
    return dev


def _save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    with atomic_open(path, "wb") as fh:
        torch.save(state, fh)


def load_data(spec: NetworkSpec, dataset: str | None, data_dir: str | None, seed: int, n_train: int | None,
              n_test: int | None):
    from .data import load_dataset

    name = dataset or spec.dataset
    if not name:
        raise ConfigError(f"{spec.name}: no dataset given (set 'dataset' in the config or pass --dataset)")
    ds = load_dataset(name, data_dir, seed=seed, n_train=n_train, n_test=n_test, **spec.dataset_params)
    _check_data(spec, ds, name)
    return ds


def _check_data(spec: NetworkSpec, ds, name: str) -> None:
    if tuple(ds.input_shape) != tuple(spec.input_shape):
        raise ConfigError(f"dataset {name} has input shape {list(ds.input_shape)} but {spec.name} expects "
                          f"{list(spec.input_shape)}")
    if ds.task != spec.task:
        raise ConfigError(f"dataset {name} is a {ds.task} task but {spec.name} is a {spec.task} network")
    if ds.output_dim != spec.output_dim:
        raise ConfigError(f"dataset {name} has {ds.output_dim} outputs but {spec.name} has {spec.output_dim}")
    for split, arr in (("train", ds.x_train), ("test", ds.x_test)):
        if not np.isfinite(arr).all():
            raise DataError(f"dataset {name}: {split} inputs contain NaN or Inf")
    # regression targets are floats: a NaN would surface only as a NaN loss, reported as divergence
    for split, arr in (("train", ds.y_train), ("test", ds.y_test)):
        if np.issubdtype(arr.dtype, np.floating) and not np.isfinite(arr).all():
            raise DataError(f"dataset {name}: {split} targets contain NaN or Inf")


# ---------------------------------------------------------------------------------------------------------------------
# Smoke mode


def smoke_spec(spec: NetworkSpec) -> NetworkSpec:
    """The same network with every hidden width divided by ``SMOKE['width_div']`` (at least ``min_width``; patch
    embeddings stay divisible by the heads), same depth, layer names, rules and rule parameters."""
    d = spec.to_dict()
    layers = d["layers"]
    trainable = [i for i, layer in enumerate(layers) if layer["type"] in ("linear", "conv2d")]
    last = trainable[-1] if trainable else -1
    div, low = SMOKE["width_div"], SMOKE["min_width"]
    heads = max([int(layer["heads"]) for layer in layers if layer["type"] == "transformer"] or [1])
    for i, layer in enumerate(layers):
        if layer["type"] in ("linear", "conv2d", "residual") and i != last:
            layer["out"] = max(low, int(layer["out"]) // div)
        elif layer["type"] == "patch_embed":
            layer["dim"] = heads * max(1, int(layer["dim"]) // (div * heads))
    d.setdefault("train", {})["batch_size"] = SMOKE["batch_size"]
    d["train"]["epochs"] = SMOKE["epochs"]
    out = network_from_dict(d, source=f"{spec.source} [smoke]")
    out.source, out.variants, out.default_variant, out.raw = spec.source, spec.variants, spec.default_variant, spec.raw
    return out


def smoke_dataset(spec: NetworkSpec, seed: int, n_train: int, n_test: int):
    """Random inputs of the network's shape (uniform in [0, 1]) with balanced random labels / Gaussian targets."""
    from .data import Dataset

    rng = np.random.default_rng(seed)

    def split(n: int):
        x = rng.random((n, *spec.input_shape), dtype=np.float32)
        if spec.task == "classification":
            y = rng.permutation(np.arange(n) % spec.num_classes).astype(np.int64)
        else:
            y = rng.standard_normal((n, spec.output_dim)).astype(np.float32)
        return x, y

    xtr, ytr = split(n_train)
    xte, yte = split(n_test)
    return Dataset("smoke", xtr, ytr, xte, yte, task=spec.task, num_classes=spec.num_classes,
                   input_shape=spec.input_shape, extra={"synthetic": True})


# ---------------------------------------------------------------------------------------------------------------------
# Optimiser, schedule, augmentation


def _num(spec: NetworkSpec, key: str, default: float, *, minimum: float | None = 0.0) -> float:
    v = spec.train.get(key, default)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or (minimum is not None and v < minimum):
        raise ConfigError(f"{spec.source}: train.{key} must be a number >= {minimum}, got {v!r}")
    return float(v)


def _flag(spec: NetworkSpec, key: str, default: bool) -> bool:
    v = spec.train.get(key, default)
    if not isinstance(v, bool):
        raise ConfigError(f"{spec.source}: train.{key} must be true or false, got {v!r}")
    return v


def make_optimizer(spec: NetworkSpec, params, rule: str, lr: float | None):
    name = str(spec.train.get("optimizer", "adam")).lower()
    lr = float(lr if lr is not None else spec.learning_rate(rule))
    if not math.isfinite(lr) or lr <= 0:
        raise ConfigError(f"learning rate must be a positive number, got {lr}")
    wd = _num(spec, "weight_decay", 0.0)
    params = list(params)
    if name in ("adam", "adamw"):
        betas = spec.train.get("betas", (0.9, 0.999))
        if (not isinstance(betas, (list, tuple)) or len(betas) != 2
                or not all(isinstance(b, (int, float)) and not isinstance(b, bool) and 0 <= b < 1 for b in betas)):
            raise ConfigError(f"{spec.source}: train.betas must be two numbers in [0, 1), got {betas!r}")
        cls = torch.optim.Adam if name == "adam" else torch.optim.AdamW
        return cls(params, lr=lr, weight_decay=wd, betas=tuple(float(b) for b in betas),
                   eps=_num(spec, "eps", 1e-8), amsgrad=_flag(spec, "amsgrad", False))
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=_num(spec, "momentum", 0.0), weight_decay=wd,
                               nesterov=_flag(spec, "nesterov", False))
    if name == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr, alpha=_num(spec, "alpha", 0.99), eps=_num(spec, "eps", 1e-8),
                                   momentum=_num(spec, "momentum", 0.0), weight_decay=wd)
    raise ConfigError(f"{spec.source}: unknown optimizer {name!r}; use adam, adamw, sgd or rmsprop")


SCHEDULE_KEYS = {
    "constant": (),
    "exponential": ("gamma",),
    "step": ("step_size", "gamma"),
    "multistep": ("milestones", "gamma"),
    "cosine": ("eta_min",),
}


def check_schedule(spec: NetworkSpec) -> dict[str, Any]:
    sch = spec.train.get("schedule") or {"type": "constant"}
    where = f"{spec.source}: train.schedule"
    if not isinstance(sch, dict) or "type" not in sch:
        raise ConfigError(f"{where} must be a mapping with a type ({', '.join(SCHEDULE_KEYS)})")
    kind = sch["type"]
    if kind not in SCHEDULE_KEYS:
        raise ConfigError(f"{where}: unknown type {kind!r}; use {', '.join(SCHEDULE_KEYS)}")
    unknown = set(sch) - {"type", "warmup_epochs", *SCHEDULE_KEYS[kind]}
    if unknown:
        raise ConfigError(f"{where} ({kind}): unknown key(s) {', '.join(sorted(unknown))}; allowed: "
                          f"{', '.join(SCHEDULE_KEYS[kind] + ('warmup_epochs',))}")
    gamma = sch.get("gamma", 0.1)
    if isinstance(gamma, bool) or not isinstance(gamma, (int, float)) or not 0 < gamma <= 1:
        raise ConfigError(f"{where}: gamma must be in (0, 1], got {gamma!r}")
    w = sch.get("warmup_epochs", 0)
    if isinstance(w, bool) or not isinstance(w, int) or w < 0:
        raise ConfigError(f"{where}: warmup_epochs must be a non-negative integer, got {w!r}")
    if kind == "step" and (isinstance(sch.get("step_size"), bool) or not isinstance(sch.get("step_size"), int)
                           or sch["step_size"] < 1):
        raise ConfigError(f"{where}: step needs a positive integer step_size")
    if kind == "multistep":
        ms = sch.get("milestones")
        if not isinstance(ms, list) or not all(isinstance(m, int) and not isinstance(m, bool) and m > 0 for m in ms):
            raise ConfigError(f"{where}: multistep needs milestones, a list of positive epoch numbers")
    if kind == "cosine":
        eta = sch.get("eta_min", 0.0)
        if isinstance(eta, bool) or not isinstance(eta, (int, float)) or eta < 0:
            raise ConfigError(f"{where}: eta_min must be a non-negative number (absolute learning rate)")
    return sch


def lr_at(sch: dict[str, Any], base: float, epoch: int, epochs: int) -> float:
    """Learning rate during epoch ``epoch`` (0-based) of ``epochs``: linear warm-up over ``warmup_epochs`` (from
    base/warmup), then the schedule counted from the end of the warm-up."""
    w = int(sch.get("warmup_epochs", 0))
    if epoch < w:
        return base * (epoch + 1) / w
    e, kind = epoch - w, sch["type"]
    gamma = float(sch.get("gamma", 0.1))
    if kind == "exponential":
        return base * gamma ** e
    if kind == "step":
        return base * gamma ** (e // int(sch["step_size"]))
    if kind == "multistep":
        return base * gamma ** sum(1 for m in sch["milestones"] if e >= m)
    if kind == "cosine":
        eta = float(sch.get("eta_min", 0.0))
        span = max(epochs - w, 1)
        return eta + (base - eta) * 0.5 * (1 + math.cos(math.pi * min(e, span) / span))
    return base


def check_augment(spec: NetworkSpec) -> dict[str, Any]:
    aug = spec.train.get("augment") or {}
    where = f"{spec.source}: train.augment"
    if not isinstance(aug, dict):
        raise ConfigError(f"{where} must be a mapping, e.g. {{crop: 4, flip: true}}")
    unknown = set(aug) - {"crop", "flip"}
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}; allowed: crop, flip")
    crop, flip = aug.get("crop", 0), aug.get("flip", False)
    if isinstance(crop, bool) or not isinstance(crop, int) or crop < 0:
        raise ConfigError(f"{where}: crop (the zero padding of the random crop) must be a non-negative integer")
    if not isinstance(flip, bool):
        raise ConfigError(f"{where}: flip must be true or false")
    if (crop or flip) and len(spec.input_shape) != 3:
        raise ConfigError(f"{where}: augmentation needs (C, H, W) images; {spec.name} has input {list(spec.input_shape)}")
    return {"crop": crop, "flip": flip}


def normalize_inputs(spec: NetworkSpec, ds) -> dict[str, list[float]] | None:
    """``train.normalize: true``: subtract the training set's per-channel mean and divide by its std (images:
    channel = first axis; other inputs: one mean and std over all features), train and test alike. Returns the
    statistics (recorded in metrics.json) or None."""
    flag = spec.train.get("normalize", False)
    if not isinstance(flag, bool):
        raise ConfigError(f"{spec.source}: train.normalize must be true or false, got {flag!r}")
    if not flag:
        return None
    x = ds.x_train
    axes = (0, 2, 3) if x.ndim == 4 else tuple(range(x.ndim))
    mean = x.mean(axis=axes, keepdims=True, dtype=np.float64)
    std = x.std(axis=axes, keepdims=True, dtype=np.float64)
    std = np.where(std > 0, std, 1.0)
    ds.x_train = ((x - mean) / std).astype(np.float32)
    ds.x_test = ((ds.x_test - mean) / std).astype(np.float32)
    return {"mean": mean.ravel().tolist(), "std": std.ravel().tolist()}


def augment_params(aug: dict[str, Any], n: int, seed: int, epoch: int, step: int) -> dict[str, torch.Tensor]:
    """Random crop offsets and flips for the ``n`` samples of one *global* batch: a function of (seed, epoch,
    step) only, so every process of a distributed job draws the same ones and takes its share."""
    g = torch.Generator().manual_seed(((seed * 1_000_003 + epoch) * 1_000_033 + step) % (2 ** 63))
    pad = int(aug["crop"])
    out = {"dy": torch.randint(0, 2 * pad + 1, (n,), generator=g), "dx": torch.randint(0, 2 * pad + 1, (n,), generator=g)}
    out["flip"] = torch.rand(n, generator=g) < 0.5 if aug["flip"] else torch.zeros(n, dtype=torch.bool)
    return out


def augment_batch(x: torch.Tensor, params: dict[str, torch.Tensor], pad: int) -> torch.Tensor:
    """Random crop of the zero-padded images and horizontal flip, vectorised (``params`` for these rows)."""
    n, c, h, w = x.shape
    dev = x.device
    if pad:
        xp = torch.nn.functional.pad(x, (pad, pad, pad, pad))
        rows = params["dy"].to(dev)[:, None] + torch.arange(h, device=dev)[None, :]
        cols = params["dx"].to(dev)[:, None] + torch.arange(w, device=dev)[None, :]
        x = xp[torch.arange(n, device=dev)[:, None, None], :, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)
    flip = params["flip"].to(dev)
    if bool(flip.any()):
        x = torch.where(flip[:, None, None, None], x.flip(-1), x)
    return x.contiguous()


# ---------------------------------------------------------------------------------------------------------------------


def amp_dtype(mode: str, dev: torch.device) -> torch.dtype | None:
    """Mixed precision: ``auto`` -> bfloat16 autocast on CUDA devices that support it, off on the CPU; ``on`` ->
    bfloat16 wherever autocast exists (CPU too); ``off``. Never float16: its loss scaling would scale the error-driven
    signals but not the target-driven ones (DRTP) or Oja's rule, so the rules' updates would be mis-scaled."""
    if mode not in ("auto", "on", "off"):
        raise ConfigError(f"amp must be auto, on or off, got {mode!r}")
    if mode == "off":
        return None
    if dev.type == "cuda":
        if torch.cuda.is_bf16_supported():
            return torch.bfloat16
        if mode == "on":
            raise ConfigError("amp on: this GPU has no bfloat16 (float16 would need loss scaling, unsafe for the rules)")
        return None
    return torch.bfloat16 if mode == "on" else None


def _evaluate(model, learner, x, y, batch_size: int, task: str, d, dev, amp) -> tuple[float, float]:
    """Test loss and accuracy; under torchrun each process evaluates its share and the sums are reduced."""
    model.eval()
    lo, hi = d.shard(len(x))
    total_loss, correct = 0.0, 0
    with torch.no_grad(), _autocast(dev, amp):
        for i in range(lo, hi, batch_size):
            xb, yb = x[i:min(i + batch_size, hi)], y[i:min(i + batch_size, hi)]
            out = model(xb).float()
            total_loss += float(learner.loss(out, yb)) * len(xb)
            if task == "classification":
                correct += int((out.argmax(1) == yb).sum())
    model.train()
    total_loss, correct, n = tdist.all_sum([total_loss, float(correct), float(hi - lo)], d, dev)
    n = max(n, 1)
    return total_loss / n, (correct / n if task == "classification" else float("nan"))


def _autocast(dev: torch.device, dtype: torch.dtype | None):
    return torch.autocast(dev.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()


def _rng_state(dev: torch.device) -> dict[str, Any]:
    state = {"cpu": torch.get_rng_state()}
    if dev.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(dev)
    return state


def _set_rng_state(state: dict[str, Any], dev: torch.device) -> None:
    torch.set_rng_state(state["cpu"].cpu())
    if dev.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"].cpu(), dev)


@contextlib.contextmanager
def flush_denormals():
    """CPU float math flushes subnormal numbers to zero while training. Weight decay and Adam's moments drive
    many values into the subnormal range late in training (a fifth of a 4x512 MLP's first-layer weights after 26
    CIFAR epochs), and x86 cores handle those in microcode: epochs grew 8x slower. Restored to IEEE afterwards."""
    on = torch.set_flush_denormal(True)
    try:
        yield on
    finally:
        if on:
            torch.set_flush_denormal(False)


def _train(spec: NetworkSpec, rule: str | None = None, rules: dict[str, str] | None = None, *,
          dataset: str | None = None, data_dir: str | None = None, epochs: int | None = None, seed: int = 0,
          device: str | None = "auto", out: str | os.PathLike | None = None, batch_size: int | None = None,
          lr: float | None = None, n_train: int | None = None, n_test: int | None = None, resume: bool = True,
          progress: bool = True, probe: bool = True, log=print, smoke: bool = False, amp: str = "auto",
          checkpoint_every: int | None = None, max_steps: int | None = None, distributed: str = "auto",
          deterministic: bool = False, threads: int | None = None) -> dict[str, Any]:
    """Train ``spec`` with ``rule`` (default: the spec's) and return the metrics dictionary.

    With ``out`` set, a checkpoint is written after every epoch (and every ``checkpoint_every`` steps) and an
    existing one is resumed from; the metrics go to ``out/metrics.json``. The same seed gives the same result on the
    same device. Under ``torchrun`` (``WORLD_SIZE > 1``) the processes split each global batch and average the
    rules' final gradients; rank 0 writes the files, every rank reads the checkpoint. ``smoke``: tiny widths, a few
    steps on random data (or on the first rows of the real dataset when ``data_dir`` is given). ``max_steps``: stop
    after that many optimiser steps in this call, without writing a checkpoint (a simulated interruption).
    ``threads``: CPU threads of this process (default: :func:`edgelearn.threads.default_threads`).
    """
    spec = spec.with_rule(rule, rules)
    rule = spec.rule
    if smoke:
        spec = smoke_spec(spec)
        n_train = n_train or SMOKE["n_train"]
        n_test = n_test or SMOKE["n_test"]
    epochs = int(epochs if epochs is not None else spec.train.get("epochs", 10))
    batch_size = int(batch_size or spec.train.get("batch_size", 32))
    if epochs < 0 or batch_size < 1:
        raise ConfigError("epochs must be >= 0 and batch size >= 1")
    if checkpoint_every is not None and checkpoint_every < 1:
        raise ConfigError("checkpoint_every must be a positive number of steps")
    schedule, aug = check_schedule(spec), check_augment(spec)
    eval_batch = int(spec.train.get("eval_batch_size", 1000))
    sync_bn = spec.train.get("sync_bn", "auto")
    if sync_bn not in ("auto", True, False):
        raise ConfigError(f"{spec.source}: train.sync_bn must be auto, true or false, got {sync_bn!r}")

    dev = pick_device(device)
    if tdist.env_world_size() > 1 and distributed != "off":
        dev = tdist.local_device(dev, int(os.environ.get("LOCAL_RANK", "0")))
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    d = tdist.setup(dev, distributed)
    if dev.type == "cpu":  # CPU threads per process (edgelearn/threads.py): 1 unless the batch is large
        apply_threads(check_threads(threads) or default_threads(batch_size, d.world))
    amp_t = amp_dtype(amp, dev)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False
    say = log if d.main else (lambda *a, **k: None)

    if smoke and data_dir is None:
        ds = smoke_dataset(spec, seed, n_train, n_test)
    else:
        ds = load_data(spec, dataset, data_dir, seed, n_train, n_test)
    norm = normalize_inputs(spec, ds)

    torch.manual_seed(seed)
    model = build_model(spec, seed=seed).to(dev)
    if d.enabled and dev.type == "cuda" and sync_bn in ("auto", True):
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    learner = convert_network(model, spec, seed=seed)
    from .torch_ref import ldfa as _ldfa

    _ldfa.set_global_statistics(d.enabled)
    if d.enabled:
        torch.manual_seed(seed + 7919 * d.rank)  # dropout masks differ between processes (as in any DDP job)
    opt = make_optimizer(spec, learner.parameters(), rule, lr)
    base_lrs = [g["lr"] for g in opt.param_groups]

    x_train = torch.as_tensor(ds.x_train, device=dev)
    y_train = torch.as_tensor(ds.y_train, device=dev)
    x_test = torch.as_tensor(ds.x_test, device=dev)
    y_test = torch.as_tensor(ds.y_test, device=dev)
    probe_n = min(256, len(x_train))
    x_probe, y_probe = x_train[:probe_n], y_train[:probe_n]

    identity = {"config": spec.to_dict(), "rule": rule, "rules": spec.rules, "seed": seed,
                "dataset": ds.name, "batch_size": batch_size, "n_train": len(x_train), "n_test": len(x_test),
                "lr": base_lrs[0]}
    if smoke:
        identity["smoke"] = True
    if norm is not None:
        identity["normalize"] = norm
    history: list[dict[str, Any]] = []
    checkpoint: Path | None = None  # set once OUT holds a checkpoint of this run (resumed from or written)
    start_epoch, start_step, run = 0, 0, [0.0, 0.0, 0.0]  # run: loss sum, correct, samples of the current epoch
    out_dir = Path(out) if out is not None else None
    if out_dir is not None:
        if d.main:
            out_dir.mkdir(parents=True, exist_ok=True)
        tdist.barrier(d)
        ckpt_path = out_dir / CHECKPOINT
        if ckpt_path.exists() and resume:
            try:
                state = torch.load(ckpt_path, map_location=dev, weights_only=True)
            except Exception as exc:  # a truncated or foreign file
                raise ConfigError(f"{ckpt_path}: cannot read checkpoint ({type(exc).__name__}); delete it or use --no-resume") from None
            if state.get("identity") != json.loads(json.dumps(identity)):
                raise ConfigError(f"{out_dir} holds a run with a different configuration; use another --out or --no-resume")
            model.load_state_dict(state["model"])
            opt.load_state_dict(state["optimizer"])
            learner.load_rule_states(state.get("rules_state", {}))
            rng = state["rng"]
            if isinstance(rng, torch.Tensor):  # checkpoints of single-process runs before torchrun support
                rng = [{"cpu": rng}]
            if len(rng) == d.world:
                _set_rng_state(rng[d.rank], dev)
            else:  # another number of processes: fresh, deterministic dropout streams
                torch.manual_seed(seed + 7919 * d.rank + 104729 * int(state["epoch"]))
                say(f"note: {ckpt_path} was written by {len(rng)} process(es), resuming with {d.world}")
            history = state["history"]
            start_epoch, start_step = int(state["epoch"]), int(state.get("step", 0))
            checkpoint = ckpt_path
            run = list(state.get("run", run))
            where = f"epoch {start_epoch}" + (f", step {start_step} of epoch {start_epoch + 1}" if start_step else "")
            say(f"resuming {out_dir} after {where}")

    # DDP after the checkpoint is loaded, and again whenever SSA's rank schedule resizes parameters: the reducer keeps
    # each parameter's gradient accumulator, whose recorded shape would go stale
    wrapped = tdist.wrap(model, d, dev)
    learner.forward_module = wrapped if d.enabled else None

    def shapes():
        return [tuple(p.shape) for p in learner.parameters()]

    shapes_now = shapes()

    def save(epoch_done: int, step_done: int) -> None:
        nonlocal checkpoint
        rngs = tdist.gather_objects(_rng_state(dev), d)
        if d.main and out_dir is not None:
            _save_checkpoint(out_dir / CHECKPOINT, {
                "identity": identity, "model": model.state_dict(), "optimizer": opt.state_dict(), "rng": rngs,
                "history": history, "epoch": epoch_done, "step": step_done, "run": run,
                "rules_state": learner.rule_states(), "world_size": d.world,
            })
            checkpoint = out_dir / CHECKPOINT
        tdist.barrier(d)

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    n = len(x_train)
    steps_per_epoch = math.ceil(n / batch_size)
    columns = [TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[status]}"),
               TimeElapsedColumn(), TimeRemainingColumn()]
    label = f"{spec.name}{'/' + spec.variant if spec.variant else ''}/{rule}"
    steps_now, stopped = 0, False
    params = list(learner.parameters())
    with Progress(*columns, disable=not (progress and d.main), transient=False) as bar:
        task = bar.add_task(label, total=epochs * steps_per_epoch,
                            completed=start_epoch * steps_per_epoch + start_step, status="")
        for epoch in range(start_epoch, epochs):
            for g, base in zip(opt.param_groups, base_lrs):
                g["lr"] = lr_at(schedule, base, epoch, epochs)
            t0 = time.perf_counter()
            model.train()
            perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 100003 + epoch)).to(dev)
            first = start_step if epoch == start_epoch else 0
            if first == 0:
                run = [0.0, 0.0, 0.0]
            for step in range(first, steps_per_epoch):
                idx = perm[step * batch_size:(step + 1) * batch_size]
                if len(idx) < d.world:  # a last batch smaller than the number of processes: skipped by all
                    say(f"note: epoch {epoch + 1}: last batch of {len(idx)} sample(s) < {d.world} processes, skipped")
                    bar.update(task, advance=1)
                    continue
                lo, hi = d.shard(len(idx))
                mine = idx[lo:hi]
                xb, yb = x_train[mine], y_train[mine]
                if aug["crop"] or aug["flip"]:
                    ap = augment_params(aug, len(idx), seed, epoch, step)
                    xb = augment_batch(xb, {k: v[lo:hi] for k, v in ap.items()}, aug["crop"])
                opt.zero_grad(set_to_none=True)
                if d.enabled:
                    _ldfa.set_batch_share(len(mine), len(idx))
                sync_ctx = wrapped.no_sync() if d.enabled else contextlib.nullcontext()
                with sync_ctx, _autocast(dev, amp_t):
                    res = learner.train_step(xb, yb)
                loss_sum = res.loss * len(mine)
                correct = float((res.output.argmax(1) == yb).sum()) if spec.task == "classification" else 0.0
                if d.enabled:
                    tdist.sync_gradients(params, len(mine), len(idx), d)
                    loss_sum, correct = tdist.all_sum([loss_sum, correct], d, dev)
                if not math.isfinite(loss_sum):
                    raise ConfigError(f"training diverged (loss {loss_sum / max(len(idx), 1)}) at epoch {epoch + 1}; "
                                      f"lower the learning rate")
                opt.step()
                params = list(learner.parameters())  # SSA's rank schedule may have resized parameters
                run = [run[0] + loss_sum, run[1] + correct, run[2] + len(idx)]
                bar.update(task, advance=1)
                steps_now += 1
                if checkpoint_every and steps_now % checkpoint_every == 0 and step + 1 < steps_per_epoch:
                    save(epoch, step + 1)
                if max_steps is not None and steps_now >= max_steps:
                    stopped = True
                    break
            if stopped:
                break
            train_time = time.perf_counter() - t0
            learner.end_epoch(epoch, epochs)  # schedules of the rules (SSA's rank schedule)
            params = list(learner.parameters())
            if d.enabled and shapes() != shapes_now:
                learner.forward_module = wrapped = None
                import gc

                gc.collect()
                wrapped = tdist.wrap(model, d, dev)
                learner.forward_module = wrapped
                shapes_now = shapes()
            tdist.broadcast_buffers(model, d)
            test_loss, test_acc = _evaluate(model, learner, x_test, y_test, eval_batch, spec.task, d, dev, amp_t)
            seen = max(run[2], 1.0)
            row: dict[str, Any] = {
                "epoch": epoch + 1,
                "lr": opt.param_groups[0]["lr"],
                "train_loss": run[0] / seen,
                "train_accuracy": run[1] / seen if spec.task == "classification" else None,
                "test_loss": test_loss,
                "test_accuracy": test_acc if spec.task == "classification" else None,
                "epoch_time_s": train_time,
                "samples_per_s": (run[2] if first == 0 else float("nan")) / max(train_time, 1e-9),
            }
            if probe:
                row["layers"] = learner.probe(x_probe, y_probe)  # every process (collectives of SyncBN / Oja)
            history.append(row)
            status = f"test acc {test_acc:.4f}" if spec.task == "classification" else f"test mse {test_loss:.4g}"
            bar.update(task, status=status)
            if out_dir is not None:
                save(epoch + 1, 0)
                if d.main:
                    write_json_atomic(out_dir / METRICS, _metrics(identity, history, dev, d, amp_t, spec,
                                                                  done=epoch + 1 == epochs))
    done = not stopped and (len(history) == epochs)
    metrics = _metrics(identity, history, dev, d, amp_t, spec, done=done)
    if done and spec.experiment.get("receptive_fields") and len(spec.input_shape) == 3:
        metrics["receptive_fields"] = _receptive_fields(spec, model, x_test, out_dir, d, label)
    if out_dir is not None and d.main:
        write_json_atomic(out_dir / METRICS, metrics)
    tdist.barrier(d)
    metrics["model"] = model
    metrics["learner"] = learner
    metrics["checkpoint"] = checkpoint  # None when none was resumed or written (--epochs 0, an early --max-steps)
    return metrics


@functools.wraps(_train)
def train(*args, **kwargs) -> dict[str, Any]:
    with flush_denormals():
        return _train(*args, **kwargs)


def _receptive_fields(spec, model, x_test, out_dir, d, label) -> dict[str, Any]:
    """``experiment.receptive_fields``: a conv layer name or a list of them; PNG per layer in OUT."""
    from .torch_ref.receptive import plot_receptive_fields, receptive_fields, summary

    layers = spec.experiment["receptive_fields"]
    layers = [layers] if isinstance(layers, str) else list(layers)
    result = {}
    for name in layers:
        rf = receptive_fields(model, str(name), x_test[:64])
        info = summary(rf)
        if out_dir is not None and d.main:
            png = plot_receptive_fields([(label, rf)], out_dir / f"receptive_fields_{name}.png",
                                        title=f"{spec.name}: receptive fields of {name} (numbers: isotropy)")
            np.save(out_dir / f"receptive_fields_{name}.npy", rf)
            info["png"] = png.name
        result[str(name)] = info
    return result


def _mean_last(values: list[float | None], k: int = 10) -> float | None:
    vals = [v for v in values[-k:] if v is not None]
    return float(np.mean(vals)) if vals else None


def _metrics(identity: dict[str, Any], history: list[dict[str, Any]], dev: torch.device, d, amp_t, spec,
             done: bool) -> dict[str, Any]:
    last = history[-1] if history else {}
    test_acc = [h["test_accuracy"] for h in history]
    final = {k: last.get(k) for k in ("epoch", "train_loss", "train_accuracy", "test_loss", "test_accuracy")}
    final["test_accuracy_last10_mean"] = _mean_last(test_acc)
    accs = [a for a in test_acc if a is not None]
    final["best_test_accuracy"] = max(accs) if accs else None
    return {
        "rule": identity["rule"],
        "rules": identity["rules"],
        "network": identity["config"]["name"],
        "variant": spec.variant,
        "dataset": identity["dataset"],
        "seed": identity["seed"],
        "device": str(dev),
        "world_size": d.world,
        "amp": str(amp_t).replace("torch.", "") if amp_t is not None else None,
        "smoke": bool(identity.get("smoke", False)),
        "normalize": identity.get("normalize"),
        "lr": identity["lr"],
        "batch_size": identity["batch_size"],
        "n_train": identity["n_train"],
        "n_test": identity["n_test"],
        "complete": done,
        "epochs": history,
        "train_accuracy": [h["train_accuracy"] for h in history],
        "test_accuracy": test_acc,
        "final": final,
        "config": identity["config"],
    }
