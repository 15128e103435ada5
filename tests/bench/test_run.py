"""``snapcrawl.bench.run`` through a fake transport: what is sent, how answers are counted, the report's schema."""

from __future__ import annotations

import json
from collections.abc import Callable
from urllib.parse import parse_qs, urlsplit

import anyio
import pytest

from snapcrawl import AuthError, ConfigError, Credentials, TransportError
from snapcrawl.bench import LAG_WARNING_MS, BenchConfig, BenchReport, Live, Step, encode_report, run
from snapcrawl.bench._findmax import bench_excuse
from snapcrawl.signing import make_signature
from snapcrawl.transport import Response

CREDENTIALS = Credentials(access_key="bench-access", secret_key="bench-secret")
ENDPOINT = "http://127.0.0.1:9"
LATENCY_KEYS = {"p50", "p90", "p99", "p99.9", "max", "mean", "percentiles"}


class FakeTransport:
    """Answers every GET at once with whatever ``answer`` says for the n-th request."""

    def __init__(self, answer: Callable[[int], int | Exception] = lambda n: 200) -> None:
        self.answer = answer
        self.sent: list[tuple[str, dict[str, str]]] = []
        self.closed = False

    async def get(self, url: str, headers: dict[str, str]) -> Response:
        outcome = self.answer(len(self.sent))
        self.sent.append((url, headers))
        await anyio.lowlevel.checkpoint()
        if isinstance(outcome, Exception):
            raise outcome
        return Response(outcome, b"{}")

    async def aclose(self) -> None:
        self.closed = True


def _config(**settings: object) -> BenchConfig:
    base: dict[str, object] = {"endpoint": ENDPOINT, "credentials": CREDENTIALS}
    return BenchConfig(**(base | settings))  # type: ignore[arg-type]


async def test_round_robin_first_pages_each_signed_when_sent() -> None:
    """Requests take the volumes in turn, ask for the first page, and carry a valid signature of their URL."""
    transport = FakeTransport()
    volumes = ("vol-a", "vol b", "vol&c")
    await run(_config(volume_ids=volumes, rate=1000.0, duration=0.03, page_size=7), transport=transport)
    assert len(transport.sent) == 30
    for i, (url, headers) in enumerate(transport.sent):
        query = parse_qs(urlsplit(url).query)
        assert query == {"limit": ["7"], "volume_id": [volumes[i % 3]], "with_count": ["true"]}
        assert url.startswith(f"{ENDPOINT}/v1/snapshots?")
        expected = make_signature(
            method="GET",
            url=url,
            timestamp=headers["Scp-Timestamp"],
            access_key=CREDENTIALS.access_key,
            secret_key=CREDENTIALS.secret_key,
        )
        assert headers["Scp-Signature"] == expected
    assert not transport.closed  # a transport passed in belongs to the caller


async def test_account_listing_when_no_volumes() -> None:
    """Without volume ids every request is the account listing's first page."""
    transport = FakeTransport()
    await run(_config(rate=1000.0, duration=0.005, name="daily", sort="size:asc"), transport=transport)
    queries = {urlsplit(url).query for url, _ in transport.sent}
    assert queries == {"limit=100&name=daily&sort=size%3Aasc&with_count=true"}


async def test_answers_are_counted_by_status_and_error() -> None:
    """200s, 429s, 503s and transport errors each land in their count; thresholds read them."""
    outcomes: list[int | Exception] = [200, 200, 429, 503, TransportError("ServerDisconnectedError: gone")]
    transport = FakeTransport(lambda n: outcomes[n % len(outcomes)])
    config = _config(rate=1000.0, duration=0.05, fail_if=("errors>10%", "throttled>50%"))
    report = await run(config, transport=transport)
    assert report.requests == 50
    assert report.status == {"200": 20, "429": 10, "503": 10}
    assert report.errors == {"ServerDisconnectedError": 10}
    assert (report.throttled, report.failed) == (10, 20)
    assert [(result.condition, result.breached) for result in report.thresholds] == [
        ("errors>10%", True),
        ("throttled>50%", False),
    ]
    assert [result.condition for result in report.breached] == ["errors>10%"]
    assert sum(row.completed for row in report.timeline) == 50
    assert sum(row.errors for row in report.timeline) == 10


async def test_rejected_credentials_raise_auth_error() -> None:
    """When every answer is 401/403 the run raises AuthError instead of reporting fast latencies."""
    with pytest.raises(AuthError, match="rejected the credentials"):
        await run(_config(rate=1000.0, duration=0.01), transport=FakeTransport(lambda n: 401))


async def test_closed_loop_report() -> None:
    """A closed loop reports no target rate and sends each request when the previous one ended."""
    transport = FakeTransport()
    report = await run(_config(concurrency=4, duration=0.05), transport=transport)
    assert report.mode == "closed"
    assert report.target_rps is None
    assert report.concurrency == 4
    assert report.requests == len(transport.sent) > 0
    assert report.held_back == 0


async def test_progress_is_reported_while_running() -> None:
    """The progress callback sees the run as it goes."""
    seen: list[Live] = []
    await run(_config(rate=50.0, duration=1.2), transport=FakeTransport(), progress=seen.append)
    assert seen
    assert seen[-1].target_rps == 50.0
    assert 0 < seen[-1].sent <= 60


