"""A fleet of two simulated accounts (own keys, own quotas) into one SQLite or PostgreSQL table, through the CLI."""

# ruff: noqa: S608 - SQL of the tests' own fixed values

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from snapcrawl import ConfigError, Credentials, RetryPolicy
from snapcrawl._transport import AiohttpTransport, Response
from snapcrawl.cli import main
from snapcrawl.cli.fleet import _fleet_line, _summary
from snapcrawl.fleet import AccountConfig, AccountOutcome, Fleet, endpoint_host, load_fleet
from snapcrawl.simulator import Faults, Simulator, run_in_thread
from snapcrawl.sinks import JsonLinesSink, Sink

from .conftest import Inventory

QUOTA = {"a": 40.0, "b": 30.0}  # each server's own quota, requests/s (bucket of 10)
KEYS = {
    "a": Credentials(access_key="AKa-fleet", secret_key="sa"),
    "b": Credentials(access_key="AKb-fleet", secret_key="sb"),
}


@pytest.fixture(scope="module")
def accounts() -> Iterator[dict[str, Simulator]]:
    """Two accounts on two servers, each with its own keys and quota."""
    with (
        run_in_thread(volumes=60, seed=11, credentials=KEYS["a"], faults=Faults(rate_limit=QUOTA["a"])) as a,
        run_in_thread(volumes=60, seed=12, credentials=KEYS["b"], faults=Faults(rate_limit=QUOTA["b"])) as b,
    ):
        yield {"a": a, "b": b}


def _config(tmp_path: Path, sims: dict[str, Simulator], *, bad: bool = False) -> Path:
    """Account a: its volumes from a file at 80% of its quota; account b: the whole account, pages of 10."""
    volumes = tmp_path / "a-volumes.txt"
    volumes.write_text("\n".join(sims["a"].dataset.volume_ids) + "\n", encoding="utf-8")
    text = f"""
[defaults]
concurrency = 8
burst = 5

[accounts.a]
endpoint = "{sims["a"].url}"
access_key_env = "FLEET_A_KEY"
secret_key_env = "FLEET_A_SECRET"
rate = {QUOTA["a"] * 0.8}
volumes = "a-volumes.txt"

[accounts.b]
endpoint = "{sims["b"].url}"
credentials_file = "b-credentials.json"
rate = {QUOTA["b"] * 0.8}
"""
    if bad:
        text += f"""
[accounts.c]
endpoint = "{sims["a"].url}"
access_key_env = "FLEET_A_KEY"
secret_key_env = "FLEET_WRONG_SECRET"
"""
    (tmp_path / "b-credentials.json").write_text(
        json.dumps({"access-key": KEYS["b"].access_key, "secret-key": KEYS["b"].secret_key}), encoding="utf-8"
    )
    path = tmp_path / "fleet.toml"
    path.write_text(text, encoding="utf-8")
    return path


def _env() -> dict[str, str]:
    return os.environ | {"FLEET_A_KEY": "AKa-fleet", "FLEET_A_SECRET": "sa", "FLEET_WRONG_SECRET": "nope"}


async def _crawl(config: Path, out: str, *extra: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "snapcrawl.cli", "crawl", "--config", str(config), "--out", out, "--no-progress"]
    argv += ["--page-size", "10", *extra]
    return await anyio.to_thread.run_sync(
        lambda: subprocess.run(argv, env=_env(), capture_output=True, text=True, timeout=50, check=False)  # noqa: S603
    )


async def _counts(inventory: Inventory) -> dict[str, int]:
    rows = await inventory.query("SELECT account, count(*), count(DISTINCT id) FROM snapshots GROUP BY account")
    assert all(count == distinct for _, count, distinct in rows)  # every snapshot once within its account
    return {account: count for account, count, _ in rows}


