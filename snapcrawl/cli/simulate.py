"""``snapcrawl simulate``: run the built-in SCP simulator until interrupted.

::

    argparse options -> faults_from_args() (Faults, Churn; bad values -> ConfigError, exit 2)
        -> Simulator(...).start() (busy port -> ConfigError) -> print the exports -> serve until interrupted

The simulator's modules are imported inside the functions: only ``simulate`` needs the server side, and every other
command starts without it.
"""

from __future__ import annotations

import argparse
import ssl
from typing import TYPE_CHECKING

import anyio

from .._exceptions import ConfigError
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

if TYPE_CHECKING:
    from ..simulator.faults import Faults

__all__ = ["faults_from_args", "register", "run"]


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
    return await run(args)


def _latency(text: str | None) -> float | tuple[float, float]:
    if not text:
        return 0.0
    low, _, high = text.partition(":")
    try:
        return (float(low), float(high)) if high else float(low)
    except ValueError:
        raise ConfigError(f"--latency must be S or S1:S2 in seconds, not {text!r}") from None


def faults_from_args(args: argparse.Namespace) -> Faults:
    """The :class:`Faults` the ``simulate`` options ask for."""
    from ..simulator.dataset import Churn  # noqa: PLC0415 - the server side, for this command only
    from ..simulator.faults import Faults, parse_maintenance, parse_pause, parse_quota_schedule  # noqa: PLC0415

    try:
        churn = None
        if args.churn is not None or args.busy_volume:
            churn = Churn(
                rate=0.0 if args.churn is None else args.churn,
                deletes=args.churn_deletes,
                creates=args.churn_creates,
                marker_share=args.churn_marker_share,
                busy_volumes=frozenset(args.busy_volume),
                busy_rate=args.busy_churn,
            )
        return Faults(
            rate_limit=args.rate_limit,
            rate_burst=args.rate_burst,
            retry_after=args.retry_after,
            quota_schedule=parse_quota_schedule(args.quota_schedule) if args.quota_schedule else (),
            ratelimit_headers=args.ratelimit_headers,
            error_rate=args.error_rate,
            drop_rate=args.drop_rate,
            truncate_rate=args.truncate_rate,
            html_rate=args.html_rate,
            stall_rate=args.stall_rate,
            stall_seconds=args.stall_seconds,
            latency=_latency(args.latency),
            pause=tuple(step for text in args.pause for step in parse_pause(text)),
            fail_volumes=frozenset(args.fail_volume),
            malformed_volumes=frozenset(args.malformed_volume),
            huge_volumes=frozenset(args.huge_volume),
            bomb_volumes=frozenset(args.bomb_volume),
            bomb_bytes=args.bomb_bytes,
            huge_body_bytes=args.huge_body_bytes,
            cycle_volumes=frozenset(args.cycle_volume),
            inclusive_volumes=frozenset(args.inclusive_volume),
            nul_volumes=frozenset(args.nul_volume),
            big_int_volumes=frozenset(args.big_int_volume),
            far_date_volumes=frozenset(args.far_date_volume),
            escape_volumes=frozenset(args.escape_volume),
            churn=churn,
            reject_replays=args.reject_replays,
            gzip=args.gzip,
            max_limit=args.max_limit,
            maintenance=tuple(step for text in args.maintenance for step in parse_maintenance(text)),
            latency_per_in_flight=args.latency_per_in_flight,
        )
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def _ssl_context(cert: str | None, key: str | None) -> ssl.SSLContext | None:
    if cert is None and key is None:
        return None
    if cert is None:
        raise ConfigError("--tls-key needs --tls-cert")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"cannot load the TLS certificate {cert!r}: {exc}") from None
    return context


async def run(args: argparse.Namespace) -> int:
    """Serve until cancelled (Ctrl-C), after printing the shell exports a client needs."""
    from ..simulator.server import Simulator  # noqa: PLC0415 - the server side, for this command only

    sim = Simulator(
        volumes=args.volumes,
        seed=args.seed,
        faults=faults_from_args(args),
        host=args.host,
        port=args.port,
        max_clock_skew=args.max_clock_skew,
        ssl_context=_ssl_context(args.tls_cert, args.tls_key),
    )
    try:
        await sim.start()
    except OSError as exc:
        raise ConfigError(f"cannot listen on {args.host}:{args.port}: {exc.strerror}") from None
    try:
        if args.volume_file:
            ids = "".join(f"{volume_id}\n" for volume_id in sim.dataset.volume_ids)
            try:
                await anyio.Path(args.volume_file).write_text(ids, encoding="utf-8")
            except OSError as exc:
                raise ConfigError(f"cannot write --volume-file {args.volume_file!r}: {exc.strerror}") from None
        creds = sim.credentials
        print(f"SCP simulator serving {args.volumes} volumes at {sim.url}  (Ctrl-C stops it)", flush=True)
        print(f"export SCP_ENDPOINT={sim.url}", flush=True)
        print(f"export SCP_ACCESS_KEY={creds.access_key}", flush=True)
        print(f"export SCP_SECRET_KEY={creds.secret_key}", flush=True)
        print(f"# e.g. snapcrawl list --volume {sim.dataset.volume_ids[0]}", flush=True)
        await anyio.sleep_forever()
    finally:
        with anyio.CancelScope(shield=True):
            await sim.stop()
    return 0
