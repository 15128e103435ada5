"""The benchmark harness counts what the clients really do, and says what to install when pyinstrument is missing."""

from __future__ import annotations

import importlib.util
import io
from importlib.machinery import ModuleSpec

import pytest

from benchmarks.clients import ceiling, naive
from benchmarks.helpers.harness import expected_requests, pages_per_volume
from benchmarks.studies import own_cpu
from benchmarks.studies import quota as quota_study
from benchmarks.suite._main import MEASUREMENTS, RENAMED, main, missing_modules
from snapcrawl import Crawler
from snapcrawl._models import Page
from snapcrawl.simulator import Simulator

#: Small enough that many volumes (0 to 5 snapshots each) fill their last page exactly, or have none.
PAGE_SIZE = 5


def test_pages_per_volume_ends_on_a_short_or_empty_page() -> None:
    """A full last page costs one more, empty request; an empty volume costs one."""
    assert [pages_per_volume(count, 5) for count in (0, 1, 4, 5, 6, 10, 11)] == [1, 1, 1, 2, 2, 3, 3]


async def test_snapcrawl_takes_the_expected_requests(simulator: Simulator) -> None:
    """A fault-free crawl takes exactly the requests the throughput check expects of it."""
    dataset = simulator.dataset
    assert any(dataset.count(v) and dataset.count(v) % PAGE_SIZE == 0 for v in dataset.volume_ids)
    lines = 0

    def count(page: Page) -> None:
        nonlocal lines
        lines += len(page.snapshots)

    crawler = Crawler(endpoint=simulator.url, credentials=simulator.credentials, page_size=PAGE_SIZE)
    async with crawler:
        result = await crawler.crawl_into(dataset.volume_ids, count)
    assert (result.stats.requests, lines) == (expected_requests(dataset, PAGE_SIZE), dataset.total)


@pytest.mark.parametrize("client", [ceiling, naive], ids=["ceiling", "naive"])
async def test_hand_written_clients_do_the_same_work(simulator: Simulator, client: object) -> None:
    """The ceiling and the naive client send as many requests as snapcrawl, and write every snapshot."""
    dataset = simulator.dataset
    out = io.BytesIO() if client is ceiling else io.StringIO()
    counts = await client.crawl(  # type: ignore[attr-defined]
        simulator.url,
        dataset.volume_ids,
        out,
        access_key=simulator.credentials.access_key,
        secret_key=simulator.credentials.secret_key,
        page_size=PAGE_SIZE,
        concurrency=16,
    )
    assert (counts.requests, counts.snapshots) == (expected_requests(dataset, PAGE_SIZE), dataset.total)
    written = out.getvalue()
    lines = written.count(b"\n") if isinstance(written, bytes) else written.count("\n")
    assert lines == dataset.total


def test_missing_pyinstrument_stops_the_run_naming_the_extra(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without pyinstrument, the overhead measurement fails at once and says which extra to install."""
    real = importlib.util.find_spec

    def find_spec(name: str, package: str | None = None) -> ModuleSpec | None:
        return None if name == "pyinstrument" else real(name, package)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    assert missing_modules(["throughput", "memory"]) == []
    assert missing_modules(["throughput", "overhead"]) == ["pyinstrument"]
    with pytest.raises(SystemExit) as exited:
        main(["--only", "overhead"])
    assert exited.value.code == 2
    assert "pip install '.[benchmarks]'" in capsys.readouterr().err


def test_measurement_names_are_their_modules() -> None:
    """``--only NAME`` runs ``benchmarks/suite/NAME.py``: each measurement comes from the module it is named for."""
    for name, measurement in MEASUREMENTS.items():
        assert measurement.measure.__module__ == f"benchmarks.suite.{name}"
        assert measurement.render.__module__ == f"benchmarks.suite.{name}"
    assert set(RENAMED.values()) <= MEASUREMENTS.keys()


def test_old_measurement_names_still_select_with_a_warning(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--only profile`` still selects the overhead measurement (and so needs pyinstrument), and says the new name."""
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, package=None: None)
    with pytest.raises(SystemExit) as exited:
        main(["--only", "profile"])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "--only overhead" in err and "the overhead measurement needs pyinstrument" in err


def test_own_cpu_compares_snapcrawl_with_its_floor(capsys: pytest.CaptureFixture[str]) -> None:
    """``benchmarks.studies.own_cpu`` crawls a canned transport in subprocesses: snapcrawl against the floor."""
    assert own_cpu.main(["--rounds", "1", "--volumes", "40", "--per-page", "3"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("40 volumes, 3 snapshots each")
    rows = {line.split()[0]: line.split() for line in lines[1:]}
    assert set(rows) == {"floor", "snapcrawl"}
    assert float(rows["floor"][1]) > 0 and float(rows["snapcrawl"][1]) > 0 and "own" in rows["snapcrawl"]


def test_quota_figures_count_the_whole_run_and_recompute_an_older_one() -> None:
    """'Used' and '429s' run from the first request (the start-up counts against the quota); the steady-state ones
    skip the first second; an older run's steady-state headline is recomputed from its per-second counts."""
    case = next(case for case in quota_study.CASES if case.name == "discover")
    rows = [
        {"ok": 150, "throttled": 50, "requests": 200, "quota": 200},
        {"ok": 200, "throttled": 0, "requests": 200, "quota": 200},
    ]
    result = quota_study._result(case, "snapcrawl", rows, max_in_1s_window=None)
    assert (result["used"], result["throttled"]) == (350 / 400, 50 / 400)
    assert (result["steady_used"], result["steady_throttled"], result["first_second_throttled"]) == (1.0, 0.0, 50)
    older = {key: value for key, value in result.items() if not key.startswith("steady")} | {"used": 1.0}
    assert quota_study._whole_run(older)["used"] == result["used"]
