"""``snapcrawl migrate``: give a snapcrawl 0.2 table the account columns, explicitly (never done silently)."""

from __future__ import annotations

import argparse
import sys

from .._config import load_credentials, resolve_endpoint
from .._identity import default_account, endpoint_host
from ..sinks import DEFAULT_TABLE
from ..sinks._upgrade import migrate_table
from ..sinks.postgres import redact
from ._common import EXIT_OK

__all__ = ["register"]


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``migrate`` command."""
    migrate = commands.add_parser(
        "migrate",
        help="give a snapcrawl 0.2 table its account columns (rows kept, tagged with one account)",
        description="Add the account and endpoint columns to a table written by snapcrawl 0.2 and make "
        "(account, id) its key. Every existing row gets --account (default: the account a crawl with the same "
        "endpoint and credentials writes as), so the next crawl of that account updates and prunes them. "
        "Unfinished 0.2 crawls start over. Run it once, with no crawl running.",
    )
    migrate.add_argument("--out", required=True, metavar="DEST", help="sqlite:///FILE.db or postgresql://...")
    migrate.add_argument("--table", default=DEFAULT_TABLE, metavar="NAME", help="the table (default snapshots)")
    migrate.add_argument("--account", metavar="NAME", help="the account of the existing rows (a fleet config name)")
    where = migrate.add_argument_group("endpoint of the existing rows (default: SCP_ENDPOINT or ~/.scpconf)")
    where.add_argument("--endpoint", metavar="URL")
    where.add_argument("--region")
    where.add_argument("--env", dest="environment", choices=("s", "g", "e"))
    migrate.add_argument("--log-level", default="warning", choices=("debug", "info", "warning", "error"))
    migrate.set_defaults(run=_cmd_migrate)


async def _cmd_migrate(args: argparse.Namespace) -> int:
    endpoint = resolve_endpoint(args.endpoint, region=args.region, environment=args.environment)
    account = args.account or default_account(endpoint, load_credentials().access_key)
    rows = await migrate_table(args.out, table=args.table, account=account, endpoint=endpoint_host(endpoint))
    shown = redact(args.out) if args.out.startswith(("postgresql://", "postgres://")) else args.out
    if rows == 0:
        print(f"snapcrawl: table {args.table} of {shown} has its account columns already (or no rows)", file=sys.stderr)
    else:
        print(f"snapcrawl: migrated table {args.table} of {shown}: {rows} rows, account {account!r}", file=sys.stderr)
    return EXIT_OK
