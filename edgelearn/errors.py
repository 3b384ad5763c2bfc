"""User-facing errors.

Anything a user can cause (a bad flag, a malformed config, a corrupt data file) raises a subclass of
:class:`EdgelearnError`. The CLI prints its message on one line and exits non-zero, without a traceback.
"""


class EdgelearnError(Exception):
    """Base class of every error caused by user input."""


class ConfigError(EdgelearnError):
    """A network/experiment description is malformed or inconsistent."""


class DataError(EdgelearnError):
    """A dataset is missing, corrupt, truncated or of the wrong format."""


class RuleError(EdgelearnError):
    """A learning rule is unknown or cannot apply to a layer."""


class FormatError(EdgelearnError):
    """A fixed-point format or arithmetic setting is invalid."""


class OutputError(EdgelearnError):
    """An output path cannot be written (a file where a folder is needed, no permission, ...)."""


class ClusterError(EdgelearnError):
    """A compute cluster cannot be used (its client library is not installed, its scheduler cannot be reached)."""
