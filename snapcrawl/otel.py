"""OpenTelemetry metrics for a crawler: a subscriber to its events (``pip install 'snapcrawl[otel]'``).

Names follow OpenTelemetry's HTTP client semantic conventions where one exists:

- ``http.client.request.duration`` (histogram, seconds), with ``http.request.method``,
  ``http.response.status_code`` (or ``error.type`` when no answer came) and ``server.address``: its count by
  status code is the count of requests by status;
- ``snapcrawl.client.retries`` and ``snapcrawl.client.throttles`` (counters);
- ``snapcrawl.client.rate`` (gauge, requests per second; absent while there is no cap);
- ``snapcrawl.client.volumes`` (counter, with ``snapcrawl.outcome`` ``done`` or ``failed``).

Only the OpenTelemetry *API* is needed here; the application chooses the SDK, exporters and meter provider.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from ._events import Hooks, RateChanged, ResponseReceived, RetryScheduled, Throttled, VolumeDone, VolumeFailed
from ._exceptions import ConfigError

if TYPE_CHECKING:
    from opentelemetry.metrics import Meter, MeterProvider

__all__ = ["otel_hooks"]


def otel_hooks(endpoint: str, *, meter_provider: MeterProvider | None = None) -> Hooks:
    """Hooks that record a crawler's requests, retries, throttles, rate and volumes as OpenTelemetry metrics.

    ``endpoint`` gives ``server.address``; ``meter_provider`` defaults to the global one. Pass them with your own
    hooks as ``Crawler(hooks=[otel_hooks(endpoint), mine])``.
    """
    try:
        from opentelemetry import metrics  # noqa: PLC0415 - optional dependency
    except ImportError:
        raise ConfigError("OpenTelemetry metrics need the otel extra: pip install 'snapcrawl[otel]'") from None
    from . import __name__ as package  # noqa: PLC0415 - the instrumentation scope is this package

    meter: Meter = (meter_provider or metrics.get_meter_provider()).get_meter(package)
    duration = meter.create_histogram(
        "http.client.request.duration", unit="s", description="Duration of HTTP client requests."
    )
    retries = meter.create_counter("snapcrawl.client.retries", unit="{retry}", description="Requests sent again.")
    throttles = meter.create_counter(
        "snapcrawl.client.throttles", unit="{response}", description="Answers that throttled a request (429, or 503)."
    )
    rate = meter.create_gauge("snapcrawl.client.rate", unit="{request}/s", description="The rate limit in force.")
    volumes = meter.create_counter("snapcrawl.client.volumes", unit="{volume}", description="Listings finished.")
    base: dict[str, Any] = {"http.request.method": "GET", "server.address": urlsplit(endpoint).hostname or ""}
    by_status: dict[int | None, dict[str, Any]] = {}

    def attributes(status: int | None) -> dict[str, Any]:
        if (found := by_status.get(status)) is None:
            extra = {"http.response.status_code": status} if status is not None else {"error.type": "transport"}
            found = by_status[status] = base | extra
        return found

    def on_response(event: ResponseReceived) -> None:
        duration.record(event.seconds, attributes(event.status))

    def on_retry(event: RetryScheduled) -> None:
        retries.add(1, base)

    def on_throttle(event: Throttled) -> None:
        throttles.add(1, base)

    def on_rate_change(event: RateChanged) -> None:
        if event.rate is not None:
            rate.set(event.rate, base)

    done = base | {"snapcrawl.outcome": "done"}
    failed = base | {"snapcrawl.outcome": "failed"}

    def on_volume_done(event: VolumeDone) -> None:
        volumes.add(1, done)

    def on_volume_failed(event: VolumeFailed) -> None:
        volumes.add(1, failed)

    return Hooks(
        on_response=on_response,
        on_retry=on_retry,
        on_throttle=on_throttle,
        on_rate_change=on_rate_change,
        on_volume_done=on_volume_done,
        on_volume_failed=on_volume_failed,
    )
