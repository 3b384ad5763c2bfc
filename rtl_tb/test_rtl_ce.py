"""Loss ce in the datapath (hw/el_softmax.v beside the output el_layer), bit for bit with the engine.

16-12-4 (tanh hidden layer, DRTP, 8-bit preset, 3 MAC lanes: the 4 classes in two groups, the last of one lane):
the output layer's logits go to el_softmax (max, exp ROM, S, one shared serial divider), whose e_c come back as the
output error (docs/arithmetic.md §11a, docs/rtl.md "Loss ce"). Through the packaged cocotb testbench's
``mlp_lockstep`` (edgelearn/rtl/bench.py): every prediction and, after every sample, every weight and bias against
the engine's golden trace, with random stream gaps, a stalling prediction consumer and two mid-run resets.
"""
from __future__ import annotations

import numpy as np
import pytest
from needs import require_tool

SAMPLES = 10


def ce_engine(sizes=(16, 12, 4), bits: int = 8, lr_shift: int = 3, rule: str = "drtp"):
    from edgelearn.fixed.engine import FixedEngine
    from test_mlp import _spec

    return FixedEngine(_spec(list(sizes), ["tanh"] * (len(sizes) - 2), loss="ce", rule=rule, name="rtl-ce"),
                       bits=bits, seed=0, lr_shift=lr_shift, threads=1)


@pytest.mark.parametrize("sim", ["icarus", "verilator"])
def test_ce_error_and_every_weight_match_the_engine(sim, tmp_path):
    require_tool(sim)
    from test_mlp import _random_samples, run_design

    eng = ce_engine()
    X, y, train = _random_samples(eng, SAMPLES, seed=7)
    rep = run_design(eng, X, y, train, tmp_path / "prj", sim, "mlp_lockstep", 3, disturb=True)
    assert rep["design"].has_softmax and (tmp_path / "prj" / "hdl" / "el_softmax.v").exists()
    assert rep["resets"] == 2 and rep["snapshots_compared"] == SAMPLES
    assert rep["weights_compared"] == SAMPLES * (16 * 12 + 12 * 4)
    assert rep["pred_mismatches"] == 0
    assert rep["weight_bits_mismatched"] == 0 and rep["bias_bits_mismatched"] == 0, rep["first_mismatch"]
    # the output layer really learned from the softmax error
    assert not np.array_equal(rep["golden"]["W1"][-1], eng.weights()[-1]["W"])


def test_ce_design_has_the_exp_rom_and_the_softmax_others_do_not():
    """The exp ROM image is the engine's table (ufixed<17,1> words); el_softmax is in a learning ce design only."""
    from test_mlp import _engine

    from edgelearn.rtl.generate import RtlDesign

    eng = ce_engine()
    files = RtlDesign(eng, parallel=3).files()
    table = eng.program().layers[-1].table
    assert [int(v, 16) for v in files["mem/exp.hex"].split()] == [int(v) for v in table]
    assert "hdl/el_softmax.v" in files["filelist.f"] and "el_softmax #(" in files["el_mlp.v"]
    assert "mem/t1.hex" not in files and ".LOSS(2)" in files["el_mlp.v"]
    bce = _engine({"sizes": [16, 12, 4], "acts": ["tanh"], "bits": 8})
    for design in (RtlDesign(eng, parallel=3, learning=False), RtlDesign(bce, parallel=3)):
        f = design.files()
        assert "el_softmax" not in f["filelist.f"] + f["el_mlp.v"] and "mem/exp.hex" not in f
