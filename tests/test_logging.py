"""snapcrawl logs like a library: silent until its host configures ``logging``, ordinary records once it has."""

from __future__ import annotations

import json
import logging
import subprocess
import sys

import pytest

from snapcrawl._log import get_logger
from snapcrawl.cli import main
from snapcrawl.simulator import Faults, Simulator

from .logs import capture_logs

#: A crawl through 503s and 429s; ``SETUP`` is replaced by the application's logging set-up (or nothing).
_APP = """
import anyio, json
from snapcrawl import Crawler
from snapcrawl.simulator import Faults, Simulator
SETUP

async def main() -> dict[str, int]:
    faults = Faults(error_rate=0.1, rate_limit=200, rate_burst=5)
    async with Simulator(volumes=60, seed=3, faults=faults) as sim:
        async with Crawler(endpoint=sim.url, credentials=sim.credentials, concurrency=16) as crawler:
            async with crawler.crawl(sim.dataset.volume_ids) as stream:
                n = len([s async for s in stream])
        return {"complete": n == sim.dataset.total, "retries": crawler.stats.retries,
                "throttled": crawler.stats.throttled}

result = anyio.run(main)
with open(RESULT, "w") as file:
    json.dump(result, file)
"""


def _run_app(tmp_path: object, setup: str) -> tuple[subprocess.CompletedProcess[str], dict[str, int]]:
    result_file = f"{tmp_path}/result.json"
    code = _APP.replace("SETUP", setup).replace("RESULT", repr(result_file))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=50, check=False)  # noqa: S603
    assert done.returncode == 0, done.stderr
    with open(result_file, encoding="utf-8") as file:
        return done, json.load(file)


def test_an_application_that_configures_no_logging_sees_nothing(tmp_path: object) -> None:
    """A crawl through 503s and 429s in an application with no logging set up writes nothing to stdout or stderr."""
    done, result = _run_app(tmp_path, "")
    assert result["complete"] and result["retries"] > 0 and result["throttled"] > 0
    assert done.stdout == "" and done.stderr == ""


def test_an_application_that_configures_logging_gets_records(tmp_path: object) -> None:
    """With logging.basicConfig, retries are debug records of snapcrawl.fetch, with their fields as attributes."""
    setup = (
        "import logging\n"
        "logging.basicConfig(level=logging.DEBUG, format='%(name)s|%(levelname)s|%(funcName)s|%(message)s')\n"
        "logging.getLogger('asyncio').setLevel(logging.WARNING)\n"
    )
    done, result = _run_app(tmp_path, setup)
    assert result["retries"] > 0
    lines = [line.split("|") for line in done.stderr.splitlines() if line.startswith("snapcrawl")]
    retries = [line for line in lines if line[3].startswith("request.retry ")]
    assert retries and {(name, level, where) for name, level, where, _ in retries} == {
        ("snapcrawl.fetch", "DEBUG", "on_retry")
    }  # the record names the code that logged it (the log's subscriber), not structlog's wrapper
    assert "status=503" in done.stderr and "status=429" in done.stderr
    assert any(line[:2] == ["snapcrawl.crawl", "INFO"] and line[3].startswith("crawl.end ") for line in lines)
    assert done.stdout == ""


def test_records_carry_their_fields() -> None:
    """Each field is an attribute of the record (for JSON formatters), renamed when LogRecord has it already."""
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign,assignment]
    logger = logging.getLogger("snapcrawl")
    logger.addHandler(handler)
    with capture_logs(logging.INFO):
        get_logger("test").info("volume.failed", volume_id="v1", name="clash")
        get_logger("test").debug("not.shown")
    logger.removeHandler(handler)
    [record] = records
    assert record.name == "snapcrawl.test" and record.getMessage() == "volume.failed volume_id='v1' name='clash'"
    assert vars(record)["volume_id"] == "v1" and vars(record)["name_"] == "clash"


def test_the_cli_still_logs_text_and_json(env: Simulator, tmp_path: object, capsys: pytest.CaptureFixture[str]) -> None:
    """The command line renders snapcrawl's records as before: console text, or one JSON object a line."""
    env.faults = Faults(error_rate=0.2)
    out = f"{tmp_path}/out.jsonl"
    assert main(["crawl", "--out", out, "--no-progress", "--log-level", "debug", "--volume", "v-none"]) == 0
    err = capsys.readouterr().err
    assert "[debug    ] request" in err and "[info     ] crawl.end" in err
    assert main(["crawl", "--out", out, "--no-progress", "--log-level", "info", "--log-json", "--volume", "v"]) == 0
    events = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line.startswith("{")]
    assert [e["event"] for e in events] == ["crawl.start", "crawl.end"]
    assert events[0]["level"] == "info" and events[0]["timestamp"].endswith("Z") and events[0]["scope"] == "volumes"
    assert main(["crawl", "--out", out, "--no-progress", "--volume", "v"]) == 0
    assert "crawl.end" not in capsys.readouterr().err  # warning and above by default
