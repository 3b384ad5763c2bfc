"""Float-vs-fixed accuracy reports: a resumable sweep over rules, word lengths, roundings and seeds, and its rendering."""
from .render import render
from .sweep import RunKey, SweepConfig, sweep

__all__ = ["RunKey", "SweepConfig", "sweep", "render"]
