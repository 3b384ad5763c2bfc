"""CPU thread counts of every back end (torch, numba, the BLAS under numpy), decided in one place.

The libraries default to one thread per core. That suits large matrix products; the per-sample and small-batch
work of this project (online engine, float twin, batch-60 MLP training) spends more time starting and joining
threads than computing, and on a machine shared with other jobs every extra thread waits for a core: batch-60
fc1-500 training ran 7.4x slower with 2 threads than with 1 on a loaded 2-core machine (docs/engine.md "Threads",
benchmarks/bench_threads.py).  Numba-free: the command line imports it before any back end.
"""
from __future__ import annotations

import os

from .errors import ConfigError

#: a CPU batch at least this large uses every physical core by default, smaller ones one thread (measured: the
#: second thread's loss fell from 7.4x at batch 60 to 1.3x at 4096 on a loaded 2-core machine)
LARGE_BATCH = 4096


def available_cpus() -> int:
    """Logical CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def physical_cores() -> int:
    """Cores this process may run on, SMT siblings counted once (a second hyper-thread adds little to dense math)."""
    try:
        cpus = sorted(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1
    cores = set()
    for c in cpus:
        try:
            with open(f"/sys/devices/system/cpu/cpu{c}/topology/thread_siblings_list") as fh:
                cores.add(fh.read().strip())
        except OSError:
            cores.add(str(c))
    return max(1, len(cores))


def check_threads(n: int | None, what: str = "--threads") -> int | None:
    """``n`` validated: a positive count no larger than the CPUs this process may use (more only oversubscribes)."""
    if n is None:
        return None
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ConfigError(f"{what} must be a positive integer, got {n!r}")
    if n > available_cpus():
        raise ConfigError(f"{what} {n}: this process may use {available_cpus()} CPU(s); more threads than that "
                          f"only wait for each other")
    return n


def default_threads(batch_size: int = 1, processes: int = 1) -> int:
    """1 for online / small-batch work, the physical cores (shared by ``processes`` processes) for large batches."""
    if batch_size >= LARGE_BATCH:
        return max(1, physical_cores() // max(1, processes))
    return 1


def apply_threads(n: int, torch: bool = True, numba: bool = False) -> int:
    """Set the BLAS's (under numpy), torch's (``torch``) and numba's (``numba``) thread count to ``n`` in this
    process; torch is left unimported when not asked for (the engine does not need it)."""
    import numpy  # noqa: F401  (threadpoolctl limits only the BLAS libraries already loaded)
    from threadpoolctl import threadpool_limits

    if torch:
        import torch as _torch

        _torch.set_num_threads(n)
    threadpool_limits(n)
    if numba:
        import numba as _numba

        _numba.set_num_threads(min(n, _numba.config.NUMBA_NUM_THREADS))
    return n


def add_threads_arg(p, default_help: str) -> None:
    """The ``--threads N`` option of a subcommand."""
    p.add_argument("--threads", type=int, metavar="N",
                   help=f"CPU threads (torch, numba, BLAS); default: {default_help}, never more than the cores")


def current_threads() -> dict[str, int | None]:
    """Thread counts in effect in this process: BLAS, and torch / numba where they are loaded (None if not)."""
    import sys

    from threadpoolctl import threadpool_info

    blas = [p["num_threads"] for p in threadpool_info() if p.get("user_api") == "blas"]
    torch = sys.modules.get("torch")
    numba = sys.modules.get("numba")
    return {"blas": max(blas) if blas else None, "torch": torch.get_num_threads() if torch else None,
            "numba": numba.get_num_threads() if numba else None}
