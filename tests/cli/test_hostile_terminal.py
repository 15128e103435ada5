"""What a hostile server can do to the terminal and the pipe the CLI writes to: nothing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from snapcrawl.cli import main
from snapcrawl.simulator import Faults, Simulator
from snapcrawl.simulator.faults import ESCAPES
from snapcrawl.sinks.postgres import redact

RAW = ("\x1b", "\x07", "\x9b", "\r")


@pytest.mark.parametrize("command", [["list", "--volume", "{volume}"], ["crawl", "--volume", "{volume}"]])
def test_escape_sequences_in_server_text_never_reach_the_terminal_raw(
    env: Simulator, command: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A 400 whose detail retitles the terminal and fakes a summary is printed escaped, in full view."""
    volume = env.dataset.volume_ids[0]
    env.faults = Faults(escape_volumes=frozenset({volume}))
    argv = [part.format(volume=volume) for part in command]
    assert main([*argv, "--out", str(tmp_path / "out.jsonl")]) == 1
    err = capsys.readouterr().err
    assert not any(char in err for char in RAW), err
    assert ESCAPES.encode("unicode_escape").decode() in err  # what the server sent is shown, escaped
    faked = [line for line in err.splitlines() if "1000 complete" in line]
    assert faked and all("\\x1b[1;1Hsnapcrawl: 1000" in line for line in faked)  # only inside the escaped detail


@pytest.mark.parametrize("command", [["crawl"], ["crawl", "--concurrency", "1"], ["list", "--volume", "{volume}"]])
def test_writing_into_a_closed_pipe_exits_0_quietly(env: Simulator, command: list[str]) -> None:
    """`snapcrawl crawl | head` ends as `snapcrawl list | head` does: exit 0, no traceback, no failure."""
    volume = max(env.dataset.volume_ids, key=env.dataset.count)
    argv = " ".join(part.format(volume=volume) for part in command)
    script = f"{sys.executable} -m snapcrawl.cli {argv} --page-size 1 | head -c 100 >/dev/null; exit ${{PIPESTATUS[0]}}"
    result = subprocess.run(  # noqa: S603 - our own interpreter and arguments
        ["/bin/bash", "-c", script], capture_output=True, text=True, timeout=50, check=False, env=os.environ.copy()
    )
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr and "snapcrawl: failed" not in result.stderr


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
@pytest.mark.parametrize(
    "command",
    [
        ["list", "--volume", "{volume}"],
        ["list", "--volume", "{volume}", "--output", "table"],
        ["crawl", "--volume", "{volume}", "--output", "csv"],
        ["completion", "bash"],
    ],
    ids=["list", "list-table", "crawl-csv", "completion"],
)
def test_a_full_stdout_is_a_failure_not_a_traceback(env: Simulator, command: list[str]) -> None:
    """Stdout on a full disk (/dev/full): `snapcrawl: failed: ...` and exit 1, as for a full --out file."""
    volume = max(env.dataset.volume_ids, key=env.dataset.count)
    argv = [part.format(volume=volume) for part in command]
    with open("/dev/full", "wb") as full:
        result = subprocess.run(  # noqa: S603 - our own interpreter and arguments
            [sys.executable, "-m", "snapcrawl.cli", *argv],
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
            timeout=50,
            check=False,
            env=os.environ.copy(),
        )
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr and "Exception ignored" not in result.stderr, result.stderr
    assert result.stderr.splitlines()[-1] == "snapcrawl: failed: No space left on device", result.stderr


@given(st.text())
def test_redact_never_raises_and_never_shows_a_password(dsn: str) -> None:
    """Whatever the text, redaction returns a string without the password it held."""
    secret = "s3cr3t-pw"
    for url in (dsn, f"postgresql://user:{secret}@{dsn}", f"postgresql://u@h/db?password={secret}&{dsn}"):
        assert secret not in redact(url).replace(dsn, "")


@pytest.mark.parametrize(
    ("option", "url", "expected"),
    [
        ("--out", "postgresql://u:pw@h:abc/db", "invalid PostgreSQL URL 'postgresql://u@h:abc/db'"),
        ("--out", "postgresql://u:pw@[::1/db", "Invalid IPv6 URL"),
        ("--limiter", "redis://127.0.0.1:1/0?bogus=1", "unknown parameter 'bogus'"),
        ("--limiter", "redis://127.0.0.1:abc/0", "invalid Redis URL"),
    ],
)
def test_malformed_urls_are_usage_errors(
    env: Simulator, option: str, url: str, expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A port that is not a number, a broken IPv6 host, an unknown parameter: exit 2, one line, no password."""
    argv = ["crawl", "--volume", env.dataset.volume_ids[0], option, url]
    if option == "--limiter":
        argv += ["--out", os.devnull]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("snapcrawl: error: ") and expected in err and err.count("\n") == 1
    assert ":pw@" not in err
    assert env.stats.requests == 0
