"""bench.instructions: cachegrind's total read right and the counted runs working (`make instructions-smoke`,
in .ci/run, runs the whole tool under valgrind: a minute, too long for `make test`)."""

from __future__ import annotations

import pytest

from bench.instructions import instructions_in, main

CACHEGRIND_SUMMARY = """\
==4242== Cachegrind, a high-precision tracing profiler
==4242== Command: python -m bench.instructions --run service --run-calls 30 typical
==4242==
==4242== I   refs:      5,019,028,112
"""


def test_the_total_is_read_from_cachegrinds_summary() -> None:
    assert instructions_in(CACHEGRIND_SUMMARY) == 5_019_028_112


def test_output_without_a_summary_is_an_error_not_a_zero() -> None:
    with pytest.raises(ValueError, match="I refs"):
        instructions_in("==4242== Cachegrind, a high-precision tracing profiler\n")


@pytest.mark.parametrize("calls", ["130,30", "30", "30,x"])
def test_the_two_call_counts_must_be_two_increasing_numbers(calls: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["typical", "--calls", calls])
    assert exited.value.code == 2 and "the second larger" in capsys.readouterr().err


@pytest.mark.usefixtures("restore_logging")
@pytest.mark.parametrize("app", ["service", "baseline"])
def test_a_counted_run_calls_the_app_in_process(app: str) -> None:
    assert main(["--run", app, "--run-calls", "2", "sweep-10"]) == 0


@pytest.mark.usefixtures("restore_logging")
def test_an_unknown_workload_is_refused_before_anything_is_counted() -> None:
    with pytest.raises(SystemExit, match="unknown workload 'typcal'"):
        main(["typcal", "--no-install"])
