"""BFD for the BGP speaker: RFC 5880 asynchronous mode, RFC 5881 single hop, RFC 5883 multihop.

``packet`` encodes and decodes control packets, ``auth`` signs and checks
them, ``machine`` is one session's pure state machine, ``service`` runs the
sessions on a thread and event loop of their own, ``metrics`` holds MetalLB's
BFD metrics. The BGP announcer starts one session per peer with a
``bfd-profile`` and closes that peer's BGP session when BFD sees the path fail.
"""
