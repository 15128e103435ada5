"""``snapcrawl list``: one volume's snapshots, as JSON Lines, JSON, CSV or a table."""

from __future__ import annotations

import argparse

from ..sinks.jsonl import JsonLinesWriter
from ._common import EXIT_OK, add_connection_options, make_crawler
from ._crawling import open_output
from .formats import SnapshotFormatter, add_output_options

__all__ = ["register"]


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``list`` command."""
    one = commands.add_parser("list", help="list one volume's snapshots (JSON Lines, JSON, CSV or a table)")
    one.add_argument("--volume", required=True, metavar="ID", help="volume id")
    one.add_argument("--out", metavar="FILE", help="output file (default: stdout)")
    add_output_options(one)
    add_connection_options(one)
    one.set_defaults(run=_cmd_list)


async def _cmd_list(args: argparse.Namespace) -> int:
    crawler = make_crawler(args)
    with open_output(args.out) as file:
        writer: JsonLinesWriter | SnapshotFormatter = JsonLinesWriter(file)
        if args.output != "jsonl" or args.fields is not None:
            writer = SnapshotFormatter(file, args.output, args.fields, terminal=file.isatty())
        async with crawler:
            batch = []
            async for snapshot in crawler.list_snapshots(args.volume, name=args.name, sort=args.sort):
                batch.append(snapshot)
                if len(batch) >= args.page_size:
                    writer.write(batch)
                    batch = []
            writer.write(batch)
        if isinstance(writer, SnapshotFormatter):
            writer.close()
    return EXIT_OK
