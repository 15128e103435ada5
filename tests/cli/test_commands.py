"""The command line, in-process against the simulator, and once through the installed console script."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from snapcrawl.cli import main
from snapcrawl.simulator import Faults, Simulator


def _lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_list_one_volume(env: Simulator, tmp_path: Path) -> None:
    """`list` writes the volume's snapshots as JSON Lines with the API's field names."""
    volume_id = max(env.dataset.volume_ids, key=env.dataset.count)
    out = tmp_path / "one.jsonl"
    assert main(["list", "--volume", volume_id, "--sort", "size:asc", "--page-size", "9", "--out", str(out)]) == 0
    rows = _lines(out)
    assert len(rows) == env.dataset.count(volume_id)
    assert {row["volume_id"] for row in rows} == {volume_id}
    assert set(rows[0]) == {
        "id", "volume_id", "size", "created_at", "updated_at", "status", "name", "description", "metadata", "user_id",
    }  # fmt: skip
    sizes = [int(str(row["size"])) for row in rows]
    assert sizes == sorted(sizes)


def test_list_to_stdout(env: Simulator, capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    """Without --out, JSON Lines go to stdout."""
    volume_id = max(env.dataset.volume_ids, key=env.dataset.count)
    assert main(["list", "--volume", volume_id]) == 0
    assert len(capsysbinary.readouterr().out.splitlines()) == env.dataset.count(volume_id)


def test_crawl_volumes_file(env: Simulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`crawl --volumes FILE` writes every snapshot once and ends with a summary on stderr."""
    ids = tmp_path / "ids.txt"
    ids.write_text("# volumes\n" + "\n".join(env.dataset.volume_ids) + "\n\n", encoding="utf-8")
    out = tmp_path / "all.jsonl"
    assert main(["crawl", "--volumes", str(ids), "--out", str(out), "--no-progress"]) == 0
    rows = _lines(out)
    assert len(rows) == len({row["id"] for row in rows}) == env.dataset.total
    err = capsys.readouterr().err
    assert f"{len(env.dataset.volume_ids)} volumes ({len(env.dataset.volume_ids)} complete, 0 failed)" in err


@pytest.mark.parametrize("loop", ["asyncio", "auto"])
def test_crawl_on_either_event_loop(env: Simulator, tmp_path: Path, loop: str) -> None:
    """The crawl gives the same output on asyncio's own loop and on uvloop (when installed)."""
    out = tmp_path / f"{loop}.jsonl"
    ids = env.dataset.volume_ids[:50]
    argv = ["crawl", "--out", str(out), "--loop", loop, "--no-progress"]
    assert main(argv + [arg for volume_id in ids for arg in ("--volume", volume_id)]) == 0
    assert len(_lines(out)) == sum(env.dataset.count(volume_id) for volume_id in ids)


def test_crawl_whole_account(env: Simulator, tmp_path: Path) -> None:
    """`crawl` with no volumes lists the whole account."""
    out = tmp_path / "account.jsonl"
    assert main(["crawl", "--out", str(out), "--page-size", "200"]) == 0
    assert len({row["id"] for row in _lines(out)}) == env.dataset.total


def test_failed_volumes_exit_1(env: Simulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A volume that always fails gives exit status 1 and is named on stderr; the others are written."""
    poison = env.dataset.volume_ids[2]
    env.faults = Faults(fail_volumes=frozenset({poison}))
    out = tmp_path / "out.jsonl"
    args = ["crawl", "--out", str(out), "--max-retries", "1", "--volume", poison, "--volume", env.dataset.volume_ids[3]]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert f"failed: volume {poison}" in err and "HTTP 500" in err
    assert len(_lines(out)) == env.dataset.count(env.dataset.volume_ids[3])


def test_rejected_credentials_exit_3(
    env: Simulator, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Wrong credentials give exit status 3 with one line and no traceback."""
    monkeypatch.setenv("SCP_SECRET_KEY", "not-the-secret")
    assert main(["crawl", "--volume", env.dataset.volume_ids[0], "--no-progress"]) == 3
    err = capsys.readouterr().err
    assert "credentials rejected" in err and "Traceback" not in err and "not-the-secret" not in err
    assert main(["list", "--volume", env.dataset.volume_ids[0]]) == 3


@pytest.mark.parametrize(
    "argv",
    [
        ["list"],
        ["crawl", "--concurrency", "0"],
        ["crawl", "--page-size", "abc"],
        ["list", "--volume", "v", "--api-version", "9.9"],
        ["bogus"],
    ],
)
def test_bad_arguments_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    """Bad arguments exit 2 with a one-line message."""
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("snapcrawl: error:") or "error:" in err[-1]


def test_config_errors_exit_2(
    env: Simulator, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Missing credentials and version/sort conflicts exit 2 with one line, before any request."""
    monkeypatch.delenv("SCP_ACCESS_KEY")
    monkeypatch.delenv("SCP_SECRET_KEY")
    assert main(["list", "--volume", "v"]) == 2
    assert "no SCP credentials found" in capsys.readouterr().err
    monkeypatch.setenv("SCP_ACCESS_KEY", env.credentials.access_key)
    monkeypatch.setenv("SCP_SECRET_KEY", env.credentials.secret_key)
    assert main(["list", "--volume", "v", "--api-version", "1.1", "--sort", "name:asc"]) == 2
    assert "1.2 or later" in capsys.readouterr().err
    assert main(["crawl", "--volumes", "/nonexistent/ids.txt"]) == 2
    assert env.stats.requests == 0


def test_console_script_end_to_end(env: Simulator, tmp_path: Path) -> None:
    """The installed `snapcrawl` entry point runs as its own process."""
    volume_id = max(env.dataset.volume_ids, key=env.dataset.count)
    result = subprocess.run(  # noqa: S603 - our own interpreter and arguments
        [sys.executable, "-m", "snapcrawl.cli", "list", "--volume", volume_id, "--log-json", "--log-level", "info"],
        capture_output=True,
        timeout=50,
        check=False,
        env=os.environ.copy(),
    )
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.splitlines()) == env.dataset.count(volume_id)
    assert env.credentials.secret_key.encode() not in result.stdout + result.stderr
