"""Training loop of the float reference: data, optimiser, progress bar, checkpoints with resume, metrics.json."""
from __future__ import annotations

import json
import math
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .errors import ConfigError, DataError
from .fileio import write_json_atomic  # noqa: F401  (re-exported for scripts)
from .network import NetworkSpec
from .torch_ref import build_model, convert_network

CHECKPOINT = "checkpoint.pt"
METRICS = "metrics.json"


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
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        torch.save(state, tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def load_data(spec: NetworkSpec, dataset: str | None, data_dir: str | None, seed: int, n_train: int | None,
              n_test: int | None):
    from .data import load_dataset

    name = dataset or spec.dataset
    if not name:
        raise ConfigError(f"{spec.name}: no dataset given (set 'dataset' in the config or pass --dataset)")
    ds = load_dataset(name, data_dir, seed=seed, n_train=n_train, n_test=n_test, **spec.dataset_params)
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
    return ds


def _evaluate(model, learner, x, y, batch_size: int, task: str) -> tuple[float, float]:
    model.eval()
    total_loss, correct, n = 0.0, 0, len(x)
    with torch.no_grad():
        for i in range(0, n, batch_size):
            xb, yb = x[i:i + batch_size], y[i:i + batch_size]
            out = model(xb)
            total_loss += float(learner.loss(out, yb)) * len(xb)
            if task == "classification":
                correct += int((out.argmax(1) == yb).sum())
    model.train()
    return total_loss / max(n, 1), (correct / max(n, 1) if task == "classification" else float("nan"))


def make_optimizer(spec: NetworkSpec, params, rule: str, lr: float | None):
    name = str(spec.train.get("optimizer", "adam")).lower()
    lr = float(lr if lr is not None else spec.learning_rate(rule))
    wd = float(spec.train.get("weight_decay", 0.0))
    params = list(params)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=wd)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=wd)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=float(spec.train.get("momentum", 0.0)), weight_decay=wd)
    raise ConfigError(f"{spec.source}: unknown optimizer {name!r}; use adam, adamw or sgd")


