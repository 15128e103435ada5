"""A token-bucket server and a concurrent client, simulated on a fake clock: limiters meet a quota in no real time.

The client keeps up to ``concurrency`` requests in flight, asks the limiter before each one (while it is
active), and feeds every answer back. Each request reaches the server's bucket after part of its latency, which
admits it or throttles it; the answer comes back after the rest. A throttled request is not retried: its slot
goes to the next request, which keeps the offered load the same.
"""

from __future__ import annotations

import bisect
import dataclasses
import heapq
import math
import random
from collections.abc import Mapping

from snapcrawl.limits import Limiter
from tests.fakes import FakeClock


@dataclasses.dataclass
class BucketServer:
    """A token bucket of ``burst`` whose rate follows ``schedule``: (from this clock time, this many per second)."""

    schedule: list[tuple[float, float]]
    burst: int
    retry_after: float | None = 1.0
    announce: bool = False  # send IETF RateLimit-Policy / RateLimit headers
    tokens: float = dataclasses.field(init=False)
    stamp: float = dataclasses.field(init=False, default=-math.inf)

    def __post_init__(self) -> None:
        self.tokens = float(self.burst)

    def quota(self, now: float) -> float:
        """The rate in force at ``now``."""
        return [rate for start, rate in self.schedule if start <= now][-1]

    def admit(self, now: float) -> bool:
        """Take a token if there is one."""
        if self.stamp > -math.inf:
            self.tokens = min(float(self.burst), self.tokens + (now - self.stamp) * self.quota(now))
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False

    def headers(self, now: float) -> Mapping[str, str]:
        """The rate-limit headers of an answer, if the server announces its quota."""
        if not self.announce:
            return {}
        quota = self.quota(now)
        return {
            "RateLimit-Policy": f'"default";q={quota:g};w=1',
            "RateLimit": f'"default";r={int(self.tokens)};t=1',
        }


@dataclasses.dataclass
class Trace:
    """What the server saw: the arrival time of every request and whether it was admitted."""

    arrivals: list[tuple[float, bool]] = dataclasses.field(default_factory=list)
    sent: list[float] = dataclasses.field(default_factory=list)

    def admitted_rate(self, start: float, end: float) -> float:
        """Requests admitted per second in [start, end)."""
        return sum(ok for t, ok in self.arrivals if start <= t < end) / (end - start)

    def throttled_share(self, start: float, end: float) -> float:
        """The share of requests arriving in [start, end) that were throttled."""
        window = [ok for t, ok in self.arrivals if start <= t < end]
        return window.count(False) / max(len(window), 1)

    def sent_over(self, rate: float, start: float, end: float, *, window: float = 0.2) -> float:
        """The share of requests sent in [start, end) while the client sent faster than ``rate``: the ``window``
        seconds from each request on held more than ``rate * window`` requests."""
        sent = self.sent
        first, last = bisect.bisect_left(sent, start), bisect.bisect_left(sent, end)
        over = sum(bisect.bisect_left(sent, sent[i] + window) - i > rate * window for i in range(first, last))
        return over / max(last - first, 1)


@dataclasses.dataclass
class _Request:
    ticket: float
    back: float  # when the answer reaches the client
    arrived: bool = False
    admitted: bool = False
    headers: Mapping[str, str] = dataclasses.field(default_factory=dict)


class _Stalls:
    """Moments the server stops: an arrival during one is handled when it ends."""

    def __init__(self, stalls: tuple[float, float] | None, rng: random.Random, now: float) -> None:
        self._every, self._length = stalls if stalls is not None else (math.inf, 0.0)
        self._rng = rng
        self._start = now + self._gap()

    def _gap(self) -> float:
        return self._rng.expovariate(1 / self._every) if math.isfinite(self._every) else math.inf

    def release(self, at: float) -> float:
        """When an arrival at ``at`` reaches the bucket."""
        while at >= self._start + self._length:
            self._start += self._length + self._gap()
        return max(at, self._start + self._length) if at >= self._start else at


async def drive(
    limiter: Limiter,
    clock: FakeClock,
    server: BucketServer,
    *,
    seconds: float,
    concurrency: int = 64,
    latency: tuple[float, float] = (0.01, 0.03),
    before: float = 0.5,
    jitter: float = 0.0,
    stalls: tuple[float, float] | None = None,
    seed: int = 0,
    trace: Trace | None = None,
) -> Trace:
    """Run the client against ``server`` for ``seconds`` of fake time; return (or extend) the trace.

    ``before`` is the share of each request's latency spent before the server's bucket decides (the rest is the
    way back): 0.0 for a gateway that decides on arrival (and the simulator, which sleeps its latency after its
    bucket), 0.5 for a network in between, 1.0 for a bucket behind the latency. ``jitter`` (seconds) delays each
    arrival by up to that much more, as a busy event loop or a network queue does, so that even an evenly paced
    client reaches the bucket a little bunched. ``stalls`` ``(every, length)`` stops the server for ``length``
    seconds at random moments, ``every`` seconds apart on average (a busy host): what arrives meanwhile reaches the
    bucket together when the stall ends.
    """
    rng = random.Random(seed)
    stalled = _Stalls(stalls, random.Random(f"stalls/{seed}"), clock.now)
    trace = trace if trace is not None else Trace()
    events: list[tuple[float, int, _Request]] = []  # (when, tie-break, request): arrival, then answer
    order = 0
    in_flight = 0
    end = clock.now + seconds

    def deliver_due() -> None:
        nonlocal in_flight, order
        while events and events[0][0] <= clock.now:
            at, _, request = heapq.heappop(events)
            if not request.arrived:  # reaches the server
                request.arrived = True
                request.admitted = server.admit(at)
                request.headers = server.headers(at)
                trace.arrivals.append((at, request.admitted))
                order += 1
                heapq.heappush(events, (request.back, order, request))
            else:
                in_flight -= 1
                if request.admitted:
                    limiter.on_success(request.ticket, request.headers)
                else:
                    limiter.on_throttle(request.ticket, server.retry_after, request.headers)

    while clock.now < end:
        deliver_due()
        if in_flight >= concurrency:
            clock.now = max(clock.now, events[0][0])
            continue
        ticket = await limiter.acquire() if limiter.active else -math.inf
        deliver_due()
        order += 1
        spent = rng.uniform(*latency)
        late = rng.uniform(0.0, jitter) if jitter else 0.0
        arrival = stalled.release(clock.now + spent * before + late)
        request = _Request(ticket=ticket, back=arrival + spent * (1 - before))
        heapq.heappush(events, (arrival, order, request))
        trace.sent.append(clock.now)
        in_flight += 1
    return trace
