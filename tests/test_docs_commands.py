"""The commands that README.md and docs/**/*.md show still run as written: every ``edgelearn ...`` line of a code
block parses (subcommand, options, choices and types), every inline ``edgelearn ...`` span names options its
subcommand has, the configs, variants, rules and ``reproduce`` experiments they name exist, and every
``benchmarks/`` / ``scripts/`` command names a script that exists and options that script defines. Parse only:
no data, no work."""
from __future__ import annotations

import argparse
import contextlib
import io
import re
import shlex
from pathlib import Path

import pytest

from edgelearn.cli import build_parser
from edgelearn.errors import EdgelearnError
from edgelearn.network import load_network
from edgelearn.rule_names import RULE_NAMES

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
#: code blocks in these languages hold no shell commands (program output is fenced as ``text``)
NOT_SHELL = {"python", "yaml", "json", "verilog", "text", "html"}
#: the docs' placeholders for values, replaced by a value of the right type before parsing
PLACEHOLDERS = {"B": "8", "N": "1", "Q": "4", "S": "8", "R": "drtp", "RULE": "drtp", "NET": "fc1-500",
                "FILE": "weights.npz"}
_COMMAND = re.compile(r"^(?:\$\s+)?(?:\S*torchrun\s.*?-m\s+|\./run-|\.venv/bin/)?edgelearn\s+(.*)$")
#: an indented (not fenced) line that is a command rather than a list item's continuation
_SHELL_LINE = re.compile(r"(\$\s+|\S*torchrun\s|\./run-|\.venv/bin/|edgelearn\s|python\s|NUMBA_NUM_THREADS=)")
_SCRIPT = re.compile(r"((?:benchmarks|scripts)/\w+\.py)((?:\s+(?:--?[\w-]+|[\w.,:/<>=+'\"-]+|\[|\]))*)")


def _blocks(text: str):
    """(line, text, complete) of each shell line of a fenced or indented code block (backslash continuations
    joined; complete: a command as typed) and of each inline code span (a fragment)."""
    lines, fence, prose = text.split("\n"), None, []
    i = 0
    while i < len(lines):
        line = lines[i]
        mark = re.match(r"^\s*```(\w*)", line)
        if mark:
            fence = None if fence is not None else mark.group(1)
            prose.append("")
        elif fence is not None or (line.startswith("    ") and _SHELL_LINE.match(line.strip())):
            if fence not in NOT_SHELL:
                start, cmd = i + 1, line.strip()
                while cmd.endswith("\\") and i + 1 < len(lines):
                    i += 1
                    cmd = cmd[:-1] + " " + lines[i].strip()
                yield start, cmd, True
                prose.extend([""] * (i + 2 - start))
                i += 1
                continue
            prose.append("")
        else:
            prose.append(line)
        i += 1
    joined = "\n".join(prose)
    for span in re.finditer(r"`([^`]+)`", joined):
        yield joined.count("\n", 0, span.start()) + 1, span.group(1).replace("\n", " "), False


def _argv(rest: str) -> list[str]:
    rest = re.sub(r"(^|\s)\.\.\.(?=\s|$)", " ", rest).replace("[", " ").replace("]", " ")
    return [PLACEHOLDERS.get(t, t) for t in shlex.split(rest, comments=True)]


def _subparser(parser: argparse.ArgumentParser, argv: list[str]):
    """The (sub)parser that argv's leading subcommand words select."""
    while parser._subparsers is not None and argv and not argv[0].startswith("-"):
        choices = parser._subparsers._group_actions[0].choices
        if argv[0] not in choices:
            return parser, argv[0]
        parser, argv = choices[argv[0]], argv[1:]
    return parser, None


def _named_things(args: argparse.Namespace) -> list[str]:
    """Problems with the configs, variants, rules and experiments a parsed command names."""
    problems = []
    config = getattr(args, "config", None)
    if config and not re.search(r"[$]|NAME", config) and not (config.endswith(".yaml") and "/" not in config):
        try:  # a bare FILE.yaml is the user's own file (the docs say what to write in it)
            spec = load_network(config)
            variant = getattr(args, "variant", None)
            if variant and variant != "all":
                spec.with_variant(variant)
        except EdgelearnError as exc:
            problems.append(str(exc).splitlines()[0][:200])
    rules = [getattr(args, "rule", None)]
    if isinstance(getattr(args, "rules", None), str):
        rules += args.rules.split(",")
    rules += [r.partition("=")[2] for r in getattr(args, "layer_rule", None) or []]
    problems += [f"unknown rule {r!r}" for r in rules if r and r not in RULE_NAMES]
    if args.command == "reproduce" and args.name and args.name != "NAME":
        from edgelearn.report.reproduce import EXPERIMENTS
        if args.name not in EXPERIMENTS:
            problems.append(f"unknown experiment {args.name!r}")
    return problems


