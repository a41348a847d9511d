"""The ``/metrics`` text with MetalLB's exact names: our own writer over prometheus_client's registries.

prometheus_client stores the values; its writer would rename them. It always
exposes a counter as ``<name>_total`` and adds a ``<name>_created`` series
per counter and histogram. MetalLB (Go's client) exposes a name exactly as it
was registered, and MetalLB's three layer-2 counters have no ``_total``
(``metallb_layer2_requests_received``). This writer follows Go's output:

- a counter is exposed as ``<family>_total``, except the families named in
  *bare_counters* (default :data:`BARE_COUNTERS`, MetalLB's layer-2 ones),
  exposed under their registered name;
- no ``_created``, ``_gsum`` or ``_gcount`` series;
- families without samples are left out (a labelled metric with no children
  yet), as Go's client does.

How another area adds a metric: register it, with its final name, on the
component's registry (``AnnouncerSettings.registry`` for announcers, the
``registry`` of the controller, speaker or standalone), list it in
``docs/metrics.md`` (a test checks) and, if it is a counter MetalLB exposes
without ``_total``, add its name to :data:`BARE_COUNTERS`. Nothing else: the
writer walks the whole registry at every scrape. ``process_*`` and
``python_*`` come from :data:`RUNTIME`, one registry per process that every
component's server appends.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

__all__ = ["BARE_COUNTERS", "CONTENT_TYPE", "RUNTIME", "exposed_name", "render"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

#: Counters MetalLB exposes without the ``_total`` suffix.
BARE_COUNTERS = frozenset(
    {"metallb_layer2_requests_received", "metallb_layer2_responses_sent", "metallb_layer2_gratuitous_sent"}
)

#: ``process_*`` (CPU, memory, file descriptors, start time) and ``python_*``
#: (interpreter version, garbage collector): process-wide, so registered once.
RUNTIME = CollectorRegistry(auto_describe=True)
ProcessCollector(registry=RUNTIME)
PlatformCollector(registry=RUNTIME)
GCCollector(registry=RUNTIME)

#: Sample suffixes that only OpenMetrics has (prometheus_client emits them as extra gauges).
_DROPPED = ("_created", "_gsum", "_gcount")
_TYPES = {"info": "gauge", "stateset": "gauge", "gaugehistogram": "histogram", "unknown": "untyped"}


class _Family(Protocol):  # prometheus_client.metrics_core.Metric
    name: str
    type: str
    documentation: str
    samples: list[Any]


def exposed_name(family: _Family, bare_counters: frozenset[str] = BARE_COUNTERS) -> str:
    """The name of *family* in the text: what Go's client would print for the same registration."""
    if family.type == "counter":
        return family.name if family.name in bare_counters else family.name + "_total"
    if family.type == "info":
        return family.name + "_info"
    return family.name


def _number(value: float) -> str:
    """A sample value as prometheus_client writes it (``1.0``, ``+Inf``, ``1.5e+06``)."""
    return str(floatToGoString(value))  # type: ignore[no-untyped-call]


def _label(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def _lines(family: _Family, bare_counters: frozenset[str]) -> list[str]:
    name = exposed_name(family, bare_counters)
    rename = {}  # a sample name -> its exposed name (counters only change)
    if family.type == "counter":
        rename[family.name + "_total"] = name
    out = []
    for sample in family.samples:
        if sample.name.startswith(family.name) and sample.name[len(family.name) :] in _DROPPED:
            continue
        labels = ",".join(f'{k}="{_label(v)}"' for k, v in sorted(sample.labels.items()))
        shown = rename.get(sample.name, sample.name)
        braces = f"{{{labels}}}" if labels else ""
        out.append(f"{shown}{braces} {_number(sample.value)}\n")
    if not out:
        return []
    doc = family.documentation.replace("\\", r"\\").replace("\n", r"\n")
    return [f"# HELP {name} {doc}\n", f"# TYPE {name} {_TYPES.get(family.type, family.type)}\n", *out]


def render(registries: Iterable[Collector], *, bare_counters: frozenset[str] = BARE_COUNTERS) -> bytes:
    """The text exposition (format 0.0.4) of every family of *registries*, in order."""
    out: list[str] = []
    for registry in registries:
        for family in registry.collect():
            out.extend(_lines(family, bare_counters))
    return "".join(out).encode()
