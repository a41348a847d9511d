"""The bundled address service: an HTTP server that leases addresses to MetalLB pools.

Transitional: ``operator/cli.py`` imports this module by name until it adds
commands through ``metallb_add_commands`` (the plugin's ``plugin.py``
contributes ``metallb address-service`` that way). Delete this module then;
the server lives in ``service``, ``wire``, ``http``, ``metrics`` and ``command``.
"""

from __future__ import annotations

from metallb.plugins.address_service.command import EPILOG, add_arguments, run

__all__ = ["EPILOG", "add_arguments", "run"]
