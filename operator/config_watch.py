"""The configuration of a cluster, watched: MetalLB's resources, or the legacy ConfigMap.

The controller and the speaker each run one :class:`ConfigWatch`: informers over every
configuration kind (MetalLB's, and the pool kinds plugins contribute) in MetalLB's
namespace, the Secrets there, the Nodes and the Namespaces (which the loader resolves
selectors against, as MetalLB's does), and the ConfigMap. Any change that matters (a
spec, labels, a Secret; not a status write) loads the configuration again, so a change
converges without a restart. Resources win: once any configuration object exists, the
ConfigMap is ignored (and said so in the log); a kind whose CRD is not installed counts
as empty.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

import attrs
import pluggy
from kubernetes import client
from metallb.allocator import Config, ConfigError, MetalLBError, load_resources, parse_config
from metallb.allocator.resources import ConfigKind, LoadResult, ObjectRef, config_kinds
from metallb.operator.cmd_config import config_text, one_line
from metallb.operator.informer import Informer

__all__ = ["CONFIGMAP", "NONE", "RESOURCES", "ConfigState", "ConfigWatch"]

log = logging.getLogger(__name__)
Obj = dict[str, Any]

#: Where a configuration came from.
RESOURCES, CONFIGMAP, NONE = "resources", "configmap", "none"


def _frozen(value: Mapping[ObjectRef, Obj]) -> Mapping[ObjectRef, Obj]:
    return MappingProxyType(dict(value))


@attrs.frozen(kw_only=True)
class ConfigState:
    """One load of the configuration.

    Attributes:
        source: ``resources``, ``configmap``, or ``none`` (nothing to load yet).
        config: the configuration, or None when it is invalid or missing.
        error: why not (a ``TransientConfigError`` while a reference is missing).
        result: the resource loader's verdicts (resources only).
        objects: the configuration objects loaded, by reference (resources only).
    """

    source: str
    config: Config | None = None
    error: ConfigError | None = None
    result: LoadResult | None = None
    objects: Mapping[ObjectRef, Obj] = attrs.field(factory=dict, converter=_frozen, eq=False)


def _one_error(exc: Exception) -> ConfigError:
    """*exc* as the one-line ConfigError a load reports (a plugin's bug names its type)."""
    if isinstance(exc, ConfigError):
        return exc
    unexpected = "" if isinstance(exc, MetalLBError) else f"{type(exc).__name__}: "
    log.debug("configuration not loaded", exc_info=True)
    return ConfigError(f"{unexpected}{one_line(exc)}")


def _meta(obj: Obj) -> dict[str, Any]:
    meta = obj.get("metadata")
    return meta if isinstance(meta, dict) else {}


def _labels(obj: Obj) -> dict[str, str]:
    labels = _meta(obj).get("labels")
    return dict(labels) if isinstance(labels, dict) else {}


class ConfigWatch:
    """Informers over everything the configuration is made of; calls *on_change* with each new load.

    Args:
        api: the API client.
        namespace: MetalLB's namespace.
        config_name: the legacy ConfigMap's name.
        plugin_manager: the plugins (pool kinds, sections, protocols).
        on_change: called from the watch's own thread with every load whose
            result differs from the last one.
        on_node: called for every Node event (the speaker wakes on them).
        on_object: called with the resource (``configmaps``, ``secrets``, a plural ...) of every
            object an informer delivers (the speaker counts its watch events).
        watch_timeout: server-side timeout of each watch.
        debounce: seconds to wait after a change for more, so a burst loads once.
    """

    def __init__(
        self,
        api: client.ApiClient,
        *,
        namespace: str,
        config_name: str,
        plugin_manager: pluggy.PluginManager,
        on_change: Callable[[ConfigState], None],
        on_node: Callable[[str, Obj | None], None] | None = None,
        on_object: Callable[[str], None] | None = None,
        watch_timeout: int = 60,
        debounce: float = 0.05,
    ) -> None:
        self.namespace, self.config_name = namespace, config_name
        self.pm = plugin_manager
        self.on_change = on_change
        self.on_node = on_node
        self.on_object = on_object
        self.debounce = debounce
        self.kinds: tuple[ConfigKind, ...] = config_kinds(plugin_manager)
        core = client.CoreV1Api(api)
        custom = client.CustomObjectsApi(api)
        self._dirty = threading.Event()
        self._stop = threading.Event()
        self._seen: dict[tuple[str, str], object] = {}  # (informer, key) -> what of the object matters
        self._last: tuple[object, ...] | None = None
        self._thread = threading.Thread(target=self._run, name="config-watch", daemon=True)
        kw: dict[str, Any] = {"watch_timeout": watch_timeout}
        self.configmaps = Informer(
            "config",
            core.list_namespaced_config_map,
            self._event("config", "configmaps"),
            list_kwargs={"namespace": namespace, "field_selector": f"metadata.name={config_name}"},
            **kw,
        )
        self.resources = {
            kind.kind: Informer(
                kind.plural,
                custom.list_namespaced_custom_object,
                self._event(kind.kind, kind.plural),
                list_kwargs={
                    "group": kind.group,
                    "version": kind.version,
                    "namespace": namespace,
                    "plural": kind.plural,
                },
                optional=True,
                **kw,
            )
            for kind in self.kinds
        }
        self.secrets = Informer(
            "secrets",
            core.list_namespaced_secret,
            self._event("Secret", "secrets"),
            list_kwargs={"namespace": namespace},
            **kw,
        )
        self.nodes = Informer("nodes", core.list_node, self._event("Node", "nodes"), **kw)
        self.namespaces = Informer("namespaces", core.list_namespace, self._event("Namespace", "namespaces"), **kw)
        self._informers = [self.configmaps, *self.resources.values(), self.secrets, self.nodes, self.namespaces]

    # -- events ----------------------------------------------------------------------

    def _event(self, what: str, resource: str) -> Callable[[str, Obj | None], None]:
        def handle(kind: str, obj: Obj | None) -> None:
            if obj is not None and self.on_object is not None:
                self.on_object(resource)
            if what == "Node" and self.on_node is not None:
                self.on_node(kind, obj)
            if obj is None:
                self._dirty.set()  # SYNCED: maybe everything is listed now
                return
            meta = _meta(obj)
            key = (what, f"{meta.get('namespace', '')}/{meta.get('name', '')}")
            if kind == "DELETED":
                self._seen.pop(key, None)
                self._dirty.set()
                return
            # What of the object the configuration reads: never the status the controller writes.
            if what in ("Node", "Namespace"):
                matters: object = _labels(obj)
            elif what in ("Secret", "config"):
                matters = meta.get("resourceVersion")
            else:
                matters = (meta.get("generation"), _labels(obj), obj.get("spec"))
            if self._seen.get(key, ...) == matters:
                return
            self._seen[key] = matters
            self._dirty.set()

        return handle

    # -- loading ---------------------------------------------------------------------

    def synced(self) -> bool:
        """Every informer has listed once."""
        return all(i.synced.is_set() for i in self._informers)

    def objects(self) -> dict[ObjectRef, Obj]:
        """The configuration objects in the informers' caches now, by reference."""
        objects: dict[ObjectRef, Obj] = {}
        for kind, informer in self.resources.items():
            info = self._kind(kind)
            for obj in list(informer.cache.values()):
                obj = {"apiVersion": f"{info.group}/{info.version}", "kind": kind, **obj}
                objects[ObjectRef(kind, str(_meta(obj).get("name") or ""))] = obj
        return objects

    def load(self) -> ConfigState:
        """Load the configuration from the informers' caches (resources win over the ConfigMap)."""
        objects = self.objects()
        configmap = next(iter(list(self.configmaps.cache.values())), None)
        if objects:
            if configmap is not None:
                log.warning(
                    "configmap %s/%s ignored: MetalLB's resources are the configuration (delete the ConfigMap)",
                    self.namespace,
                    self.config_name,
                )
            cluster = [{"apiVersion": "v1", "kind": "Secret", **o} for o in list(self.secrets.cache.values())] + [
                {"apiVersion": "v1", "kind": "Node", **o} for o in list(self.nodes.cache.values())
            ]
            cluster += [{"apiVersion": "v1", "kind": "Namespace", **o} for o in list(self.namespaces.cache.values())]
            try:
                result = load_resources([*objects.values(), *cluster], namespace=self.namespace, plugin_manager=self.pm)
            except Exception as exc:  # noqa: BLE001 - a plugin's bug, say: the last good config stays
                return ConfigState(source=RESOURCES, error=_one_error(exc), objects=objects)
            for warning in result.warnings:
                log.info("configuration: %s", warning)
            return ConfigState(
                source=RESOURCES, config=result.config, error=result.error, result=result, objects=objects
            )
        if configmap is None:
            return ConfigState(source=NONE)
        try:
            text = config_text(configmap, self.namespace, self.config_name)
            return ConfigState(source=CONFIGMAP, config=parse_config(text, plugin_manager=self.pm))
        except Exception as exc:  # noqa: BLE001 - any bad config keeps the last good one
            return ConfigState(source=CONFIGMAP, error=_one_error(exc))

    def _kind(self, name: str) -> ConfigKind:
        return next(k for k in self.kinds if k.kind == name)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._dirty.wait(1.0)
            if self._stop.is_set():
                return
            if not self._dirty.is_set() or not self.synced():
                continue
            self._stop.wait(self.debounce)  # let a burst of events (a kubectl apply) settle
            self._dirty.clear()
            try:
                state = self.load()
            except Exception:
                log.exception("loading the configuration failed")
                continue
            verdicts = state.result.verdicts if state.result is not None else {}
            fingerprint = (state.source, state.config, str(state.error), tuple(sorted(verdicts.items())))
            if fingerprint == self._last:
                continue
            self._last = fingerprint
            try:
                self.on_change(state)
            except Exception:
                log.exception("applying the configuration failed")

    # -- lifecycle -------------------------------------------------------------------

    def start(self) -> None:
        """Start every informer and the loading thread."""
        for informer in self._informers:
            informer.start()
        self._thread.start()

    def stop(self) -> None:
        """Stop the informers and the loading thread."""
        self._stop.set()
        self._dirty.set()
        for informer in self._informers:
            informer.stop()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
