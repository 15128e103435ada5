"""The signer against the official SDK's vectors, and the headers it builds."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from pathlib import Path
from typing import Any

import pytest

from snapcrawl import Credentials
from snapcrawl.signing import Signer, encode_query, make_signature

VECTORS_FILE = Path(__file__).resolve().parents[2] / "shared" / "scp" / "signature-vectors.json"
# A copy kept in the repo so the tests do not depend on the layout around it.
LOCAL_VECTORS = Path(__file__).with_name("signature-vectors.json")


def _vectors() -> dict[str, Any]:
    path = VECTORS_FILE if VECTORS_FILE.exists() else LOCAL_VECTORS
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


@pytest.mark.parametrize("case", _vectors()["vectors"], ids=lambda case: case["case"])
def test_signature_matches_official_sdk(case: dict[str, str]) -> None:
    """Every vector computed with the official SDK's function is reproduced byte for byte."""
    signature = make_signature(
        method=case["method"],
        url=case["url"],
        timestamp=case["timestamp"],
        access_key=case["access_key"],
        secret_key=case["secret_key"],
        account_id=case["account_id"],
        client_type=case["client_type"],
    )
    assert signature == case["signature"]


@pytest.mark.parametrize("case", _vectors()["encode_cases"], ids=["paging", "unicode-and-colon"])
def test_query_encoding_matches_go(case: dict[str, Any]) -> None:
    """Queries encode like Go's url.Values.Encode: sorted keys, QueryEscape'd values."""
    assert encode_query(case["params"]) == case["encoded"]


def test_encode_query_escapes_query_syntax() -> None:
    """Characters that would change the query (& # % = + space) are escaped inside values."""
    assert encode_query({"volume_id": "a&b=c#d%e+f g"}) == "volume_id=a%26b%3Dc%23d%25e%2Bf+g"


def _signer(**kwargs: Any) -> Signer:
    creds = Credentials(access_key="AK", secret_key="SK", **kwargs)
    return Signer(creds, api_version="1.2", clock=lambda: 1753174800.123)


def test_signer_headers_and_signature() -> None:
    """The Signer sends every documented header and a signature that verifies over the wire URL."""
    url = "http://127.0.0.1:8765/v1/snapshots?limit=5"
    headers = _signer().headers("GET", url)
    assert headers["Scp-Accesskey"] == "AK"
    assert headers["Scp-ClientType"] == "Openapi"
    assert headers["Scp-Api-Version"] == "virtualserver 1.2"
    assert headers["Accept-Language"] == "en-US"
    assert headers["Scp-Timestamp"] == "1753174800123"
    assert "Scp-AccountId" not in headers
    assert "X-Auth-Token" not in headers
    expected = make_signature(method="GET", url=url, timestamp="1753174800123", access_key="AK", secret_key="SK")
    assert headers["Scp-Signature"] == expected


def test_signer_account_id_and_token() -> None:
    """An account id is sent and signed; a token is sent but not signed."""
    url = "https://example.test/v1/snapshots"
    headers = _signer(account_id="ACC", auth_token="TOKEN").headers("GET", url)
    assert headers["Scp-AccountId"] == "ACC"
    assert headers["X-Auth-Token"] == "TOKEN"
    message = f"GET{url}1753174800123AKACCOpenapi".encode()
    digest = hmac.new(b"SK", message, hashlib.sha256).digest()
    assert headers["Scp-Signature"] == base64.b64encode(digest).decode()


def test_signer_signs_afresh_each_time() -> None:
    """Each call reads the clock again, so each attempt gets a new timestamp and signature."""
    now = iter([100.0, 101.5])
    signer = Signer(Credentials(access_key="AK", secret_key="SK"), api_version="1.3", clock=lambda: next(now))
    first, second = signer.headers("GET", "http://x/v1/snapshots"), signer.headers("GET", "http://x/v1/snapshots")
    assert (first["Scp-Timestamp"], second["Scp-Timestamp"]) == ("100000", "101500")
    assert first["Scp-Signature"] != second["Scp-Signature"]


def test_signer_clock_offset() -> None:
    """A measured clock offset shifts the signed timestamp."""
    signer = _signer()
    signer.clock_offset = -600.0
    assert signer.headers("GET", "http://x/")["Scp-Timestamp"] == "1753174200123"


def test_no_signature_is_ever_repeated() -> None:
    """The same request signed again within one millisecond gets the next millisecond, never the same signature."""
    signer = Signer(Credentials(access_key="AK", secret_key="SK"), api_version="1.3", clock=lambda: 1_800_000_000.0)
    same = [signer.headers("GET", "https://h/v1/snapshots?limit=1") for _ in range(50)]
    assert len({h["Scp-Signature"] for h in same}) == 50
    stamps = [int(h["Scp-Timestamp"]) for h in same]
    assert stamps == list(range(stamps[0], stamps[0] + 50))
    # Different requests in the same millisecond keep the clock's timestamp: no drift at high request rates.
    others = {signer.headers("GET", f"https://h/v1/snapshots?marker={i}")["Scp-Timestamp"] for i in range(50)}
    assert others == {str(stamps[-1])}


def test_a_corrected_clock_is_followed_at_once() -> None:
    """After a clock-skew correction moves the clock back, timestamps follow it (no waiting for the old time)."""
    signer = Signer(Credentials(access_key="AK", secret_key="SK"), api_version="1.3", clock=lambda: 1_800_000_000.0)
    before = int(signer.headers("GET", "https://h/v1/snapshots")["Scp-Timestamp"])
    signer.clock_offset = -600.0
    after = int(signer.headers("GET", "https://h/v1/snapshots")["Scp-Timestamp"])
    assert after == before - 600_000


@pytest.mark.parametrize("secret", ["SK", "k" * 63, "k" * 64, "k" * 65, "s" * 200, "clé-ü" * 20])
def test_signer_hmac_equals_the_standard_one_for_any_key_length(secret: str) -> None:
    """The signer's precomputed HMAC states sign as ``hmac.new`` does, keys longer than a block included."""
    signer = Signer(Credentials(access_key="AK", secret_key=secret), api_version="1.3", clock=lambda: 1_800_000_000.0)
    url = "https://example.test/v1/snapshots?limit=100&volume_id=v"
    headers = signer.headers("GET", url)
    expected = make_signature(method="GET", url=url, timestamp="1800000000000", access_key="AK", secret_key=secret)
    assert headers["Scp-Signature"] == expected
