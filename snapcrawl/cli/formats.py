"""``--output jsonl|json|csv|table`` and ``--fields``: how ``list`` and ``crawl --out -`` print snapshots.

JSON Lines and JSON are JSON (msgspec escapes every control character). CSV is RFC 4180, written by the csv module,
exact to a file or a pipe; on a terminal its cells have control characters escaped, as the table's do, so that
server text can never move the cursor or retitle the window. The table aligns its columns, so it keeps every row
until the end: use it for a volume or a few, not a whole account.
"""

from __future__ import annotations

import argparse
import csv
import io
import unicodedata
from collections.abc import Mapping, Sequence
from typing import Any, BinaryIO, Final

import msgspec

from .._models import Page, Snapshot
from .._text import printable
from ..sinks import VolumeProgress

__all__ = [
    "FIELDS",
    "FORMATS",
    "FormattedSink",
    "SnapshotFormatter",
    "add_output_options",
    "escape_controls",
    "parse_fields",
]

FORMATS: Final = ("jsonl", "json", "csv", "table")
FIELDS: Final = tuple(Snapshot.__struct_fields__)
_TABLE_FIELDS: Final = ("id", "volume_id", "size", "created_at", "status", "name")

_encoder: Final = msgspec.json.Encoder()
#: Each control character as a Python-style escape (``\x1b``, ``\u202e``): the one escaping the CLI does.
escape_controls: Final = printable


def parse_fields(text: str) -> tuple[str, ...]:
    """The ``--fields`` list: snapshot field names, comma-separated, each known and given once.

    Raises ``argparse.ArgumentTypeError`` (a ``ValueError``), so that argparse names the option in its message.
    """
    fields = tuple(name.strip() for name in text.split(","))
    unknown = [name for name in fields if name not in FIELDS]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown field {unknown[0]!r}; the fields are {','.join(FIELDS)}")
    if len(set(fields)) != len(fields):
        raise argparse.ArgumentTypeError(f"a field is named twice in {text!r}")
    return fields


def _width(text: str) -> int:
    """Columns ``text`` takes on a terminal: East Asian wide and full-width characters (emoji too) take two."""
    return sum(2 if unicodedata.east_asian_width(char) in "WF" else 1 for char in text)


def _cell(name: str, value: Any) -> str:
    """A CSV or table cell: empty for null, JSON for ``metadata`` (an object or a string, told apart), else the text."""
    if value is None:
        return ""
    if name == "metadata" or isinstance(value, dict | list):
        return _encoder.encode(value).decode("utf-8")
    return str(value)


class SnapshotFormatter:
    """Writes snapshots to a binary stream in one of :data:`FORMATS`, with the chosen fields (all by default)."""

    def __init__(self, file: BinaryIO, output: str, fields: Sequence[str] | None, *, terminal: bool) -> None:
        self._file = file
        self._output = output
        self._fields = tuple(fields) if fields else (_TABLE_FIELDS if output == "table" else FIELDS)
        self._subset = fields is not None  # jsonl/json: exactly the API's objects unless --fields picks
        self._escape = terminal
        self._rows: list[list[str]] = []  # the table, kept until the end to align it
        self._started = False
        self._text = io.StringIO()
        self._csv = csv.writer(self._text)  # RFC 4180: CRLF line ends, fields quoted when needed, "" for "

    def write(self, snapshots: Sequence[Snapshot]) -> None:
        """Format ``snapshots`` (the table only collects them)."""
        if not snapshots:
            return
        if self._output in ("jsonl", "json"):
            self._write_json(snapshots)
            return
        rows = [[_cell(name, row.get(name)) for name in self._fields] for row in map(msgspec.to_builtins, snapshots)]
        if self._output == "table":
            self._rows.extend([escape_controls(cell) for cell in row] for row in rows)
            return
        if not self._started:
            self._started = True
            self._csv.writerow(self._fields)
        if self._escape:
            rows = [[escape_controls(cell) for cell in row] for row in rows]
        self._csv.writerows(rows)
        self._file.write(self._text.getvalue().encode("utf-8"))
        self._text.seek(0)
        self._text.truncate()

    def _write_json(self, snapshots: Sequence[Snapshot]) -> None:
        items: Sequence[Any] = snapshots
        if self._subset:
            items = [{name: row.get(name) for name in self._fields} for row in map(msgspec.to_builtins, snapshots)]
        if self._output == "jsonl":
            self._file.write(_encoder.encode_lines(items))
            return
        parts = b",\n".join(_encoder.encode(item) for item in items)
        self._file.write((b",\n" if self._started else b"[\n") + parts)
        self._started = True

    def close(self) -> None:
        """Finish the output: close the JSON array, draw the table, write the CSV header of an empty listing."""
        if self._output == "json":
            self._file.write(b"\n]\n" if self._started else b"[]\n")
        elif self._output == "csv" and not self._started:
            self._started = True
            self._csv.writerow(self._fields)
            self._file.write(self._text.getvalue().encode("utf-8"))
        elif self._output == "table":
            self._file.write(self._table().encode("utf-8"))
        self._file.flush()

    def _table(self) -> str:
        header = [name.upper() for name in self._fields]
        widths = [max(map(_width, column)) for column in zip(header, *self._rows, strict=True)]
        right = {index for index, name in enumerate(self._fields) if name == "size"}

        def line(cells: Sequence[str]) -> str:
            padded = []
            for index, (cell, width) in enumerate(zip(cells, widths, strict=True)):
                pad = " " * (width - _width(cell))
                padded.append(pad + cell if index in right else cell + pad)
            return "  ".join(padded).rstrip()

        return "".join(line(row) + "\n" for row in [header, *self._rows])


class FormattedSink:
    """A sink that prints each page through a :class:`SnapshotFormatter`: ``crawl --out - --output ...``.

    Not resumable (stdout cannot be cut back to a checkpoint), so it keeps no progress.
    """

    resumable = False

    def __init__(self, formatter: SnapshotFormatter) -> None:
        self._formatter = formatter
        self.on_commit: Any = None

    async def load_progress(self) -> Mapping[str | None, VolumeProgress]:
        """Nothing to resume from."""
        return {}

    async def delivered_ids(self, volume_id: str | None) -> set[str]:
        """Nothing was delivered before this run."""
        return set()

    async def write(self, page: Page) -> None:
        """Print the page's snapshots."""
        self._formatter.write(page.snapshots)

    async def fail(self, volume_id: str | None, error: str) -> None:
        """The summary names failures; the output has nothing to record."""

    async def flush(self) -> None:
        """Nothing is buffered but the table, which is drawn at the end."""

    async def complete(self) -> None:
        """Nothing to mark."""

    async def aclose(self) -> None:
        """Close the JSON array or draw the table."""
        self._formatter.close()


def add_output_options(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """``--output`` and ``--fields``, as ``list`` and ``crawl`` take them."""
    parser.add_argument(
        "--output",
        choices=FORMATS,
        default="jsonl",
        help="how snapshots are printed: JSON Lines (default), a JSON array, CSV (RFC 4180) or an aligned table",
    )
    parser.add_argument(
        "--fields",
        type=parse_fields,
        metavar="F,F,...",
        help=f"only these fields, in this order: {','.join(FIELDS)}",
    )
