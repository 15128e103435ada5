"""The fleet config: a TOML file (stdlib ``tomllib``) with one table per account, and never a secret in it.

::

    [defaults]                     # optional: what every account gets unless it says otherwise
    concurrency = 32

    [accounts.prod-kr]
    endpoint = "https://virtualserver.kr-west1.s.samsungsdscloud.com"   # or region = "kr-west1", env = "s"
    access_key_env = "PROD_KR_ACCESS_KEY"     # the NAMES of environment variables holding the keys
    secret_key_env = "PROD_KR_SECRET_KEY"     # (or credentials_file = "~/.scpconf-prod/credentials.json")
    account_id = "..."                        # optional
    rate = 500                                # optional: this account's quota; burst, concurrency likewise
    volumes = "prod-kr-volumes.txt"           # optional, relative to this file: else the whole account

A key holding a secret itself (``access_key``, ``secret_key``, ``auth_token``) is refused: secrets stay in the
environment or in an ``~/.scpconf``-style credentials file. Every error names the account and the key.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final

from .._config import Credentials, resolve_endpoint
from .._exceptions import ConfigError

__all__ = ["AccountConfig", "FleetConfig", "load_fleet"]

_NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_SECRETS: Final = frozenset({"access_key", "secret_key", "auth_token", "password"})
_TUNING: Final = {"rate": float, "burst": int, "concurrency": int}
_KEYS: Final = frozenset(
    {"endpoint", "region", "env", "access_key_env", "secret_key_env", "credentials_file", "account_id", "volumes"}
    | set(_TUNING)
)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class AccountConfig:
    """One account of a fleet, resolved: its endpoint, its credentials (secrets hidden from the repr), its limits.

    ``rate``, ``burst`` and ``concurrency`` are the account's own, ``None`` where its table does not set them (then
    the command line's, then ``[defaults]``, apply: see :attr:`FleetConfig.defaults`).
    """

    name: str
    endpoint: str
    credentials: Credentials
    rate: float | None = None
    burst: int | None = None
    concurrency: int | None = None
    volumes: Path | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class FleetConfig:
    """The accounts of a fleet file, in the file's order (or those picked by name), and its ``[defaults]``."""

    path: Path
    accounts: tuple[AccountConfig, ...]
    defaults: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def names(self) -> list[str]:
        """The accounts' names."""
        return [account.name for account in self.accounts]


def load_fleet(
    path: str | os.PathLike[str], *, only: Sequence[str] = (), environ: Mapping[str, str] | None = None
) -> FleetConfig:
    """Read and check a fleet file; ``only`` picks accounts by name (each must exist). Raises :class:`ConfigError`."""
    file = Path(path)
    try:
        data = tomllib.loads(file.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read the fleet config {file}: {exc.strerror}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"the fleet config {file} is not valid TOML: {exc}") from None
    environ = os.environ if environ is None else environ
    unknown = sorted(set(data) - {"accounts", "defaults"})
    if unknown:
        raise ConfigError(f"{file}: unknown table {unknown[0]!r}: use [defaults] and [accounts.NAME]")
    defaults = data.get("defaults", {})
    if not isinstance(defaults, dict):
        raise ConfigError(f"{file}: [defaults] must be a table")
    for key in defaults:
        if key not in _TUNING:
            raise ConfigError(f"{file}: [defaults] {key!r} is not a default: use {', '.join(_TUNING)}")
    checked = {key: _tuning(f"{file}: [defaults]", key, value) for key, value in defaults.items()}
    tables = data.get("accounts")
    if not isinstance(tables, dict) or not tables:
        raise ConfigError(f"{file}: no accounts: add a table [accounts.NAME] per account")
    for name in only:
        if name not in tables:
            raise ConfigError(
                f"{{account}} {name!r} is not in {file}; its accounts are: {', '.join(tables)}", options=("account",)
            )
    picked = [name for name in tables if not only or name in only]
    accounts = tuple(_account(file, name, tables[name], environ) for name in picked)
    return FleetConfig(file, accounts, checked)


