"""The generated learning datapath against the fixed-point engine, bit for bit, in Icarus and Verilator.

The pytest runner functions (bottom) build an engine for each configuration, generate its RTL
(edgelearn.rtl.generate), record the engine's golden run (edgelearn.rtl.verify.golden: the prediction of every
sample before its update and every weight and bias after it) and run the cocotb coroutines below on the design:

* ``mlp_lockstep``: one sample at a time; after each, the prediction and -- read back through the weight port --
  every weight and bias of every layer are compared with the engine; mismatching bits are counted.
* ``mlp_stream``: samples back to back (the design overlaps layers and samples); predictions are compared on the
  fly, the final weights at the end; cycles are measured (throughput and per-sample latency).

Each coroutine writes a JSON report (mismatches, comparisons made, cycles) that the runner function asserts on.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pytest

try:
    import cocotb
    from cocotb.clock import Clock
    from cocotb.triggers import FallingEdge, ReadOnly, RisingEdge
    from cocotb.utils import get_sim_time
except ImportError:  # pragma: no cover
    cocotb = None

PERIOD_NS = 10


# =============================================================================================================
# cocotb side (runs inside the simulator; numpy and edgelearn.rtl.layout only)


class _Bench:
    def __init__(self, dut):
        from edgelearn.rtl.layout import mismatched_bits, unpack

        self.dut = dut
        self.unpack = unpack
        self.mismatched_bits = mismatched_bits
        self.design = json.loads(Path(os.environ["EL_DESIGN"]).read_text())
        g = np.load(os.environ["EL_GOLDEN"])
        self.g = {k: g[k] for k in g.files}
        self.layers = self.design["layers"]
        self.in_mask = (1 << self.design["ports"]["s_data"]) - 1
        self.report: dict = {"pred_mismatches": 0, "weight_bits_mismatched": 0, "bias_bits_mismatched": 0,
                             "weights_compared": 0, "biases_compared": 0, "snapshots_compared": 0,
                             "first_mismatch": None}
        self.preds: list[tuple[int, float]] = []

    def now(self) -> float:
        return get_sim_time(unit="ns") / PERIOD_NS

    async def reset(self):
        d = self.dut
        Clock(d.clk, PERIOD_NS, unit="ns").start()
        d.rst.value = 1
        d.s_valid.value = 0
        d.s_data.value = 0
        d.s_label.value = 0
        d.s_train.value = 0
        d.m_ready.value = 1
        d.rd_layer.value = 0
        d.rd_addr.value = 0
        for _ in range(3):
            await RisingEdge(d.clk)
        d.rst.value = 0
        await FallingEdge(d.clk)

    async def send(self, n: int):
        d = self.dut
        while not int(d.s_ready.value):
            await FallingEdge(d.clk)
        d.s_label.value = int(self.g["labels"][n])
        d.s_train.value = int(self.g["train"][n])
        for v in self.g["X"][n]:
            d.s_data.value = int(v) & self.in_mask
            d.s_valid.value = 1
            await FallingEdge(d.clk)  # the beat is taken at the rising edge in between (s_ready stays 1)
        d.s_valid.value = 0

    async def monitor(self, count: int):
        d = self.dut
        for _ in range(count):
            await RisingEdge(d.m_valid)
            await ReadOnly()
            self.preds.append((int(d.m_pred.value), self.now()))

    async def wait_idle(self):
        d = self.dut
        await FallingEdge(d.clk)
        while int(d.busy.value) or int(d.m_valid.value):
            if int(d.busy.value):
                await FallingEdge(d.busy)
            await FallingEdge(d.clk)

    async def read_weights(self):
        """Every weight and bias word through the read-back port (one word per cycle)."""
        d = self.dut
        out = []
        for k, lay in enumerate(self.layers):
            d.rd_layer.value = k
            words, bwords = [], []
            n = lay["words"]
            for a in range(n):
                d.rd_addr.value = a
                await FallingEdge(d.clk)  # registered read: the word of address a after the rising edge
                words.append(int(d.rd_wdata.value))
                if a < lay["groups"]:
                    bwords.append(int(d.rd_bdata.value))
            wf, bf = _parse(lay["formats"]["weight"]), _parse(lay["formats"]["bias"])
            W = self.unpack(words, lay["lanes"], wf[0], wf[1], lay["n_out"], lay["n_in"])
            b = self.unpack(bwords, lay["lanes"], bf[0], bf[1], lay["n_out"], 1)[0]
            out.append((W, b, wf[0], bf[0]))
        return out

    def compare(self, got, snap_index: int, sample: int):
        for k, (W, b, ww, bw) in enumerate(got):
            eW = self.g[f"W{k}"][snap_index]
            eb = self.g[f"b{k}"][snap_index]
            mw = self.mismatched_bits(W, eW, ww)
            mb = self.mismatched_bits(b, eb, bw)
            self.report["weight_bits_mismatched"] += mw
            self.report["bias_bits_mismatched"] += mb
            self.report["weights_compared"] += W.size
            self.report["biases_compared"] += b.size
            if (mw or mb) and self.report["first_mismatch"] is None:
                j, i = np.argwhere(W != eW)[0] if mw else (None, int(np.argwhere(b != eb)[0][0]))
                self.report["first_mismatch"] = {
                    "sample": sample, "layer": k, "row": None if j is None else int(j), "col": int(i),
                    "rtl": int(W[j, i] if mw else b[i]), "engine": int(eW[j, i] if mw else eb[i])}
        self.report["snapshots_compared"] += 1

    def write(self, extra: dict):
        self.report.update(extra)
        Path(os.environ["EL_REPORT"]).write_text(json.dumps(self.report, indent=1))


def _parse(spelling: str) -> tuple[int, bool]:
    """Width and signedness of a 'fixed<W,I,Q,O>' / 'ufixed<...>' spelling."""
    w = int(spelling.split("<", 1)[1].split(",", 1)[0])
    return w, not spelling.startswith("u")


if cocotb is not None:
    @cocotb.test()
    async def mlp_lockstep(dut):
        """One sample at a time: prediction, then every weight and bias (at the golden snapshots)."""
        tb = _Bench(dut)
        await tb.reset()
        N = len(tb.g["labels"])
        snaps = {int(s): i for i, s in enumerate(tb.g["snap"])}
        lat, comp = [], []
        cocotb.start_soon(tb.monitor(N))
        for n in range(N):
            t0 = tb.now()
            await tb.send(n)
            t1 = tb.now()  # the last beat was taken half a cycle ago
            while len(tb.preds) <= n:
                await FallingEdge(dut.clk)
            await tb.wait_idle()
            lat.append(tb.now() - t0)
            comp.append(tb.now() - t1)
            if tb.preds[n][0] != int(tb.g["preds"][n]):
                tb.report["pred_mismatches"] += 1
            if n in snaps:
                tb.compare(await tb.read_weights(), snaps[n], n)
        tb.write({"mode": "lockstep", "samples": N, "cycles_per_sample": lat, "compute_cycles": comp})
        assert tb.report["pred_mismatches"] == 0, tb.report
        assert tb.report["weight_bits_mismatched"] == 0 and tb.report["bias_bits_mismatched"] == 0, tb.report

    @cocotb.test()
    async def mlp_stream(dut):
        """Samples back to back; predictions on the fly, final weights at the end, cycles measured."""
        tb = _Bench(dut)
        await tb.reset()
        N = len(tb.g["labels"])
        mon = cocotb.start_soon(tb.monitor(N))
        t0 = tb.now()
        starts = []
        for n in range(N):
            await tb.send(n)
            starts.append(tb.now())
        await mon
        await tb.wait_idle()
        t1 = tb.now()
        bad = sum(int(p != int(e)) for (p, _), e in zip(tb.preds, tb.g["preds"]))
        tb.report["pred_mismatches"] = bad
        tb.compare(await tb.read_weights(), len(tb.g["snap"]) - 1, N - 1)
        times = [t for _, t in tb.preds]
        tb.write({"mode": "stream", "samples": N, "cycles_total": t1 - t0,
                  "cycles_per_sample": (times[-1] - times[0]) / max(1, N - 1) if N > 1 else t1 - t0,
                  "wall_cycles": t1 - t0})
        assert bad == 0, tb.report
        assert tb.report["weight_bits_mismatched"] == 0 and tb.report["bias_bits_mismatched"] == 0, tb.report


# =============================================================================================================
# pytest side: configurations, golden runs, both simulators


def _spec(sizes, acts, loss="bce", rule="drtp", rules=None, name="rtl-test"):
    from edgelearn.network import network_from_dict

    layers = [{"type": "linear", "out": n, "act": a, "name": f"fc{k + 1}"} for k, (n, a) in
              enumerate(zip(sizes[1:-1], acts))]
    layers.append({"type": "linear", "out": sizes[-1], "name": "out"})
    return network_from_dict({"name": name, "input_shape": [sizes[0]], "num_classes": sizes[-1], "loss": loss,
                              "rule": rule, "rules": rules or {}, "layers": layers})


#: configurations: network, formats, parallel MAC units, simulators
CONFIGS = {
    # 8-bit preset: stochastic rounding of weights and biases (LFSR draws), saturation, stored B, tanh tables
    "drtp-8b-stoch-p4": dict(sizes=[16, 12, 4], acts=["tanh"], bits=8, parallel=4, sims=("icarus", "verilator")),
    # two DRTP hidden layers, B regenerated by the LFSR, 6-bit preset, lanes that do not divide the layer sizes
    "drtp-2hidden-lfsr-6b-p3": dict(sizes=[20, 10, 7, 3], acts=["tanh", "tanh"], bits=6, parallel=3,
                                    feedback="lfsr", sims=("icarus", "verilator")),
    # hard-tanh, a narrow saturating accumulator (every MAC rounds and saturates), RND_CONV + WRAP weights,
    # RND_ZERO errors, TRN_ZERO activations
    "hardtanh-narrowacc-rndconv-wrap-p2": dict(
        sizes=[12, 9, 5], acts=["hardtanh"], bits=8, parallel=2, sims=("icarus",),
        formats={"accum": "fixed<12,4,RND,SAT>", "weight": "fixed<8,2,RND_CONV,WRAP>",
                 "bias": "fixed<8,3,RND_INF,SAT_SYM>", "error": "fixed<8,1,RND_ZERO,SAT>",
                 "act": "fixed<8,1,TRN_ZERO,SAT>"}),
    # shallow (frozen relu hidden layer), mse loss, SAT_SYM / SAT_ZERO, more lanes than outputs
    "shallow-relu-mse-p8": dict(sizes=[10, 8, 3], acts=["relu"], loss="mse", rule="shallow", bits=8, parallel=8,
                                sims=("icarus",),
                                formats={"weight": "fixed<8,2,RND_MIN_INF,SAT_SYM>", "error": "fixed<8,1,RND,SAT_ZERO>",
                                         "out.act": "fixed<8,1,RND,SAT>"}),
    # sign-DFA: the hidden layer waits for the output error, projects sign(e) through a stored B (one word of P
    # entries per cycle), then updates; 8-bit preset
    "sdfa-8b-stoch-p4": dict(sizes=[16, 12, 4], acts=["tanh"], rule="sdfa", bits=8, parallel=4,
                             sims=("icarus", "verilator")),
    # DFA with B regenerated by the LFSR (P entries per cycle), two hidden layers, lanes dividing nothing, 10 bits
    "dfa-2hidden-lfsr-10b-p3": dict(sizes=[20, 10, 7, 3], acts=["tanh", "hardtanh"], rule="dfa", bits=10,
                                    parallel=3, feedback="lfsr", sims=("icarus",)),
    # sigmoid hidden table, 16-bit preset (RND weights), one MAC unit
    "sigmoid-16b-p1": dict(sizes=[8, 6, 4], acts=["sigmoid"], bits=16, parallel=1, sims=("icarus",)),
}


def _engine(cfg, seed=0):
    from edgelearn.fixed.engine import FixedEngine

    spec = _spec(cfg["sizes"], cfg["acts"], cfg.get("loss", "bce"), cfg.get("rule", "drtp"))
    return FixedEngine(spec, bits=cfg["bits"], seed=seed, formats=cfg.get("formats"), feedback=cfg.get("feedback"),
                       lr_shift=cfg.get("lr_shift", 3), threads=1)


def _random_samples(eng, n: int, seed: int):
    """Random raw inputs over the whole input range (a third of them zero: the list skips them), random labels,
    every fourth sample inference only."""
    rng = np.random.default_rng(seed)
    fin = eng.precision.layers[0].input
    X = rng.integers(fin.min_raw, fin.max_raw + 1, size=(n, eng.sizes[0]))
    X[rng.random(X.shape) < 0.33] = 0
    y = rng.integers(0, eng.num_classes, size=n)
    train = (np.arange(n) % 4) != 3
    return X, y, train


def run_design(eng, X, y, train, prj: Path, sim: str, testcase: str, parallel: int, snapshots=None) -> dict:
    """Generate, build and simulate; returns the testbench report (plus the golden run and the design)."""
    from edgelearn.rtl import sim as rsim
    from edgelearn.rtl.generate import write_rtl
    from edgelearn.rtl.verify import golden

    design = write_rtl(eng, prj, parallel=parallel)
    gold = golden(eng, X, y, train, snapshots=snapshots, path=prj / "golden.npz")
    build = prj / f"sim_{sim}"
    srcs = [prj / line for line in (prj / "filelist.f").read_text().split()]
    runner = rsim.build(sim, srcs, design.top, build)
    report = prj / f"report_{sim}_{testcase}.json"
    t0 = time.perf_counter()
    rsim.test(runner, design.top, "test_mlp", build, run_dir=prj, testcase=testcase,
              extra_env={"EL_DESIGN": str(prj / "design.json"), "EL_GOLDEN": str(prj / "golden.npz"),
                         "EL_REPORT": str(report)})
    rep = json.loads(report.read_text())
    rep["sim_seconds"] = time.perf_counter() - t0
    rep["golden"] = gold
    rep["design"] = design
    return rep


def _params():
    out = []
    for name, cfg in CONFIGS.items():
        for sim in ("icarus", "verilator"):
            marks = [] if sim in cfg["sims"] else [pytest.mark.skip(reason=f"{name} runs on {', '.join(cfg['sims'])}")]
            out.append(pytest.param(name, sim, id=f"{name}-{sim}", marks=marks))
    return out


def _need(sim):
    from edgelearn.rtl import sim as rsim

    if not rsim.available(sim):
        pytest.skip(f"{sim} is not installed (scripts/setup.sh installs it)")


@pytest.mark.parametrize("name,sim", [p for p in _params() if not p.marks])
def test_every_weight_matches_the_engine_after_every_sample(name, sim, tmp_path):
    _need(sim)
    cfg = CONFIGS[name]
    eng = _engine(cfg)
    X, y, train = _random_samples(eng, 24, seed=7)
    rep = run_design(eng, X, y, train, tmp_path / "prj", sim, "mlp_lockstep", cfg["parallel"])
    n_w = sum(a * b for a, b in zip(cfg["sizes"][:-1], cfg["sizes"][1:]))
    assert rep["snapshots_compared"] == 24
    assert rep["weights_compared"] == 24 * n_w
    assert rep["pred_mismatches"] == 0
    assert rep["weight_bits_mismatched"] == 0 and rep["bias_bits_mismatched"] == 0, rep["first_mismatch"]
    # the run really learned something: the weights moved
    assert not np.array_equal(rep["golden"]["W0"][-1], eng.weights()[0]["W"]) or cfg.get("rule") == "shallow"
    assert not np.array_equal(rep["golden"][f"W{len(cfg['sizes']) - 2}"][-1], eng.weights()[-1]["W"])


def _real_run(eng, ds, n_train: int, n_test: int):
    """Training samples (real data, in the engine's sample order) followed by inference-only test samples."""
    Xtr = eng.quantize_inputs(ds.x_train[:n_train], count=False)
    Xte = eng.quantize_inputs(ds.x_test[:n_test], count=False)
    X = np.concatenate([Xtr, Xte]).astype(np.int64)
    y = np.concatenate([ds.y_train[:n_train], ds.y_test[:n_test]]).astype(np.int64)
    train = np.arange(len(y)) < n_train
    return X, y, train


def _check_stream(rep, n_samples: int, n_test: int):
    assert rep["snapshots_compared"] == 1 and rep["pred_mismatches"] == 0
    assert rep["weight_bits_mismatched"] == 0 and rep["bias_bits_mismatched"] == 0, rep["first_mismatch"]
    g = rep["golden"]
    acc = float(np.mean(g["preds"][-n_test:] == g["labels"][-n_test:]))
    chance = 1.0 / len(np.unique(g["labels"]))
    assert acc >= 2 * chance, f"the datapath's test accuracy after the short run is only {acc:.2f}"
    return acc


@pytest.mark.parametrize("sim", ["icarus", "verilator"])
def test_short_training_run_on_real_digits(sim, tmp_path):
    """The embedded digits MLP (64-128-10, 8-bit preset, 16 MAC lanes) learns on real handwritten digits in the
    datapath, streamed back to back: every prediction (training and test) and the final weights equal the
    engine's."""
    _need(sim)
    from edgelearn.data import load_dataset
    from edgelearn.fixed.engine import FixedEngine

    eng = FixedEngine(None, bits=8, seed=0, lr_shift=4, threads=1)
    ds = load_dataset("digits", seed=0)
    n_train, n_test = (300, 100) if sim == "verilator" else (150, 40)  # Icarus is ~10x slower on this design
    X, y, train = _real_run(eng, ds, n_train, n_test)
    rep = run_design(eng, X, y, train, tmp_path / "prj", sim, "mlp_stream", 16, snapshots=[len(y) - 1])
    _check_stream(rep, len(y), n_test)


def test_short_training_run_on_real_mnist(mnist_dir, tmp_path):
    """784-64-10 on real MNIST in Verilator (32 MAC lanes): 200 online DRTP updates, then 100 test images."""
    _need("verilator")
    from edgelearn.data import load_dataset
    from edgelearn.fixed.engine import FixedEngine

    eng = FixedEngine(_spec([784, 64, 10], ["tanh"], name="mnist-784-64-10"), bits=8, seed=0, lr_shift=4, threads=1)
    ds = load_dataset("mnist", mnist_dir, n_train=200, n_test=100)
    X, y, train = _real_run(eng, ds, 200, 100)
    rep = run_design(eng, X, y, train, tmp_path / "prj", "verilator", "mlp_stream", 32, snapshots=[len(y) - 1])
    _check_stream(rep, len(y), 100)
