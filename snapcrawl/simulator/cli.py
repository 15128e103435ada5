"""The run of ``snapcrawl simulate`` (its options live in ``snapcrawl.cli.simulate``).

::

    argparse options -> faults_from_args() (Faults, Churn; bad values -> ConfigError, exit 2)
        -> Simulator(...).start() (busy port -> ConfigError) -> print the exports -> serve until interrupted
"""

from __future__ import annotations

import argparse
import ssl

import anyio

from .._exceptions import ConfigError
from .dataset import Churn
from .faults import Faults, parse_maintenance, parse_pause, parse_quota_schedule
from .server import Simulator

__all__ = ["faults_from_args", "run"]


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
