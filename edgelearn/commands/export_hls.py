"""``edgelearn export-hls``: the hls4ml inference project and the on-chip learning kernel of a network."""
from __future__ import annotations

import argparse
import sys

from ..hls import DEFAULT_PART, KERNEL_INTERFACES as INTERFACES, MAX_UNROLLED_MULTS
from ..program import SUPPORT
from .common import add_engine_args, engine_from_args, positive_float, positive_int


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export-hls",
        help="write the hls4ml project and the HLS learning kernel (bit-exact with the fixed-point engine)",
        description="Write two HLS projects for an MLP, or a frozen conv front end before an MLP (its kernels in "
                    "ROM in the learning kernel): OUT/hls4ml_prj (inference: Brevitas fixed-point model -> "
                    "QONNX -> hls4ml, Vitis backend by default, io_stream for a conv network) and "
                    "OUT/learning_kernel (HLS C++ that infers and "
                    "applies the rule's update per sample: DRTP/sDFA/DFA, or kp/LDFA/dLDFA with their feedback "
                    "trained on chip). Both are bit-exact in C-simulation with the "
                    "fixed-point engine. The weights come from --weights (a file of 'edgelearn simulate' or "
                    "FixedEngine.save, used as is), from Brevitas QAT (--qat-epochs), or the engine's initial "
                    "values. Without --config: the embedded digits MLP, 8-bit preset. Run the results with "
                    "'vitis_hls -f build_prj.tcl' in each project (see OUT/export.json and docs/hls.md).",
    )
    p.add_argument("--out", "-o", required=True, help="output directory")
    add_engine_args(p, f"kernel: {', '.join(SUPPORT['hls'].hidden_rules)} hidden layers")
    p.add_argument("--qat-epochs", type=int, default=0,
                   help="Brevitas quantization-aware training epochs (backprop, Adam) before the export (default 0: "
                        "the engine's initial weights, or --weights)")
    p.add_argument("--qat-lr", type=positive_float, default=1e-3, help="QAT learning rate (default 1e-3)")
    p.add_argument("--dataset", help="dataset for QAT and the testbench samples (default: the config's)")
    p.add_argument("--data-dir", help="directory of the MNIST / CIFAR files")
    p.add_argument("--n-train", type=positive_int, help="QAT on the first N training samples only")
    p.add_argument("--tb-samples", type=positive_int, default=32,
                   help="samples in the testbenches' tb_data (default 32; the kernel learns from each)")
    p.add_argument("--backend", choices=("vitis", "vivado"), default="vitis", help="hls4ml backend (default vitis)")
    p.add_argument("--part", help=f"FPGA part of both projects (default {DEFAULT_PART}, the Zynq-7020 of the PYNQ-Z2)")
    p.add_argument("--clock-period", type=positive_float, default=5.0, help="clock period in ns (default 5)")
    p.add_argument("--strategy", choices=("Latency", "Resource"),
                   help="hls4ml dense strategy of every layer (default: per layer, Latency while the layer unrolls "
                        f"at most {MAX_UNROLLED_MULTS} multiplications, else Resource with the smallest reuse factor "
                        "that fits; where the accumulator can overflow or round, one that is a multiple of the layer's "
                        "inputs, which keeps the engine's summation order)")
    p.add_argument("--reuse-factor", type=positive_int,
                   help="hls4ml reuse factor of every layer (default: per layer, see --strategy); hls4ml may "
                        "change it to the nearest one it accepts, which is reported")
    p.add_argument("--lanes", type=positive_int, default=1,
                   help="learning kernel: output neurons per cycle in its forward, signal and update loops "
                        "(unrolled, memories partitioned; default 1). The bits do not depend on it")
    p.add_argument("--interface", choices=INTERFACES, default=INTERFACES[0],
                   help="learning kernel ports: ap_memory (default: ap_ctrl_hs and memory ports), axi (s_axilite "
                        "control and scalars, m_axi sample/outputs/LFSR states, weights in BRAM ports) or axis "
                        "(as axi, the sample as an AXI4-Stream)")
    p.add_argument("--no-hls4ml", action="store_true", help="write only the learning kernel (no hls4ml needed)")
    p.add_argument("--no-kernel", action="store_true", help="write only the hls4ml project")
    p.add_argument("--check", action="store_true",
                   help="compile both C-simulations with g++ and compare them with the engine bit for bit")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..errors import ConfigError
    from ..fileio import output_dir
    from ..hls.project import export_hls
    from ..hls.toolchain import require

    out = output_dir(args.out)
    if args.qat_epochs < 0:
        raise ConfigError(f"--qat-epochs must be >= 0, got {args.qat_epochs}")
    if args.no_hls4ml and args.no_kernel:
        raise ConfigError("--no-hls4ml and --no-kernel together leave nothing to export")
    if args.no_hls4ml and (args.strategy is not None or args.reuse_factor is not None):
        raise ConfigError("--strategy and --reuse-factor set the hls4ml project, which --no-hls4ml leaves out "
                          "(the learning kernel's parallelism is --lanes)")
    if not args.no_hls4ml:
        try:
            require("hls4ml", "brevitas", "qonnx", "onnx")
        except Exception as exc:
            raise type(exc)(f"{exc} (or pass --no-hls4ml to write only the learning kernel)") from None
    if args.qat_epochs and args.no_hls4ml:
        require("brevitas")
    eng = engine_from_args(args, "export-hls")
    model = None
    origin = f"weights from {args.weights}" if args.weights else "the engine's initial weights"
    if args.qat_epochs:
        model, hist = _qat(eng, args)
        origin = (f"Brevitas QAT, {args.qat_epochs} epoch(s), final train accuracy "
                  f"{hist[-1]['train_accuracy']:.4f}" + (f" (from {args.weights})" if args.weights else ""))
    res = export_hls(eng, out, hls4ml=not args.no_hls4ml, kernel=not args.no_kernel,
                     backend=args.backend, part=args.part, clock_period=args.clock_period, strategy=args.strategy,
                     reuse_factor=args.reuse_factor, n_tb=args.tb_samples, dataset=args.dataset,
                     data_dir=args.data_dir, model=model, check=args.check, lanes=args.lanes,
                     interface=args.interface)
    _print(res, origin)
    for line in res.summary.get("warnings", []) + (res.summary.get("hls4ml") or {}).get("warnings", []):
        print(f"edgelearn export-hls: warning: {line}", file=sys.stderr)
    return 0 if _checks_ok(res.checks) else 1