def _account(file: Path, name: str, table: object, environ: Mapping[str, str]) -> AccountConfig:
    where = f"{file}: account {name!r}"
    if not _NAME.fullmatch(name):
        raise ConfigError(f"{where}: a name is 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit")
    if not isinstance(table, dict):
        raise ConfigError(f"{where} must be a table ([accounts.{name}])")
    for key in table:
        if key in _SECRETS:
            raise ConfigError(
                f"{where}: key {key!r} would hold a secret in the file: put the secret in an environment variable "
                f'and name it ({key}_env = "VARIABLE"), or use credentials_file'
            )
        if key not in _KEYS:
            raise ConfigError(f"{where}: unknown key {key!r}; known keys: {', '.join(sorted(_KEYS))}")
    text = {key: _text(where, key, table[key]) for key in _KEYS - set(_TUNING) if key in table}
    if "endpoint" in text and "region" in text:
        raise ConfigError(f"{where}: give endpoint or region (with env), not both")
    if "endpoint" not in text and "region" not in text:
        raise ConfigError(f"{where}: missing key 'endpoint' (or 'region' with 'env')")
    try:
        endpoint = resolve_endpoint(
            text.get("endpoint"), region=text.get("region"), environment=text.get("env"), environ={}
        )
    except ConfigError as exc:
        raise ConfigError(f"{where}: key {'endpoint' if 'endpoint' in text else 'region'!r}: {exc}") from None
    tuning = {key: _tuning(where, key, table.get(key)) for key in _TUNING}
    volumes = (file.parent / Path(text["volumes"]).expanduser()) if "volumes" in text else None
    if volumes is not None and not volumes.is_file():
        raise ConfigError(f"{where}: key 'volumes': {volumes} is not a readable file of volume ids")
    return AccountConfig(
        name=name,
        endpoint=endpoint,
        credentials=_credentials(file, where, text, environ),
        rate=tuning["rate"],
        burst=tuning["burst"],
        concurrency=tuning["concurrency"],
        volumes=volumes,
    )


def _text(where: str, key: str, value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{where}: key {key!r} must be a non-empty string")
    return value


def _tuning(where: str, key: str, value: object) -> Any:
    if value is None:
        return None
    kind = _TUNING[key]
    if isinstance(value, bool) or not isinstance(value, int | float) or (kind is int and not isinstance(value, int)):
        raise ConfigError(f"{where}: key {key!r} must be a {'whole ' if kind is int else ''}number, not {value!r}")
    if not value > 0 or value == float("inf"):
        raise ConfigError(f"{where}: key {key!r} must be > 0, not {value!r}")
    return kind(value)


def _credentials(file: Path, where: str, text: Mapping[str, str], environ: Mapping[str, str]) -> Credentials:
    """The account's keys, from the environment variables it names or from its credentials file."""
    by_env = "access_key_env" in text or "secret_key_env" in text
    if by_env and "credentials_file" in text:
        raise ConfigError(f"{where}: give access_key_env and secret_key_env, or credentials_file, not both")
    if by_env:
        keys = {}
        for key in ("access_key_env", "secret_key_env"):
            if key not in text:
                raise ConfigError(f"{where}: missing key {key!r} (the name of an environment variable)")
            if not (value := environ.get(text[key], "")):
                raise ConfigError(f"{where}: key {key!r}: the environment variable {text[key]} is not set")
            keys[key] = value
        access_key, secret_key = keys["access_key_env"], keys["secret_key_env"]
    elif "credentials_file" in text:
        path = file.parent / Path(text["credentials_file"]).expanduser()
        try:
            stored = json.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(f"{where}: key 'credentials_file': cannot read {path}: {exc.strerror}") from None
        except ValueError:
            raise ConfigError(f"{where}: key 'credentials_file': {path} is not JSON") from None
        if not isinstance(stored, dict) or not stored.get("access-key") or not stored.get("secret-key"):
            raise ConfigError(
                f"{where}: key 'credentials_file': {path} must hold 'access-key' and 'secret-key' (as ~/.scpconf does)"
            )
        access_key, secret_key = str(stored["access-key"]), str(stored["secret-key"])
    else:
        raise ConfigError(f"{where}: missing keys 'access_key_env' and 'secret_key_env' (or 'credentials_file')")
    return Credentials(access_key=access_key, secret_key=secret_key, account_id=text.get("account_id"))
