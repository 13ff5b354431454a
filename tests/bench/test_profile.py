"""bench.profile's in-process measurements run end to end on a small workload (numbers are not judged)."""

from __future__ import annotations

import re

import pytest

from bench.profile import main


@pytest.mark.usefixtures("restore_logging")
def test_versus_baseline_prints_each_side_and_the_slope_of_the_services_own_cost(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--measure", "sweep-10", "sweep-100", "--versus-baseline", "--rounds", "1", "--requests", "36"]) == 0
    captured = capsys.readouterr()
    # The service's warnings come through its own formatter (level, logger, fields), not bare messages.
    assert " WARNING service.security: AUTHENTICATION IS OFF" in captured.err
    lines = captured.out.splitlines()
    measured = [line for line in lines if "ms/request" in line]
    assert [line.split()[0] for line in measured] == ["sweep-10", "sweep-100"]
    for line in measured:
        service, baseline, own = (float(x) for x in re.findall(r"(?:service|baseline|own)\s+(-?[\d.]+)", line))
        assert service > 0 and baseline > 0 and own == pytest.approx(service - baseline, abs=0.002)
    assert re.fullmatch(r"log-log slopes of the service's own cost: -?[\d.]+", lines[-1])
