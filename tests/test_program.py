"""The lowered on-chip program (edgelearn.program): one set of codes, one schedule, one golden trace for every back
end."""
from __future__ import annotations

import ast
import re
from pathlib import Path

import numpy as np
import pytest

from edgelearn.errors import FormatError, RuleError
from edgelearn.fixed import engine_kernels as K
from edgelearn.fixed.engine import FixedEngine
from edgelearn.fixed.lfsr import lfsr_bits, lfsr_jump, row_states, seed_state
from edgelearn.fixed.lower import lower, raise_unsupported, trace
from edgelearn.network import network_from_dict
from edgelearn.program import (SUPPORT, ActCode, GoldenTrace, RuleCode, StepOp, row_start_steps, schedule,
                               unsupported)

PKG = Path(__file__).resolve().parents[1] / "edgelearn"


def _spec(sizes=(12, 9, 7, 4), rule="drtp", acts=("tanh", "tanh"), rules=None, precision=None):
    layers = [{"type": "flatten"}]
    for i, n in enumerate(sizes[1:]):
        layers.append({"type": "linear", "out": n, "name": f"l{i}", **({"act": acts[i]} if i < len(acts) else {})})
    return network_from_dict({"name": "p", "input_shape": [sizes[0]], "num_classes": sizes[-1], "rule": rule,
                              "rules": rules or {}, "layers": layers, "precision": precision or {"preset": 8}})


