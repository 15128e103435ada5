"""The command line's conventions: --version, --output jsonl|json|csv|table, --fields, --summary-json, the
renamed options and their old spellings, and summaries worded for their counts."""

from __future__ import annotations

import argparse
import contextlib
import csv
import datetime as dt
import importlib.metadata
import io
import json
import re
import subprocess
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import msgspec
import pytest

import snapcrawl
from snapcrawl import Snapshot
from snapcrawl.cli import build_parser, main
from snapcrawl.cli.formats import SnapshotFormatter, escape_controls
from snapcrawl.cli.progress import summary_text, times
from snapcrawl.simulator import Faults, Simulator

ROOT = Path(__file__).resolve().parents[2]


def _server_rows(sim: Simulator, volume_id: str) -> dict[str, dict[str, Any]]:
    """The volume's snapshots by id, as the JSON Lines output writes them (the API's objects)."""
    rows = (json.loads(msgspec.json.encode(snap)) for snap in sim.dataset.snapshots(volume_id))
    return {row["id"]: row for row in rows}


def _busiest(sim: Simulator) -> str:
    return max(sim.dataset.volume_ids, key=sim.dataset.count)


# -- version ------------------------------------------------------------------------------------------------------


def test_version_flag(capsys: pytest.CaptureFixture[str]) -> None:
    """`snapcrawl --version` prints the package's version, which is the installed distribution's."""
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out == f"snapcrawl {snapcrawl.__version__}\n"
    assert snapcrawl.__version__ == importlib.metadata.version("snapcrawl")


def test_installed_version_is_pyproject_version() -> None:
    """The installed metadata (hence `--version`) is pyproject.toml's version, when installed from this tree."""
    distribution = importlib.metadata.distribution("snapcrawl")
    origin = distribution.read_text("direct_url.json")
    installed_from = Path(unquote(urlparse(json.loads(origin)["url"]).path)) if origin else None
    if installed_from is None or installed_from.resolve() != ROOT:
        pytest.skip(f"snapcrawl is installed from {installed_from}, not from {ROOT} (pip install . there)")
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["version"]
    assert snapcrawl.__version__ == declared


# -- --output and --fields ----------------------------------------------------------------------------------------


