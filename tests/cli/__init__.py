"""Tests of the ``back-knee-cds`` command."""

from __future__ import annotations

import pytest

from service.cli import main


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """``back-knee-cds ARGV`` in-process: exit code, stdout, stderr."""
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err