def test_program_is_a_leaf():
    tree = ast.parse((PKG / "program.py").read_text())
    mods = {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)} | \
        {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert not any(m.startswith("edgelearn") or m.startswith(".") for m in mods if m), mods
    assert all(n.level == 0 for n in ast.walk(tree) if isinstance(n, ast.ImportFrom))


def _fixed_imports() -> dict[str, tuple[set[str], set[str]]]:
    """Per module of edgelearn.fixed: the sibling modules it imports at module level, and inside functions."""
    mods = {p.stem for p in (PKG / "fixed").glob("*.py")}
    out = {}
    for name in mods - {"__init__"}:  # the package's lazy attributes (FixedEngine, load_weights) are no cycle
        tree = ast.parse((PKG / "fixed" / f"{name}.py").read_text())
        top_nodes = set(map(id, tree.body))
        top, local = set(), set()
        for n in ast.walk(tree):
            if not isinstance(n, ast.ImportFrom):
                continue
            if n.level == 1:
                got = {n.module} if n.module else {a.name for a in n.names}
            elif n.level == 0 and (n.module or "").startswith("edgelearn.fixed."):
                got = {n.module.split(".")[2]}
            else:
                continue
            (top if id(n) in top_nodes else local).update(got & mods)
        out[name] = (top, local)
    return out


def test_the_fixed_package_imports_one_way():
    """engine_io / weights_file / engine / lower / twin / presets import each other at module level and without a
    cycle (a function-local import that closes one would hide it): the weight file below the engine, the engine's
    loader above it, the golden trace copying engines through the file."""
    imports = _fixed_imports()
    for name, (_, local) in imports.items():
        assert not local & {"engine", "engine_io", "weights_file", "lower", "limits"}, (name, local)
    graph = {m: top | local for m, (top, local) in imports.items()}
    order, seen = [], set()

    def visit(m, path):
        assert m not in path, " -> ".join(path + [m])
        if m not in seen:
            for dep in sorted(graph[m]):
                visit(dep, path + [m])
            seen.add(m)
            order.append(m)

    for m in sorted(graph):
        visit(m, [])
    assert order.index("weights_file") < order.index("engine") < order.index("engine_io")
    assert "engine" not in graph["twin"]  # the twin needs nothing from the engine


def test_one_numbering_for_engine_hls_and_rtl(tmp_path):
    from edgelearn.hls.kernel import render_codes
    from edgelearn.rtl.generate import RtlDesign

    # the engine's kernels
    assert (K.R_DRTP, K.R_SDFA, K.R_DFA, K.R_SHALLOW, K.R_OUTPUT) == \
        (RuleCode.DRTP, RuleCode.SDFA, RuleCode.DFA, RuleCode.SHALLOW, RuleCode.OUTPUT)
    assert (K.ACT_TANH, K.ACT_SIGMOID, K.ACT_RELU) == (ActCode.TANH, ActCode.SIGMOID, ActCode.RELU)
    # the C++ kernel: el_codes.h is rendered from the enums, el_learn.h defines none of its own
    codes = dict(re.findall(r"#define (EL_\w+) (\d+)", render_codes()))
    assert codes["EL_RULE_DRTP"] == str(int(RuleCode.DRTP)) and codes["EL_ACT_RELU"] == str(int(ActCode.RELU))
    assert len(codes) == len(RuleCode) + len(ActCode)
    assert not re.search(r"#define EL_(RULE|ACT)_", (PKG / "hls_templates" / "el_learn.h").read_text())
    # the Verilog: el_layer compares RULE / ACT with the parameters the top level passes, never with numbers
    v = (PKG / "hw" / "el_layer.v").read_text()
    assert not re.search(r"\b(RULE|ACT)\s*[!=]=\s*\d", v)
    eng = FixedEngine(_spec(rule="sdfa"), seed=1)
    d = RtlDesign(eng, parallel=2)
    p0, p2 = d.layer_params(d.layers[0]), d.layer_params(d.layers[2])
    assert p0["RULE"] == p0["R_SDFA"] == RuleCode.SDFA and p2["RULE"] == p2["R_OUTPUT"] == RuleCode.OUTPUT
    assert p0["ACT"] == p0["A_TANH"] == ActCode.TANH
    assert RtlDesign(eng, learning=False).layer_params(d.layers[0])["RULE"] == RuleCode.SHALLOW


def test_the_learning_kernel_is_rendered_from_its_templates(tmp_path, monkeypatch):
    """Every file of the HLS learning kernel comes from a jinja2 template of edgelearn/hls_templates (none from
    code), every template is used, and the top function follows the program's schedule."""
    from edgelearn.hls import kernel

    env = kernel._environment()  # a fresh one: a cached template would not be loaded again
    loaded = []
    get_source = env.loader.get_source
    monkeypatch.setattr(env.loader, "get_source", lambda e, name: loaded.append(name) or get_source(e, name))
    monkeypatch.setattr(kernel, "_ENV", env)
    # a conv network renders the front end's templates too, a network with trained feedback its own (an MLP of
    # fixed-feedback rules has neither)
    kernel.write_kernel_project(FixedEngine(_conv_spec(), bits=8, seed=3), tmp_path / "c", project="conv")
    kernel.write_kernel_project(FixedEngine(_spec(rule="ldfa"), bits=16, seed=1), tmp_path / "l", project="ldfa")
    eng = FixedEngine(_spec(rule="dfa", rules={"l1": "drtp"}), seed=1)
    proj = kernel.write_kernel_project(eng, tmp_path / "k", project="kern")
    # the layer templates (el_*.h) are rendered too (with the lane count)
    assert set(loaded) == {p.name for p in kernel.TEMPLATES.iterdir() if p.is_file()}
    for name in proj.files():
        text = (proj.path / name).read_text()
        assert not re.search(r"\{\{ |\{%|@PROJECT@", text), name  # C's own {{0}} has no space
    top = (proj.firmware / "kern.cpp").read_text()
    calls = re.findall(r"el::(dense|hidden_delta|output_error|update)<config(\d)", top)
    want = {StepOp.FORWARD: "dense", StepOp.INJECT_DRTP: "hidden_delta", StepOp.HIDDEN_SIGNAL: "hidden_delta",
            StepOp.OUTPUT_ERROR: "output_error", StepOp.UPDATE: "update"}
    assert calls == [(want[s.op], str(s.layer)) for s in eng.program().steps if s.op in want]


def test_row_states_are_the_row_offsets_of_the_lfsr_matrix():
    s0 = seed_state(12345)
    rows = row_states(s0, 5, 7, 6)
    assert [int(r) for r in rows] == [lfsr_jump(s0, row_start_steps(r, 7, 6)) for r in range(5)]
    s = s0  # stepping through the matrix draw by draw reaches each row's state
    for r in range(5):
        assert int(rows[r]) == s
        for _ in range(7):
            s, _b = lfsr_bits(s, 6)
    # the engine regenerates B from exactly these states, and the HLS / RTL generators write them
    eng = FixedEngine(_spec(), seed=4, feedback="lfsr")
    lay = eng.program().layers[0]
    assert np.array_equal(eng.fb_states[0], lay.fb_rows) and lay.fb_lfsr
    assert np.array_equal(lay.fb_rows, row_states(seed_state(lay.fb_seed), 4, 9, lay.feedback.width))


def test_schedule_is_the_engines_order_of_operations():
    steps = [str(s) for s in schedule([RuleCode.DRTP, RuleCode.DFA, RuleCode.OUTPUT])]
    assert steps == ["forward(0)", "inject_drtp(0)", "update(0)", "forward(1)", "forward(2)", "predict",
                     "output_error(2)", "hidden_signal(1)", "update(2)", "update(1)"]
    steps = schedule([RuleCode.SHALLOW, RuleCode.OUTPUT])
    assert [s.op for s in steps if s.op == StepOp.UPDATE] == [StepOp.UPDATE] and steps[-1].layer == 1
    prog = FixedEngine(_spec(rule="drtp", rules={"l1": "sdfa"}), seed=0).program()
    assert [lay.code for lay in prog.layers] == [RuleCode.DRTP, RuleCode.SDFA, RuleCode.OUTPUT]
    assert prog.steps == schedule([lay.code for lay in prog.layers])


def test_support_is_data_and_every_back_end_refuses_through_it():
    eng = FixedEngine(_spec(rule="fa"), seed=0)
    prog = eng.program()
    kinds = {b: [k for k, _ in unsupported(b, prog)] for b in SUPPORT}
    assert kinds == {"engine": [], "hls": ["rule", "rule"], "rtl": ["rule", "rule"]}
    with pytest.raises(RuleError, match="rule 'fa' is not implemented by the HLS learning kernel"):
        raise_unsupported("hls", prog)
    upd = FixedEngine(_spec(), seed=0, formats={"update": "fixed<16,4>"}).program()
    assert [k for k, _ in unsupported("rtl", upd)] == ["update"] * 3 and not unsupported("hls", upd)
    with pytest.raises(FormatError, match="update format"):
        raise_unsupported("rtl", upd)


def test_golden_trace_round_trips_and_leaves_the_engine_alone(tmp_path):
    eng = FixedEngine(_spec(), seed=2)
    W0 = eng.weights()[0]["W"].copy()
    rng = np.random.default_rng(0)
    X = eng.quantize_inputs(rng.random((6, 12)), count=False)
    y = rng.integers(0, 4, 6)
    g = trace(eng, X, y, [True, False, True, True, False, True], snapshots=[1, 5])
    assert np.array_equal(eng.weights()[0]["W"], W0)  # a copy ran
    assert g.W[0].shape == (2, 12, 9) and g.nnz[2].shape == (6,) and np.array_equal(g.preds, g.outputs.argmax(1))
    g.save(tmp_path / "g.npz")
    back = GoldenTrace.load(tmp_path / "g.npz")
    for a, b in zip(g.to_arrays().values(), back.to_arrays().values()):
        assert np.array_equal(a, b)
    # the same run on the engine itself, sample by sample
    for n in range(6):
        assert np.array_equal(eng.output_raw(X[n:n + 1])[0], g.outputs[n])
        if g.train[n]:
            eng.step(X[n], int(y[n]))
    assert np.array_equal(eng.weights()[1]["W"], g.W[1][-1]) and np.array_equal(eng.rnd_state, g.rnd_state)


def _conv_spec():
    """A tiny frozen-conv network: conv 2x3x3 - maxpool 2 - fc 6 - fc 3 on 8x8 inputs."""
    return network_from_dict({"name": "tiny-conv", "dataset": "digits", "input_shape": [1, 8, 8], "num_classes": 3,
                              "loss": "bce", "rule": "drtp", "rules": {"conv1": "shallow"}, "layers": [
                                  {"type": "conv2d", "name": "conv1", "out": 2, "kernel": 3, "act": "tanh"},
                                  {"type": "maxpool", "kernel": 2, "stride": 2},
                                  {"type": "flatten"},
                                  {"type": "linear", "name": "fc1", "out": 6, "act": "tanh"},
                                  {"type": "linear", "name": "out", "out": 3}]})


def test_a_front_end_is_lowered_with_its_kernels_and_traced_on_raw_images(tmp_path):
    """A frozen conv front end reaches the program (geometry, formats, raw kernels, ROM) and the golden trace takes
    the network's raw images, recording the front end's output per sample (what HLS and RTL front ends check)."""
    eng = FixedEngine(_conv_spec(), bits=8, seed=3)
    prog = lower(eng)
    conv, pool = prog.front
    assert (conv["type"], conv["in_shape"], conv["out_shape"], conv["kernel"]) == ("conv2d", [1, 8, 8], [2, 6, 6], 3)
    assert np.array_equal(conv["W"], eng.front.W[0]) and conv["W"].shape == (2, 1, 3, 3) and conv["W"].any()
    assert conv["table"] is not None and pool["type"] == "maxpool" and pool["out_shape"] == [2, 3, 3]
    rng = np.random.default_rng(1)
    X = eng.quantize_inputs(rng.random((4, 64)), count=False)
    g = trace(eng, X, [0, 1, 2, 0])
    assert g.X.shape == (4, 64) and g.front_out.shape == (4, 18)
    assert np.array_equal(g.front_out, eng.features(X))  # frozen kernels: the same features before every update
    g.save(tmp_path / "g.npz")
    assert np.array_equal(GoldenTrace.load(tmp_path / "g.npz").front_out, g.front_out)
    for n in range(4):  # the trace is the engine's own online run on the images
        assert np.array_equal(eng.output_raw(X[n:n + 1])[0], g.outputs[n])
        eng.step(X[n], [0, 1, 2, 0][n])
    assert np.array_equal(eng.weights()[0]["W"], g.W[0][-1])


def test_parameter_record_is_named_and_complete():
    assert len(set(K.PARAM_COLUMNS)) == K.NPARAM
    assert [getattr(K, c) for c in K.PARAM_COLUMNS] == list(range(K.NPARAM))
    with pytest.raises(KeyError, match="missing"):
        K.param_row(N_IN=1)
    eng = FixedEngine(_spec(), seed=0)
    assert eng.P[0, K.N_IN] == 12 and eng.P[2, K.RULE] == RuleCode.OUTPUT and eng.P[0, K.W_W] == 8
