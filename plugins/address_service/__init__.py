"""Address services: pools whose addresses come from a REST endpoint (``address-services``).

``plugin`` is the entry point (config section, source and backend hooks),
``client`` the pool source that speaks the protocol, ``server`` the bundled
service, ``api`` the lease types and the backend interface it shares with its
backends, ``memory`` and ``dhcp`` the bundled backends.
"""