@pytest.mark.timeout(120)
async def test_two_accounts_one_table_each_in_its_quota_and_pruned_apart(
    accounts: dict[str, Simulator], inventory: Inventory, tmp_path: Path
) -> None:
    for sim in accounts.values():
        sim.stats.reset()
    config = _config(tmp_path, accounts)
    done = await _crawl(config, inventory.url)
    assert done.returncode == 0, done.stderr
    totals = {name: sim.dataset.total for name, sim in accounts.items()}
    assert await _counts(inventory) == totals
    ids = {
        name: {row[0] for row in await inventory.query(f"SELECT id FROM snapshots WHERE account = '{name}'")}
        for name in accounts
    }
    assert ids == {name: {s["id"] for s in sim.dataset.snapshots()} for name, sim in accounts.items()}
    hosts = await inventory.query("SELECT DISTINCT account, endpoint FROM snapshots ORDER BY account")
    assert [tuple(row) for row in hosts] == [(name, endpoint_host(sim.url)) for name, sim in accounts.items()]
    for name, sim in accounts.items():  # neither server saw more than its quota (its rate and its bucket of 10)
        assert sim.stats.max_in_window(1.0) <= QUOTA[name] + 10, (name, sim.stats.max_in_window(1.0))
        # The server decides on arrival, when its loop gets to a request: on a loaded machine a stall can bunch a
        # few paced requests together. Unpaced, an account would be throttled on a large share of its requests.
        assert sim.stats.by_status.get(429, 0) <= sim.stats.requests // 50, (name, sim.stats)
    assert "account a:" in done.stderr and "account b:" in done.stderr and "2/2 accounts complete" in done.stderr
    runs = await inventory.query("SELECT account, complete FROM snapcrawl_runs ORDER BY account")
    assert [(account, bool(complete)) for account, complete in runs] == [("a", True), ("b", True)]

    # A stale row in each account: a --prune of one account deletes its own only, then the reverse.
    first_volume = accounts["a"].dataset.volume_ids[0]
    old = "'2020-01-01T00:00:00.000000+00:00'"
    for name in accounts:
        await inventory.query(
            f"INSERT INTO snapshots (id, volume_id, size, created_at, crawled_at, account, endpoint) "
            f"VALUES ('stale-{name}', '{first_volume}', 1, {old}, {old}, '{name}', 'h')"
        )
    pruned_a = await _crawl(config, inventory.url, "--account", "a", "--prune")
    assert pruned_a.returncode == 0, pruned_a.stderr
    assert await _counts(inventory) == {"a": totals["a"], "b": totals["b"] + 1}
    pruned_b = await _crawl(config, inventory.url, "--account", "b", "--prune")
    assert pruned_b.returncode == 0, pruned_b.stderr
    assert await _counts(inventory) == totals


@pytest.mark.timeout(90)
async def test_an_account_with_bad_keys_fails_alone(
    accounts: dict[str, Simulator], inventory: Inventory, tmp_path: Path
) -> None:
    config = _config(tmp_path, accounts, bad=True)
    done = await _crawl(config, inventory.url, "--account", "b", "--account", "c")
    assert done.returncode == 1, done.stderr
    assert "account c: FAILED" in done.stderr and "not complete: c" in done.stderr
    assert await _counts(inventory) == {"b": accounts["b"].dataset.total}
    runs = await inventory.query("SELECT account, complete FROM snapcrawl_runs ORDER BY account")
    assert [(account, bool(complete)) for account, complete in runs] == [("b", True), ("c", False)], done.stderr


async def test_json_lines_of_a_fleet_carry_the_account(accounts: dict[str, Simulator], tmp_path: Path) -> None:
    out = tmp_path / "fleet.jsonl"
    done = await _crawl(_config(tmp_path, accounts), str(out), "--account", "b")
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert len(lines) == accounts["b"].dataset.total
    assert {line["account"] for line in lines} == {"b"}


