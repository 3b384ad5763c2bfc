"""``edgelearn rtl``: generate the on-chip learning datapath (Verilog) of an MLP, and optionally prove it."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from .common import add_engine_args, engine_from_args, positive_int


def register(sub: argparse._SubParsersAction) -> None:
    from ..rtl.synth import TARGETS

    p = sub.add_parser(
        "rtl",
        help="generate the Verilog learning datapath (bit-exact with the fixed-point engine)",
        description="Write the Verilog top level, parameters, memory-initialisation files and file list of an MLP "
                    "that infers and learns on chip (DRTP, sDFA or DFA hidden layers, or frozen shallow ones; the "
                    "output layer learns from its error), computing exactly what the fixed-point engine computes. Weights come "
                    "from --weights (an engine weight file, e.g. trained by 'edgelearn simulate') or are the "
                    "engine's initial values. Without --config: the embedded digits MLP, 8-bit preset. --check "
                    "SIM runs the cocotb testbench (every weight compared after every sample); --synth estimates "
                    "resources with yosys. See docs/rtl.md.",
    )
    p.add_argument("--out", "-o", required=True, help="output directory")
    add_engine_args(p, "hidden layers: drtp, sdfa, dfa or shallow")
    p.add_argument("--parallel", "-p", type=positive_int, default=8,
                   help="parallel MAC units per layer (capped at the layer's outputs; default 8)")
    p.add_argument("--update-lanes", type=positive_int, metavar="Q",
                   help="lanes of the update datapath, a divisor of --parallel (default: all): a word of P weights "
                        "updates in P/Q cycles, with Q rounding adders and draws instead of P")
    p.add_argument("--top", default="el_mlp", help="name of the top-level module (default el_mlp)")
    p.add_argument("--inference-only", action="store_true",
                   help="the same network without the learning logic (for resource comparisons)")
    p.add_argument("--check", choices=("icarus", "verilator"), action="append",
                   help="simulate with cocotb and compare predictions and every weight with the engine after every "
                        "sample (repeatable: both simulators)")
    p.add_argument("--check-samples", type=positive_int, default=16, help="samples of the check (default 16)")
    p.add_argument("--dataset", help="dataset of the check samples (default: the config's)")
    p.add_argument("--data-dir", help="directory of the MNIST / CIFAR files")
    p.add_argument("--synth", nargs="?", const="xilinx", action="append", metavar="TARGET",
                   choices=TARGETS,
                   help="resources with yosys: xilinx (synth_xilinx estimate, the default), ice40-up5k or ice40-hx8k "
                        "(synth_ice40 + nextpnr-ice40 place and route: LUT4/FF/BRAM/DSP and fmax; repeatable)")
    p.add_argument("--pnr-seeds", type=positive_int, default=3,
                   help="nextpnr placement seeds 1..N of an iCE40 target: fmax min / median / max (default 3)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..fileio import output_dir
    from ..rtl import sim as rsim
    from ..rtl.generate import RtlDesign, write_rtl

    # absolute: the simulators run in other folders; staged: write_rtl builds the design beside OUT
    out = output_dir(args.out, staged=True)
    eng = engine_from_args(args, "rtl")
    RtlDesign(eng, parallel=args.parallel, top=args.top, learning=not args.inference_only,
              update_lanes=args.update_lanes)  # validate first
    samples = None
    if args.check:
        if args.inference_only:
            from ..errors import ConfigError

            raise ConfigError("--check compares learning with the engine; drop --inference-only")
        samples = check_samples(eng, args.check_samples, args.dataset, args.data_dir)  # before any file is written
        for s in args.check:
            rsim.require(s)
    if args.synth:
        from ..rtl.synth import require_target

        for target in args.synth:
            require_target(target)
    design = write_rtl(eng, out, parallel=args.parallel, top=args.top, learning=not args.inference_only,
                       update_lanes=args.update_lanes)
    sizes = "-".join(map(str, design.sizes))
    what = "inference only" if args.inference_only else f"rules {', '.join(l.rule for l in design.layers)}"
    upd = "" if args.inference_only or design.update_lanes == design.parallel else \
        f", {design.update_lanes} update lanes"
    print(f"{design.top}: {design.name} {sizes}, {what}, {args.parallel} MAC lanes per layer{upd}")
    print(f"  written to {out}: {design.top}.v, hdl/, mem/, filelist.f, design.json")
    status = 0
    for s in args.check or []:
        rep = check(eng, design, out, s, *samples)
        front_bits = rep.get("front_bits_mismatched", 0)  # the conv front end's features (a network with one)
        fb_bits = rep.get("q_bits_mismatched", 0) + rep.get("p_bits_mismatched", 0)  # ldfa's factors Q, P
        ok = (rep["pred_mismatches"] == 0 and rep["weight_bits_mismatched"] == 0 and rep["bias_bits_mismatched"] == 0
              and front_bits == 0 and fb_bits == 0)
        status |= 0 if ok else 1
        print(f"  {s}: {rep['samples']} samples, predictions {rep['samples'] - rep['pred_mismatches']}/"
              f"{rep['samples']} equal, {rep['weights_compared']:,} weight and {rep['biases_compared']:,} bias "
              f"comparisons{', %d features' % rep['features_compared'] if 'features_compared' in rep else ''}"
              f"{', %d Q and P words' % rep['factors_compared'] if 'factors_compared' in rep else ''}, "
              f"mismatching bits {rep['weight_bits_mismatched'] + rep['bias_bits_mismatched'] + front_bits + fb_bits}; "
              f"compute cycles per training sample {rep['mean_compute_cycles']:.0f} "
              f"(ideal {rep['mean_ideal_cycles']:.0f})")
    for target in dict.fromkeys(args.synth or []):
        from ..rtl.synth import synthesize, synthesize_ice40

        if target == "xilinx":
            res = synthesize(out, design.top)
            r = res["resources"]
            print(f"  yosys synth_xilinx: LUT {r['LUT']:,}  FF {r['FF']:,}  DSP {r['DSP']}  BRAM36 {r['BRAM']:g}  "
                  f"LUTRAM {r['LUTRAM']}  SRL {r['SRL']}  area {r['AREA_LE']:,.0f} LUT-eq. (docs/rtl.md)  "
                  f"({res['seconds']:.0f} s; log {out / 'yosys.log'})")
            (out / "resources.json").write_text(json.dumps(res, indent=1) + "\n")
            continue
        res = synthesize_ice40(out, target, seeds=range(1, args.pnr_seeds + 1), top=design.top)
        r, f = res["resources"], res["fmax"]
        print(f"  {target} (synth_ice40 + nextpnr-ice40): LUT4 {r['LUT4']:,}  FF {r['FF']:,}  BRAM {r['BRAM']}  "
              f"DSP {r['DSP']}  fmax {f['median']:.1f} MHz (min {f['min']:.1f}, max {f['max']:.1f} over "
              f"{args.pnr_seeds} seeds; {res['seconds']:.0f} s)")
        (out / f"resources_{target}.json").write_text(json.dumps(res, indent=1) + "\n")
    return status


def check_samples(eng, n: int, dataset: str | None, data_dir):
    """(X_raw, labels) of the check: the first ``n`` training samples of the dataset, which must fit the network."""
    import numpy as np

    from ..data import load_dataset
    from .common import check_engine_dataset

    from ..errors import DataError

    name = dataset or eng.spec.dataset or "digits"
    ds = load_dataset(name, data_dir, seed=0, n_test=1)  # whole: a too large n is then named by its option
    if n > len(ds.x_train):
        raise DataError(f"--check-samples {n}: dataset {name} has {len(ds.x_train)} training samples")
    check_engine_dataset(eng, ds, name)
    X = eng.quantize_inputs(ds.x_train[:n], count=False).astype(np.int64)
    return X, eng._labels(ds.y_train[:n], X.shape[0])


def check(eng, design, out: Path, sim: str, X, y) -> dict:
    """Lockstep cocotb run on the samples ``X`` (raw inputs) and labels ``y`` (:func:`check_samples`): report of the
    packaged bench's mlp_lockstep."""
    import numpy as np

    from ..rtl.verify import run_bench

    rep = run_bench(eng, design, out, sim, "mlp_lockstep", X, y, np.ones(len(y), dtype=bool))
    gold = rep.pop("golden")
    report = Path(out).resolve() / f"check_{sim}.json"
    nnz = np.stack([gold[f"nnz{k}"] for k in range(len(design.layers))], axis=1)
    rep["mean_compute_cycles"] = float(np.mean(rep["compute_cycles"]))
    rep["mean_ideal_cycles"] = float(np.mean([design.ideal_cycles(list(r), True) for r in nnz]))
    report.write_text(json.dumps(rep, indent=1) + "\n")
    return rep
