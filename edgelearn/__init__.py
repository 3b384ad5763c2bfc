"""edgelearn: on-chip learning from a float PyTorch reference to bit-exact fixed-point, HLS and RTL."""

__version__ = "0.1.0"
