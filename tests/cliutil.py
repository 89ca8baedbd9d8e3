"""Shared assertion for CLI tests: a user error is one line on stderr and exit code 1."""

from __future__ import annotations


def one_line_error(res, *needles: str) -> None:
    assert res.exit_code == 1, res.output
    assert "Traceback" not in res.output
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, res.stderr
    for n in needles:
        assert n in lines[0], lines[0]
