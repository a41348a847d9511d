"""Exceptions raised by metallb and its plugins.

Every message names what was wrong (the field, the value, the rule) and, where
it helps, what to do next.
"""

from __future__ import annotations

__all__ = [
    "AddressInUseError",
    "AddressNotAllowedError",
    "AllocationError",
    "ConfigError",
    "MetalLBError",
    "PluginError",
    "PoolExhaustedError",
    "SourceUnavailableError",
    "TransientConfigError",
    "UnknownPoolError",
]


class MetalLBError(Exception):
    """Base class of every error metallb raises on purpose."""


class ConfigError(MetalLBError, ValueError):
    """A configuration is invalid, or would orphan an address in use.

    The message names the section, the entry, the field, the value and the rule.
    A config that raises this is never applied.
    """


class TransientConfigError(ConfigError):
    """A configuration refers to something that does not exist yet, and may later.

    A Secret, a ``BFDProfile`` or a ``Community`` name: MetalLB's "transient"
    errors. The configuration is not applied (the last good one stays), and is
    reported as waiting rather than invalid; it is tried again when the
    referenced object appears.
    """


class PluginError(MetalLBError):
    """A plugin misbehaved: returned the wrong type, or no plugin claims a kind."""


class AllocationError(MetalLBError):
    """An address could not be allocated or assigned. Nothing was changed."""


class UnknownPoolError(AllocationError):
    """The named pool does not exist in the current configuration."""


class PoolExhaustedError(AllocationError):
    """The pool has no free address of the requested family."""


class AddressNotAllowedError(AllocationError):
    """The address belongs to no pool (or is excluded by ``avoid-buggy-ips``)."""


class AddressInUseError(AllocationError):
    """The address is held by services this one may not share it with."""


class SourceUnavailableError(AllocationError):
    """A remote address source could not be reached or gave a bad answer."""
