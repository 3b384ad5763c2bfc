"""``--bits N`` presets: one sensible set of per-tensor formats for an N-bit datapath (docs/engine.md).

A preset is a plain mapping ``tensor -> format string`` (hls4ml syntax) plus engine settings; a network's
``precision:`` block and the command line override any of it.  The design choices:

* **stored weights are N bits** and learn below one LSB by *stochastic rounding* of the update
  (``STOCH``, one LFSR draw per weight written, docs/arithmetic.md §9) for N <= 12; wider presets round to
  nearest (``RND``), where the LSB is already far below a typical update;
* the accumulator is ``auto``: just wide enough that no bias + fan-in sum can overflow, with all the
  product's fractional bits (so the MAC loop never rounds and never saturates), capped to what fits int64;
* activations, derivatives and errors round to nearest and saturate (``RND``, ``SAT``);
* the random feedback ``B`` is uniform on [-1, 1) (``fixed<Wb,1>`` with Wb = min(N, 16) LFSR bits); feedback that
  learns on chip (``fb_q``: kp's B, ldfa's Q; ``fb_p``: ldfa's P) starts from the same draws, rounds RND, saturates.
"""
from __future__ import annotations

import math

from ..errors import FormatError
from ..word_length import MAX_BITS, MIN_BITS

#: learning-rate shift (eta = 2**-lr_shift) of a rule not in LR_SHIFTS (sdfa, shallow: not measured)
DEFAULT_LR_SHIFT = 6
#: learning-rate shift per rule, (STOCH presets, RND presets) -- the two weight-rounding regimes of :func:`preset`
#: -- measured at 8 and 16 bits on FC2-500 / MNIST: the shift where the worse of engine and float-twin accuracy is
#: best (docs/engine.md "Learning-rate presets", benchmarks/preset_lr.py).  The old single 6 (tuned for DRTP)
#: made FA's twin diverge (34 % at 8 bits) and held bp, dfa and ldfa back.
LR_SHIFTS: dict[str, tuple[int, int]] = {
    "fa": (8, 8),
    "bp": (8, 8),
    "dfa": (8, 8),
    "ldfa": (8, 8),
    "kp": (8, 8),     # fa's (kp is fa whose B learns)
    "dldfa": (8, 8),  # dfa's
    "drtp": (6, 8),
}
#: fan-in of the first layer the shifts were measured at (MNIST); wider (denser) inputs take larger shifts
MEASURED_FAN_IN = 784
#: extra shift per doubling of the first layer's fan-in beyond MEASURED_FAN_IN (measured on the CIFAR-10 subset)
FAN_IN_SHIFT_PER_OCTAVE = 2
#: default preset when a network has no precision block and no --bits
DEFAULT_BITS = 8
#: presets up to this word length round weight updates stochastically, wider ones to nearest
STOCH_MAX_BITS = 12


def preset(bits: int) -> dict[str, object]:
    """The preset for ``bits`` (4..32): formats of every tensor and the engine settings."""
    if isinstance(bits, bool) or not isinstance(bits, int):
        raise FormatError(f"--bits must be an integer, got {bits!r}")
    if not MIN_BITS <= bits <= MAX_BITS:
        raise FormatError(f"--bits {bits} out of range (presets exist for {MIN_BITS}..{MAX_BITS} bits)")
    n = bits
    wq = "STOCH" if n <= STOCH_MAX_BITS else "RND"
    nin = min(n, 16)
    nfb = min(n, 16)
    # weights in [-2, 2): DRTP/DFA weights of MNIST-sized layers stay well inside +-2
    return {
        "input": f"ufixed<{nin},0,RND,SAT>",
        "weight": f"fixed<{n},2,{wq},SAT>",
        "bias": f"fixed<{n},2,{wq},SAT>",
        "accum": "auto",
        "act": f"fixed<{n},1,RND,SAT>",
        "out_act": f"ufixed<{n},0,RND,SAT>",
        "deriv": f"ufixed<{n},1,RND,SAT>",
        "error": f"fixed<{n},1,RND,SAT>",
        "feedback": f"fixed<{nfb},1>",
        # trained feedback (kp's B, ldfa's / dldfa's Q and P): the LFSR draws of ``feedback`` as initial values, but
        # learning words: round to nearest, saturate (a wrapped feedback entry would flip its sign)
        "fb_q": f"fixed<{nfb},1,RND,SAT>",
        "fb_p": f"fixed<{nfb},1,RND,SAT>",
        "lr_shift": DEFAULT_LR_SHIFT,
    }


#: loss ce: the output layer (activation none) holds logits, which the softmax of the output error reads; signed,
#: [-8, 8): the softmax depends on logit differences only, and its exp table covers differences up to 16
LOGIT_INT_BITS = 4


def logit_format(bits: int) -> str:
    """The output layer's activation format under loss ce (the preset's ``out_act`` for that loss)."""
    return f"fixed<{bits},{LOGIT_INT_BITS},RND,SAT>"


def lr_shift_for(rule: str, bits: int | None, sizes=None) -> int:
    """The preset learning-rate shift of a layer trained with ``rule`` at ``bits`` (None: the default preset's word
    length) in an MLP of widths ``sizes``: the rule's measured shift, plus FAN_IN_SHIFT_PER_OCTAVE per doubling of
    the input width beyond MEASURED_FAN_IN (each update moves a pre-activation by a sum over the inputs)."""
    b = DEFAULT_BITS if bits is None else bits
    stoch, rnd = LR_SHIFTS.get(rule, (DEFAULT_LR_SHIFT, DEFAULT_LR_SHIFT))
    octaves = max(0, round(math.log2(sizes[0] / MEASURED_FAN_IN))) if sizes else 0
    return (stoch if b <= STOCH_MAX_BITS else rnd) + FAN_IN_SHIFT_PER_OCTAVE * octaves
