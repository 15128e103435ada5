"""Settings: credentials, endpoint, API versions and the retry policy. Immutable, keyword-only, named defaults.

Credentials and endpoint resolve like SCP's official tools: explicit values first, then the environment
(``SCP_*``, or the Terraform provider's ``SCP_TF_*``), then ``~/.scpconf/credentials.json`` and
``~/.scpconf/config.json``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

from ._exceptions import ConfigError

__all__ = [
    "API_VERSIONS",
    "DEFAULT_API_VERSION",
    "DEFAULT_RETRY",
    "REGIONS",
    "ApiVersion",
    "Credentials",
    "RetryPolicy",
    "default_config_dir",
    "load_credentials",
    "resolve_endpoint",
]


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Credentials:
    """An SCP access key pair; the secret key and auth token never appear in its repr."""

    access_key: str
    secret_key: str = dataclasses.field(repr=False)
    account_id: str | None = None
    auth_token: str | None = dataclasses.field(default=None, repr=False)

    def __post_init__(self) -> None:
        if not self.access_key or not self.secret_key:
            raise ConfigError("credentials need both an access key and a secret key")


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ApiVersion:
    """One Virtual Server API version and its lifecycle, as the service root lists it."""

    id: str
    status: str
    not_before: dt.date | None = None
    supports_sort: bool = True

    def is_expired(self, today: dt.date) -> bool:
        """Whether this is a deprecated version whose not-before date has arrived."""
        return self.status == "DEPRECATED" and self.not_before is not None and today >= self.not_before


API_VERSIONS: Final[Mapping[str, ApiVersion]] = {
    "1.0": ApiVersion(id="1.0", status="DEPRECATED", not_before=dt.date(2025, 12, 31), supports_sort=False),
    "1.1": ApiVersion(id="1.1", status="DEPRECATED", not_before=dt.date(2026, 5, 31), supports_sort=False),
    "1.2": ApiVersion(id="1.2", status="SUPPORTED", not_before=dt.date(2026, 8, 31)),
    "1.3": ApiVersion(id="1.3", status="CURRENT"),
}
DEFAULT_API_VERSION: Final = "1.3"


def api_version(version: str, *, sort: str | None = None) -> ApiVersion:
    """Look up ``version``; raise :class:`ConfigError` if it is unknown or cannot ``sort``."""
    info = API_VERSIONS.get(version)
    if info is None:
        known = ", ".join(API_VERSIONS)
        raise ConfigError(f"unknown API version {version!r}; known versions: {known}")
    if sort is not None and not info.supports_sort:
        raise ConfigError(f"sort={sort!r} needs API version 1.2 or later, not {version}")
    return info


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class RetryPolicy:
    """Exponential backoff with full jitter: attempt n waits ``uniform(0, min(cap, base * 2**n))`` seconds.

    A server's ``Retry-After`` wins when it asks for longer. 400/401/403/404 are never retried.
    """

    max_retries: int = 5
    backoff_base: float = 0.1
    backoff_cap: float = 20.0

    def __post_init__(self) -> None:
        if self.max_retries < 0:
            raise ConfigError(f"max_retries must be >= 0, not {self.max_retries}")
        if self.backoff_base < 0 or self.backoff_cap < 0:
            raise ConfigError("backoff_base and backoff_cap must be >= 0")


DEFAULT_RETRY: Final = RetryPolicy()

#: The documented endpoint environments and their regions.
REGIONS: Final[Mapping[str, tuple[str, ...]]] = {
    "s": ("kr-west1", "kr-east1"),
    "g": ("kr-south1", "kr-south2", "kr-south3"),
    "e": ("kr-west1", "kr-east1"),
}

_ENV_NAMES: Final[Mapping[str, tuple[str, ...]]] = {
    "access_key": ("SCP_ACCESS_KEY", "SCP_TF_ACCESS_KEY"),
    "secret_key": ("SCP_SECRET_KEY", "SCP_TF_SECRET_KEY"),
    "account_id": ("SCP_ACCOUNT_ID", "SCP_TF_ACCOUNT_ID"),
    "auth_token": ("SCP_AUTH_TOKEN", "SCP_TF_AUTH_TOKEN"),
    "endpoint": ("SCP_ENDPOINT", "SCP_TF_ENDPOINT_OVERRIDE"),
    "region": ("SCP_DEFAULT_REGION", "SCP_TF_DEFAULT_REGION"),
}


def default_config_dir() -> Path:
    """Where the official SCP tools keep their files: ``~/.scpconf``."""
    return Path.home() / ".scpconf"


def _from_env(environ: Mapping[str, str], field: str) -> str | None:
    for name in _ENV_NAMES[field]:
        if value := environ.get(name):
            return value
    return None


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a JSON object")
    return {key: value for key, value in data.items() if isinstance(value, str) and value}


def load_credentials(*, environ: Mapping[str, str] | None = None, config_dir: Path | None = None) -> Credentials:
    """Find credentials in the environment, else in ``credentials.json``/``config.json``.

    The access key and secret key come from the same place; the account id and token are looked up on their own.
    """
    environ = os.environ if environ is None else environ
    config_dir = default_config_dir() if config_dir is None else config_dir
    cred_file = config_dir / "credentials.json"
    stored = _read_json(cred_file)
    config = _read_json(config_dir / "config.json")

    access_key, secret_key = _from_env(environ, "access_key"), _from_env(environ, "secret_key")
    source = "the environment"
    if access_key is None and secret_key is None:
        access_key, secret_key = stored.get("access-key"), stored.get("secret-key")
        source = str(cred_file)
    if not access_key or not secret_key:
        missing = "access key" if not access_key else "secret key"
        if source == str(cred_file) and not access_key and not secret_key:
            raise ConfigError(
                "no SCP credentials found: set SCP_ACCESS_KEY and SCP_SECRET_KEY (or SCP_TF_ACCESS_KEY and "
                f"SCP_TF_SECRET_KEY), or write 'access-key' and 'secret-key' to {cred_file}"
            )
        raise ConfigError(f"incomplete SCP credentials in {source}: the {missing} is missing")
    return Credentials(
        access_key=access_key,
        secret_key=secret_key,
        account_id=_from_env(environ, "account_id") or config.get("account-id"),
        auth_token=_from_env(environ, "auth_token") or stored.get("auth-token"),
    )


def _check_url(url: str, origin: str) -> str:
    try:
        parts = urlsplit(url)
    except ValueError as exc:  # a broken IPv6 host: "http://[::1"
        raise ConfigError(f"endpoint from {origin} is not a URL ({exc})") from None
    if parts.username or parts.password:  # checked first: no later message may echo a password
        raise ConfigError(f"endpoint from {origin} must not hold credentials: {parts.scheme}://{parts.hostname}...")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"endpoint from {origin} must be an http(s) URL with a host, not {url!r}")
    if parts.query or parts.fragment:
        raise ConfigError(f"endpoint from {origin} must not have a query or fragment: {url!r}")
    # Sign what goes on the wire: HTTP libraries send the host in lower case and drop a default port, so the
    # endpoint is normalised the same way before it is ever signed.
    try:
        port = parts.port
    except ValueError:
        raise ConfigError(f"endpoint from {origin} has an invalid port: {url!r}") from None
    scheme = parts.scheme.lower()
    host = parts.hostname.lower()
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    if port is not None and port != {"http": 80, "https": 443}[scheme]:
        host = f"{host}:{port}"
    return f"{scheme}://{host}{parts.path}".rstrip("/")


def resolve_endpoint(
    endpoint: str | None = None,
    *,
    region: str | None = None,
    environment: str | None = None,
    environ: Mapping[str, str] | None = None,
    config_dir: Path | None = None,
) -> str:
    """Return the Virtual Server endpoint URL (no trailing slash).

    An explicit ``endpoint`` wins, then ``SCP_ENDPOINT`` and ``endpoint-override`` (unless a region was given
    explicitly), then ``https://virtualserver.{region}.{environment}.samsungsdscloud.com`` for a documented pair.
    """
    if endpoint is not None:
        return _check_url(endpoint, "the arguments")
    environ = os.environ if environ is None else environ
    config_path = (default_config_dir() if config_dir is None else config_dir) / "config.json"
    config = _read_json(config_path)
    if region is None:
        if override := _from_env(environ, "endpoint"):
            return _check_url(override, "the environment")
        if override := config.get("endpoint-override"):
            return _check_url(override, str(config_path))
        region = _from_env(environ, "region") or config.get("default-region")
    if region is None:
        raise ConfigError(
            "no endpoint: pass an endpoint URL, or a region and environment, or set SCP_ENDPOINT, "
            f"or 'endpoint-override' / 'default-region' in {config_path}"
        )
    if environment is None:
        candidates = [env for env, regions in REGIONS.items() if region in regions]
        if len(candidates) != 1:
            raise ConfigError(f"region {region!r} needs an environment, one of: {', '.join(candidates) or 's, g, e'}")
        environment = candidates[0]
    if region not in REGIONS.get(environment, ()):
        pairs = "; ".join(f"{env}: {', '.join(regions)}" for env, regions in REGIONS.items())
        raise ConfigError(f"unknown region/environment {region!r}/{environment!r}; documented pairs are {pairs}")
    return f"https://virtualserver.{region}.{environment}.samsungsdscloud.com"