def _qat(eng, args):
    from ..data import load_dataset
    from ..hls.brevitas_model import build_qat_model, engine_from_model, load_engine_weights, qat_train
    from .common import check_engine_dataset

    name = args.dataset or eng.spec.dataset or "digits"
    ds = load_dataset(name, args.data_dir, seed=args.seed, n_train=args.n_train)
    check_engine_dataset(eng, ds, name)
    model = build_qat_model(eng)
    load_engine_weights(model, eng)
    hist = qat_train(model, eng, ds.x_train, ds.y_train, epochs=args.qat_epochs, lr=args.qat_lr,
                     batch_size=int(eng.spec.train.get("batch_size", 32)), seed=args.seed)
    engine_from_model(model, eng)
    acc = eng.evaluate(ds.x_test, ds.y_test) if len(ds.y_test) else float("nan")
    hist[-1]["engine_test_accuracy"] = acc
    print(f"QAT: {args.qat_epochs} epoch(s) on {ds.name}: loss {hist[-1]['loss']:.4f}, "
          f"fixed-point engine test accuracy {acc:.4f}")
    return model, hist


def _checks_ok(checks) -> bool:
    for c in (checks or {}).values():
        for key, v in c.items():
            if "mismatching_bits" in key and v not in (0, None):
                return False
    return True


def _print_cycles(cycles) -> None:
    """The learning kernel's cycle model (a model from the schedule: no synthesis report here)."""
    if not cycles:
        return
    w = cycles["worst_case"]
    print(f"  lanes {w['lanes']}, interface {w['interface']}; expected cycles per sample (model from the schedule, "
          f"not a synthesis report), {w['clock_mhz']:g} MHz:")
    for key, title in (("worst_case", "every input non-zero"), ("testbench", "testbench samples")):
        c = cycles.get(key)
        if c:
            print(f"    {title}: learning {c['cycles_per_sample']:,} cycles ({c['samples_per_s']:,.0f} samples/s), "
                  f"inference {c['inference_cycles_per_sample']:,} ({c['inference_samples_per_s']:,.0f} samples/s)")


def _print(res, origin: str) -> None:
    s = res.summary
    print(f"{s['network']} ({' -> '.join(map(str, s['sizes']))}), {origin}; testbench: "
          f"{s['testbench']['samples']} samples ({s['testbench']['source']})")
    for key, title in (("hls4ml", "hls4ml inference project"), ("learning_kernel", "learning kernel")):
        info = s.get(key)
        if not info:
            continue
        print(f"\n{title}: {res.out / info['dir']}" + (f" (part {info['part']})" if "part" in info else "")
              + (f", {info['io_type']}" if info.get("io_type") else ""))
        for la in info.get("layers", []):
            per = ""
            if la.get("kind", "dense") != "dense":  # Resource takes reuse-factor steps per position
                per = (" per output position" if la["strategy"] == "Latency" else
                       f" per step, {la['reuse_factor']} steps per output position")
            print(f"  {la.get('kind', 'dense')} {la['layer']} {la['n_in']}x{la['n_out']}: {la['strategy']}, reuse "
                  f"factor {la['reuse_factor']} ({la['unrolled_multiplications']} multiplications unrolled{per})")
        if info.get("serialized_model"):
            print(f"  rebuild exactly from {res.out / info['serialized_model']} (hls4ml_config.yml alone does not)")
        files = info["files"]
        shown = [f for f in files if not f.startswith(("firmware/ap_types/", "firmware/nnet_utils/"))]
        hidden = len(files) - len(shown)
        for f in shown:
            print(f"  {f}")
        if hidden:
            print(f"  (+ {hidden} files under firmware/ap_types/ and firmware/nnet_utils/)")
        _print_cycles(info.get("cycles"))
        print("  run with:")
        for cmd in info["commands"]:
            print(f"    {cmd}")
    for key, c in (res.checks or {}).items():
        bits = {k: v for k, v in c.items() if "mismatching_bits" in k}
        print(f"check {key}: {c['samples']} samples, " + ", ".join(f"{k} {v}" for k, v in bits.items())
              + f" ({c['seconds']:.1f} s)")
    print(f"\nsummary: {res.out / 'export.json'}   engine state: {res.out / 'weights.npz'}")
    sys.stdout.flush()
