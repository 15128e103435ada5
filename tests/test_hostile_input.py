"""Hostile and bad input, and secret hygiene: nothing a caller or a server sends may leak a secret or bend a query."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path
from urllib.parse import parse_qsl

from hypothesis import given
from hypothesis import strategies as st

from snapcrawl import AuthError, ConfigError, Crawler, Credentials
from snapcrawl._text import _CONTROL_CHARS, has_controls
from snapcrawl.signing import encode_query
from snapcrawl.simulator import Faults, Simulator
from tests.helpers import collect
from tests.logs import capture_logs

HOSTILE_IDS = ["a&limit=1", "b#frag", "100%", "with space", "스냅샷-볼륨", "x=y", "+plus+", "semi;colon"]


@given(st.text(min_size=1), st.text())
def test_encoded_query_round_trips(volume_id: str, name: str) -> None:
    """Whatever the id or name, the encoded query decodes to exactly the parameters given."""
    params = {"volume_id": volume_id, "name": name, "limit": "100"}
    query = encode_query(params)
    assert "#" not in query and " " not in query
    assert dict(parse_qsl(query, keep_blank_values=True, strict_parsing=False)) == params


@given(st.text() | st.text(st.sampled_from(sorted(_CONTROL_CHARS)) | st.characters()))
def test_has_controls_is_exactly_a_control_character_in_the_text(text: str) -> None:
    """The printable fast path answers as the full check does, whatever the text."""
    assert has_controls(text) == any(char in _CONTROL_CHARS for char in text)


async def test_hostile_volume_ids_never_change_the_query(simulator: Simulator) -> None:
    """Ids with &, #, %, spaces or unicode reach the server as one volume_id value (unknown there: empty)."""
    real = simulator.dataset.volume_ids[0]
    ids = [*HOSTILE_IDS, real, real, *HOSTILE_IDS]
    async with Crawler(endpoint=simulator.url, credentials=simulator.credentials) as crawler:
        snapshots, failures = await collect(crawler, ids)
    got = Counter(s.id for s in snapshots)
    assert failures == []
    assert simulator.stats.by_status.keys() == {200}
    assert simulator.stats.requests == len(HOSTILE_IDS) + 1  # duplicates crawled once
    assert len(got) == simulator.dataset.count(real) and set(got.values()) <= {1}


async def test_invalid_ids_fail_alone(simulator: Simulator) -> None:
    """Empty, blank, 10 KB and control-character ids are refused by name without a request; the others are crawled.

    Each is recorded under a bounded, printable key (what a checkpoint stores), and its message is short.
    """
    real = simulator.dataset.volume_ids[1]
    bad = ["", "   ", "v" * 10_240, "nul\x00id", "new\nline", "\x1b]0;title\x07"]
    async with Crawler(endpoint=simulator.url, credentials=simulator.credentials) as crawler:
        got, failures = await collect(crawler, [*bad, real])
    assert len(got) == simulator.dataset.count(real)
    assert sorted(f.volume_id or "" for f in failures) == sorted(
        ["", "   ", "v" * 64 + "... (10240 characters)", "nul\\x00id", "new\\nline", "\\x1b]0;title\\x07"]
    )
    assert all(isinstance(f.error, ConfigError) for f in failures)
    assert all(len(str(f.error)) < 300 for f in failures)
    assert simulator.stats.requests == 1


async def test_tls_verification_off_warns(simulator: Simulator) -> None:
    """Turning TLS verification off takes an explicit option and logs a warning."""
    with capture_logs() as logs:
        Crawler(endpoint=simulator.url, credentials=simulator.credentials)
        Crawler(endpoint=simulator.url, credentials=simulator.credentials, verify_tls=False)
    assert [e["event"] for e in logs] == ["tls.verification_disabled"]
    assert logs[0]["log_level"] == "warning"


async def test_errors_and_reprs_hold_no_secret(simulator: Simulator) -> None:
    """Neither an AuthError nor a crawler's repr shows the secret key or the token."""
    creds = Credentials(access_key="AK-visible", secret_key="SK-hidden-123", auth_token="TOKEN-hidden-456")
    async with Crawler(endpoint=simulator.url, credentials=creds) as crawler:
        try:
            [s async for s in crawler.list_snapshots(simulator.dataset.volume_ids[0])]
        except AuthError as error:
            text = f"{error!s} {error!r} {error.args} {error.detail}"
        else:
            raise AssertionError("the simulator accepted wrong credentials")
    text += repr(crawler) + repr(creds) + str(crawler.stats.as_dict())
    assert "AK-visible" in repr(crawler)
    assert "SK-hidden-123" not in text and "TOKEN-hidden-456" not in text


def test_no_secret_in_any_byte_of_a_debug_crawl(simulator: Simulator, tmp_path: Path) -> None:
    """Two CLI crawls at debug level (text, then JSON logs), each really sending requests, with faults, a failing
    volume and a state file, never write the secret or the token anywhere."""
    volume_ids = simulator.dataset.volume_ids[:60]
    poison = volume_ids[0]
    simulator.faults = Faults(error_rate=0.05, drop_rate=0.02, fail_volumes=frozenset({poison}))
    secret, token = simulator.credentials.secret_key, "token-that-must-not-leak-789"
    env = os.environ | {
        "SCP_ENDPOINT": simulator.url,
        "SCP_ACCESS_KEY": simulator.credentials.access_key,
        "SCP_SECRET_KEY": secret,
        "SCP_AUTH_TOKEN": token,
    }
    ids = tmp_path / "ids.txt"
    ids.write_text("\n".join(volume_ids) + "\n", encoding="utf-8")
    produced = b""
    for name, log_format in (("text", []), ("json", ["--log-json"])):
        argv = [sys.executable, "-m", "snapcrawl.cli", "crawl", "--volumes", str(ids), "--no-progress"]
        argv += ["--out", str(tmp_path / f"{name}.jsonl"), "--state", str(tmp_path / f"{name}.db")]
        argv += ["--log-level", "debug", "--max-retries", "2", *log_format]
        requests_before = simulator.stats.requests
        result = subprocess.run(argv, env=env, capture_output=True, timeout=50, check=False)  # noqa: S603
        assert result.returncode == 1, result.stderr[-2000:]  # the poisoned volume, and only it, failed
        assert f"failed: volume {poison}".encode() in result.stderr
        assert simulator.stats.requests - requests_before >= len(volume_ids)
        lines = result.stderr.decode().splitlines()
        if log_format:
            events = [json.loads(line) for line in lines if line.startswith("{")]
            sent = [e for e in events if e["event"] == "request" and e["level"] == "debug"]
            assert any(e["event"] == "request.retry" for e in events)
        else:
            sent = [line for line in lines if "[debug" in line and " request " in line]
            assert any("request.retry" in line for line in lines)
        assert len(sent) >= len(volume_ids)  # one debug event per request: what a leak would ride on
        produced += result.stdout + result.stderr
    for path in tmp_path.iterdir():
        produced += path.read_bytes()
    for needle in (secret, token):
        assert needle.encode() not in produced