async def test_json_report_schema() -> None:
    """The JSON report has the documented fields, latency keys and timeline rows."""
    report = await run(_config(rate=1000.0, duration=0.05), transport=FakeTransport())
    data = json.loads(encode_report(report))
    for key in ("requests", "duration_s", "target_rps", "achieved_rps", "status", "errors", "timeline"):
        assert key in data
    assert data["requests"] == 50
    assert data["target_rps"] == 1000.0
    assert set(data["latency_ms"]) == LATENCY_KEYS
    assert set(data["latency_uncorrected_ms"]) == LATENCY_KEYS
    assert set(data["scheduling_lag_ms"]) == LATENCY_KEYS
    row = data["timeline"][0]
    assert {"second", "sent", "completed", "status", "p99_ms"} <= set(row)
    assert set(data["spectrum_ms"]) == {"corrected", "uncorrected"}
    assert data["max_sustainable_rps"] is None
    assert data["steps"] is None
    assert BenchReport.__struct_config__.frozen


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({}, "choose one load model"),
        ({"rate": 10.0, "concurrency": 2}, "choose one load model"),
        ({"find_max": True, "concurrency": 2}, "cannot be combined with concurrency"),
        ({"find_max": True, "fail_if": ("p99>1ms",)}, "fail_if applies to rate or concurrency"),
        ({"rate": 10.0, "volume_ids": "vol-a"}, "not a string"),
        ({"rate": 10.0, "volume_ids": ("",)}, "empty, blank"),
        ({"rate": -1.0}, "rate must be > 0"),
        ({"rate": 0.5, "duration": 1.0}, "sends no request"),
        ({"rate": 10.0, "page_size": 0}, "page_size"),
        ({"rate": 10.0, "api_version": "1.1", "sort": "size:asc"}, "1.2 or later"),
        ({"rate": 10.0, "fail_if": ("p99>1",)}, "time unit"),
        ({"find_max": True, "rate": 500.0, "max_rate": 100.0}, "above max_rate"),
    ],
)
def test_bad_settings_are_config_errors(settings: dict[str, object], message: str) -> None:
    """Each bad setting is a ConfigError naming it, before any request."""
    with pytest.raises(ConfigError, match=message):
        _config(**settings)


def _step(*, passed: bool = False, throttled: int = 0, lag_max: float = 0.0, reason: str = "x") -> Step:
    return Step(
        target_rps=300.0,
        achieved_rps=300.0,
        requests=900,
        throttled=throttled,
        failed=0,
        p99_ms=5.0,
        scheduling_lag_p99_ms=1.0,
        scheduling_lag_max_ms=lag_max,
        passed=passed,
        reason=reason,
    )


def test_a_step_is_rerun_only_when_the_bench_explains_its_failure() -> None:
    """A 100 ms stall at 300 req/s is a 30-request burst: 30 throttles may be it, 100 are the endpoint's."""
    assert bench_excuse(_step(throttled=30, lag_max=100.0), 0.01) == "the bench itself stalled 100 ms"
    assert bench_excuse(_step(throttled=100, lag_max=100.0), 0.01) is None
    assert bench_excuse(_step(throttled=30, lag_max=5.0), 0.01) is None
    assert bench_excuse(_step(passed=True, lag_max=100.0), 0.01) is None
    assert bench_excuse(_step(reason="client-bound"), 0.01) == "the bench fell behind its schedule"


class RacingClock:
    """A monotonic clock that moves ``step`` (2 ms) each time it is read: every send looks late to the bench."""

    def __init__(self, step: float = 0.002) -> None:
        self.now = 100.0
        self.step = step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


async def test_scheduling_lag_over_a_millisecond_is_a_warning() -> None:
    """When the bench itself sends late, the report says so, apart from the server's latency."""
    report = await run(_config(rate=1000.0, duration=0.02), transport=FakeTransport(), clock=RacingClock())
    assert report.scheduling_lag_ms.p50 >= 2.0
    assert any("scheduling lag" in warning for warning in report.warnings)


async def test_a_generator_behind_its_schedule_is_named_as_the_limit() -> None:
    """When even the median send is late, the warning says plainly that the generator, not the server, limited."""
    report = await run(_config(rate=1000.0, duration=0.02), transport=FakeTransport(), clock=RacingClock(0.01))
    assert report.scheduling_lag_ms.p50 > 5.0
    assert any("the load generator, not the server, was the limit" in warning for warning in report.warnings)


async def test_lag_warning_exactly_when_p99_is_over_a_millisecond() -> None:
    """On the real clock the warning appears if and only if the measured p99 lag is over 1 ms."""
    report = await run(_config(rate=1000.0, duration=0.02), transport=FakeTransport())
    warned = any("scheduling lag" in warning for warning in report.warnings)
    assert warned == (report.scheduling_lag_ms.p99 > LAG_WARNING_MS)


async def test_warns_when_one_url_goes_faster_than_its_timestamps() -> None:
    """Over 1,000 req/s for a single URL the unique-timestamp signer runs ahead of the clock: the report says so."""
    fast = await run(_config(rate=2000.0, duration=0.01), transport=FakeTransport())
    assert any("timestamps ran ahead" in warning for warning in fast.warnings)
    spread = await run(_config(rate=2000.0, duration=0.01, volume_ids=("a", "b")), transport=FakeTransport())
    assert not any("timestamps ran ahead" in warning for warning in spread.warnings)