def train(spec: NetworkSpec, rule: str | None = None, rules: dict[str, str] | None = None, *,
          dataset: str | None = None, data_dir: str | None = None, epochs: int | None = None, seed: int = 0,
          device: str | None = "auto", out: str | os.PathLike | None = None, batch_size: int | None = None,
          lr: float | None = None, n_train: int | None = None, n_test: int | None = None, resume: bool = True,
          progress: bool = True, probe: bool = True, log=print) -> dict[str, Any]:
    """Train ``spec`` with ``rule`` (default: the spec's) and return the metrics dictionary.

    With ``out`` set, a checkpoint is written after every epoch and an existing one is resumed from; the metrics
    go to ``out/metrics.json``. The same seed gives the same result on the same device.
    """
    spec = spec.with_rule(rule, rules)
    rule = spec.rule
    epochs = int(epochs if epochs is not None else spec.train.get("epochs", 10))
    batch_size = int(batch_size or spec.train.get("batch_size", 32))
    if epochs < 0 or batch_size < 1:
        raise ConfigError("epochs must be >= 0 and batch size >= 1")
    dev = pick_device(device)
    ds = load_data(spec, dataset, data_dir, seed, n_train, n_test)

    torch.manual_seed(seed)
    model = build_model(spec, seed=seed).to(dev)
    learner = convert_network(model, spec, seed=seed)
    opt = make_optimizer(spec, learner.parameters(), rule, lr)

    x_train = torch.as_tensor(ds.x_train, device=dev)
    y_train = torch.as_tensor(ds.y_train, device=dev)
    x_test = torch.as_tensor(ds.x_test, device=dev)
    y_test = torch.as_tensor(ds.y_test, device=dev)
    probe_n = min(256, len(x_train))
    x_probe, y_probe = x_train[:probe_n], y_train[:probe_n]

    identity = {"config": spec.to_dict(), "rule": rule, "rules": spec.rules, "seed": seed,
                "dataset": ds.name, "batch_size": batch_size, "n_train": len(x_train), "n_test": len(x_test),
                "lr": opt.param_groups[0]["lr"]}
    history: list[dict[str, Any]] = []
    start_epoch = 0
    out_dir = Path(out) if out is not None else None
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
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
            torch.set_rng_state(state["rng"])
            history = state["history"]
            start_epoch = int(state["epoch"])
            log(f"resuming {out_dir} after epoch {start_epoch}")

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    n = len(x_train)
    steps_per_epoch = math.ceil(n / batch_size)
    columns = [TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[status]}"),
               TimeElapsedColumn(), TimeRemainingColumn()]
    with Progress(*columns, disable=not progress, transient=False) as bar:
        task = bar.add_task(f"{spec.name}/{rule}", total=epochs * steps_per_epoch,
                            completed=start_epoch * steps_per_epoch, status="")
        for epoch in range(start_epoch, epochs):
            t0 = time.perf_counter()
            model.train()
            perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 100003 + epoch)).to(dev)
            run_loss, run_correct = 0.0, 0
            for i in range(0, n, batch_size):
                idx = perm[i:i + batch_size]
                xb, yb = x_train[idx], y_train[idx]
                opt.zero_grad(set_to_none=True)
                res = learner.train_step(xb, yb)
                opt.step()
                if not math.isfinite(res.loss):
                    raise ConfigError(f"training diverged (loss {res.loss}) at epoch {epoch + 1}; lower the learning rate")
                run_loss += res.loss * len(idx)
                if spec.task == "classification":
                    run_correct += int((res.output.argmax(1) == yb).sum())
                bar.update(task, advance=1)
            train_time = time.perf_counter() - t0
            learner.end_epoch(epoch, epochs)  # schedules of the rules (SSA's rank schedule)
            test_loss, test_acc = _evaluate(model, learner, x_test, y_test, 1000, spec.task)
            row: dict[str, Any] = {
                "epoch": epoch + 1,
                "train_loss": run_loss / n,
                "train_accuracy": run_correct / n if spec.task == "classification" else None,
                "test_loss": test_loss,
                "test_accuracy": test_acc if spec.task == "classification" else None,
                "epoch_time_s": train_time,
            }
            if probe:
                row["layers"] = learner.probe(x_probe, y_probe)
            history.append(row)
            status = f"test acc {test_acc:.4f}" if spec.task == "classification" else f"test mse {test_loss:.4g}"
            bar.update(task, status=status)
            if out_dir is not None:
                _save_checkpoint(out_dir / CHECKPOINT, {
                    "identity": identity, "model": model.state_dict(), "optimizer": opt.state_dict(),
                    "rng": torch.get_rng_state(), "history": history, "epoch": epoch + 1,
                })
                write_json_atomic(out_dir / METRICS, _metrics(identity, history, dev, done=epoch + 1 == epochs))
    metrics = _metrics(identity, history, dev, done=True)
    if out_dir is not None:
        write_json_atomic(out_dir / METRICS, metrics)
    metrics["model"] = model
    metrics["learner"] = learner
    return metrics


def _metrics(identity: dict[str, Any], history: list[dict[str, Any]], dev: torch.device, done: bool) -> dict[str, Any]:
    last = history[-1] if history else {}
    return {
        "rule": identity["rule"],
        "rules": identity["rules"],
        "network": identity["config"]["name"],
        "dataset": identity["dataset"],
        "seed": identity["seed"],
        "device": str(dev),
        "lr": identity["lr"],
        "batch_size": identity["batch_size"],
        "n_train": identity["n_train"],
        "n_test": identity["n_test"],
        "complete": done,
        "epochs": history,
        "train_accuracy": [h["train_accuracy"] for h in history],
        "test_accuracy": [h["test_accuracy"] for h in history],
        "final": {k: last.get(k) for k in ("epoch", "train_loss", "train_accuracy", "test_loss", "test_accuracy")},
        "config": identity["config"],
    }
