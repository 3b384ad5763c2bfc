"""``export_hls``: both HLS projects of one engine network in one directory (what ``edgelearn export-hls`` runs).

    OUT/
      hls4ml_prj/        hls4ml inference project (Vitis or Vivado backend), bit-exact with the engine's forward
      hls4ml_model.fml   hls4ml's own serialization of the configured model: rebuilds hls4ml_prj exactly
      qonnx/             the Brevitas QONNX export (raw and cleaned) and hls4ml's testbench data (.npy)
      learning_kernel/   the on-chip learning kernel (edgelearn.hls.kernel)
      weights.npz/.json  the engine state both projects were generated from (edgelearn.fixed.engine_io)
      export.json        what was written, formats, and the checks run (--check)
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError, DataError, FormatError
from . import KERNEL_INTERFACES
from .kernel import KernelSpec, reference_final, reference_trace, check_kernel_options, write_kernel_project
from .toolchain import require

__all__ = ["ExportResult", "export_hls", "tb_samples", "check_projects", "HLS4ML_SKIPPED"]

KERNEL_DIR = "learning_kernel"
HLS4ML_DIR = "hls4ml_prj"
#: the start of the warning line of a conv network whose front end hls4ml cannot carry bit-exactly (the reason follows)
HLS4ML_SKIPPED = "hls4ml inference project not written (the learning kernel is)"


@dataclass
class ExportResult:
    out: Path
    hls4ml: Any = None  # Hls4mlProject or None
    kernel: Any = None  # KernelProject or None
    checks: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)


def tb_samples(eng, n: int, dataset: str | None = None, data_dir=None, seed: int = 0):
    """(X_raw, labels, source): ``n`` test samples of the network's dataset, or random inputs when the config's
    dataset is not available (the testbench checks bit-exactness, any input will do). A dataset or data folder the
    caller names must load and fit: a DataError / ConfigError then, never a silent fallback."""
    name = dataset or eng.spec.dataset or "digits"
    try:
        from ..data import load_dataset

        ds = load_dataset(name, data_dir, seed=seed, n_train=1)  # the whole test set: too large an n is named below
        if ds.task != "classification" or int(np.prod(ds.input_shape)) != eng.n_inputs \
                or ds.num_classes != eng.num_classes:
            raise ConfigError(f"dataset {name} does not fit network {eng.spec.name} "
                              f"({eng.n_inputs} inputs, {eng.num_classes} classes)")
    except (DataError, ConfigError, OSError) as exc:
        if dataset is not None or data_dir is not None:
            if isinstance(exc, OSError):
                raise DataError(f"dataset {name}: {exc}") from None
            raise
        rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, 0xB5])
        x = rng.random((n, eng.n_inputs))
        return eng.quantize_inputs(x, count=False), rng.integers(0, eng.num_classes, n), "random inputs in [0, 1)"
    if n > len(ds.x_test):  # not a reason to fall back to random inputs: the dataset is there
        raise DataError(f"--tb-samples {n}: the {ds.name} test set has {len(ds.x_test)} samples")
    x = ds.x_test[:n]
    return eng.quantize_inputs(x, count=False), np.asarray(ds.y_test[:n], dtype=np.int64), f"{ds.name} test set"


def export_hls(eng, out, *, hls4ml: bool = True, kernel: bool = True, backend: str = "vitis", part: str | None = None,
               clock_period: float = 5.0, strategy: str | None = None, reuse_factor: int | None = None, n_tb: int = 32,
               dataset: str | None = None, data_dir=None, model=None, check: bool = False,
               kernel_name: str = "edgelearn_kernel", hls4ml_name: str = "myproject", lanes: int = 1,
               interface: str = KERNEL_INTERFACES[0]) -> ExportResult:
    """Write the hls4ml project and/or the learning kernel of ``eng`` (its current weights) into ``out``.

    Everything is validated before anything is written.  ``check`` compiles both C-simulations (g++) and compares
    them with the engine on the testbench samples (outputs; for the kernel also the weights after the learning
    steps); the mismatching bit counts land in ``result.checks`` and ``export.json``.  ``strategy`` /
    ``reuse_factor`` None: chosen per dense layer (:func:`~edgelearn.hls.hls4ml_export.plan_dense`); what hls4ml
    wrote per layer and every change from the request are in ``export.json`` (``layers``, ``warnings``).
    ``lanes`` / ``interface``: the kernel's (:func:`~edgelearn.hls.kernel.write_kernel_project`); its cycle model
    lands in ``export.json`` (``learning_kernel.cycles``)."""
    from . import DEFAULT_PART
    from .hls4ml_export import SERIALIZED_MODEL, convert_engine
    from .brevitas_model import check_exportable

    if not (hls4ml or kernel):
        raise ConfigError("nothing to export (both the hls4ml project and the learning kernel are disabled)")
    warnings = []
    if hls4ml:
        require("hls4ml", "brevitas", "qonnx", "onnx")
        try:
            check_exportable(eng)
        except (ConfigError, FormatError) as exc:
            if not (kernel and eng.front is not None):
                raise
            # a conv network hls4ml cannot carry exactly still gets its learning kernel, which runs the whole network
            warnings.append(f"{HLS4ML_SKIPPED}: {exc}")
            hls4ml = False
    if kernel:
        check_kernel_options(lanes, interface)
        KernelSpec.from_engine(eng)  # validates rules / formats before anything is written
    if isinstance(n_tb, bool) or not isinstance(n_tb, int) or n_tb < 1:
        raise ConfigError(f"the number of testbench samples must be a positive integer, got {n_tb!r}")
    X, y, source = tb_samples(eng, n_tb, dataset, data_dir, eng.seed)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    res = ExportResult(out=out)
    eng.save(out / "weights.npz")
    t0 = time.perf_counter()
    if hls4ml:
        res.hls4ml = convert_engine(eng, out, backend=backend, model=model, part=part or DEFAULT_PART,
                                    clock_period=clock_period, strategy=strategy, reuse_factor=reuse_factor,
                                    project_name=hls4ml_name, tb_inputs=X)
    if kernel:
        res.kernel = write_kernel_project(eng, out / KERNEL_DIR, project=kernel_name, part=part or DEFAULT_PART,
                                          clock_period=clock_period, tb_samples=(X, y), lanes=lanes,
                                          interface=interface)
    gen_s = time.perf_counter() - t0
    if check:
        res.checks = check_projects(res, eng, X, y)
    res.summary = {
        "network": eng.spec.name, "sizes": eng.sizes, "rules": dict(zip(eng.layer_names, eng.rules)),
        "activations": list(eng.acts), "loss": eng.spec.loss, "formats": eng.formats(), "seed": eng.seed,
        "testbench": {"samples": int(len(y)), "source": source},
        "hls4ml": None if res.hls4ml is None else {
            "dir": HLS4ML_DIR, "backend": res.hls4ml.backend, "part": part or DEFAULT_PART,
            "io_type": res.hls4ml.io_type,
            "requested_strategy": strategy, "requested_reuse_factor": reuse_factor,  # None: chosen per layer
            "layers": res.hls4ml.layers(), "warnings": res.hls4ml.warnings, "serialized_model": SERIALIZED_MODEL,
            "project": hls4ml_name, "files": res.hls4ml.files(),
            "commands": hls4ml_commands(res.hls4ml.backend)},
        "learning_kernel": None if res.kernel is None else {
            "dir": KERNEL_DIR, "project": kernel_name, "files": res.kernel.files(), "lanes": lanes,
            "interface": interface, "rng": res.kernel.spec.program.rng, "cycles": res.kernel.cycles,
            "commands": kernel_commands()},
        "generate_seconds": round(gen_s, 3),
        "checks": res.checks,
        "warnings": warnings,
    }
    (out / "export.json").write_text(json.dumps(res.summary, indent=2, default=str) + "\n")
    return res


def hls4ml_commands(backend: str) -> list[str]:
    if backend == "Vivado":
        return [f"cd {HLS4ML_DIR} && vivado_hls -f build_prj.tcl \"reset=1 csim=1 synth=1 cosim=0 validation=0\""]
    return [f"cd {HLS4ML_DIR} && vitis_hls -f build_prj.tcl   # steps in build_opt.tcl (csim, synth, cosim, ...)",
            f"cd {HLS4ML_DIR} && vitis-run --mode hls --tcl build_prj.tcl   # Vitis 2024.2+"]


def kernel_commands() -> list[str]:
    return [f"cd {KERNEL_DIR} && vitis_hls -f build_prj.tcl   # steps in build_opt.tcl (csim=1 synth=1 by default)",
            f"cd {KERNEL_DIR} && vitis-run --mode hls --tcl build_prj.tcl   # Vitis 2024.2+",
            f"cd {KERNEL_DIR} && AP_TYPES=<dir with ap_fixed.h> ./build_csim.sh   # g++ C-simulation, no Xilinx tools"]


def check_projects(res: ExportResult, eng, X, y) -> dict[str, Any]:
    """Compile and run both C-simulations; count mismatching bits against the engine."""
    checks: dict[str, Any] = {}
    if res.hls4ml is not None:
        t = time.perf_counter()
        res.hls4ml.compile()
        z = res.hls4ml.predict_raw(X)
        ze = eng.output_raw(X)
        fo = eng.precision.layers[-1].accum
        bits = int(_popcount((z ^ ze) & ((1 << fo.width) - 1)).sum())
        checks["hls4ml"] = {"samples": int(len(X)), "outputs": int(ze.size), "mismatching_bits": bits,
                            "seconds": round(time.perf_counter() - t, 3)}
    if res.kernel is not None:
        t = time.perf_counter()
        res.kernel.compile()
        run = res.kernel.run()
        gold = reference_trace(eng, X, y)
        outs, W, b, rnd = reference_final(eng, gold)
        wbits = sum(int(_popcount((np.asarray(a) ^ np.asarray(e)) & ((1 << 63) - 1)).sum()) for a, e in zip(run.W, W))
        bbits = sum(int(_popcount((np.asarray(a) ^ np.asarray(e)) & ((1 << 63) - 1)).sum()) for a, e in zip(run.b, b))
        checks["learning_kernel"] = {
            "samples": int(len(X)), "learning_steps": int(len(X)),
            "output_mismatching_bits": run.output_mismatch_bits, "state_mismatching_bits": run.state_mismatch_bits,
            "weight_mismatching_bits_python": wbits + bbits,
            "weights_changed": int(sum(int((a != w["W"]).sum()) for a, w in zip(W, eng.weights()))),
            "seconds": round(time.perf_counter() - t, 3)}
        if eng.front is not None:  # the testbench's own call of the front end vs the engine's, every sample
            checks["learning_kernel"]["front_mismatching_bits"] = run.front_mismatch_bits
            checks["learning_kernel"]["front_mismatching_bits_python"] = int(
                _popcount(np.asarray(run.features) ^ gold.front_out).sum())
    return checks


def _popcount(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a, dtype=np.int64).view(np.uint64)
    c = np.zeros(a.shape, dtype=np.int64)
    for s in range(0, 64, 8):
        c += np.array([bin(v).count("1") for v in range(256)], dtype=np.int64)[((a >> np.uint64(s)) & np.uint64(0xFF))
                                                                                .astype(np.int64)]
    return c
