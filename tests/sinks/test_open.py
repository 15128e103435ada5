"""From --out values to sinks, and the input each refuses."""

from __future__ import annotations

from pathlib import Path

import pytest

from snapcrawl import ConfigError
from snapcrawl.sinks import JsonLinesSink, PostgresSink, SqliteSink, open_sink, sqlite_path
from snapcrawl.sinks.postgres import redact


def test_each_form_of_out_opens_its_sink(tmp_path: Path) -> None:
    """A file or -, SQLAlchemy-style SQLite URLs, and libpq URLs each pick their sink."""
    assert isinstance(open_sink(str(tmp_path / "out.jsonl")), JsonLinesSink)
    for out in ("-", None):
        sink = open_sink(out)
        assert isinstance(sink, JsonLinesSink) and sink.stdout
    relative = open_sink("sqlite:///inventory.db")
    assert isinstance(relative, SqliteSink)
    assert relative.path == Path("inventory.db")
    assert sqlite_path("sqlite:////var/lib/inventory.db") == "/var/lib/inventory.db"
    assert isinstance(open_sink("postgresql://crawler@127.0.0.1:5432/inventory", table="snaps"), PostgresSink)
    assert isinstance(open_sink("postgres:///inventory?host=/run/postgresql"), PostgresSink)


@pytest.mark.parametrize(
    ("out", "options", "message"),
    [
        ("sqlite:///x.db", {"table": 'x"; DROP TABLE y; --'}, "invalid table name"),
        ("sqlite:///x.db", {"table": "1st"}, "invalid table name"),
        ("sqlite:///x.db", {"table": "snapcrawl_progress"}, "reserved"),
        ("sqlite:///x.db", {"state": "state.db"}, "^state is for JSON Lines"),
        ("sqlite:///x.db", {"prune": True, "settings": {"name": "nightly"}}, "name filter"),
        ("sqlite://", {}, "invalid SQLite URL"),
        ("sqlite:///:memory:", {}, "invalid SQLite URL"),
        ("mysql://db/x", {}, "unknown destination scheme mysql://"),
        ("out.jsonl", {"prune": True}, "^prune needs a database"),
        ("out.jsonl", {"table": "other"}, "^table needs a database"),
        ("-", {"state": "state.db"}, "^state needs out to be a file"),
    ],
)
def test_bad_destinations_are_config_errors(out: str, options: dict[str, object], message: str) -> None:
    """Each bad value is refused before anything is opened, saying what is wrong."""
    with pytest.raises(ConfigError, match=message):
        open_sink(out, **options)  # type: ignore[arg-type]


def test_passwords_are_redacted_from_the_destination() -> None:
    """The destination named in errors never carries a password, in the user part or as a parameter."""
    assert redact("postgresql://crawler:hunter2@db:5432/inv?password=hunter2&sslmode=require") == (
        "postgresql://crawler@db:5432/inv?sslmode=require"
    )
    sink = open_sink("postgresql://crawler:hunter2@db/inv")
    assert "hunter2" not in repr(sink)
    assert "hunter2" not in sink.destination


def test_missing_asyncpg_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without asyncpg installed, a PostgreSQL destination says which extra to install."""
    monkeypatch.setitem(__import__("sys").modules, "asyncpg", None)
    with pytest.raises(ConfigError, match=r"snapcrawl\[postgres\]"):
        open_sink("postgresql://127.0.0.1/inventory")


def test_public_surface_is_sorted_and_importable() -> None:
    """snapcrawl.sinks exports a sorted __all__ (constants, classes, functions), every name importable."""
    import snapcrawl.sinks  # noqa: PLC0415

    names = snapcrawl.sinks.__all__
    assert names == sorted(names, key=lambda n: (0 if n.isupper() else 1 if n[0].isupper() else 2, n))
    assert all(hasattr(snapcrawl.sinks, name) for name in names)
