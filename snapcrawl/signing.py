"""Signing SCP requests without a crawler: for a client of your own, a proxy, or a test server.

:func:`make_signature` is SCP's signature, :func:`encode_query` the query exactly as it must go on the wire (Go's
``url.Values.Encode``), and :class:`Signer` the headers of one request, freshly signed.
"""

from ._signing import DEFAULT_CLIENT_TYPE, Signer, encode_query, make_signature

__all__ = ["DEFAULT_CLIENT_TYPE", "Signer", "encode_query", "make_signature"]
