"""Rule-aware engine presets: learning-rate shifts per rule, the word-length limit per rule, thread defaults."""
from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor

import pytest
import torch
from helpers import cli_one_line_error

from edgelearn.cli import main
from edgelearn.errors import FormatError
from edgelearn.fixed.engine import FixedEngine
from edgelearn.fixed.limits import limits_sentence, max_bits
from edgelearn.fixed.presets import (DEFAULT_LR_SHIFT, FAN_IN_SHIFT_PER_OCTAVE, LR_SHIFTS, MAX_BITS, STOCH_MAX_BITS,
                                     lr_shift_for)
from edgelearn.network import load_network, network_from_dict
from edgelearn.threads import LARGE_BATCH, available_cpus, current_threads, default_threads, physical_cores


@pytest.fixture(scope="module")
def fc2():
    return load_network("fc2-500")


def _mlp(width: int, rule: str = "bp"):
    return network_from_dict({"name": f"mlp{width}", "input_shape": [16], "num_classes": 10, "loss": "bce",
                              "rule": rule, "layers": [{"type": "linear", "out": width, "act": "tanh"},
                                                       {"type": "linear", "out": width, "act": "tanh"},
                                                       {"type": "linear", "out": 10}]})


# ---------------------------------------------------------------------------------------------------------------
# word-length limit


@pytest.mark.parametrize("rule", ["bp", "fa", "dfa", "ldfa"])
def test_limit_is_the_largest_preset_the_engine_builds(fc2, rule):
    limit = max_bits(fc2, rule)
    assert limit < MAX_BITS  # their hidden signal sums a layer of products: int64 caps them
    FixedEngine(fc2, rule=rule, bits=limit)
    with pytest.raises(FormatError, match=rf"--bits {limit + 1}: rule {rule} supports up to {limit} bits on "
                                          rf"fc2-500 \(784-500-500-10\) because .*could overflow int64"):
        FixedEngine(fc2, rule=rule, bits=limit + 1)


def test_limit_depends_on_rule_and_width(fc2):
    assert max_bits(fc2, "drtp") == max_bits(fc2, "sdfa") == MAX_BITS  # one feedback entry per hidden unit
    assert max_bits(fc2, "bp") < max_bits(fc2, "dfa")  # a 500-term sum vs a 10-term sum
    assert max_bits(_mlp(2000), "bp") < max_bits(_mlp(20), "bp")


def test_limit_cli_one_line_error(capsys, tmp_path):
    cli_one_line_error(capsys, ["simulate", "-c", "fc2-500", "--rule", "bp", "--bits", "24", "--out",
                                str(tmp_path / "o")], "--bits 24: rule bp supports up to 18 bits")
    assert not (tmp_path / "o" / "results.json").exists()


def test_help_states_the_limits(capsys):
    with pytest.raises(SystemExit):
        main(["simulate", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert " ".join(limits_sentence().split()) in text
    assert "bp up to 18 bits" in limits_sentence()


# ---------------------------------------------------------------------------------------------------------------
# learning-rate presets


def test_lr_presets_differ_per_rule_as_measured():
    for rule, (stoch, rnd) in LR_SHIFTS.items():
        assert lr_shift_for(rule, 8) == stoch and lr_shift_for(rule, STOCH_MAX_BITS) == stoch
        assert lr_shift_for(rule, 16) == rnd and lr_shift_for(rule, 32) == rnd
    assert lr_shift_for("fa", 8) != lr_shift_for("drtp", 8)  # the DRTP shift made FA's float twin diverge
    assert lr_shift_for("shallow", 8) == DEFAULT_LR_SHIFT  # not measured: the old default


def test_wider_inputs_take_larger_shifts():
    mnist, cifar, digits = [784, 500, 10], [3072, 500, 10], [64, 128, 10]
    assert lr_shift_for("drtp", 8, cifar) == lr_shift_for("drtp", 8, mnist) + 2 * FAN_IN_SHIFT_PER_OCTAVE
    assert lr_shift_for("drtp", 8, digits) == lr_shift_for("drtp", 8, mnist)  # not lowered: not measured
    assert FixedEngine(load_network("fc1-500-cifar10"), bits=8).precision.layers[0].lr_shift == \
        lr_shift_for("drtp", 8, cifar)


def test_engine_picks_the_rule_preset_unless_told(fc2):
    for rule in ("fa", "drtp", "bp"):
        eng = FixedEngine(fc2, rule=rule, bits=8)
        assert {lp.lr_shift for lp in eng.precision.layers} == {lr_shift_for(rule, 8)}
    assert {lp.lr_shift for lp in FixedEngine(fc2, rule="fa", bits=8, lr_shift=7).precision.layers} == {7}
    d = fc2.to_dict()
    d["precision"] = {"per_layer": {"fc1": {"lr_shift": 9}}}
    eng = FixedEngine(network_from_dict(d), rule="fa", bits=8)
    assert [lp.lr_shift for lp in eng.precision.layers] == [9, lr_shift_for("fa", 8), lr_shift_for("fa", 8)]


# ---------------------------------------------------------------------------------------------------------------
# threads


@pytest.fixture
def keep_torch_threads():
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


def test_defaults_never_exceed_the_cores():
    assert 1 <= physical_cores() <= available_cpus()
    for batch in (1, 60, LARGE_BATCH - 1, LARGE_BATCH, 10 ** 6):
        for procs in (1, 2, 8):
            assert 1 <= default_threads(batch, procs) <= available_cpus()
    assert default_threads(1) == default_threads(60) == 1
    assert default_threads(LARGE_BATCH) == physical_cores()


def test_train_threads_option_applied(tmp_path, keep_torch_threads):
    n = available_cpus()
    torch.set_num_threads(n)
    assert main(["train", "--epochs", "0", "--threads", "1", "--quiet", "--out", str(tmp_path / "a")]) == 0
    assert torch.get_num_threads() == 1 and current_threads()["blas"] == 1
    if n > 1:
        assert main(["train", "--epochs", "0", "--threads", str(n), "--quiet", "--out", str(tmp_path / "b")]) == 0
        assert torch.get_num_threads() == n
    # default for the config's batch (32): one thread
    assert main(["train", "--epochs", "0", "--quiet", "--out", str(tmp_path / "c")]) == 0
    assert torch.get_num_threads() == 1


def test_simulate_threads_option_applied(tmp_path):
    import numba

    assert main(["simulate", "--epochs", "0", "--threads", "1", "--no-twin", "--quiet", "--out",
                 str(tmp_path / "s")]) == 0
    assert numba.get_num_threads() == 1 and current_threads()["blas"] == 1


@pytest.mark.parametrize("cmd", [["train", "--epochs", "0"], ["simulate", "--epochs", "0"],
                                 ["report", "--seeds", "1"]])
def test_threads_beyond_the_cpus_one_line_error(capsys, tmp_path, cmd):
    cli_one_line_error(capsys, [*cmd, "--threads", str(available_cpus() + 1), "--out", str(tmp_path / "o")],
                       f"--threads {available_cpus() + 1}: this process may use {available_cpus()} CPU(s)")
    assert not (tmp_path / "o").exists()


def test_report_pool_workers_one_thread_each():
    from edgelearn.report.sweep import _worker_init

    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(1, mp_context=ctx, initializer=_worker_init, initargs=(1,)) as pool:
        got = pool.submit(current_threads).result()
    assert got["torch"] == 1 and got["blas"] == 1 and got["numba"] == 1
