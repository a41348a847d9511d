"""metallb's allocation library: configuration, plugin host, and the allocator.

The public API (a contract: external conformance tests call it)::

    from metallb.allocator import Allocator, Port, parse_config, ConfigError, AllocationError

Plugin authors import ``hookimpl`` and the interfaces from here too.
"""

if __name__ != "metallb.allocator":  # pragma: no cover - guard against import by path
    raise ImportError(f"import this package as metallb.allocator, not {__name__!r}")

from metallb.allocator.allocator import Allocation, Allocator
from metallb.allocator.config import (
    dump_config,
    load_yaml,
    parse_cidrs,
    parse_config,
    parse_node_selectors,
    parse_pool_entry,
)
from metallb.allocator.errors import (
    AddressInUseError,
    AddressNotAllowedError,
    AllocationError,
    ConfigError,
    MetalLBError,
    PluginError,
    PoolExhaustedError,
    SourceUnavailableError,
    TransientConfigError,
    UnknownPoolError,
)
from metallb.allocator.interfaces import (
    AddressSource,
    Announcer,
    AnnouncerBase,
    AnnouncerSettings,
    ReconcileReport,
    SourceBase,
    SourceCapabilities,
)
from metallb.allocator.model import (
    Advertisement,
    BfdProfile,
    BgpAdvertisement,
    ClusterView,
    Community,
    Config,
    L2Advertisement,
    LabelSelector,
    LargeCommunity,
    NodeInfo,
    NodeSelector,
    PeerSpec,
    PoolEntry,
    PoolRequest,
    PoolResource,
    PoolResourceKind,
    PoolSpec,
    PoolStats,
    Port,
    ProtocolInfo,
    ServiceAllocation,
    ServiceView,
    Unapplied,
)
from metallb.allocator.plugins import (
    Hooks,
    PluginManager,
    default_plugin_manager,
    get_plugin_manager,
    hookimpl,
    list_plugins,
)
from metallb.allocator.resources import (
    LoadResult,
    load_resources,
    parse_pool_resource,
    parse_resources,
    pool_resource,
)

__all__ = [
    "Allocation",
    "Allocator",
    "dump_config",
    "load_yaml",
    "parse_cidrs",
    "parse_config",
    "parse_node_selectors",
    "parse_pool_entry",
    "load_resources",
    "parse_pool_resource",
    "parse_resources",
    "pool_resource",
    "AddressInUseError",
    "AddressNotAllowedError",
    "AddressSource",
    "Advertisement",
    "AllocationError",
    "BfdProfile",
    "Announcer",
    "AnnouncerBase",
    "AnnouncerSettings",
    "BgpAdvertisement",
    "ClusterView",
    "Community",
    "Config",
    "ConfigError",
    "Hooks",
    "L2Advertisement",
    "LabelSelector",
    "LargeCommunity",
    "LoadResult",
    "MetalLBError",
    "NodeInfo",
    "NodeSelector",
    "PeerSpec",
    "PluginError",
    "PluginManager",
    "PoolEntry",
    "PoolExhaustedError",
    "PoolResourceKind",
    "PoolRequest",
    "PoolResource",
    "PoolSpec",
    "PoolStats",
    "Port",
    "ProtocolInfo",
    "ReconcileReport",
    "ServiceAllocation",
    "ServiceView",
    "SourceBase",
    "SourceCapabilities",
    "SourceUnavailableError",
    "TransientConfigError",
    "Unapplied",
    "UnknownPoolError",
    "default_plugin_manager",
    "get_plugin_manager",
    "hookimpl",
    "list_plugins",
]


def __getattr__(name: str) -> str:
    if name == "__version__":
        import importlib.metadata

        return importlib.metadata.version("metallb")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
