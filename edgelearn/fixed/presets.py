"""``--bits N`` presets: one sensible set of per-tensor formats for an N-bit datapath (docs/engine.md).

A preset is a plain mapping ``tensor -> format string`` (hls4ml syntax) plus engine settings; a network's
``precision:`` block and the command line override any of it.  The design choices:

* **stored weights are N bits** and learn below one LSB by *stochastic rounding* of the update
  (``STOCH``, one LFSR draw per weight written, docs/arithmetic.md §9) for N <= 12; wider presets round to
  nearest (``RND``), where the LSB is already far below a typical update;
* the accumulator is ``auto``: just wide enough that no bias + fan-in sum can overflow, with all the
  product's fractional bits (so the MAC loop never rounds and never saturates), capped to what fits int64;
* activations, derivatives and errors round to nearest and saturate (``RND``, ``SAT``);
* the random feedback ``B`` is uniform on [-1, 1) (``fixed<Wb,1>`` with Wb = min(N, 16) LFSR bits).
"""
from __future__ import annotations

from ..errors import FormatError

#: default learning-rate shift (eta = 2**-lr_shift) of every layer
DEFAULT_LR_SHIFT = 6
#: default preset when a network has no precision block and no --bits
DEFAULT_BITS = 8
MIN_BITS, MAX_BITS = 4, 32


def preset(bits: int) -> dict[str, object]:
    """The preset for ``bits`` (4..32): formats of every tensor and the engine settings."""
    if isinstance(bits, bool) or not isinstance(bits, int):
        raise FormatError(f"--bits must be an integer, got {bits!r}")
    if not MIN_BITS <= bits <= MAX_BITS:
        raise FormatError(f"--bits {bits} out of range (presets exist for {MIN_BITS}..{MAX_BITS} bits)")
    n = bits
    wq = "STOCH" if n <= 12 else "RND"
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
        "lr_shift": DEFAULT_LR_SHIFT,
    }


def preset_table() -> list[tuple[int, dict[str, object]]]:
    """(bits, preset) for the documented sizes."""
    return [(b, preset(b)) for b in (4, 6, 8, 10, 12, 16, 24, 32)]
