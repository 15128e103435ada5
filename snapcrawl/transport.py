"""The HTTP seam: what a :class:`Transport` of your own, passed as ``Crawler(transport=...)``, implements.

A transport sends one GET and returns a :class:`Response`; :class:`AiohttpTransport` is the one snapcrawl uses.
"""

from ._transport import AiohttpTransport, Response, Transport

__all__ = ["AiohttpTransport", "Response", "Transport"]
