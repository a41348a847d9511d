"""Address services: pools whose addresses come from a REST endpoint (``address-services``).

``plugin`` is the entry point (config section, source, command and backend
hooks; base dependencies only) and ``hookspecs`` the backend hook it adds.
The client: ``client`` (the pool source that speaks the protocol) and
``releases`` (DELETEs retried until confirmed). The bundled server:
``command`` (``metallb address-service``), ``service`` (the lease table),
``store`` (its state across restarts), ``kube`` (leases in Kubernetes and
leader election, for several replicas), ``wire`` (the protocol's bodies),
``http`` (the HTTP server) and ``metrics``. ``api`` holds the lease types and
the backend interface; ``memory``, ``dhcp`` and ``dhcpv6`` are the bundled
backends. ``standin`` imitates DHCPManager as it really behaves (tests,
benchmarks).
"""
