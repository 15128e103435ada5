"""The documented command line (the README's tour, docs/cli.md), flag by flag: each documented flag changes what
reaches the server.

Server-side observations only (the simulator's counts and one-second windows, or the queries a PageServer
recorded), never the client's wall clock.
"""

from __future__ import annotations

import io
import json
import os
import ssl
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog
import trustme

from snapcrawl import Crawler, Credentials, RetryPolicy, TransportError
from snapcrawl.cli import build_parser, main
from snapcrawl.cli._common import make_crawler
from snapcrawl.simulator import Dataset, Simulator

from .fakes import PageServer, serve_in_thread
from .helpers import collect


def _rows(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _counts(sim: Simulator, volume_ids: list[str]) -> dict[str, int]:
    """Snapshots per volume, for the volumes that have any."""
    return {volume_id: count for volume_id in volume_ids if (count := sim.dataset.count(volume_id))}


def _volumes_args(volume_ids: list[str]) -> list[str]:
    return [arg for volume_id in volume_ids for arg in ("--volume", volume_id)]


def test_demo_runs_as_the_readme_says(tmp_path: Path) -> None:
    """`snapcrawl demo` (the README's first command) crawls the built-in simulator into snapcrawl-demo.jsonl."""
    script = Path(sys.executable).with_name("snapcrawl")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "snapcrawl.cli"]
    result = subprocess.run(  # noqa: S603 - our own entry point
        [*command, "demo", "--volume-count", "40", "--no-progress"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=50,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    rows = _rows(tmp_path / "snapcrawl-demo.jsonl")
    assert len(rows) == len({row["id"] for row in rows}) == Dataset(40, 0).total
    assert "40 volumes (40 complete, 0 failed)" in result.stderr


def test_rate_and_burst_hold_at_the_server(env: Simulator, tmp_path: Path) -> None:
    """`--rate 4 --burst 3`: no second at the server holds more than the burst plus the rate."""
    volume_ids = env.dataset.volume_ids[:11]
    out = tmp_path / "rated.jsonl"
    argv = ["crawl", "--out", str(out), "--rate", "4", "--burst", "3", "--page-size", "1000", "--no-progress"]
    assert main(argv + _volumes_args(volume_ids)) == 0
    assert env.stats.requests == len(volume_ids)  # one page each: every request counted below is a first try
    # 3 at once, then one every 1/3.96 s: at most 7 in any second. Ignoring --rate sends all 11 at once; ignoring
    # --burst (the default 10) sends 10 at once. A small burst keeps the server's arrival stamps prompt even on a
    # busy machine (a burst stamped late would crowd the next tokens into its window).
    busiest = env.stats.max_in_window(1.0)
    assert busiest <= 7, busiest
    assert len(_rows(out)) == sum(env.dataset.count(volume_id) for volume_id in volume_ids)


def test_name_flag_filters_at_the_server(env: Simulator, tmp_path: Path) -> None:
    """`--name` sends the exact name (spaces and emoji included) and only those snapshots come back."""
    volume_id = max(env.dataset.volume_ids, key=env.dataset.count)
    names = Counter(snap["name"] for snap in env.dataset.snapshots(volume_id) if snap["name"])
    for name, count in names.most_common(2):
        out = tmp_path / "named.jsonl"
        assert main(["crawl", "--volume", volume_id, "--name", name, "--out", str(out), "--page-size", "7"]) == 0
        rows = _rows(out)
        assert len(rows) == count and {row["name"] for row in rows} == {name}


def test_timeout_flag(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """`--timeout 0.3` gives up on a server that takes 3 s, and names the timeout."""
    monkeypatch.setenv("SCP_ACCESS_KEY", "AK-test")
    monkeypatch.setenv("SCP_SECRET_KEY", "SK-test")
    server = PageServer({"v": 1}, stall=3.0)
    with serve_in_thread(server.handle) as url:
        argv = ["crawl", "--endpoint", url, "--volume", "v", "--timeout", "0.3", "--max-retries", "0"]
        assert main([*argv, "--out", str(tmp_path / "out.jsonl")]) == 1
    assert "0.3 s timeout" in capsys.readouterr().err


def test_region_and_env_build_the_endpoint(env: Simulator, capsys: pytest.CaptureFixture[str]) -> None:
    """`--region R --env E` builds the documented endpoint (over SCP_ENDPOINT); an undocumented pair exits 2."""
    parser = build_parser()
    for region, environment in (("kr-west1", "s"), ("kr-south2", "g"), ("kr-east1", "e")):
        args = parser.parse_args(["list", "--volume", "v", "--region", region, "--env", environment])
        assert make_crawler(args).endpoint == f"https://virtualserver.{region}.{environment}.samsungsdscloud.com"
    args = parser.parse_args(["list", "--volume", "v", "--region", "kr-south1"])  # only one environment has it
    assert make_crawler(args).endpoint == "https://virtualserver.kr-south1.g.samsungsdscloud.com"
    assert main(["list", "--volume", "v", "--region", "kr-south1", "--env", "s"]) == 2
    assert "unknown region/environment" in capsys.readouterr().err
    assert main(["list", "--volume", "v", "--region", "kr-west1"]) == 2  # in both s and e
    assert "needs an environment" in capsys.readouterr().err
    assert env.stats.requests == 0


def test_volumes_from_stdin(env: Simulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`--volumes-from -` reads ids from stdin, skipping blank lines and # comments."""
    volume_ids = env.dataset.volume_ids[10:20]
    monkeypatch.setattr(sys, "stdin", io.StringIO("# from a pipe\n\n" + "\n".join(volume_ids) + "\n"))
    out = tmp_path / "stdin.jsonl"
    assert main(["crawl", "--volumes-from", "-", "--out", str(out), "--no-progress"]) == 0
    assert Counter(row["volume_id"] for row in _rows(out)) == _counts(env, volume_ids)


@pytest.mark.parametrize("source", ["file", "stdin"])
def test_volume_mixed_with_volumes(
    env: Simulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, source: str
) -> None:
    """`--volume` adds to `--volumes-from` (file or stdin); an id given both ways is crawled once."""
    listed, extra = env.dataset.volume_ids[20:25], env.dataset.volume_ids[25:27]
    text = "\n".join(listed) + "\n"
    if source == "file":
        where = tmp_path / "ids.txt"
        where.write_text(text, encoding="utf-8")
        volumes = str(where)
    else:
        monkeypatch.setattr(sys, "stdin", io.StringIO(text))
        volumes = "-"
    out = tmp_path / "mixed.jsonl"
    argv = ["crawl", "--volumes-from", volumes, "--out", str(out), *_volumes_args([*extra, listed[0]])]
    assert main(argv) == 0
    rows = _rows(out)
    assert len({row["id"] for row in rows}) == len(rows)
    assert Counter(row["volume_id"] for row in rows) == _counts(env, [*listed, *extra])
    assert env.stats.requests == len(listed) + len(extra)


def test_loop_uvloop_without_uvloop_exits_2(
    env: Simulator, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--loop uvloop` where uvloop cannot be imported exits 2 naming the `fast` extra, before any request."""
    monkeypatch.setitem(sys.modules, "uvloop", None)  # makes `import uvloop` raise ImportError
    assert main(["crawl", "--loop", "uvloop", "--volume", env.dataset.volume_ids[0]]) == 2
    err = capsys.readouterr().err
    assert "snapcrawl[fast]" in err and "Traceback" not in err
    assert env.stats.requests == 0


def test_account_crawl_with_a_failing_page_exits_1(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """An account-wide crawl with a page that fails however it is asked for exits 1 and names the account listing;
    what it wrote holds each snapshot once."""
    monkeypatch.setenv("SCP_ACCESS_KEY", "AK-test")
    monkeypatch.setenv("SCP_SECRET_KEY", "SK-test")
    server = PageServer({"a": 12, "b": 13})
    ids = server.ids()

    def holds_the_13th(query: dict[str, str]) -> int | None:
        start = int(query.get("offset", 0))
        if "marker" in query:
            start += ids.index(query["marker"]) + 1
        return 500 if start <= 12 < start + int(query["limit"]) else None

    server.fail = holds_the_13th
    out = tmp_path / "account.jsonl"
    with serve_in_thread(server.handle) as url:
        argv = ["crawl", "--endpoint", url, "--page-size", "5", "--max-retries", "1", "--out", str(out)]
        assert main(argv) == 1
    err = capsys.readouterr().err
    assert "failed: account listing" in err and "injected 500" in err
    written = Counter(row["id"] for row in _rows(out))
    assert set(written.values()) == {1} and set(written) <= set(ids) and ids[12] not in written
    assert len(written) >= len(ids) - 2 * 5  # at most the broken page and the seam it leaves


# -- TLS --------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def https_server() -> Iterator[str]:
    """A PageServer over HTTPS with a certificate from a throwaway CA that nothing trusts."""
    ca = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    with serve_in_thread(PageServer({"v": 3}).handle, ssl_context=context) as url:
        yield url


def test_tls_verified_by_default(https_server: str, tmp_path: Path) -> None:
    """An untrusted certificate fails the volume with a named TLS error (exit 1); `--insecure` succeeds and warns."""
    out = tmp_path / "tls.jsonl"
    argv = [sys.executable, "-m", "snapcrawl.cli", "crawl", "--endpoint", https_server, "--volume", "v"]
    argv += ["--max-retries", "0", "--no-progress", "--out", str(out)]
    env = os.environ | {"SCP_ACCESS_KEY": "AK-test", "SCP_SECRET_KEY": "SK-test", "HOME": str(tmp_path)}
    verified = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=50, check=False)  # noqa: S603
    assert verified.returncode == 1, verified.stderr
    assert "failed: volume v: TLS failed" in verified.stderr and "certificate verify failed" in verified.stderr
    insecure = subprocess.run([*argv, "--insecure"], env=env, capture_output=True, text=True, timeout=50, check=False)  # noqa: S603
    assert insecure.returncode == 0, insecure.stderr
    assert "warning" in insecure.stderr and "tls.verification_disabled" in insecure.stderr
    assert len(_rows(out)) == 3


async def test_tls_library(https_server: str) -> None:
    """The library: TransportError naming the certificate by default; ``verify_tls=False`` works and warns."""
    credentials = Credentials(access_key="AK-test", secret_key="SK-test")
    no_retry = RetryPolicy(max_retries=0)
    async with Crawler(endpoint=https_server, credentials=credentials, retry=no_retry) as crawler:
        snapshots, failures = await collect(crawler, ["v"])
    assert snapshots == []
    error = failures[0].error
    assert isinstance(error, TransportError) and "certificate" in str(error).lower()
    with structlog.testing.capture_logs() as logs:
        async with Crawler(endpoint=https_server, credentials=credentials, verify_tls=False) as crawler:
            snapshots, _ = await collect(crawler, ["v"])
            assert len(snapshots) == 3
    assert [(e["event"], e["log_level"]) for e in logs if e["event"].startswith("tls")] == [
        ("tls.verification_disabled", "warning")
    ]