def _redirections(cmd: str) -> list[str]:
    """A ``fixed<W,I>`` format left unquoted: the shell reads ``<`` and ``>`` as redirections."""
    unquoted = re.sub(r"'[^']*'|\"[^\"]*\"", "", cmd.split(" #")[0])
    formats = re.findall(r"\S*\S<[^\s<>]*>\S*", unquoted)
    return [f"quote {t!r}: the shell reads < and > as redirections" for t in formats]


def check_command(parser: argparse.ArgumentParser, cmd: str, complete: bool) -> list[str]:
    """Problems of one documented ``edgelearn`` command (empty: it runs as written); ``complete`` commands must
    parse, fragments (inline spans, often without the required ``--out``) need only known options."""
    m = _COMMAND.match(cmd)
    if not m or re.match(r"[\w-]+:", m.group(1)):  # not a command, or the CLI's own message quoted
        return []
    if _redirections(cmd):
        return _redirections(cmd)
    argv = _argv(m.group(1))
    complete = complete and not re.search(r"(^|\s)\.\.\.(\s|$)", m.group(1))  # "..." elides options
    sub, unknown = _subparser(parser, argv)
    if unknown is not None:
        return [f"unknown subcommand {unknown!r}"]
    problems = [f"{sub.prog} has no option {t.split('=')[0]}" for t in argv
                if re.match(r"--?[a-z]", t) and t.split("=")[0] not in sub._option_string_actions]
    if problems or not complete or "--help" in argv:
        return problems
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            args = parser.parse_args(argv)
    except SystemExit:
        return [err.getvalue().strip().splitlines()[-1]]
    return _named_things(args)


def check_script(cmd: str) -> list[str]:
    """Problems of one documented ``benchmarks/`` or ``scripts/`` command: the file exists and defines each option
    used (in its own text or in the benchmarks' shared module it imports)."""
    problems = _redirections(cmd) if _SCRIPT.search(cmd) and not _COMMAND.match(cmd) else []
    for m in _SCRIPT.finditer(cmd):
        path = ROOT / m.group(1)
        if not path.is_file():
            problems.append(f"no file {m.group(1)}")
            continue
        source = path.read_text()
        for helper in re.findall(r"^from (\w+) import", source, re.M):
            if (path.parent / f"{helper}.py").is_file():
                source += (path.parent / f"{helper}.py").read_text()
        problems += [f"{m.group(1)} has no option {opt}" for opt in re.findall(r"(?<![\w-])--[a-z][\w-]*", m.group(2))
                     if f'"{opt}"' not in source and f"'{opt}'" not in source]
    return problems


def _documented():
    for doc in DOCS:
        for line, cmd, complete in _blocks(doc.read_text()):
            yield f"{doc.relative_to(ROOT)}:{line}", cmd, complete


def test_documented_commands_run_as_written():
    parser = build_parser()
    checked, problems = 0, []
    for where, cmd, complete in _documented():
        found = check_command(parser, cmd, complete) + check_script(cmd)
        checked += bool(_COMMAND.match(cmd) or _SCRIPT.search(cmd))
        problems += [f"{where}: {p}\n    {cmd[:160]}" for p in found]
    assert checked > 150, checked  # the extraction still finds the docs' commands
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("cmd, complete, expected", [
    ("edgelearn simulate --bitz 8", True, "no option --bitz"),
    ("edgelearn simulate --rule drtp --bits eight", True, "invalid int value"),
    ("edgelearn rtl --parallel 2 --chek icarus", False, "no option --chek"),
    ("edgelearn synthesize --out x", True, "unknown subcommand"),
    ("edgelearn train -c no-such-net --out x", True, "no-such-net"),
    ("edgelearn train -c experiments/ldfa-fig3e-vgg -V no-such-variant", True, "no-such-variant"),
    ("edgelearn reproduce drtp-table9", True, "unknown experiment"),
    ("edgelearn train --config fc2-500 --layer-rule out=bq", True, "unknown rule"),
    (".venv/bin/python benchmarks/bench_rtl.py --only cycles --synth-rows 2", True, "no option --synth-rows"),
    (".venv/bin/python benchmarks/synth_table.py", True, "no file"),
    ("edgelearn simulate --format weight=fixed<6,2,STOCH,SAT> --out x", True, "redirections"),
    ("python benchmarks/ldfa_fixed.py --format act=fixed<16,3>", False, "redirections"),
])
def test_a_broken_command_is_caught(cmd, complete, expected):
    found = check_command(build_parser(), cmd, complete) + check_script(cmd)
    assert any(expected in p for p in found), found
