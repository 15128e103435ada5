"""Many accounts in one run: a fleet config, each account's identity in the inventory, and the fleet's crawl."""

from .._identity import default_account, endpoint_host

__all__ = ["default_account", "endpoint_host"]
