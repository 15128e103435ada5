"""``snapcrawl simulate``: run the built-in SCP simulator until interrupted (options here, the run in the server)."""

from __future__ import annotations

import argparse

from ._common import (
    BURST,
    BYTES,
    COUNT,
    FRACTION,
    PAGE_SIZE,
    PORT,
    RATE,
    SECONDS,
    SEED,
    VOLUMES,
    DeprecatedAlias,
    bounded,
)

__all__ = ["register"]


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``simulate`` command."""
    sim = commands.add_parser("simulate", help="run the built-in SCP simulator until interrupted")
    _add_simulator_options(sim)
    sim.set_defaults(run=_cmd_simulate)


def _add_simulator_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=PORT, default=8765, help="0 picks a free port (printed)")
    parser.add_argument("--volume-count", dest="volumes", type=VOLUMES, default=2000, metavar="N")
    parser.add_argument("--volumes", dest="volumes", type=VOLUMES, action=DeprecatedAlias, use="--volume-count")
    parser.add_argument("--seed", type=SEED, default=0)
    parser.add_argument("--volume-file", metavar="FILE", help="also write the volume ids there, one a line")
    parser.add_argument("--max-clock-skew", type=SECONDS, default=300.0, metavar="S")
    parser.add_argument("--tls-cert", metavar="FILE", help="serve HTTPS with this certificate chain (PEM)")
    parser.add_argument("--tls-key", metavar="FILE", help="the private key of --tls-cert (PEM)")
    quota = parser.add_argument_group("quota")
    quota.add_argument("--rate-limit", type=RATE, metavar="R", help="answer 429 above R requests/s")
    quota.add_argument("--rate-burst", type=BURST, default=10, metavar="N")
    quota.add_argument("--retry-after", choices=("seconds", "http-date", "none"), default="seconds")
    quota.add_argument(
        "--quota-schedule", metavar="AT:R,...", help="change the rate limit AT seconds after the first request"
    )
    quota.add_argument(
        "--ratelimit-headers", choices=("none", "ietf", "x", "both"), default="none", help="rate-limit headers"
    )
    faults = parser.add_argument_group("fault injection")
    faults.add_argument("--error-rate", type=FRACTION, default=0.0, metavar="P", help="fraction answered 503")
    faults.add_argument("--drop-rate", type=FRACTION, default=0.0, metavar="P", help="fraction of dropped connections")
    faults.add_argument("--truncate-rate", type=FRACTION, default=0.0, metavar="P", help="fraction of truncated bodies")
    faults.add_argument("--html-rate", type=FRACTION, default=0.0, metavar="P", help="fraction of HTML 502 pages")
    faults.add_argument("--stall-rate", type=FRACTION, default=0.0, metavar="P", help="fraction stalled")
    faults.add_argument(
        "--stall-seconds", type=bounded(0, 86_400), default=30.0, metavar="S", help="how long a stall lasts"
    )
    faults.add_argument("--latency", metavar="S[:S2]", help="fixed latency, or a uniform range, in seconds")
    faults.add_argument(
        "--latency-per-in-flight",
        type=bounded(0, 60),
        default=0.0,
        metavar="S",
        help="S more seconds of latency for each other request in flight: latency grows with load",
    )
    faults.add_argument(
        "--pause", action="append", default=[], metavar="AT:FOR", help="stall the whole server (repeatable)"
    )
    faults.add_argument(
        "--maintenance",
        action="append",
        default=[],
        metavar="AT:FOR",
        help="answer every request 503 with Retry-After for FOR seconds (repeatable)",
    )
    faults.add_argument("--fail-volume", action="append", default=[], metavar="ID", help="always 500 (repeatable)")
    faults.add_argument("--malformed-volume", action="append", default=[], metavar="ID", help="malformed JSON")
    faults.add_argument("--huge-volume", action="append", default=[], metavar="ID", help="a page over 8 MiB")
    faults.add_argument("--bomb-volume", action="append", default=[], metavar="ID", help="a gzip bomb page")
    faults.add_argument("--bomb-bytes", type=BYTES, default=64 * 1024 * 1024, metavar="N")
    faults.add_argument("--huge-body-bytes", type=BYTES, default=8 * 1024 * 1024, metavar="N", help="of a huge page")
    hostile = parser.add_argument_group("hostile data (each repeatable)")
    for name, what in (
        ("cycle", "marker pages go round: A, B, A, B..."),
        ("inclusive", "each marker page starts with the marker's own snapshot"),
        ("nul", "NUL characters in names, descriptions and metadata"),
        ("big-int", "sizes beyond 64 bits"),
        ("far-date", "created_at of year 1 at +01:00 (before year 1 in UTC)"),
        ("escape", "a 400 whose detail holds terminal escape sequences"),
    ):
        hostile.add_argument(f"--{name}-volume", action="append", default=[], metavar="ID", help=what)
    faults.add_argument("--max-limit", type=PAGE_SIZE, metavar="N", help="pages never longer than N")
    faults.add_argument("--gzip", action="store_true", help="gzip bodies for clients that accept it")
    faults.add_argument("--reject-replays", action="store_true", help="401 for a reused timestamp and signature")
    churn = parser.add_argument_group("churn (data changing while it is listed)")
    churn.add_argument("--churn", type=FRACTION, metavar="P", help="chance of a churn event after each page")
    churn.add_argument("--churn-deletes", type=COUNT, default=1, metavar="N", help="passed snapshots deleted")
    churn.add_argument("--churn-creates", type=COUNT, default=1, metavar="N", help="snapshots created")
    churn.add_argument(
        "--churn-marker-share", type=FRACTION, default=0.25, metavar="P", help="chance to delete the next marker"
    )
    churn.add_argument("--busy-volume", action="append", default=[], metavar="ID", help="churned heavily (repeatable)")
    churn.add_argument("--busy-churn", type=FRACTION, default=1.0, metavar="P", help="churn chance for busy volumes")


async def _cmd_simulate(args: argparse.Namespace) -> int:
    from ..simulator.cli import run  # noqa: PLC0415 - only the demo and simulate need the server side

    return await run(args)
