"""``snapcrawl simulate`` as a command: its flags, its printed exports, the volume file, and its exit statuses."""

from __future__ import annotations

import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
import trustme

from snapcrawl._config import Credentials
from snapcrawl._signing import Signer
from snapcrawl.cli import build_parser
from snapcrawl.cli.simulate import faults_from_args
from snapcrawl.simulator import Churn, Dataset, Faults
from tests.simulator.helpers import Api


def test_every_flag_reaches_the_faults() -> None:
    """Each fault flag sets its Faults field; repeatable ones accumulate."""
    args = build_parser().parse_args(
        [
            "simulate",
            *("--rate-limit", "50", "--rate-burst", "5", "--retry-after", "http-date"),
            *("--quota-schedule", "0:50,10:25", "--ratelimit-headers", "both"),
            *("--error-rate", "0.1", "--drop-rate", "0.05", "--truncate-rate", "0.02", "--html-rate", "0.01"),
            *("--stall-rate", "0.01", "--stall-seconds", "2", "--latency", "0.01:0.02"),
            *("--pause", "5:1", "--pause", "20:2,30:1"),
            *("--fail-volume", "f1", "--fail-volume", "f2", "--malformed-volume", "m", "--huge-volume", "h"),
            *("--bomb-volume", "b", "--bomb-bytes", "1000", "--max-limit", "40", "--gzip", "--reject-replays"),
            *("--churn", "0.2", "--churn-deletes", "3", "--churn-creates", "2", "--churn-marker-share", "0.5"),
            *("--busy-volume", "busy", "--busy-churn", "0.9"),
        ]
    )
    assert faults_from_args(args) == Faults(
        rate_limit=50,
        rate_burst=5,
        retry_after="http-date",
        quota_schedule=((0, 50), (10, 25)),
        ratelimit_headers="both",
        error_rate=0.1,
        drop_rate=0.05,
        truncate_rate=0.02,
        html_rate=0.01,
        stall_rate=0.01,
        stall_seconds=2,
        latency=(0.01, 0.02),
        pause=((5, 1), (20, 2), (30, 1)),
        fail_volumes=frozenset({"f1", "f2"}),
        malformed_volumes=frozenset({"m"}),
        huge_volumes=frozenset({"h"}),
        bomb_volumes=frozenset({"b"}),
        bomb_bytes=1000,
        max_limit=40,
        gzip=True,
        reject_replays=True,
        churn=Churn(rate=0.2, deletes=3, creates=2, marker_share=0.5, busy_volumes=frozenset({"busy"}), busy_rate=0.9),
    )
    assert faults_from_args(build_parser().parse_args(["simulate"])) == Faults()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _simulate(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(  # noqa: S603 - our own interpreter and arguments
        [sys.executable, "-m", "snapcrawl.cli", "simulate", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=os.environ.copy(),
    )


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], dict[str, str], list[str]]]:
    """A `snapcrawl simulate` process on a free port: the process, its exports, and its other printed lines."""
    volume_file = tmp_path / "volumes.txt"
    process = _simulate(
        *("--port", str(_free_port()), "--volumes", "7", "--seed", "3", "--latency", "0.3:0.4"),
        *("--volume-file", str(volume_file)),
    )
    try:
        assert process.stdout is not None
        lines = [process.stdout.readline().rstrip("\n") for _ in range(5)]
        exports = dict(line.removeprefix("export ").split("=", 1) for line in lines if line.startswith("export "))
        yield process, exports, lines
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=30)


async def test_command_prints_exports_serves_and_stops_on_sigint(
    served: tuple[subprocess.Popen[str], dict[str, str], list[str]], tmp_path: Path
) -> None:
    """The exports reach a working server with the given latency; the volume file lists the volumes; SIGINT ends it."""
    process, exports, lines = served
    assert set(exports) == {"SCP_ENDPOINT", "SCP_ACCESS_KEY", "SCP_SECRET_KEY"}
    assert exports["SCP_ENDPOINT"].startswith("http://127.0.0.1:")
    assert "serving 7 volumes" in lines[0]
    volumes = Dataset(7, seed=3).volume_ids
    assert (tmp_path / "volumes.txt").read_text(encoding="utf-8").splitlines() == volumes
    assert lines[-1] == f"# e.g. snapcrawl list --volume {volumes[0]}"
    credentials = Credentials(access_key=exports["SCP_ACCESS_KEY"], secret_key=exports["SCP_SECRET_KEY"])
    async with aiohttp.ClientSession() as session:
        api = Api(session, exports["SCP_ENDPOINT"], Signer(credentials, api_version="1.3"))
        started = time.monotonic()
        reply = await api.get({"volume_id": volumes[0]})
        assert time.monotonic() - started >= 0.3  # --latency 0.3:0.4
    assert reply.status == 200
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=30) == 130


def test_busy_port_exits_2() -> None:
    """A port already taken is a usage error: exit status 2 and one line naming the address."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        process = _simulate("--port", str(port), "--volumes", "1")
        _, err = process.communicate(timeout=30)
    assert process.returncode == 2
    assert f"cannot listen on 127.0.0.1:{port}" in err


@pytest.mark.parametrize(
    "flags",
    [
        ("--quota-schedule", "10:5,5:1"),
        ("--pause", "3"),
        ("--error-rate", "2"),
        ("--tls-key", "key.pem"),
        ("--latency", "inf"),
        ("--latency", "0:inf"),
        ("--volume-file", "/nonexistent-dir/ids.txt"),
    ],
    ids=[
        "schedule-backwards",
        "pause-without-duration",
        "rate-above-one",
        "key-without-cert",
        "latency-inf",
        "latency-range-inf",
        "volume-file-unwritable",
    ],
)
def test_bad_fault_flags_exit_2(flags: tuple[str, str]) -> None:
    """Fault values that cannot be honoured are usage errors, reported before serving."""
    process = _simulate("--port", "0", *flags)
    out, err = process.communicate(timeout=30)
    assert process.returncode == 2
    assert err.startswith("snapcrawl: error:")
    assert not out


async def test_command_serves_https(tmp_path: Path) -> None:
    """--tls-cert and --tls-key serve HTTPS with the given certificate."""
    authority = trustme.CA()
    issued = authority.issue_cert("127.0.0.1")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    issued.cert_chain_pems[0].write_to_path(str(cert))
    issued.private_key_pem.write_to_path(str(key))
    process = _simulate("--port", "0", "--volumes", "2", "--tls-cert", str(cert), "--tls-key", str(key))
    try:
        assert process.stdout is not None
        endpoint = [process.stdout.readline() for _ in range(2)][1].strip().removeprefix("export SCP_ENDPOINT=")
        assert endpoint.startswith("https://127.0.0.1:")
        client = ssl.create_default_context()
        authority.configure_trust(client)
        async with (
            aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=client)) as session,
            session.get(endpoint + "/") as response,
        ):
            assert response.status == 200
    finally:
        process.send_signal(signal.SIGINT)
        process.communicate(timeout=30)
