"""Checks shared by several test modules (imported as ``helpers``: pytest puts tests/ on sys.path)."""

from __future__ import annotations

import torch

from edgelearn.cli import main


def cli_one_line_error(capsys, argv: list[str], match: str) -> None:
    """The CLI exits with 2 and prints exactly one line naming the problem, no traceback."""
    rc = main(argv)
    err = capsys.readouterr().err.strip()
    assert rc == 2, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert match in err, err


def reachable_leaves(t: torch.Tensor) -> set[int]:
    """ids of the leaf tensors (parameters) that ``t``'s autograd graph reaches."""
    seen, out, stack = set(), set(), [t.grad_fn]
    while stack:
        fn = stack.pop()
        if fn is None or fn in seen:
            continue
        seen.add(fn)
        if hasattr(fn, "variable"):
            out.add(id(fn.variable))
        stack.extend(f for f, _ in fn.next_functions)
    return out
