"""``python -m benchmarks`` names the extra it needs instead of failing half-way through."""

from __future__ import annotations

import importlib.util

import pytest

from benchmarks import _runner


def _without(module: str, monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec

    def find_spec(name: str, package: str | None = None) -> object:
        return None if name == module else real(name, package)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)


def test_missing_pyinstrument_stops_before_any_measurement(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without pyinstrument the profile run exits 2 at once, naming the module and the extra that installs it."""
    _without("pyinstrument", monkeypatch)
    ran: list[str] = []
    monkeypatch.setitem(_runner.MEASUREMENTS, "profile", lambda bench: ran.append("profile"))
    assert _runner.main(["--only", "profile"]) == 2
    err = capsys.readouterr().err
    assert "pyinstrument" in err
    assert "pip install '.[benchmarks]'" in err
    assert ran == []


def test_measurements_without_extras_need_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only the profile needs pyinstrument: the other measurements still run without it."""
    _without("pyinstrument", monkeypatch)
    assert _runner.missing_modules(["throughput", "ratelimit", "memory"]) == []
    assert _runner.missing_modules(["throughput", "profile"]) == ["pyinstrument"]


def test_pyinstrument_is_installed_by_the_dev_extra() -> None:
    """The dev install (which includes the benchmarks extra) finds everything the benchmarks need."""
    assert _runner.missing_modules(list(_runner.NAMES)) == []
