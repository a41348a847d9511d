"""docs/metrics.md lists every metric the installed package registers, and nothing else."""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

import attrs

DOC = Path(__file__).resolve().parents[2] / "docs" / "metrics.md"
SUBPACKAGES = ("allocator", "announcers", "operator", "plugins")
KINDS = ("Counter", "Gauge", "Histogram", "Summary", "Info", "Enum")
# A custom collector's families (prometheus_client.core.GaugeMetricFamily...) are read as their kind.
FAMILIES = {f"{kind}MetricFamily": kind for kind in KINDS}


@attrs.frozen
class Metric:
    """One registration found in the source: ``Gauge("metallb_x", ...)`` in *where*."""

    kind: str
    name: str
    where: str

    def exposed(self) -> set[str]:
        """Names a reader may find documented: counters are exposed with ``_total``, also when registered without."""
        if self.kind == "Counter":
            base = self.name.removesuffix("_total")
            return {base + "_total", base}
        if self.kind == "Info":
            return {self.name + "_info"}
        return {self.name}


def _sources() -> list[Path]:
    files = []
    for sub in SUBPACKAGES:
        for folder in importlib.import_module(f"metallb.{sub}").__path__:
            files.extend(sorted(Path(folder).rglob("*.py")))
    return files


def _strings(tree: ast.Module) -> dict[str, set[str]]:
    """Every name assigned a string literal anywhere in the module, with its values."""
    out: dict[str, set[str]] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    out.setdefault(target.id, set()).add(node.value.value)
    return out


def _resolve(node: ast.expr, strings: dict[str, set[str]]) -> str | None:
    """A metric name argument as text: a literal, a name bound to one literal, or an f-string of those."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.Name) and len(strings.get(node.id, ())) == 1:
        return next(iter(strings[node.id]))
    if isinstance(node, ast.JoinedStr):
        parts = []
        for value in node.values:
            text = _resolve(value.value if isinstance(value, ast.FormattedValue) else value, strings)
            if text is None:
                return None
            parts.append(text)
        return "".join(parts)
    return None


def registered_metrics() -> tuple[list[Metric], list[str]]:
    """(metrics with a metallb_ name, registrations whose name could not be read), from the installed source."""
    found, unreadable = [], []
    for path in _sources():
        text = path.read_text()
        if "prometheus_client" not in text:
            continue
        tree = ast.parse(text)
        strings = _strings(tree)
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            kind = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
            kind = FAMILIES.get(kind, kind)
            if kind not in KINDS:
                continue
            arg = node.args[0] if node.args else next((k.value for k in node.keywords if k.arg == "name"), None)
            where = f"{path.name}:{node.lineno}"
            name = None if arg is None else _resolve(arg, strings)
            if name is None:
                unreadable.append(where)
            elif name.startswith("metallb_"):
                found.append(Metric(kind=kind, name=name, where=where))
    return found, unreadable


def documented() -> set[str]:
    """Metric names in the first column of the tables of docs/metrics.md."""
    return set(re.findall(r"^\| `(metallb_\w+)` \|", DOC.read_text(), flags=re.M))


class TestMetricsReference:
    def test_scanner_finds_the_known_registrations(self):
        """The scanner sees literal names, names through variables and f-strings, and counters."""
        found, _ = registered_metrics()
        names = {m.name for m in found}
        assert {"metallb_bgp_session_up", "metallb_allocator_addresses_total", "metallb_speaker_announced"} <= names
        assert "metallb_address_service_requests" in names  # f"{prefix}_requests"
        assert any(m.kind == "Counter" and not m.name.endswith("_total") for m in found)

    def test_every_registration_is_readable(self):
        """Each Counter/Gauge/Histogram/Summary call names its metric in a way the scanner can read."""
        _, unreadable = registered_metrics()
        assert not unreadable, f"metric names the docs test cannot read (use a literal): {unreadable}"

    def test_every_registered_metric_is_documented(self):
        """Each metallb_* metric registered in the package appears in docs/metrics.md under its exposed name."""
        found, _ = registered_metrics()
        docs = documented()
        missing = [f"{m.name} ({m.kind}, {m.where})" for m in found if not m.exposed() & docs]
        assert not missing, f"docs/metrics.md lacks: {missing}"

    def test_every_documented_metric_is_registered(self):
        """Nothing in docs/metrics.md's tables is a metric the code does not register."""
        found, _ = registered_metrics()
        known = set().union(*(m.exposed() for m in found))
        assert documented(), "no metric tables found"
        assert documented() <= known, f"documented but not registered: {sorted(documented() - known)}"
