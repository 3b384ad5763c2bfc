"""The jinja2 set-up of every generated text file (HLS kernel, RTL top level): one place for its settings.

Undefined names are errors (a template never renders a silent blank); a block tag's line leaves no blank line or
indentation behind, so templates can indent their logic like the C / Verilog they emit; no HTML escaping.
"""
from __future__ import annotations

from pathlib import Path

import jinja2


def environment(folder: Path | str) -> jinja2.Environment:
    """An environment loading the templates of ``folder``."""
    return jinja2.Environment(loader=jinja2.FileSystemLoader(str(folder)), undefined=jinja2.StrictUndefined,
                              keep_trailing_newline=True, trim_blocks=True, lstrip_blocks=True, autoescape=False)
