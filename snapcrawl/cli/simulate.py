"""``snapcrawl simulate``: run the built-in SCP simulator until interrupted."""

from __future__ import annotations

import argparse

import anyio

from .._exceptions import ConfigError
from ._common import EXIT_OK, positive_float, positive_int

__all__ = ["register"]


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``simulate`` command."""
    sim = commands.add_parser("simulate", help="run the built-in SCP simulator until interrupted")
    _add_simulator_options(sim)
    sim.set_defaults(run=_cmd_simulate)


def _add_simulator_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--volumes", type=positive_int, default=2000, metavar="N")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--volume-file", metavar="FILE", help="also write the volume ids there, one a line")
    parser.add_argument("--max-clock-skew", type=positive_float, default=300.0, metavar="S")
    faults = parser.add_argument_group("fault injection")
    faults.add_argument("--rate-limit", type=positive_float, metavar="R", help="answer 429 above R requests/s")
    faults.add_argument("--rate-burst", type=positive_int, default=10, metavar="N")
    faults.add_argument("--retry-after", choices=("seconds", "http-date", "none"), default="seconds")
    faults.add_argument("--error-rate", type=float, default=0.0, metavar="P", help="fraction answered 503")
    faults.add_argument("--drop-rate", type=float, default=0.0, metavar="P", help="fraction of dropped connections")
    faults.add_argument("--truncate-rate", type=float, default=0.0, metavar="P", help="fraction of truncated bodies")
    faults.add_argument("--html-rate", type=float, default=0.0, metavar="P", help="fraction of HTML 502 pages")
    faults.add_argument("--stall-rate", type=float, default=0.0, metavar="P", help="fraction stalled 30 s")
    faults.add_argument("--latency", metavar="S[:S2]", help="fixed latency, or a uniform range, in seconds")
    faults.add_argument("--fail-volume", action="append", default=[], metavar="ID", help="always 500 (repeatable)")
    faults.add_argument("--malformed-volume", action="append", default=[], metavar="ID", help="malformed JSON")


async def _cmd_simulate(args: argparse.Namespace) -> int:
    from ..simulator import Faults, Simulator  # noqa: PLC0415 - only the demo and simulate need the server side

    latency: float | tuple[float, float] = 0.0
    if args.latency:
        low, _, high = args.latency.partition(":")
        try:
            latency = (float(low), float(high)) if high else float(low)
        except ValueError:
            raise ConfigError(f"--latency must be S or S1:S2 in seconds, not {args.latency!r}") from None
    faults = Faults(
        rate_limit=args.rate_limit,
        rate_burst=args.rate_burst,
        retry_after=args.retry_after,
        error_rate=args.error_rate,
        drop_rate=args.drop_rate,
        truncate_rate=args.truncate_rate,
        html_rate=args.html_rate,
        stall_rate=args.stall_rate,
        latency=latency,
        fail_volumes=frozenset(args.fail_volume),
        malformed_volumes=frozenset(args.malformed_volume),
    )
    sim = Simulator(
        volumes=args.volumes,
        seed=args.seed,
        faults=faults,
        host=args.host,
        port=args.port,
        max_clock_skew=args.max_clock_skew,
    )
    try:
        await sim.start()
    except OSError as exc:
        raise ConfigError(f"cannot listen on {args.host}:{args.port}: {exc.strerror}") from None
    try:
        if args.volume_file:
            ids = "".join(f"{volume_id}\n" for volume_id in sim.dataset.volume_ids)
            await anyio.Path(args.volume_file).write_text(ids, encoding="utf-8")
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
    return EXIT_OK
