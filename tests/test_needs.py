"""The tool/data gate (tests/needs.py): a skip for a user, a failure under CI."""
from __future__ import annotations

import pytest

import needs


@pytest.mark.parametrize("env", [{"CI": "true"}, {"EDGELEARN_STRICT": "1"}, {}])
def test_missing_data_skips_locally_and_fails_under_ci(env, monkeypatch, tmp_path):
    for k in ("CI", "EDGELEARN_STRICT"):
        monkeypatch.delenv(k, raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    expected = pytest.fail.Exception if env else pytest.skip.Exception
    with pytest.raises(expected, match="not present at"):
        needs.require_data(tmp_path / "absent", "MNIST")
    assert needs.require_data(tmp_path) == tmp_path


def test_missing_tool_skips_locally_and_fails_under_ci(monkeypatch):
    monkeypatch.delenv("EDGELEARN_STRICT", raising=False)
    monkeypatch.setitem(needs.TOOLS, "g++", (lambda: False, "g++ not found"))
    monkeypatch.setenv("CI", "false")
    with pytest.raises(pytest.skip.Exception, match="g\\+\\+ not found"):
        needs.require_tool("g++")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="g\\+\\+ not found.*EDGELEARN_STRICT"):
        needs.require_tool("g++")


def test_ci_entry_point_is_strict():
    from pathlib import Path

    ci = (Path(__file__).resolve().parents[1] / ".ci" / "run").read_text()
    assert "export EDGELEARN_STRICT=1" in ci
