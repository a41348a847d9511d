"""Address services: pools whose addresses come from a REST endpoint (``address-services``).

``plugin`` is the entry point (config section, source, command and backend
hooks; base dependencies only) and ``hookspecs`` the backend hook it adds.
The client: ``client`` (the pool source that speaks the protocol) and
``releases`` (DELETEs retried until confirmed). The bundled server:
``command`` (``metallb address-service``), ``service`` (the lease table),
``store`` (its state across restarts), ``wire`` (the protocol's bodies),
``http`` (the HTTP server) and ``metrics``. ``api`` holds the lease types and
the backend interface; ``memory`` and ``dhcp`` are the bundled backends.
"""
