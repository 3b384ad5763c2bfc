"""The word lengths the fixed-point presets exist for, in one numba-free place: :mod:`edgelearn.fixed.presets`
enforces them, and the command line states and checks them without importing the engine's package (numba)."""

MIN_BITS, MAX_BITS = 4, 32