def test_list_output_csv(env: Simulator, capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    """`--output csv`: a header and one RFC 4180 record (CRLF) per snapshot, each cell the API's value."""
    volume_id = _busiest(env)
    assert main(["list", "--volume", volume_id, "--output", "csv"]) == 0
    raw = capsysbinary.readouterr().out.decode("utf-8")
    assert raw.endswith("\r\n") and raw.count("\r\n") == env.dataset.count(volume_id) + 1
    header, *records = list(csv.reader(io.StringIO(raw, newline="")))
    assert header == list(Snapshot.__struct_fields__)
    expected = _server_rows(env, volume_id)
    assert sorted(record[header.index("id")] for record in records) == sorted(expected)
    for record in records:
        row = expected[record[header.index("id")]]
        assert int(record[header.index("size")]) == row["size"]
        assert record[header.index("name")] == (row["name"] or "")
        metadata = record[header.index("metadata")]
        assert (json.loads(metadata) if metadata else None) == row["metadata"]


def test_list_fields_picks_and_orders(env: Simulator, capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    """`--fields size,id` keeps those fields only, in that order, in JSON Lines and in JSON."""
    volume_id = _busiest(env)
    rows = _server_rows(env, volume_id).values()
    expected = sorted(({"size": row["size"], "id": row["id"]} for row in rows), key=str)
    assert main(["list", "--volume", volume_id, "--fields", "size,id"]) == 0
    lines = capsysbinary.readouterr().out.decode().splitlines()
    assert sorted((json.loads(line) for line in lines), key=str) == expected
    assert all(line.startswith('{"size":') for line in lines)
    assert main(["list", "--volume", volume_id, "--fields", "size,id", "--output", "json"]) == 0
    assert sorted(json.loads(capsysbinary.readouterr().out), key=str) == expected


def test_list_output_json_of_an_empty_volume(env: Simulator, capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    """A volume with no snapshots is `[]` in JSON and a header alone in CSV."""
    assert main(["list", "--volume", "no-such-volume", "--output", "json"]) == 0
    assert json.loads(capsysbinary.readouterr().out) == []
    assert main(["list", "--volume", "no-such-volume", "--output", "csv", "--fields", "id,size"]) == 0
    assert capsysbinary.readouterr().out == b"id,size\r\n"


def test_list_output_table(env: Simulator, capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    """`--output table`: a header of the chosen fields, then one aligned line per snapshot."""
    volume_id = _busiest(env)
    assert main(["list", "--volume", volume_id, "--output", "table", "--fields", "id,size,status"]) == 0
    header, *lines = capsysbinary.readouterr().out.decode().splitlines()
    assert header.split() == ["ID", "SIZE", "STATUS"]
    rows = _server_rows(env, volume_id)
    assert sorted(line.split()[:2] for line in lines) == sorted([row["id"], str(row["size"])] for row in rows.values())
    assert len({line.index(" " + line.split()[1]) + len(line.split()[1]) for line in lines}) == 1  # sizes align


def test_unknown_field_exits_2(env: Simulator, capsys: pytest.CaptureFixture[str]) -> None:
    """An unknown --fields name is a usage error naming it and the known ones, before any request."""
    with pytest.raises(SystemExit) as exited:
        main(["list", "--volume", "v", "--fields", "id,sise"])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "--fields" in err and "'sise'" in err and "volume_id" in err
    assert env.stats.requests == 0


def _snap(**fields: Any) -> Snapshot:
    created = dt.datetime(2025, 1, 2, tzinfo=dt.UTC)
    base: dict[str, Any] = {"id": "s-1", "volume_id": "v", "size": 5, "created_at": created}
    return Snapshot(**(base | fields))


def test_csv_quotes_per_rfc_4180() -> None:
    """Commas, quotes and line breaks in server text survive a CSV round trip to a file, exactly."""
    hostile = 'a,"b"\r\nc\x1b[31m'
    out = io.BytesIO()
    formatter = SnapshotFormatter(out, "csv", ("id", "name", "metadata"), terminal=False)
    formatter.write([_snap(name=hostile, metadata={"k": "v,w"}), _snap(id="s-2")])
    formatter.close()
    records = list(csv.reader(io.StringIO(out.getvalue().decode(), newline="")))
    assert records == [["id", "name", "metadata"], ["s-1", hostile, '{"k":"v,w"}'], ["s-2", "", ""]]
    assert b'"a,""b""\r\nc\x1b[31m"' in out.getvalue()


@pytest.mark.parametrize("output", ["table", "csv"])
def test_terminal_output_escapes_control_characters(output: str) -> None:
    """On a terminal (always, for the table) server text cannot carry an escape sequence or a bidi override."""
    name = "evil\x1b]0;owned\x07\u202etxt.exe\x9b2J\n"
    out = io.BytesIO()
    formatter = SnapshotFormatter(out, output, ("id", "name"), terminal=True)
    formatter.write([_snap(name=name)])
    formatter.close()
    text = out.getvalue().decode()
    assert not any(char in text for char in "\x1b\x07\u202e\x9b")
    assert r"evil\x1b]0;owned\x07\u202etxt.exe\x9b2J\n" in text
    assert escape_controls("plain 📦 ü") == "plain 📦 ü"


def test_crawl_output_csv_to_stdout(env: Simulator, capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    """`crawl --out - --output csv` prints every snapshot of the volumes once; a file --out refuses --output."""
    volume_ids = env.dataset.volume_ids[:20]
    assert main(["crawl", *(a for v in volume_ids for a in ("--volume", v)), "--output", "csv", "--fields", "id"]) == 0
    header, *records = list(csv.reader(io.StringIO(capsysbinary.readouterr().out.decode(), newline="")))
    assert header == ["id"]
    assert sorted(r[0] for r in records) == sorted(s["id"] for v in volume_ids for s in env.dataset.snapshots(v))


def test_output_with_a_file_destination_exits_2(
    env: Simulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--output csv` prints to stdout: with `--out FILE` (JSON Lines) it is a usage error, before any request."""
    out = tmp_path / "x.jsonl"
    assert main(["crawl", "--volume", "v", "--out", str(out), "--output", "csv"]) == 2
    assert "--output csv" in capsys.readouterr().err
    assert env.stats.requests == 0 and not out.exists()


def test_output_with_a_database_destination_names_it_without_its_password(
    env: Simulator, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--fields` with a database `--out`: the usage error names the destination, never its password, and does not
    call a database JSON Lines."""
    dsn = "postgresql://crawler:hunter2@127.0.0.1:1/snapshots"
    assert main(["crawl", "--volume", "v", "--out", dsn, "--fields", "id"]) == 2
    err = capsys.readouterr().err
    assert "hunter2" not in err
    assert "--fields" in err and "127.0.0.1:1/snapshots" in err
    assert "JSON Lines" not in err and "--output jsonl" not in err
    assert env.stats.requests == 0


# -- --summary-json -----------------------------------------------------------------------------------------------


def test_summary_json_of_a_crawl_with_failures(
    env: Simulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A crawl where two volumes always fail: exit 1, and the summary names each failure with its error."""
    volume_ids = env.dataset.volume_ids[:12]
    broken = sorted(volume_ids[3:5])
    env.faults = Faults(fail_volumes=frozenset(broken))
    ids = tmp_path / "ids.txt"
    ids.write_text("\n".join(volume_ids) + "\n", encoding="utf-8")
    summary = tmp_path / "summary.json"
    argv = ["crawl", "--volumes-from", str(ids), "--out", str(tmp_path / "out.jsonl"), "--max-retries", "1"]
    assert main([*argv, "--no-progress", "--summary-json", str(summary)]) == 1
    record = json.loads(summary.read_text(encoding="utf-8"))
    assert record["outcome"] == "failed" and record["exit_status"] == 1 and record["scope"] == "volumes"
    assert record["volumes"] == {"finished": 12, "complete": 10, "failed": 2, "done_earlier": 0}
    assert sorted(failure["volume_id"] for failure in record["failures"]) == broken
    for failure in record["failures"]:
        assert failure["error_type"] == "ServerError" and "500" in failure["error"] and failure["pages_done"] == 0
        assert failure["where"] == f"volume {failure['volume_id']}"
    ok = [v for v in volume_ids if v not in broken]
    assert record["snapshots"] == sum(env.dataset.count(v) for v in ok)
    assert record["requests"] == env.stats.requests and record["retries"] == 2
    assert record["snapcrawl"] == snapcrawl.__version__ and record["duration_s"] > 0 and record["rate_rps"] > 0
    assert "12 volumes (10 complete, 2 failed)" in capsys.readouterr().err


def test_summary_json_of_the_account(env: Simulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An account-wide crawl is summed up as the account, in the text and in the JSON."""
    summary = tmp_path / "summary.json"
    out = tmp_path / "all.jsonl"
    assert main(["crawl", "--out", str(out), "--page-size", "1000", "--summary-json", str(summary)]) == 0
    record = json.loads(summary.read_text(encoding="utf-8"))
    assert record["scope"] == "account" and "volumes" not in record
    assert record["account"] == {"outcome": "complete", "snapshots_expected": env.dataset.total}
    assert record["snapshots"] == env.dataset.total and record["failures"] == []
    err = capsys.readouterr().err
    assert f"snapcrawl: the account (complete), {env.dataset.total} snapshots" in err and "volumes (" not in err


def test_summary_json_when_credentials_are_rejected(
    env: Simulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rejected credentials (exit 3) still leave a summary that says why, without the secret."""
    monkeypatch.setenv("SCP_SECRET_KEY", "not-the-secret-key")
    summary = tmp_path / "summary.json"
    argv = ["crawl", "--volume", env.dataset.volume_ids[0], "--out", str(tmp_path / "out.jsonl")]
    assert main([*argv, "--summary-json", str(summary)]) == 3
    text = summary.read_text(encoding="utf-8")
    record = json.loads(text)
    assert record["outcome"] == "stopped" and record["exit_status"] == 3
    assert record["error"]["error_type"] == "AuthError" and record["error"]["error"]
    assert "not-the-secret-key" not in text


# -- names and wording --------------------------------------------------------------------------------------------


def test_old_spellings_still_work_and_warn(env: Simulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`crawl --volumes FILE` (now --volumes-from) works for one more release, with a warning on stderr."""
    volume_id = env.dataset.volume_ids[0]
    ids = tmp_path / "ids.txt"
    ids.write_text(volume_id + "\n", encoding="utf-8")
    out = tmp_path / "out.jsonl"
    assert main(["crawl", "--volumes", str(ids), "--out", str(out), "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert "--volumes is deprecated" in err and "use --volumes-from" in err
    assert len(out.read_text(encoding="utf-8").splitlines()) == env.dataset.count(volume_id)
    assert main(["crawl", "--volumes-from", str(ids), "--out", str(out), "--no-progress"]) == 0
    assert "deprecated" not in capsys.readouterr().err


def test_summary_wording_counts() -> None:
    """Singular for one, plural otherwise; `once` and `twice`."""
    from snapcrawl import CrawlStats  # noqa: PLC0415

    one = CrawlStats(volumes_done=1, snapshots=1, requests=1, retries=1)
    text = summary_text(one, "db.sqlite", account=False, pruned=1)
    assert "1 volume (1 complete, 0 failed), 1 snapshot, 1 request in" in text
    assert "1 retry," in text and "(1 stale row pruned)" in text
    many = CrawlStats(volumes_done=2, snapshots=3, requests=2, retries=2)
    text = summary_text(many, None, account=False, pruned=5)
    assert "2 volumes (2 complete, 0 failed), 3 snapshots, 2 requests" in text and "2 retries" in text
    assert "5 stale rows pruned" in text
    assert summary_text(CrawlStats(volumes_failed=1), None, account=True).startswith("snapcrawl: the account (failed)")
    assert [times(n) for n in (1, 2, 3)] == ["once", "twice", "3 times"]


def _options(parser: argparse.ArgumentParser, command: tuple[str, ...] = ()) -> Iterator[tuple[str, str]]:
    """(command, option) for every option `--help` shows, subcommands included."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _options(sub, (*command, name))
        elif action.help != argparse.SUPPRESS:
            yield from ((" ".join(command), option) for option in action.option_strings if option.startswith("--"))


def test_every_option_is_in_the_reference() -> None:
    """docs/cli.md names every command's every option (the deprecated spellings are left out of --help)."""
    reference = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    missing = [
        f"{command} {option}"
        for command, option in _options(build_parser())
        if option != "--help" and not re.search(rf"`[^`]*{re.escape(option)}\b(?!-)", reference)
    ]
    assert missing == []
    assert "--volumes" not in {option for _, option in _options(build_parser())}


def test_bash_completion_completes_commands_and_options(tmp_path: Path) -> None:
    """`snapcrawl completion bash` completes the commands and the current options, not the deprecated ones."""
    script = tmp_path / "snapcrawl.bash"
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["completion", "bash"]) == 0
    script.write_text(out.getvalue(), encoding="utf-8")
    probe = f"""
source {script}
complete_at() {{ COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); COMP_LINE="$*"; COMP_POINT=${{#COMP_LINE}}
    _shtab_snapcrawl snapcrawl "${{!#}}"; echo "${{COMPREPLY[*]}}"; }}
complete_at snapcrawl cr
complete_at snapcrawl crawl --vol
complete_at snapcrawl demo --vol
"""
    result = subprocess.run(["bash", "-c", probe], capture_output=True, text=True, timeout=30, check=True)  # noqa: S603, S607
    assert result.stdout.splitlines() == ["crawl", "--volumes-from --volume", "--volume-count"]
