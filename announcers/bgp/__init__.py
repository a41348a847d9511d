"""BGP announcement: an asyncio BGP-4 speaker that advertises service addresses to routers.

``plugin`` is the entry point (hooks and the announcer), ``session`` one peer's
finite-state machine, ``wire`` the message encoders and decoders, ``policy``
which routes go to which peer, ``net`` the socket and route helpers,
``metrics`` MetalLB's BGP metrics, and ``bfd`` the BFD sessions of peers with
a ``bfd-profile``.
"""
