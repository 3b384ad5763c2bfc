"""Data-parallel training of converted models under ``torchrun`` (several processes, GPUs or nodes).

Why the gradients are reduced here and not by DDP's reducer
-----------------------------------------------------------
``DistributedDataParallel`` averages gradients from autograd hooks that fire while *one* backward pass of the
forward it wrapped accumulates into the parameters. The learning rules of :mod:`edgelearn.torch_ref` do not fit that
contract: the direct rules cut the graph and run one local backward per layer (DRTP even *during* the forward pass),
dLDFA and SSA write ``.grad`` of their factors themselves, KP/LDFA/SSA change the gradients after the backward
(``Rule.after_backward``: decay, SSA's preconditioning, tangent projection and alignment terms). Gradients written
outside autograd are never seen by the reducer, and a reducer that averages what it saw *before* ``after_backward``
would average the wrong quantity. So the model is wrapped in DDP (which broadcasts rank 0's parameters and buffers at
construction and its buffers -- batch-norm statistics -- before every forward) but always runs under
``no_sync()``; after the rules' complete step, :func:`sync_gradients` all-reduces the *final* ``.grad`` of every
trainable parameter (model, feedback and factor parameters alike) in one flat buffer.

Exactness: each process's gradient is a mean over its share of the global batch, so the all-reduce weights it by
the share size (uneven last batches included); ``after_backward`` is affine in the gradients with constants equal
on every process (decays, alignment terms), so it commutes with the average. The one rule statistic that is not a
per-sample mean -- the covariance of LDFA's Oja rule -- is computed over the global batch
(:func:`edgelearn.torch_ref.ldfa.set_global_statistics`). What stays per process, by design as in any DDP job:
batch-norm batch statistics (``train.sync_bn`` turns on ``SyncBatchNorm`` on CUDA) and dropout masks.
"""
from __future__ import annotations

import atexit
import os
from dataclasses import dataclass
from typing import Iterable

import torch
from torch import nn

from ..errors import ConfigError


@dataclass
class Dist:
    """The process's place in the job (world 1 when not distributed)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    backend: str | None = None

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    def shard(self, n: int) -> tuple[int, int]:
        """[start, stop) of this process's share of ``n`` items (contiguous, sizes differ by at most one)."""
        base, extra = divmod(n, self.world)
        start = self.rank * base + min(self.rank, extra)
        return start, start + base + (1 if self.rank < extra else 0)


_STATE: dict[str, object] = {"dist": None, "owned": False}


def env_world_size() -> int:
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        raise ConfigError(f"WORLD_SIZE={os.environ.get('WORLD_SIZE')!r} is not an integer") from None


def setup(device: torch.device, mode: str = "auto") -> Dist:
    """Join the job started by ``torchrun`` (env:// rendezvous) when ``WORLD_SIZE > 1`` and ``mode`` is not "off".

    NCCL for CUDA, gloo for the CPU. The process group is created once per process and kept (several ``train`` calls
    in one process, e.g. ``--variant all``, reuse it)."""
    import torch.distributed as dist

    if mode not in ("auto", "off"):
        raise ConfigError(f"distributed mode must be auto or off, got {mode!r}")
    world = env_world_size()
    if mode == "off" or world <= 1:
        return Dist()
    if not dist.is_available():
        raise ConfigError("WORLD_SIZE > 1 but this torch build has no torch.distributed")
    backend = "nccl" if device.type == "cuda" else "gloo"
    if not dist.is_initialized():
        for key in ("RANK", "MASTER_ADDR", "MASTER_PORT"):
            if key not in os.environ:
                raise ConfigError(f"WORLD_SIZE={world} but {key} is not set; start distributed runs with torchrun")
        kwargs = {"device_id": device} if device.type == "cuda" else {}
        dist.init_process_group(backend=backend, init_method="env://", **kwargs)
        _STATE["owned"] = True
        atexit.register(shutdown)
    d = Dist(rank=dist.get_rank(), world=dist.get_world_size(), local_rank=int(os.environ.get("LOCAL_RANK", 0)),
             backend=dist.get_backend())
    _STATE["dist"] = d
    return d


def shutdown() -> None:
    import torch.distributed as dist

    if _STATE.get("owned") and dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
    _STATE["owned"] = False


def local_device(requested: torch.device, d_local_rank: int) -> torch.device:
    """Under torchrun each process takes GPU ``LOCAL_RANK`` (``--device cuda`` or auto); CPU stays CPU."""
    if requested.type == "cuda" and requested.index is None:
        return torch.device("cuda", d_local_rank % max(torch.cuda.device_count(), 1))
    return requested


def wrap(model: nn.Module, d: Dist, device: torch.device) -> nn.Module:
    """DDP wrapper (rank 0's parameters and buffers broadcast now, buffers before each forward). The training step
    runs it under ``no_sync()`` (see the module docstring)."""
    if not d.enabled:
        return model
    from torch.nn.parallel import DistributedDataParallel

    kwargs = {"device_ids": [device.index]} if device.type == "cuda" else {}
    return DistributedDataParallel(model, forward_sync_buffers=True, **kwargs)


def sync_gradients(params: Iterable[nn.Parameter], n_local: int, n_global: int, d: Dist) -> None:
    """Replace every parameter's ``.grad`` by the global-batch gradient: ``sum_p n_p g_p / N``. A parameter whose
    gradient is None on every process stays None (the optimiser then skips it, as it would in a single process)."""
    if not d.enabled:
        return
    import torch.distributed as dist

    params = list(params)
    if not params:
        return
    ref = params[0]
    flats, flags = [], []
    for p in params:
        g = p.grad
        flags.append(0.0 if g is None else 1.0)
        flats.append(torch.zeros(p.numel(), dtype=torch.float32, device=ref.device) if g is None
                     else g.detach().reshape(-1).to(torch.float32) * float(n_local))
    flat = torch.cat(flats + [torch.tensor(flags, dtype=torch.float32, device=ref.device)])
    dist.all_reduce(flat)
    flat[:-len(params)].div_(float(n_global))
    have = flat[-len(params):].cpu().tolist()
    offset = 0
    for i, p in enumerate(params):
        k = p.numel()
        if have[i] > 0:
            g = flat[offset:offset + k].view_as(p).to(p.dtype)
            if p.grad is None:
                p.grad = g.clone()
            else:
                p.grad.copy_(g)
        else:
            p.grad = None
        offset += k


def all_sum(values: list[float], d: Dist, device: torch.device) -> list[float]:
    """Sum a few numbers over the processes (float64)."""
    if not d.enabled:
        return list(values)
    import torch.distributed as dist

    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return [float(v) for v in t]


def broadcast_buffers(model: nn.Module, d: Dist) -> None:
    """Rank 0's buffers (batch-norm running statistics) on every process, e.g. before evaluating."""
    if not d.enabled:
        return
    import torch.distributed as dist

    for b in model.buffers():
        dist.broadcast(b, 0)


def gather_objects(obj, d: Dist) -> list:
    if not d.enabled:
        return [obj]
    import torch.distributed as dist

    out = [None] * d.world
    dist.all_gather_object(out, obj)
    return out


def barrier(d: Dist) -> None:
    if d.enabled:
        import torch.distributed as dist

        dist.barrier()


def check_same(value, d: Dist, what: str) -> None:
    """Raise the same ConfigError on every process if ``value`` differs between them."""
    values = gather_objects(value, d)
    if any(v != values[0] for v in values):
        raise ConfigError(f"processes disagree on {what}: {values}")
