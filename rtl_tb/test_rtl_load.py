"""The weight load port (docs/rtl.md "Weight load port"): a host writes a weight set other than the design's memory
images through ``wr_*``, reads it back through ``rd_*``, and the design then learns from it bit for bit as an
engine that starts from that set.  The datapath runs with ``UPD_MUL = 1`` (the update's own multipliers, as the
iCE40 HX8K flow builds it), which the other RTL tests, at the default, do not cover."""
from __future__ import annotations

import numpy as np
from needs import require_tool
from test_mlp import _engine, _random_samples

#: 8-bit preset (stochastic rounding, rng layer), a hidden layer of 3 groups and an output layer of one
CFG = dict(sizes=[16, 12, 4], acts=["tanh"], bits=8, parallel=4)
SAMPLES = 6


def test_loaded_weights_learn_like_the_engine_that_starts_from_them(tmp_path):
    require_tool("icarus")
    from edgelearn.rtl.generate import write_rtl
    from edgelearn.rtl.verify import run_bench

    eng = _engine(CFG)                            # the design's memory images
    # another seed's weights (biases start at zero in every engine: random ones, a quarter of the range)
    rng = np.random.default_rng(1)
    other = [(wb["W"], rng.integers(lp.bias.min_raw // 4, lp.bias.max_raw // 4 + 1, size=wb["b"].shape))
             for wb, lp in zip(_engine(CFG, seed=1).weights(), eng.precision.layers)]
    start = _engine(CFG)                          # the design's feedback and generators, the other weights
    for k, (W, b) in enumerate(other):
        start.set_weights(k, W, b)
    images = eng.weights()
    assert all(not np.array_equal(W, im["W"]) and not np.array_equal(b, im["b"]) for (W, b), im in zip(other, images))
    design = write_rtl(eng, tmp_path / "prj", parallel=CFG["parallel"])
    X, y, train = _random_samples(start, SAMPLES, seed=3)
    rep = run_bench(start, design, tmp_path / "prj", "icarus", "mlp_lockstep", X, y, train, load=other,
                    parameters={"UPD_MUL": 1})
    sizes = CFG["sizes"]
    assert rep["loaded_compared"] == sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:]))
    assert rep["load_bits_mismatched"] == 0
    assert rep["snapshots_compared"] == SAMPLES and rep["pred_mismatches"] == 0
    assert rep["weight_bits_mismatched"] == 0 and rep["bias_bits_mismatched"] == 0, rep["first_mismatch"]
    # it learned from the loaded set: every layer moved away from it
    for k, (W, _) in enumerate(other):
        assert not np.array_equal(rep["golden"][f"W{k}"][-1], W)
