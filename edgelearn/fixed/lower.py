"""Lowering an engine to its on-chip program (:mod:`edgelearn.program`), and the engine's golden trace.

:func:`lower_layers` derives the per-layer records from an engine's network, resolved formats, rules and seed
(the engine builds its own kernel parameters from them); :func:`lower` adds the schedule and the engine's current
state -- what the HLS kernel and the RTL generator read.  :func:`trace` runs a copy of the engine over samples as a
datapath sees them: the reference of every hardware check.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import numpy as np

from ..errors import ConfigError, FormatError, RuleError
from ..program import (DIRECT_RULES, FB_LEARN_P, FB_LEARN_Q, FEEDBACK_STREAM, LDFA_P_STREAM, OJA_OUTPUT, OJA_OWN,
                       OJA_TARGET, TABLE_ACTS, GoldenTrace, LayerProgram, Program, RuleCode, act_code, layers_schedule,
                       rule_code, unsupported)
from .activations import sigmoid_table, softmax_exp_table, table_sat_bounds, tanh_table
from .engine_kernels import NTENSORS
from .lfsr import derive_seed, row_states, seed_state
from .weights_file import clone_engine


def _feedback(eng, k: int, lp, rule: str) -> tuple[str | None, tuple[int, int] | None]:
    """Feedback mode and matrix shape of layer k (docs/engine.md "Feedback matrices")."""
    if not lp.is_output and rule in DIRECT_RULES:
        return eng.precision.feedback_mode, (eng.num_classes, lp.n_out)
    if rule in ("fa", "kp") and k > 0:
        return "stored", (lp.n_in, lp.n_out)
    if rule == "ldfa" and k > 0:  # Q (n_in x r) over P (r x n_out), packed (engine_kernels.hidden_delta)
        r = eng.ldfa_rank(k)
        return "stored", (lp.n_in + r, max(r, lp.n_out))
    if rule == "dldfa" and not lp.is_output:  # Q (n_out x r) over P (r x C): the output error's bottleneck
        r = eng.ldfa_rank(k)
        return "stored", (lp.n_out + r, max(r, eng.num_classes))
    return None, None


def _learning(eng, k: int, lp, rule: str, fb_shape) -> tuple[int, int]:
    """Which of layer k's feedback words learn (FB_LEARN_* bits) and the error P's Oja step reads (OJA_*),
    docs/arithmetic.md §16."""
    if fb_shape is None or rule not in ("kp", "ldfa", "dldfa"):
        return 0, OJA_OWN
    if rule == "kp":
        return FB_LEARN_Q, OJA_OWN
    learn = (FB_LEARN_Q if eng.ldfa_flag("ldfa_train_q") else 0) | (FB_LEARN_P if eng.ldfa_flag("ldfa_train_p") else 0)
    if rule == "dldfa":
        return learn, OJA_OUTPUT
    targets = lp.is_output and eng.spec.rule_params.get("ldfa_output_p", "targets") == "targets"
    return learn, OJA_TARGET if targets else OJA_OWN


def act_table(act: str, fmt, prec) -> np.ndarray | None:
    """The ROM of a table activation (tanh, sigmoid) in output format ``fmt`` (docs/arithmetic.md §11), else None."""
    if act == "tanh":
        return tanh_table(fmt, prec.table_bits, prec.range_bits).astype(np.int64)
    if act == "sigmoid":
        return sigmoid_table(fmt, prec.table_bits, prec.range_bits).astype(np.int64)
    return None


def lower_layers(eng) -> list[LayerProgram]:
    """The layers of ``eng`` as every back end runs them (no weights: see :func:`lower`)."""
    prec = eng.precision
    out = []
    for k, lp in enumerate(prec.layers):
        rule, act = eng.rules[k], eng.acts[k]
        code = RuleCode.OUTPUT if lp.is_output else rule_code(rule)
        fb_mode, fb_shape = _feedback(eng, k, lp, rule)
        fb_seed = derive_seed(eng.seed, FEEDBACK_STREAM + k) if fb_shape is not None else None
        fb_rows = None
        if fb_shape is not None and rule in DIRECT_RULES:
            fb_rows = row_states(seed_state(fb_seed), fb_shape[0], fb_shape[1], lp.feedback.width)
        table = act_table(act, lp.act, prec)
        if lp.is_output and eng.spec.loss == "ce":  # the output error's softmax reads its exp ROM in this slot
            table = softmax_exp_table(prec.table_bits, prec.range_bits)
        ldfa = rule in ("ldfa", "dldfa") and fb_shape is not None
        fb_learn, oja_src = _learning(eng, k, lp, rule, fb_shape)
        need_g = not lp.is_output or eng.spec.loss == "mse"
        out.append(LayerProgram(
            index=k, name=lp.name, n_in=lp.n_in, n_out=lp.n_out, rule=rule, code=code, act=act,
            act_code=act_code(act), is_output=lp.is_output, input=lp.input, weight=lp.weight, bias=lp.bias,
            accum=lp.accum, act_fmt=lp.act, deriv=lp.deriv, error=lp.error, update=lp.update, feedback=lp.feedback,
            lr_shift=int(lp.lr_shift), mult_raw=int(lp.lr_mult_raw) if lp.lr_mult is not None else None,
            mult_frac=int(lp.lr_mult_frac) if lp.lr_mult is not None else 0,
            mult_fmt=prec.lr_mult_format if lp.lr_mult is not None else None, need_g=need_g, table=table,
            fb_mode=fb_mode, fb_shape=fb_shape, fb_seed=fb_seed, fb_rows=fb_rows, B=None,
            # a P that learns needs its format's whole range (Oja's rows reach unit norm on few coordinates): it
            # starts small by its draws instead (FixedEngine._init_state), not by a shift
            ldfa_rank=eng.ldfa_rank(k) if ldfa else 0,
            ldfa_p_shift=eng.ldfa_p_shift(k) if ldfa and not fb_learn & FB_LEARN_P else 0,
            ldfa_p_seed=derive_seed(eng.seed, LDFA_P_STREAM + k) if ldfa else None,
            fb_learn=fb_learn, fb_q=lp.fb_q, fb_p=lp.fb_p, oja_src=oja_src,
            table_sat=table_sat_bounds(act, lp.act) if act in TABLE_ACTS else (0, 0)))
    return out


def lower(eng) -> Program:
    """The program of ``eng`` in its current state (weights, feedback values, LFSR states copied)."""
    layers = [dataclasses.replace(lay, B=None if lay.fb_shape is None else np.asarray(eng.B[k], dtype=np.int64).copy())
              for k, lay in enumerate(eng.program_layers)]
    weights = eng.weights()
    return Program(
        name=eng.spec.name, loss=eng.spec.loss, sizes=list(eng.sizes), layers=layers,
        steps=layers_schedule(layers), table_bits=eng.precision.table_bits,
        range_bits=eng.precision.range_bits, seed=int(eng.seed), feedback_mode=eng.precision.feedback_mode,
        W=[np.asarray(w["W"], dtype=np.int64).copy() for w in weights],
        b=[np.asarray(w["b"], dtype=np.int64).copy() for w in weights],
        rnd_state=np.asarray(eng.rnd_state, dtype=np.int64).copy(),
        rng=eng.precision.rng, neuron_state=[np.asarray(ns, dtype=np.int64).copy() for ns in eng.neuron_state],
        meta={"formats": eng.formats(), "rules": dict(zip(eng.layer_names, eng.rules)),
              "network": eng.spec.to_dict(), "mode": eng.mode, "batch_size": eng.batch_size},
        front=lower_front(eng))


def lower_front(eng) -> list[dict[str, Any]]:
    """The front end before the linear layers as every back end runs it (docs/arithmetic.md §15), one dict per
    layer: ``name``, ``type`` (conv2d / maxpool / avgpool), ``rule``, ``in_shape`` and ``out_shape`` (C, H, W),
    ``kernel``, ``stride``, ``padding``, the formats ``input`` and ``act`` (a pool's output keeps its input's),
    and for a conv also ``weight``, ``bias``, ``accum`` (FixedFormat), ``accum_exact`` (True: §7's automatic
    accumulator, proved never to round or overflow, so any summation order gives the same bits), ``act_name``,
    ``table`` (its ROM, or None), ``W`` (raw int64 (C_out, C_in, k, k), torch's layout) and ``b`` (raw (C_out,))."""
    front = []
    for j, fp in enumerate(eng.precision.front):
        lay = {"name": fp.name, "type": fp.type, "rule": fp.rule, "in_shape": list(fp.in_shape),
               "out_shape": list(fp.out_shape), "kernel": int(fp.kernel), "stride": int(fp.stride),
               "padding": int(fp.padding), "input": fp.input, "act": fp.act}
        if fp.type == "conv2d":
            lay.update(weight=fp.weight, bias=fp.bias, accum=fp.accum, accum_exact=bool(eng.front.exact[j]),
                       act_name=fp.act_name, table=act_table(fp.act_name, fp.act, eng.precision),
                       W=np.asarray(eng.front.W[j], dtype=np.int64).copy(),
                       b=np.asarray(eng.front.b[j], dtype=np.int64).copy())
        front.append(lay)
    return front


#: the error each kind of missing support raises (program.unsupported)
_SUPPORT_ERRORS = {"layer": ConfigError, "loss": ConfigError, "minibatch": ConfigError, "rule": RuleError,
                   "act": FormatError, "update": FormatError, "lr_mult": FormatError}


def raise_unsupported(backend: str, prog: Program) -> None:
    """Refuse, with one line, a program that ``backend`` cannot run (the first problem of program.unsupported)."""
    problems = unsupported(backend, prog)
    if problems:
        kind, msg = problems[0]
        raise _SUPPORT_ERRORS[kind](msg)


def trace(eng, X_raw, labels: Sequence[int], train: Sequence[bool] | bool = True,
          snapshots: Sequence[int] | None = None) -> GoldenTrace:
    """Run a *copy* of ``eng`` over the samples one at a time (training or inference per sample); ``snapshots``:
    the sample indices after which W and b are recorded (default: every sample)."""
    eng = clone_engine(eng)
    X = np.ascontiguousarray(np.asarray(X_raw, dtype=np.int64).reshape(-1, eng.n_inputs))
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    N = X.shape[0]
    train = np.broadcast_to(np.asarray(train, dtype=bool), (N,)).copy()
    snap = list(range(N)) if snapshots is None else sorted(set(int(s) for s in snapshots))
    L = len(eng.sizes) - 1
    Ws: list[list[np.ndarray]] = [[] for _ in range(L)]
    bs: list[list[np.ndarray]] = [[] for _ in range(L)]
    fbs: list[list[np.ndarray] | None] = [[] if lay.learns_feedback else None for lay in eng.program_layers]
    outputs = np.zeros((N, eng.num_classes), dtype=np.int64)
    nnz = np.zeros((L, N), dtype=np.int64)
    cnt = np.zeros((L, NTENSORS, 2), dtype=np.int64)
    snapset = set(snap)
    # the front end's output per sample, before the sample's update (what a back end's front end must produce)
    feats = np.zeros((N, eng.sizes[0] if eng.front is not None else 0), dtype=np.int64)
    for n in range(N):
        if eng.front is not None:
            feats[n] = eng.features(X[n:n + 1])[0]
        nnz[:, n] = eng.layer_nonzeros(X[n], cnt)
        outputs[n] = eng.output_raw(X[n:n + 1])[0]
        if train[n]:
            eng.step(X[n], int(labels[n]))
        if n in snapset:
            for k, w in enumerate(eng.weights()):
                Ws[k].append(w["W"])
                bs[k].append(w["b"])
                if fbs[k] is not None:
                    fbs[k].append(np.asarray(eng.B[k], dtype=np.int64).copy())
    return GoldenTrace(
        X=X, labels=labels, train=train, outputs=outputs, preds=np.argmax(outputs, axis=1).astype(np.int64),
        snap=np.asarray(snap, dtype=np.int64),
        W=[np.stack(Ws[k]) if Ws[k] else np.zeros((0,) + eng.W[k].shape, dtype=np.int64) for k in range(L)],
        b=[np.stack(bs[k]) if bs[k] else np.zeros((0, eng.sizes[k + 1]), dtype=np.int64) for k in range(L)],
        nnz=[nnz[k] for k in range(L)], rnd_state=np.asarray(eng.rnd_state, dtype=np.int64).copy(),
        neuron_state=[np.asarray(ns, dtype=np.int64).copy() for ns in eng.neuron_state], front_out=feats,
        fb=[None if f is None else np.stack(f) if f else np.zeros((0,) + np.shape(eng.B[k]), dtype=np.int64)
            for k, f in enumerate(fbs)])
