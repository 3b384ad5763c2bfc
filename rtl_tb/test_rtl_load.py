"""The weight load port (docs/rtl.md "Weight load port"): a host writes a weight set other than the design's memory
images through ``wr_*``, reads it back through ``rd_*``, and the design then learns from it bit for bit as an
engine that starts from that set.  A learning layer takes a weight word in sub-words of its update lanes (through
the update's lanes), a frozen one whole words: each case loads through one of those paths.  ``UPD_MUL = 1`` (the
update's own multipliers, as the iCE40 HX8K flow builds it) is not covered by the other RTL tests."""
from __future__ import annotations

import numpy as np
import pytest
from needs import require_tool
from test_mlp import _engine, _random_samples

#: 8-bit preset (stochastic rounding, rng layer), a hidden layer of 3 groups and an output layer of one
CFG = dict(sizes=[16, 12, 4], acts=["tanh"], bits=8, parallel=4)
SAMPLES = 6
#: a bias format of its own (not the weight's): the bias update, and its load, merge a sub-word into the bias word
OWN_BIAS = {"bias": "fixed<12,4,STOCH,SAT>"}
#: (update lanes, UPD_MUL, hidden rule, formats): whole words through the LUT update path; two sub-words a word
#: through the DSP post-add path and through the LUT path; the same with the bias's own format; a frozen hidden
#: layer (whole words) under a sub-word output layer
CASES = {"words-updmul": (None, 1, "drtp", None), "subwords-dsp": (2, 0, "drtp", None),
         "subwords-updmul": (2, 1, "drtp", None), "subwords-own-bias": (2, 0, "drtp", OWN_BIAS),
         "frozen-hidden": (2, 0, "shallow", None)}


@pytest.mark.parametrize("case", list(CASES))
def test_loaded_weights_learn_like_the_engine_that_starts_from_them(tmp_path, case):
    require_tool("icarus")
    from edgelearn.rtl.generate import write_rtl
    from edgelearn.rtl.verify import run_bench

    update_lanes, upd_mul, rule, formats = CASES[case]
    cfg = dict(CFG, rule=rule, formats=formats)
    eng = _engine(cfg)                            # the design's memory images
    # another seed's weights (biases start at zero in every engine: random ones, a quarter of the range)
    rng = np.random.default_rng(1)
    other = [(wb["W"], rng.integers(lp.bias.min_raw // 4, lp.bias.max_raw // 4 + 1, size=wb["b"].shape))
             for wb, lp in zip(_engine(cfg, seed=1).weights(), eng.precision.layers)]
    start = _engine(cfg)                          # the design's feedback and generators, the other weights
    for k, (W, b) in enumerate(other):
        start.set_weights(k, W, b)
    images = eng.weights()
    assert all(not np.array_equal(W, im["W"]) and not np.array_equal(b, im["b"]) for (W, b), im in zip(other, images))
    design = write_rtl(eng, tmp_path / "prj", parallel=CFG["parallel"], update_lanes=update_lanes)
    assert [lay.load_lanes for lay in design.layers] == [
        (4 if r == "shallow" else update_lanes or 4) for r in (rule, "output")]
    X, y, train = _random_samples(start, SAMPLES, seed=3)
    rep = run_bench(start, design, tmp_path / "prj", "icarus", "mlp_lockstep", X, y, train, load=other,
                    parameters={"UPD_MUL": upd_mul})
    sizes = CFG["sizes"]
    assert rep["loaded_compared"] == sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:]))
    assert rep["load_bits_mismatched"] == 0
    assert rep["snapshots_compared"] == SAMPLES and rep["pred_mismatches"] == 0
    assert rep["weight_bits_mismatched"] == 0 and rep["bias_bits_mismatched"] == 0, rep["first_mismatch"]
    # it learned from the loaded set: every layer moved away from it
    for k, (W, _) in enumerate(other):
        assert np.array_equal(rep["golden"][f"W{k}"][-1], W) == (k == 0 and rule == "shallow")