async def test_library_stream_tags_pages(accounts: dict[str, Simulator], tmp_path: Path) -> None:
    """``Fleet.stream()`` yields each account's pages tagged with its name; outcomes say how each went."""
    config = load_fleet(_config(tmp_path, accounts), environ=_env())
    fleet = Fleet(config.accounts, max_in_flight=4, page_size=100, rate=None)
    seen: dict[str, set[str]] = {"a": set(), "b": set()}
    async with fleet.stream() as pages:
        async for tagged in pages:
            seen[tagged.account].update(s.id for s in tagged.page.snapshots)
    assert {name: len(ids) for name, ids in seen.items()} == {n: s.dataset.total for n, s in accounts.items()}
    assert all(outcome.ok for outcome in fleet.outcomes.values())


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ('[accounts.x]\nendpoint = "http://h"\naccess_key = "AK"\n',
         "account 'x': key 'access_key' would hold a secret"),
        ('[accounts.x]\nendpoint = "http://h"\naccess_key_env = "NOPE_A"\nsecret_key_env = "NOPE_B"\n',
         "account 'x': key 'access_key_env': the environment variable NOPE_A is not set"),
        ('[accounts.x]\nendpoint = "http://h"\ncredentials_file = "c.json"\nrate = "fast"\n',
         "account 'x': key 'rate' must be a number"),
        ('[accounts.x]\nendpoint = "http://h"\ncredentials_file = "c.json"\nspeed = 1\n',
         "account 'x': unknown key 'speed'"),
        ('[accounts.x]\ncredentials_file = "c.json"\n', "account 'x': missing key 'endpoint'"),
        ('[accounts.x]\nregion = "mars-1"\ncredentials_file = "c.json"\n', "account 'x': key 'region'"),
        ('[accounts.x]\nendpoint = "http://h"\ncredentials_file = "c.json"\nvolumes = "none.txt"\n',
         "account 'x': key 'volumes'"),
        ("[accounts]\n", "no accounts"),
    ],
)  # fmt: skip
def test_config_errors_name_the_account_and_key(tmp_path: Path, table: str, message: str) -> None:
    (tmp_path / "c.json").write_text('{"access-key": "AK", "secret-key": "SK"}', encoding="utf-8")
    path = tmp_path / "fleet.toml"
    path.write_text(table, encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_fleet(path, environ={})
    assert message in str(caught.value)
    assert "SK" not in str(caught.value)


def test_account_must_be_in_the_file(tmp_path: Path) -> None:
    (tmp_path / "c.json").write_text('{"access-key": "AK", "secret-key": "SK"}', encoding="utf-8")
    path = tmp_path / "fleet.toml"
    path.write_text('[accounts.x]\nendpoint = "http://h"\ncredentials_file = "c.json"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"^account 'y' is not in .*its accounts are: x"):
        load_fleet(path, only=["y"])
    account = load_fleet(path).accounts[0]
    assert "SK" not in repr(account)


@pytest.fixture(scope="module")
def slow_accounts() -> Iterator[dict[str, Simulator]]:
    """Two accounts of about 1,100 snapshots each, answering in 10-20 ms."""
    slow = Faults(latency=(0.01, 0.02))
    with (
        run_in_thread(volumes=150, seed=21, credentials=KEYS["a"], faults=slow) as a,
        run_in_thread(volumes=150, seed=22, credentials=KEYS["b"], faults=slow) as b,
    ):
        yield {"a": a, "b": b}


@pytest.mark.timeout(120)
async def test_a_killed_fleet_resumes_every_account(
    slow_accounts: dict[str, Simulator], inventory: Inventory, tmp_path: Path
) -> None:
    """SIGKILL once both accounts committed some rows: the rerun completes each, fetching less than a full crawl."""
    config = tmp_path / "fleet.toml"
    config.write_text(
        f'[defaults]\nconcurrency = 2\n\n[accounts.a]\nendpoint = "{slow_accounts["a"].url}"\n'
        'access_key_env = "FLEET_A_KEY"\nsecret_key_env = "FLEET_A_SECRET"\n\n'
        f'[accounts.b]\nendpoint = "{slow_accounts["b"].url}"\ncredentials_file = "b.json"\n',
        encoding="utf-8",
    )
    (tmp_path / "b.json").write_text(
        json.dumps({"access-key": KEYS["b"].access_key, "secret-key": KEYS["b"].secret_key}), encoding="utf-8"
    )
    argv = [sys.executable, "-m", "snapcrawl.cli", "crawl", "--config", str(config), "--out", inventory.url]
    argv += ["--page-size", "10", "--no-progress", "--prune"]
    for sim in slow_accounts.values():
        sim.stats.reset()
    log = tmp_path / "stderr.txt"
    with log.open("wb") as stderr:
        process = await anyio.open_process(argv, env=_env(), stdout=subprocess.DEVNULL, stderr=stderr)

    async def committed() -> dict[str, int]:
        """Each account's committed fan-out ranges: its checkpoint, found by the account it carries."""
        try:
            return dict(
                await inventory.query(
                    "SELECT c.account, count(*) FROM snapcrawl_ranges r JOIN snapcrawl_crawls c "
                    "ON c.crawl = r.crawl GROUP BY c.account"
                )
            )
        except Exception:  # not created yet, or locked mid-commit
            return {}

    with anyio.fail_after(40):
        while process.returncode is None:  # until both accounts have 10 ranges committed
            counts = await committed()
            if min(counts.get("a", 0), counts.get("b", 0)) >= 10:
                break
            await anyio.sleep(0.02)
    assert process.returncode is None, f"the fleet ended before it could be killed: {log.read_text()}"
    process.kill()
    with anyio.fail_after(10):
        status = await process.wait()
    assert status == -9, "the fleet ended on its own before the kill: make the accounts slower"
    committed_pages = await committed()
    assert set(committed_pages) == {"a", "b"}

    for sim in slow_accounts.values():
        sim.stats.reset()
    done = await anyio.to_thread.run_sync(
        lambda: subprocess.run(argv, env=_env(), capture_output=True, text=True, timeout=60, check=False)  # noqa: S603
    )
    assert done.returncode == 0, done.stderr
    assert await _counts(inventory) == {name: sim.dataset.total for name, sim in slow_accounts.items()}
    full = {name: 1 + -(-(sim.dataset.total - 10) // 9) for name, sim in slow_accounts.items()}  # fan-out pages
    for name, sim in slow_accounts.items():  # each resumed: page 1 again, then only what no committed range covers
        rerun = sim.stats.requests
        assert rerun <= 1 + full[name] - committed_pages[name] + 1, (name, rerun, committed_pages[name], full[name])


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--account", "a"], "--account picks accounts of a fleet file: it needs --config FILE"),
        (["--max-in-flight", "4"], "--max-in-flight needs --config FILE"),
        (["--config", "f.toml", "--volume", "v"], "--volumes-from/--volume does not go with --config"),
        (["--config", "f.toml", "--output", "csv"], "--output and --fields do not apply to --config"),
        (["--config", "f.toml", "--endpoint", "http://h"], "--endpoint does not go with --config"),
        (["--config", "f.toml", "--state", "s.db"], "a fleet resumes from a database --out"),
        (["--config", "missing.toml"], "cannot read the fleet config missing.toml"),
    ],
)
def test_fleet_usage_errors_exit_2(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["crawl", *argv]) == 2
    assert message in capsys.readouterr().err


def test_fleet_progress_line_breaks_down_by_account() -> None:
    outcomes = {"a": AccountOutcome("a"), "b": AccountOutcome("b", error=ConfigError("x"))}
    outcomes["a"].stats.snapshots, outcomes["a"].stats.volumes_failed = 120, 2
    line = _fleet_line(outcomes, started=0.0)
    assert "a 120 (2 failed)" in line and "b 0 ✗" in line


@pytest.mark.parametrize("cap", [2, 16])
async def test_one_cap_on_requests_in_flight_across_accounts(
    slow_accounts: dict[str, Simulator], tmp_path: Path, cap: int
) -> None:
    """``max_in_flight`` bounds the requests on the wire across all accounts, whatever each one's concurrency."""
    in_flight = peak = 0

    class Counting:
        def __init__(self) -> None:
            self.inner = AiohttpTransport(connections=8)

        async def get(self, url: str, headers: dict[str, str]) -> Response:
            nonlocal in_flight, peak
            in_flight += 1
            peak = max(peak, in_flight)
            try:
                return await self.inner.get(url, headers)
            finally:
                in_flight -= 1

        async def aclose(self) -> None:
            await self.inner.aclose()

    accounts = [
        AccountConfig(name=name, endpoint=sim.url, credentials=KEYS[name], concurrency=8)
        for name, sim in slow_accounts.items()
    ]
    fleet = Fleet(accounts, max_in_flight=cap, page_size=20, transport=lambda account: Counting())
    async with fleet.stream() as pages:
        async for _ in pages:
            pass
    assert all(outcome.ok for outcome in fleet.outcomes.values())
    assert peak <= cap
    assert peak > 2 or cap == 2  # with room, both accounts' requests overlap: the bound above can bite


class _Breaking:
    """A transport whose every request ends in ``error``: a defect, or a cancellation nobody asked for."""

    def __init__(self, error: BaseException) -> None:
        self.error = error

    async def get(self, url: str, headers: dict[str, str]) -> Response:
        await anyio.sleep(0.05)  # the other account is under way
        raise self.error

    async def aclose(self) -> None:
        pass


def _breaking_fleet(sims: dict[str, Simulator], error: BaseException) -> Fleet:
    """Account a answers normally; account b's transport ends every request in ``error``."""
    configs = [
        AccountConfig(name=name, endpoint=sim.url, credentials=KEYS[name], concurrency=4) for name, sim in sims.items()
    ]
    return Fleet(
        configs,
        page_size=20,
        retry=RetryPolicy(max_retries=0),
        transport=lambda account: _Breaking(error) if account.name == "b" else AiohttpTransport(connections=4),
    )


@pytest.mark.parametrize(
    ("error", "said"),
    [
        (RuntimeError("boom"), "unexpected RuntimeError: boom"),
        (asyncio.CancelledError(), "cancelled inside the HTTP client"),
    ],
    ids=["defect", "stray-cancellation"],
)
async def test_an_account_that_crashes_fails_alone(
    slow_accounts: dict[str, Simulator], error: BaseException, said: str, tmp_path: Path
) -> None:
    """A defect, or a cancellation nobody asked for, in one account's task fails that account only: the others
    run to their end (before, they were cancelled too, and ended neither finished nor failed)."""
    fleet = _breaking_fleet(slow_accounts, error)

    def sink_for(account: AccountConfig) -> Sink:
        return JsonLinesSink(tmp_path / f"{account.name}.jsonl")

    outcomes = await fleet.crawl_into(sink_for)
    lines = (tmp_path / "a.jsonl").read_text(encoding="utf-8").splitlines()
    assert outcomes["a"].ok and len(lines) == slow_accounts["a"].dataset.total
    assert said in _why(outcomes["b"]) and not outcomes["b"].ok

    streamed = _breaking_fleet(slow_accounts, error)
    seen = 0
    async with streamed.stream() as pages:
        async for tagged in pages:
            seen += len(tagged.page.snapshots)
    assert streamed.outcomes["a"].ok and seen == slow_accounts["a"].dataset.total
    assert said in _why(streamed.outcomes["b"]) and not streamed.outcomes["b"].ok


def _why(outcome: AccountOutcome) -> str:
    """What an account that did not complete says of it: its error, or its failed listings'."""
    return " ".join([str(outcome.error or ""), *(str(failure.error) for failure in outcome.failures)])


async def test_a_cancelled_fleet_still_stops_every_account(slow_accounts: dict[str, Simulator], tmp_path: Path) -> None:
    """The caller's cancellation is not an account's failure: every account stops, none is marked failed."""
    configs = [
        AccountConfig(name=name, endpoint=sim.url, credentials=KEYS[name]) for name, sim in slow_accounts.items()
    ]
    fleet = Fleet(configs, page_size=10, concurrency=1)
    with anyio.move_on_after(0.3) as scope:
        await fleet.crawl_into(lambda account: JsonLinesSink(tmp_path / f"{account.name}.jsonl"))
    assert scope.cancelled_caught
    assert all(outcome.error is None and not outcome.finished for outcome in fleet.outcomes.values())


def test_an_account_stopped_with_the_fleet_says_so() -> None:
    """An account neither finished nor failed (a signal stopped the fleet) is not reported as if it ran."""
    assert "account b: stopped before its end: 0 listings" in _summary("b", AccountOutcome("b"))
    assert "stopped" not in _summary("a", AccountOutcome("a", finished=True))
