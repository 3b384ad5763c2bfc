"""``edgelearn simulate`` checkpoints after every epoch and resumes: an interrupted run ends with the bits of an
uninterrupted one."""
import json

import numpy as np
import pytest

from edgelearn.cli import main

BASE = ["simulate", "--n-train", "120", "--n-test", "60", "--quiet"]


def _run(out, *extra):
    return main(BASE + ["--out", str(out), *extra])


def _same_results(a, b):
    ra, rb = (json.loads((d / "results.json").read_text()) for d in (a, b))
    for key in ("test_accuracy", "float_test_accuracy", "train_accuracy_online", "counters", "epochs"):
        assert ra[key] == rb[key], key
    with np.load(a / "weights.npz") as wa, np.load(b / "weights.npz") as wb:
        assert sorted(wa.files) == sorted(wb.files)
        for k in wa.files:
            assert np.array_equal(wa[k], wb[k]), k
    return rb


@pytest.mark.parametrize("extra", [[], ["--rule", "ldfa", "--rng", "neuron"]], ids=["drtp-stoch", "ldfa-neuron"])
def test_resumed_simulation_has_the_bits_of_an_uninterrupted_one(tmp_path, capsys, extra):
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    assert _run(whole, "--epochs", "3", *extra) == 0
    assert _run(parts, "--epochs", "1", *extra) == 0
    assert _run(parts, "--epochs", "3", *extra) == 0  # resumes after epoch 1 (a larger --epochs continues)
    res = _same_results(whole, parts)
    assert res["resumed_after_epoch"] == 1 and (parts / "checkpoint.npz").exists()


def test_a_checkpoint_of_another_run_is_refused_in_one_line(tmp_path, capsys):
    out = tmp_path / "r"
    assert _run(out, "--epochs", "1") == 0
    before = (out / "results.json").read_bytes()
    assert _run(out, "--epochs", "2", "--lr-shift", "3") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "holds a simulation with another" in err[0] and "lr_shift" in err[0], err
    assert (out / "results.json").read_bytes() == before  # nothing rewritten
    assert _run(out, "--epochs", "2", "--lr-shift", "3", "--no-resume") == 0
    with np.load(out / "checkpoint.npz") as z:  # a member missing: one line too, not a traceback
        members = {k: z[k] for k in z.files if k != "cnt"}
    np.savez(out / "checkpoint.npz", **members)
    assert _run(out, "--epochs", "3", "--lr-shift", "3") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "damaged checkpoint" in err[0] and "'cnt'" in err[0], err
    (out / "checkpoint.npz").write_bytes(b"not a checkpoint")
    assert _run(out, "--epochs", "3", "--lr-shift", "3") == 2
    assert "cannot read the checkpoint" in capsys.readouterr().err


def test_a_learning_conv_network_resumes_with_the_same_bits(tmp_path):
    """The state a conv front end adds (kernels that learn, their per-channel generators, the front's counters and
    the twin's float kernels) goes through the checkpoint too."""
    from test_engine_conv import conv_spec, samples

    from edgelearn.fixed import checkpoint
    from edgelearn.fixed.engine import FixedEngine

    x, y = samples(16, seed=3)
    run = {"id": "test"}

    def build():
        eng = FixedEngine(conv_spec(conv_rule="sdfa"), bits=8, seed=7, rng="neuron", lr_shift=3)
        return eng, eng.float_twin()

    whole, whole_tw = build()
    for _ in range(2):  # as simulate runs it: epoch by epoch, engine then twin
        whole.fit(x, y, epochs=1)
        whole_tw.fit(x, y, epochs=1)
    first, first_tw = build()
    first.fit(x, y, epochs=1)
    first_tw.fit(x, y, epochs=1)
    checkpoint.save(tmp_path / "c.npz", first, first_tw, run)
    eng, tw = build()
    assert checkpoint.load(tmp_path / "c.npz", eng, tw, run) == 1
    eng.fit(x, y, epochs=1)
    tw.fit(x, y, epochs=1)
    assert not np.array_equal(first.front.W[0], eng.front.W[0])  # the kernels learned after the resume
    pairs = [(whole.front.W[0], eng.front.W[0]), (whole.front.cnt, eng.front.cnt), (whole.cnt, eng.cnt),
             (whole.rnd_state, eng.rnd_state), (whole_tw.front[0]["W"], tw.front[0]["W"])]
    pairs += [(a, b) for k in range(len(eng.W)) for a, b in ((whole.W[k], eng.W[k]), (whole.b[k], eng.b[k]),
                                                             (whole.neuron_state[k], eng.neuron_state[k]),
                                                             (whole_tw.W[k], tw.W[k]))]
    pairs += [(whole.front.neuron_state[j], eng.front.neuron_state[j]) for j in eng.front.learning]
    assert all(np.array_equal(a, b) for a, b in pairs)
    assert eng.history == whole.history and tw.history == whole_tw.history
