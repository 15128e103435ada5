"""Many accounts in one run: the fleet config, each account's identity in the inventory, and the fleet's crawl.

::

    fleet = Fleet(load_fleet("fleet.toml").accounts, max_in_flight=256)
    async with fleet.stream() as pages:
        async for tagged in pages:
            print(tagged.account, len(tagged.page.snapshots))
    print({name: outcome.ok for name, outcome in fleet.outcomes.items()})
"""

from .._identity import default_account, endpoint_host
from ._config import AccountConfig, FleetConfig, load_fleet
from ._crawl import DEFAULT_MAX_IN_FLIGHT, AccountOutcome, AccountPage, Fleet, read_volume_ids

__all__ = [
    "DEFAULT_MAX_IN_FLIGHT",
    "AccountConfig",
    "AccountOutcome",
    "AccountPage",
    "Fleet",
    "FleetConfig",
    "default_account",
    "endpoint_host",
    "load_fleet",
    "read_volume_ids",
]
