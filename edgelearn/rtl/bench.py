"""The cocotb testbench of a generated learning datapath: the design against the engine's golden run, bit for bit.

It ships inside the package so that ``edgelearn rtl --check`` works from an installed wheel; the pytest runner
functions that drive it over many configurations are in ``rtl_tb/test_mlp.py``. A runner (:func:`edgelearn.rtl.verify.run_bench`)
generates the RTL (edgelearn.rtl.generate), records the engine's golden run (edgelearn.rtl.verify.golden: the
prediction of every sample before its update and every weight and bias after it) and runs these coroutines:

* ``mlp_lockstep``: one sample at a time; after each, the prediction and -- read back through the weight port --
  every weight and bias of every layer are compared with the engine; mismatching bits are counted.  With
  ``EL_DISTURB=1`` the stream has random valid / ready gaps and two mid-run resets (between two samples, and in
  the middle of a sample's input beats, which drops that partial sample: it is then sent again), and the design
  must still match an engine that never saw a reset (docs/rtl.md "Interface").  With ``EL_LOAD`` (an ``.npz`` of
  raw ``W{k}``, ``b{k}``) it first writes that set through the weight load port and reads it back.
* ``mlp_stream``: samples back to back (the design overlaps layers and samples); predictions are compared on the
  fly, the final weights at the end; cycles are measured (throughput and per-sample latency).

Each coroutine writes a JSON report (mismatches, comparisons made, cycles) that the runner function asserts on.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

try:
    import cocotb
    from cocotb.clock import Clock
    from cocotb.triggers import FallingEdge, ReadOnly, RisingEdge
    from cocotb.utils import get_sim_time
except ImportError:  # pragma: no cover
    cocotb = None

PERIOD_NS = 10


# =============================================================================================================
# runs inside the simulator; numpy, edgelearn.program and edgelearn.rtl.layout only


class _Bench:
    def __init__(self, dut):
        from edgelearn.program import GoldenTrace
        from edgelearn.rtl.layout import mismatched_bits, unpack

        self.dut = dut
        self.unpack = unpack
        self.mismatched_bits = mismatched_bits
        self.design = json.loads(Path(os.environ["EL_DESIGN"]).read_text())
        self.g = GoldenTrace.load(os.environ["EL_GOLDEN"])
        self.layers = self.design["layers"]
        self.in_mask = (1 << self.design["ports"]["s_data"]) - 1
        self.report: dict = {"pred_mismatches": 0, "weight_bits_mismatched": 0, "bias_bits_mismatched": 0,
                             "weights_compared": 0, "biases_compared": 0, "snapshots_compared": 0,
                             "first_mismatch": None}
        self.preds: list[tuple[int, float]] = []
        # a front end (el_front.v): its feature writes into the first layer, per sample (monitor_front)
        self.front = self.design.get("front")
        self.feats: list[tuple[int, int]] = []
        # random valid / ready gaps and mid-run resets (mlp_lockstep), from a fixed seed
        self.disturb = os.environ.get("EL_DISTURB") == "1"
        self.rng = np.random.default_rng(int(os.environ.get("EL_DISTURB_SEED", "1")))

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
        d.wr_wen.value = 0
        d.wr_ben.value = 0
        for _ in range(3):
            await RisingEdge(d.clk)
        d.rst.value = 0
        await FallingEdge(d.clk)

    async def send(self, n: int, beats: int | None = None):
        """Stream sample ``n`` (only its first ``beats`` inputs if given: a sample cut short)."""
        d = self.dut
        while not int(d.s_ready.value):
            await FallingEdge(d.clk)
        d.s_label.value = int(self.g.labels[n])
        d.s_train.value = int(self.g.train[n])
        for v in self.g.X[n][:beats]:
            if self.disturb and self.rng.random() < 0.25:  # a gap of 1-3 cycles before this beat
                d.s_valid.value = 0
                for _ in range(int(self.rng.integers(1, 4))):
                    await FallingEdge(d.clk)
            d.s_data.value = int(v) & self.in_mask
            d.s_valid.value = 1
            await FallingEdge(d.clk)  # the beat is taken at the rising edge in between (s_ready stays 1)
        d.s_valid.value = 0

    async def pulse_reset(self, cycles: int = 3):
        """Assert rst for a few cycles (from a falling edge) mid-run."""
        d = self.dut
        d.s_valid.value = 0
        d.rst.value = 1
        for _ in range(cycles):
            await FallingEdge(d.clk)
        d.rst.value = 0
        self.report["resets"] = self.report.get("resets", 0) + 1

    async def toggle_ready(self):
        """m_ready low on random cycles (a consumer that stalls the prediction stream)."""
        d = self.dut
        while True:
            await FallingEdge(d.clk)
            d.m_ready.value = int(self.rng.random() >= 0.4)

    async def monitor(self, count: int):
        d = self.dut
        for _ in range(count):
            await RisingEdge(d.m_valid)
            await ReadOnly()
            self.preds.append((int(d.m_pred.value), self.now()))

    async def monitor_front(self):
        """Every feature the front end writes into the first layer (f_we high at a falling edge: taken at the next
        rising one); Python runs only while features flow."""
        d = self.dut
        while True:
            await RisingEdge(d.f_we)
            await FallingEdge(d.clk)
            while int(d.f_we.value):
                self.feats.append((int(d.f_idx.value), int(d.f_val.value)))
                await FallingEdge(d.clk)

    def compare_front(self, n: int):
        """Sample n's features (the non-zero ones written, index ascending) against the engine's front_out[n]."""
        want = np.asarray(self.g.front_out[n], dtype=np.int64)
        width, signed = _parse(self.front["formats"]["act"])
        got = np.zeros_like(want)
        idx = [i for i, _ in self.feats]
        order_ok = all(a < b for a, b in zip(idx, idx[1:])) and all(v for _, v in self.feats)
        for i, v in self.feats:
            got[i] = v - (1 << width) if signed and v >> (width - 1) else v
        bits = self.mismatched_bits(got, want, width) + (0 if order_ok else 1)
        self.report["front_bits_mismatched"] = self.report.get("front_bits_mismatched", 0) + bits
        self.report["features_compared"] = self.report.get("features_compared", 0) + want.size
        self.report["feature_writes"] = self.report.get("feature_writes", 0) + len(self.feats)
        if bits and self.report.get("first_front_mismatch") is None:
            bad = np.argwhere(got != want)
            i = int(bad[0][0]) if len(bad) else None
            self.report["first_front_mismatch"] = {"sample": n, "feature": i, "order_ok": order_ok,
                                                   "rtl": None if i is None else int(got[i]),
                                                   "engine": None if i is None else int(want[i])}
        self.feats = []

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

    async def load_weights(self, path: str):
        """Write every weight and bias word of the set in ``path`` (raw ``W{k}``, ``b{k}``) through the load port
        while idle, a word in sub-words of the layer's load lanes (lowest first, one a cycle), bias word a beside
        weight word a; returns the set as (W, b) per layer."""
        from edgelearn.rtl.layout import pack, split_words

        d = self.dut
        arrs = np.load(path)
        out = []
        for k, lay in enumerate(self.layers):
            W, b = arrs[f"W{k}"], arrs[f"b{k}"]
            ww, bw = _parse(lay["formats"]["weight"])[0], _parse(lay["formats"]["bias"])[0]
            words, bwords = pack(W, lay["lanes"], ww), pack(b, lay["lanes"], bw)
            d.rd_layer.value = k
            for a, w in enumerate(words):
                d.rd_addr.value = a
                bsubs = split_words(bwords[a] if a < len(bwords) else 0, lay["lanes"], lay["load_lanes"], bw)
                for wsub, bsub in zip(split_words(w, lay["lanes"], lay["load_lanes"], ww), bsubs):
                    d.wr_wdata.value = wsub
                    d.wr_wen.value = 1
                    d.wr_ben.value = int(a < len(bwords))
                    d.wr_bdata.value = bsub
                    await FallingEdge(d.clk)  # taken at the rising edge in between
            d.wr_wen.value = 0
            d.wr_ben.value = 0
            out.append((W, b))
        await FallingEdge(d.clk)  # the last weight word is written a cycle after it is taken
        return out

    def compare_loaded(self, got, loaded):
        """The read-back of a loaded set against the set."""
        for (W, b, ww, bw), (eW, eb) in zip(got, loaded):
            self.report["load_bits_mismatched"] = (self.report.get("load_bits_mismatched", 0)
                                                   + self.mismatched_bits(W, eW, ww) + self.mismatched_bits(b, eb, bw))
            self.report["loaded_compared"] = self.report.get("loaded_compared", 0) + W.size + b.size

    async def read_factors(self):
        """Layers with trained feedback: every Q word and P entry of their el_feedback (rd_qdata / rd_pdata), as raw
        (Q, P); kp's B is its Q, with an empty P."""
        d = self.dut
        out = {}
        for k, lay in enumerate(self.layers):
            f = lay.get("factors")
            if f is None:
                continue
            d.rd_layer.value = k
            qw, pw = [], []
            for a in range(max(f["q_words"], f["p_entries"])):
                d.rd_addr.value = a
                await FallingEdge(d.clk)
                if a < f["q_words"]:
                    qw.append(int(d.rd_qdata.value))
                if a < f["p_entries"]:
                    pw.append(int(d.rd_pdata.value))
            fq = f["formats"]["fb_q"]
            (qwid, qs), (pwid, ps) = _parse(fq), _parse(f["formats"].get("fb_p", fq))  # kp: no P
            r, G = f["rank"], f["q_groups"]
            Q = np.stack([self.unpack(qw[t * G:(t + 1) * G], f["q_lanes"], qwid, qs, f["nq"], 1)[0]
                          for t in range(r)], axis=1)
            P = (self.unpack(pw, 1, pwid, ps, 1, len(pw)).reshape(r, f["m"]) if pw
                 else np.zeros((0, f["m"]), dtype=np.int64))
            out[k] = (Q, P, qwid, pwid)
        return out

    def compare_factors(self, got, snap_index: int, sample: int):
        for k, (Q, P, qw, pw) in got.items():
            f = self.layers[k]["factors"]
            B = self.g.fb[k][snap_index]
            eQ, eP = B[:f["nq"], :f["rank"]], B[f["nq"]:f["nq"] + (f["rank"] if f["p_entries"] else 0), :f["m"]]
            mq, mp = self.mismatched_bits(Q, eQ, qw), self.mismatched_bits(P, eP, pw)
            self.report["q_bits_mismatched"] = self.report.get("q_bits_mismatched", 0) + mq
            self.report["p_bits_mismatched"] = self.report.get("p_bits_mismatched", 0) + mp
            self.report["factors_compared"] = self.report.get("factors_compared", 0) + Q.size + P.size
            if (mq or mp) and self.report.get("first_factor_mismatch") is None:
                which, got_m, want = ("Q", Q, eQ) if mq else ("P", P, eP)
                a, c = np.argwhere(got_m != want)[0]
                self.report["first_factor_mismatch"] = {"sample": sample, "layer": k, "matrix": which,
                                                        "row": int(a), "col": int(c), "rtl": int(got_m[a, c]),
                                                        "engine": int(want[a, c])}

    def compare(self, got, snap_index: int, sample: int):
        for k, (W, b, ww, bw) in enumerate(got):
            eW = self.g.W[k][snap_index]
            eb = self.g.b[k][snap_index]
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
        if os.environ.get("EL_LOAD"):  # a weight set other than the memory images, through the load port
            loaded = await tb.load_weights(os.environ["EL_LOAD"])
            tb.compare_loaded(await tb.read_weights(), loaded)
        N = len(tb.g.labels)
        snaps = {int(s): i for i, s in enumerate(tb.g.snap)}
        lat, comp = [], []
        cocotb.start_soon(tb.monitor(N))
        if tb.front:
            cocotb.start_soon(tb.monitor_front())
        if tb.disturb:
            cocotb.start_soon(tb.toggle_ready())
        for n in range(N):
            if tb.disturb and n == N // 3:  # between two samples (busy = 0)
                await tb.pulse_reset()
            if tb.disturb and n == (2 * N) // 3:  # in the middle of a sample: it is dropped, then sent again
                await tb.send(n, beats=len(tb.g.X[n]) // 2)
                await tb.pulse_reset()
            t0 = tb.now()
            await tb.send(n)
            t1 = tb.now()  # the last beat was taken half a cycle ago
            while len(tb.preds) <= n:
                await FallingEdge(dut.clk)
            await tb.wait_idle()
            lat.append(tb.now() - t0)
            comp.append(tb.now() - t1)
            if tb.preds[n][0] != int(tb.g.preds[n]):
                tb.report["pred_mismatches"] += 1
            if tb.front:
                tb.compare_front(n)
            if n in snaps:
                tb.compare(await tb.read_weights(), snaps[n], n)
                if any("factors" in lay for lay in tb.layers):
                    tb.compare_factors(await tb.read_factors(), snaps[n], n)
        tb.write({"mode": "lockstep", "samples": N, "cycles_per_sample": lat, "compute_cycles": comp})
        assert tb.report["pred_mismatches"] == 0, tb.report
        assert tb.report["weight_bits_mismatched"] == 0 and tb.report["bias_bits_mismatched"] == 0, tb.report
        assert tb.report.get("front_bits_mismatched", 0) == 0, tb.report
        assert tb.report.get("q_bits_mismatched", 0) == 0 and tb.report.get("p_bits_mismatched", 0) == 0, tb.report
        assert tb.report.get("load_bits_mismatched", 0) == 0, tb.report

    @cocotb.test()
    async def mlp_stream(dut):
        """Samples back to back; predictions on the fly, final weights at the end, cycles measured."""
        tb = _Bench(dut)
        await tb.reset()
        N = len(tb.g.labels)
        mon = cocotb.start_soon(tb.monitor(N))
        t0 = tb.now()
        starts = []
        for n in range(N):
            await tb.send(n)
            starts.append(tb.now())
        await mon
        await tb.wait_idle()
        t1 = tb.now()
        bad = sum(int(p != int(e)) for (p, _), e in zip(tb.preds, tb.g.preds))
        tb.report["pred_mismatches"] = bad
        tb.compare(await tb.read_weights(), len(tb.g.snap) - 1, N - 1)
        if any("factors" in lay for lay in tb.layers):
            tb.compare_factors(await tb.read_factors(), len(tb.g.snap) - 1, N - 1)
        times = [t for _, t in tb.preds]
        tb.write({"mode": "stream", "samples": N, "cycles_total": t1 - t0,
                  "cycles_per_sample": (times[-1] - times[0]) / max(1, N - 1) if N > 1 else t1 - t0,
                  "wall_cycles": t1 - t0})
        assert bad == 0, tb.report
        assert tb.report["weight_bits_mismatched"] == 0 and tb.report["bias_bits_mismatched"] == 0, tb.report
        assert tb.report.get("q_bits_mismatched", 0) == 0 and tb.report.get("p_bits_mismatched", 0) == 0, tb.report
