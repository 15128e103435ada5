"""The PostgreSQL fixture itself: a real server that answers."""

from __future__ import annotations

import asyncpg


async def test_server_answers(pg_url: str) -> None:
    """The fixture's server runs a query in a database of the test's own."""
    conn = await asyncpg.connect(pg_url)
    try:
        assert await conn.fetchval("SELECT current_database()") == pg_url.rpartition("/")[2]
    finally:
        await conn.close()
