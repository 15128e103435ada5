"""Credentials, endpoint and API-version resolution."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from snapcrawl import ConfigError, Credentials, RetryPolicy, load_credentials, resolve_endpoint
from snapcrawl._config import API_VERSIONS, api_version


def _write(directory: Path, name: str, data: object) -> None:
    directory.mkdir(exist_ok=True)
    (directory / name).write_text(json.dumps(data), encoding="utf-8")


def test_credentials_repr_hides_secrets() -> None:
    """Neither the secret key nor the token appears in the repr."""
    creds = Credentials(access_key="AK", secret_key="very-secret", auth_token="tok-secret", account_id="acc")
    text = repr(creds) + str(creds)
    assert "AK" in text and "acc" in text
    assert "very-secret" not in text and "tok-secret" not in text


def test_credentials_are_immutable_and_comparable() -> None:
    """Credentials are frozen value objects."""
    creds = Credentials(access_key="AK", secret_key="SK")
    assert creds == Credentials(access_key="AK", secret_key="SK")
    with pytest.raises(AttributeError):
        creds.access_key = "other"  # type: ignore[misc]


def test_credentials_need_both_keys() -> None:
    """An empty key is a ConfigError."""
    with pytest.raises(ConfigError, match="secret key"):
        Credentials(access_key="AK", secret_key="")


def test_env_wins_over_files(tmp_path: Path) -> None:
    """SCP_* variables win over ~/.scpconf files."""
    _write(tmp_path, "credentials.json", {"access-key": "file-ak", "secret-key": "file-sk", "auth-token": "ft"})
    env = {"SCP_ACCESS_KEY": "env-ak", "SCP_SECRET_KEY": "env-sk", "SCP_ACCOUNT_ID": "env-acc"}
    creds = load_credentials(environ=env, config_dir=tmp_path)
    assert (creds.access_key, creds.secret_key, creds.account_id, creds.auth_token) == (
        "env-ak",
        "env-sk",
        "env-acc",
        "ft",
    )


def test_terraform_variable_names(tmp_path: Path) -> None:
    """The official provider's SCP_TF_* names are accepted too."""
    env = {"SCP_TF_ACCESS_KEY": "ak", "SCP_TF_SECRET_KEY": "sk", "SCP_TF_AUTH_TOKEN": "tok"}
    creds = load_credentials(environ=env, config_dir=tmp_path)
    assert (creds.access_key, creds.secret_key, creds.auth_token) == ("ak", "sk", "tok")


def test_files(tmp_path: Path) -> None:
    """credentials.json gives the keys, config.json the account id."""
    _write(tmp_path, "credentials.json", {"access-key": "ak", "secret-key": "sk"})
    _write(tmp_path, "config.json", {"account-id": "acc"})
    creds = load_credentials(environ={}, config_dir=tmp_path)
    assert (creds.access_key, creds.secret_key, creds.account_id) == ("ak", "sk", "acc")


def test_missing_credentials_say_where_we_looked(tmp_path: Path) -> None:
    """With nothing configured, the error names the variables and the file."""
    with pytest.raises(ConfigError) as info:
        load_credentials(environ={}, config_dir=tmp_path)
    message = str(info.value)
    assert "SCP_ACCESS_KEY" in message and str(tmp_path / "credentials.json") in message


def test_half_credentials(tmp_path: Path) -> None:
    """An access key without a secret is reported as such, without echoing any value."""
    with pytest.raises(ConfigError, match="secret key is missing"):
        load_credentials(environ={"SCP_ACCESS_KEY": "ak"}, config_dir=tmp_path)


def test_broken_config_file(tmp_path: Path) -> None:
    """A config file that is not JSON is a ConfigError naming it."""
    tmp_path.joinpath("credentials.json").write_text("{nope", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"credentials.json"):
        load_credentials(environ={}, config_dir=tmp_path)


def test_endpoint_precedence(tmp_path: Path) -> None:
    """Explicit beats SCP_ENDPOINT beats endpoint-override beats the region."""
    _write(tmp_path, "config.json", {"endpoint-override": "http://file:1", "default-region": "kr-south1"})
    env = {"SCP_ENDPOINT": "http://env:2/"}
    assert resolve_endpoint("http://arg:3", environ=env, config_dir=tmp_path) == "http://arg:3"
    assert resolve_endpoint(environ=env, config_dir=tmp_path) == "http://env:2"
    assert resolve_endpoint(environ={}, config_dir=tmp_path) == "http://file:1"
    (tmp_path / "config.json").unlink()
    _write(tmp_path, "config.json", {"default-region": "kr-south1"})
    assert resolve_endpoint(environ={}, config_dir=tmp_path) == "https://virtualserver.kr-south1.g.samsungsdscloud.com"


def test_endpoint_from_region() -> None:
    """A documented region/environment pair builds the public endpoint."""
    url = resolve_endpoint(region="kr-west1", environment="e", environ={})
    assert url == "https://virtualserver.kr-west1.e.samsungsdscloud.com"


@pytest.mark.parametrize(
    ("region", "environment", "match"),
    [("kr-west1", None, "needs an environment"), ("kr-south1", "s", "documented pairs"), ("mars-1", "e", "mars-1")],
)
def test_bad_regions(region: str, environment: str | None, match: str, tmp_path: Path) -> None:
    """Undocumented or ambiguous regions are ConfigErrors."""
    with pytest.raises(ConfigError, match=match):
        resolve_endpoint(region=region, environment=environment, environ={}, config_dir=tmp_path)


@pytest.mark.parametrize("url", ["ftp://x", "127.0.0.1:8765", "http://x/?a=1", "http://[::1", "http://[::1]:8765]"])
def test_bad_endpoint_urls(url: str) -> None:
    """Endpoints must be plain http(s) URLs."""
    with pytest.raises(ConfigError, match="endpoint"):
        resolve_endpoint(url, environ={})


@pytest.mark.parametrize(
    "url", ["http://user:hunter2@x/?a=1", "ftp://user:hunter2@x", "http://user:hunter2@x:port", "http://user:hunter2@x"]
)
def test_bad_endpoint_urls_never_show_a_password(url: str) -> None:
    """Whatever is wrong with an endpoint that holds credentials, the error does not repeat the password."""
    with pytest.raises(ConfigError, match="endpoint") as raised:
        resolve_endpoint(url, environ={})
    assert "hunter2" not in str(raised.value)


def test_no_endpoint(tmp_path: Path) -> None:
    """Nothing configured: the error lists the ways to set one."""
    with pytest.raises(ConfigError, match="SCP_ENDPOINT"):
        resolve_endpoint(environ={}, config_dir=tmp_path)


def test_api_versions() -> None:
    """Sort needs 1.2+; unknown versions are refused; 1.0 and 1.1 are past their date."""
    assert api_version("1.3", sort="name:asc").id == "1.3"
    with pytest.raises(ConfigError, match=r"1.2 or later"):
        api_version("1.1", sort="name:asc")
    with pytest.raises(ConfigError, match="unknown API version"):
        api_version("2.0")
    today = dt.date(2026, 11, 27)
    assert [v for v, info in API_VERSIONS.items() if info.is_expired(today)] == ["1.0", "1.1"]


def test_retry_policy_validation() -> None:
    """Negative retry settings are refused."""
    with pytest.raises(ConfigError):
        RetryPolicy(max_retries=-1)
