"""The names of the learning rules, in one torch-free place.

The network description (:mod:`edgelearn.network`) validates rule names without importing torch, and the float
reference's registry (:data:`edgelearn.torch_ref.RULE_CLASSES`) must offer exactly these rules (tested), so both read
this tuple.
"""

RULE_NAMES = ("bp", "shallow", "fa", "dfa", "sdfa", "drtp", "kp", "ldfa", "dldfa", "ssa")
