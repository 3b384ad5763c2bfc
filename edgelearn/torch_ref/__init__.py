"""The float PyTorch reference of every learning rule (CPU or CUDA)."""
from . import ldfa, ssa  # noqa: F401  -- they register their rules: RULE_CLASSES is complete on import
from .build import build_model
from .learner import LocalLearner, Point, Site, StepResult, convert, convert_network, effective_rank
from .rules import RULE_CLASSES, Rule, register

__all__ = ["build_model", "convert", "convert_network", "LocalLearner", "Point", "Site", "StepResult", "Rule",
           "RULE_CLASSES", "register", "effective_rank"]
