"""The resource format on hostile input: a Config or one ConfigError line, in bounded time (issue 11's rules)."""

from __future__ import annotations

import copy
import json
import time
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from metallb.allocator import Config, ConfigError, default_plugin_manager, load_resources, parse_config, parse_resources

SETTINGS = settings(
    derandomize=True, database=None, deadline=None, max_examples=200, suppress_health_check=[HealthCheck.too_slow]
)
PM = default_plugin_manager()
NS = "metallb-system"


def one_line(message: str) -> str:
    assert message.splitlines() == [message] and "\r" not in message, message
    assert 0 < len(message) < 1000, message
    return message


def verdict(objects: object, *, mode: str | None = None) -> Config | str:
    """parse_resources' Config, or its ConfigError's message (one bounded line); anything else fails the test."""
    try:
        return parse_resources(objects, mode=mode, plugin_manager=PM)  # type: ignore[arg-type]
    except ConfigError as exc:
        return one_line(str(exc))


def text_verdict(text: str | bytes) -> Config | str:
    """parse_config's verdict on a YAML stream, checked like :func:`verdict`."""
    try:
        return parse_config(text, plugin_manager=PM)
    except ConfigError as exc:
        return one_line(str(exc))


# -- generated objects ------------------------------------------------------------------------

#: Values that mean something to some field, and values that break naive converters.
SCALARS = (
    st.sampled_from(
        [
            None,
            True,
            False,
            0,
            1,
            -1,
            3,
            64500,
            2**32,
            2**64,
            10**400,
            1.5,
            float("inf"),
            float("nan"),
            "",
            "0",
            "1",
            "64500",
            "90s",
            "0.5s",
            "1ms",
            "2.9s",
            "3s",
            "1h",
            "-5s",
            "9" * 400 + "s",
            "192.0.2.1",
            "192.0.2.0/24",
            "192.0.2.0/33",
            "10.0.0.0/8",
            "0.0.0.0/0",
            "::/0",
            "2001:db8::/64",
            "fe80::1%eth0",
            "192.0.2.10-192.0.2.1",
            "192.0.2.1-2001:db8::1",
            "192.0.2.1 - 192.0.2.9",
            "1-2-3",
            "/",
            "-",
            "p0",
            "p1",
            "1:2",
            "65535:65281",
            "65536:1",
            "large:1:2:3",
            "large:1:2",
            "no-export",
            "c0",
            "In",
            "NotIn",
            "Exists",
            "DoesNotExist",
            "in",
            "kubernetes.io/hostname",
            "a/b/c",
            "-bad-",
            "x" * 300,
            "line\nbreak",
            "tab\there",
            "caf\xe9",
            "\u2028",
            "\ufeff",
            "\x00",
            "\x1b[31m",
            "١٢٣",
            "eth0",
            "eth*",
            "s0",
            "b0",
            "metallb.io/v1beta1",
            "v1",
            "Secret",
            "http://x",
            "https://x:8443/",
            "ftp://x",
        ]
    )
    | st.text(max_size=20)
    | st.integers()
)


def values(depth: int = 2) -> st.SearchStrategy[object]:
    """JSON values of every type: scalars, lists and mappings of them."""
    leaf = SCALARS
    if depth == 0:
        return leaf
    inner = values(depth - 1)
    return (
        leaf
        | st.lists(inner, max_size=3)
        | st.dictionaries(st.text(max_size=8) | SCALARS.filter(lambda v: isinstance(v, str)), inner, max_size=3)
    )  # type: ignore[arg-type]


NAMES = st.sampled_from(["p0", "p1", "p2", "a0", "b0", "peer0", "c0", "bfd0", "s0", "n0", "default"])
LABELS = st.dictionaries(
    st.sampled_from(["zone", "rack", "kubernetes.io/hostname", "-x"]),
    st.sampled_from(["a", "b", "", "-bad-"]),
    max_size=2,
)
SELECTOR = st.fixed_dictionaries(
    {},
    optional={
        "matchLabels": LABELS,
        "matchExpressions": st.lists(
            st.fixed_dictionaries(
                {"key": st.sampled_from(["zone", "rack"]), "operator": st.sampled_from(["In", "NotIn", "Exists", "x"])},
                optional={"values": st.lists(st.sampled_from(["a", "b"]), max_size=2)},
            ),
            max_size=2,
        ),
    },
)
SELECTORS = st.lists(SELECTOR, max_size=2)
CIDRS = (
    st.tuples(st.integers(0, 7), st.sampled_from([24, 25, 26, 28, 32])).map(lambda t: f"10.0.{t[0]}.0/{t[1]}")
    | st.tuples(st.integers(0, 7), st.integers(1, 200)).map(lambda t: f"10.0.{t[0]}.{t[1]}-10.0.{t[0]}.{t[1] + 50}")
    | st.tuples(st.integers(0, 7), st.sampled_from([64, 120, 128])).map(lambda t: f"2001:db8:{t[0]}::/{t[1]}")
)
ALLOCATION = st.fixed_dictionaries(
    {},
    optional={
        "priority": st.integers(-3, 100),
        "namespaces": st.lists(st.sampled_from(["default", "web", "n0"]), max_size=2),
        "namespaceSelectors": SELECTORS,
        "serviceSelectors": SELECTORS,
    },
)
POOL_CHOICE = {
    "ipAddressPools": st.lists(NAMES, max_size=2),
    "ipAddressPoolSelectors": SELECTORS,
    "nodeSelectors": SELECTORS,
}
SPECS: dict[str, st.SearchStrategy[dict[str, Any]]] = {
    "IPAddressPool": st.fixed_dictionaries(
        {"addresses": st.lists(CIDRS, min_size=1, max_size=3)},
        optional={"autoAssign": st.booleans(), "avoidBuggyIPs": st.booleans(), "serviceAllocation": ALLOCATION},
    ),
    "AddressService": st.fixed_dictionaries(
        {"url": st.sampled_from(["http://x", "https://x:8443/a/", "ftp://x"])},
        optional={
            "cidrs": st.lists(CIDRS, max_size=2),
            "authTokenSecret": st.fixed_dictionaries({"name": NAMES}, optional={"key": st.just("token")}),
            "autoAssign": st.booleans(),
            "serviceAllocation": ALLOCATION,
        },
    ),
    "L2Advertisement": st.fixed_dictionaries(
        {}, optional={**POOL_CHOICE, "interfaces": st.lists(st.sampled_from(["eth0", "eth1", ""]), max_size=2)}
    ),
    "BGPAdvertisement": st.fixed_dictionaries(
        {},
        optional={
            **POOL_CHOICE,
            "aggregationLength": st.integers(0, 40),
            "aggregationLengthV6": st.integers(0, 130),
            "localPref": st.integers(0, 2**33),
            "communities": st.lists(
                st.sampled_from(["65535:65281", "1:2", "large:1:2:3", "no-export", "c0"]), max_size=3
            ),
            "peers": st.lists(NAMES, max_size=2),
        },
    ),
    "BGPPeer": st.fixed_dictionaries(
        {
            "myASN": st.sampled_from([64500, 64501, 0, 2**32]),
            "peerASN": st.sampled_from([64500, 64501, 0]),
            "peerAddress": st.sampled_from(["192.0.2.1", "192.0.2.2", "2001:db8::1", "x"]),
        },
        optional={
            "peerPort": st.integers(0, 70000),
            "holdTime": st.sampled_from(["90s", "0s", "1s", "2s", "3s", "1m", "x"]),
            "keepaliveTime": st.sampled_from(["30s", "0s", "100s"]),
            "connectTime": st.sampled_from(["10s", "0s", "1ms"]),
            "routerID": st.sampled_from(["10.0.0.1", "x"]),
            "nodeSelectors": SELECTORS,
            "password": st.sampled_from(["", "secret"]),
            "passwordSecret": st.fixed_dictionaries({"name": NAMES}),
            "bfdProfile": NAMES,
            "ebgpMultiHop": st.booleans(),
            "enableGracefulRestart": st.booleans(),
            "dynamicASN": st.sampled_from(["internal", "external", "x"]),
            "vrf": st.sampled_from(["", "red"]),
            "interface": st.sampled_from(["", "eth0"]),
        },
    ),
    "Community": st.fixed_dictionaries(
        {
            "communities": st.lists(
                st.fixed_dictionaries(
                    {"name": NAMES, "value": st.sampled_from(["1:2", "large:1:2:3", "65536:1", "x"])}
                ),
                max_size=3,
            )
        }
    ),
    "BFDProfile": st.fixed_dictionaries(
        {},
        optional={
            "receiveInterval": st.integers(0, 70000),
            "transmitInterval": st.integers(0, 70000),
            "detectMultiplier": st.integers(0, 300),
            "echoMode": st.booleans(),
            "passiveMode": st.booleans(),
            "minimumTtl": st.integers(0, 300),
        },
    ),
}
VERSIONS = {"BGPPeer": "v1beta2", "AddressService": "v1alpha1"}


@st.composite
def config_object(draw: st.DrawFn, kind: str) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": draw(NAMES), "namespace": NS}
    if draw(st.booleans()):
        metadata["labels"] = draw(LABELS)
    out = {"apiVersion": f"metallb.io/{VERSIONS.get(kind, 'v1beta1')}", "kind": kind, "metadata": metadata}
    out["spec"] = draw(SPECS[kind])
    return out


@st.composite
def cluster_object(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(st.sampled_from(["Secret", "Node", "Namespace"]))
    out: dict[str, Any] = {"apiVersion": "v1", "kind": kind, "metadata": {"name": draw(NAMES), "labels": draw(LABELS)}}
    if kind == "Secret":
        out["metadata"]["namespace"] = NS
        out["type"] = draw(st.sampled_from(["kubernetes.io/basic-auth", "Opaque"]))
        out["data"] = draw(
            st.dictionaries(
                st.sampled_from(["password", "token", "ca.crt"]), st.sampled_from(["c2VjcmV0", "!!", ""]), max_size=2
            )
        )
    return out


OBJECTS = st.lists(st.sampled_from(list(SPECS)).flatmap(config_object) | cluster_object(), max_size=8)


def paths(value: object, path: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    """The path of every value inside *value* (keys and indexes), itself included."""
    out = [path]
    if isinstance(value, dict):
        for key, item in value.items():
            out += paths(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            out += paths(item, (*path, index))
    return out


@st.composite
def mutated(draw: st.DrawFn) -> list[Any]:
    """A generated set of objects with one value anywhere (metadata, kind, spec, ...) replaced by anything."""
    objects: list[Any] = draw(OBJECTS.filter(bool))
    path = draw(st.sampled_from(paths(objects)[1:]))
    *parents, last = path
    target: Any = objects
    for step in parents:
        target = target[step]
    target[last] = draw(values(2))
    return objects


def render(objects: list[Any], style: int) -> str:
    """*objects* as a YAML stream (style 0, 1), a ``kubectl get -o yaml`` List (2), or JSON documents (3)."""
    if style == 2:
        return yaml.safe_dump({"apiVersion": "v1", "kind": "List", "items": objects}, allow_unicode=True)
    if style == 3:
        return "\n---\n".join(json.dumps(o) for o in objects)
    return yaml.safe_dump_all(objects, default_flow_style=style == 1, allow_unicode=True, sort_keys=False)


def finite(objects: list[Any]) -> bool:
    """No NaN or infinity (YAML writes them as .nan and .inf, which PyYAML's dumper does not read back alike)."""
    return all(not (isinstance(v, float) and v != v) for v in _leaves(objects))


def _leaves(value: object) -> list[object]:
    if isinstance(value, dict):
        return [x for v in value.values() for x in _leaves(v)]
    if isinstance(value, list):
        return [x for v in value for x in _leaves(v)]
    return [value]


HOSTILE = st.sampled_from(
    [
        "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: " + "[" * 3000 + "]" * 3000 + "}\n",
        "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: &a [*a]\n",
        "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: p}\nspec: {addresses: !!python/object:os.system {}}\n",
        "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: p}\nspec: {addresses: ["
        + "1" * 5000
        + "]}\n",
        "apiVersion: metallb.io/v1beta2\nkind: BGPPeer\nmetadata: {name: p}\nspec: {myASN: " + "9" * 5000 + "}\n",
        "apiVersion: metallb.io/v1beta2\nkind: BGPPeer\nmetadata: {name: p}\nspec: {myASN: 1e999, peerASN: .nan}\n",
        "apiVersion: metallb.io/v1beta2\nkind: BGPPeer\nmetadata: {name: p}\nspec: {holdTime: " + "9" * 400 + "s}\n",
        "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\n---\n- 1\n- 2\n",
        "apiVersion: v1\nkind: List\nitems: [1, [], {apiVersion: v1}]\n",
        "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: List\n  items: [{apiVersion: v1, kind: List}]\n",
        "apiVersion: [metallb.io/v1beta1]\nkind: {IPAddressPool: 1}\n",
        'apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: "a\\nb\\x1b[31m"}\nspec: {}\n',
        "apiVersion: v1\nkind: ConfigMap\ndata: {config: 42}\n",
        "apiVersion: v1\nkind: ConfigMap\ndata:\n  config: |\n    apiVersion: v1\n    kind: ConfigMap\n"
        "    data:\n      config: |\n        peers: [1]\n",
        "apiVersion: v1\nkind: Secret\nmetadata: {name: s, namespace: metallb-system}\ndata: {password: '!!!'}\n",
        "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: caf\udce9}\n",
        "\x00apiVersion: x",
    ]
)


class TestAnyObjects:
    """Any list of objects gives parse_resources a Config or one ConfigError line: never another exception."""

    @SETTINGS
    @given(objects=OBJECTS)
    def test_generated_sets(self, objects: list[Any]) -> None:
        """Sets of every kind, with random but mostly well-typed fields, never raise anything else."""
        verdict(objects)

    @settings(SETTINGS, max_examples=300)
    @given(objects=mutated())
    def test_one_value_replaced_by_anything(self, objects: list[Any]) -> None:
        """A generated set with one value anywhere replaced by any JSON value never raises anything else."""
        verdict(objects)

    @settings(SETTINGS, max_examples=100)
    @given(objects=mutated(), mode=st.sampled_from(["native", "frr", "other"]))
    def test_modes(self, objects: list[Any], mode: str) -> None:
        """The mode validators hold the same guarantee."""
        verdict(objects, mode=mode)

    @SETTINGS
    @given(objects=st.lists(values(3), max_size=4) | values(2))
    def test_anything_at_all(self, objects: Any) -> None:
        """Values that are no objects at all, or no list, give a ConfigError."""
        verdict(objects)

    @settings(SETTINGS, max_examples=100)
    @given(objects=mutated())
    def test_load_resources_never_raises(self, objects: list[Any]) -> None:
        """load_resources reports instead of raising: a Config, or an error with a one-line message."""
        result = load_resources(objects, plugin_manager=PM)
        assert (result.config is None) == (result.error is not None)
        if result.error is not None:
            one_line(str(result.error))
        for verdict_ in result.verdicts.values():
            one_line(verdict_.message or "-")

    @settings(SETTINGS, max_examples=50)
    @given(objects=mutated())
    def test_input_left_alone(self, objects: list[Any]) -> None:
        """The loader never changes the objects it is given (informers share them)."""
        before = copy.deepcopy(objects)
        verdict(objects)
        assert repr(objects) == repr(before)


class TestAnyStream:
    """Any YAML stream of resources gives parse_config a Config or one ConfigError line."""

    @SETTINGS
    @given(objects=mutated().filter(finite), style=st.integers(0, 3))
    def test_rendered_sets(self, objects: list[Any], style: int) -> None:
        """Generated sets written as YAML streams, Lists or JSON documents never raise anything else."""
        text_verdict(render(objects, style))

    @settings(SETTINGS, max_examples=100)
    @given(objects=OBJECTS.filter(finite))
    def test_bytes_as_text(self, objects: list[Any]) -> None:
        """UTF-8 bytes parse exactly like the text they decode to."""
        text = render(objects, 0)
        assert repr(text_verdict(text.encode())) == repr(text_verdict(text))

    @SETTINGS
    @given(
        text=st.text(st.sampled_from("[]{}:,-&*!|>'\"#?% \n\tab1.\\/\x00\x85\ufeff"), max_size=60).map(
            lambda t: "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\n" + t
        )
    )
    def test_arbitrary_yaml_after_a_header(self, text: str) -> None:
        """Random YAML punctuation after a resource header never raises anything but ConfigError."""
        text_verdict(text)

    @SETTINGS
    @given(data=st.binary(max_size=60).map(lambda b: b"apiVersion: v1\nkind: List\n" + b))
    def test_arbitrary_bytes_after_a_header(self, data: bytes) -> None:
        """Random bytes (invalid UTF-8 included) after a resource header never raise anything but ConfigError."""
        text_verdict(data)

    @SETTINGS
    @given(text=HOSTILE)
    def test_known_attacks(self, text: str) -> None:
        """Each attack is a Config or one ConfigError line."""
        text_verdict(text.encode("utf-8", "surrogateescape"))

    def test_control_characters_in_a_name_are_escaped(self) -> None:
        """A name with line breaks and escape codes is quoted on one line in the error."""
        text = 'apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: "a\\nb\\x1b"}\nspec: {}\n'
        message = text_verdict(text)
        assert isinstance(message, str) and "\x1b" not in message, message

    def test_configmap_in_a_configmap_is_not_read_again(self) -> None:
        """A ConfigMap whose config text is another ConfigMap manifest is the ConfigMap format: one level only."""
        text = (
            "apiVersion: v1\nkind: ConfigMap\ndata:\n  config: |\n    apiVersion: v1\n    kind: ConfigMap\n"
            "    data: {config: 'peers: []'}\n"
        )
        message = text_verdict(text)
        assert isinstance(message, str) and 'unknown top-level key "apiVersion"' in message, message


class TestBoundedCost:
    """Checks across objects cost no more than n log n: thousands of pools load in well under a second each way."""

    def test_many_pools_and_advertisements(self) -> None:
        """2 000 pools, each selected by its own advertisement by name, load in a few seconds at most."""
        n = 2000
        objects: list[dict[str, Any]] = []
        for i in range(n):
            meta = {"name": f"p{i}", "namespace": NS, "labels": {"pool": f"p{i}"}}
            spec = {"addresses": [f"10.{i // 256}.{i % 256}.0/24"]}
            objects.append(
                {"apiVersion": "metallb.io/v1beta1", "kind": "IPAddressPool", "metadata": meta, "spec": spec}
            )
            objects.append(
                {
                    "apiVersion": "metallb.io/v1beta1",
                    "kind": "L2Advertisement" if i % 2 else "BGPAdvertisement",
                    "metadata": {"name": f"a{i}", "namespace": NS},
                    "spec": {"ipAddressPools": [f"p{i}"]},
                }
            )
        started = time.process_time()
        config = verdict(objects)
        elapsed = time.process_time() - started
        assert isinstance(config, Config) and len(config.pools) == n, config
        assert elapsed < 10, elapsed  # a smoke check of the order of growth; the figures are in the report

    @pytest.mark.parametrize("n", [3000])
    def test_many_overlapping_pools(self, n: int) -> None:
        """Overlaps among thousands of pools are found by one sort, naming the first pair."""
        objects = [
            {
                "apiVersion": "metallb.io/v1beta1",
                "kind": "IPAddressPool",
                "metadata": {"name": f"p{i:05}", "namespace": NS},
                "spec": {"addresses": [f"10.{i // 256}.{i % 256}.0/24" if i != n - 1 else "10.0.0.0/8"]},
            }
            for i in range(n)
        ]
        started = time.process_time()
        message = verdict(objects)
        assert time.process_time() - started < 5
        assert isinstance(message, str) and "overlap" in message, message


class TestDurations:
    """BGPPeer durations are read as Go reads them, with the ConfigMap parser's bounded reader."""

    @staticmethod
    def peer(**spec: Any) -> list[dict[str, Any]]:
        base = {"myASN": 64500, "peerASN": 64501, "peerAddress": "192.0.2.1"}
        meta = {"name": "p", "namespace": NS}
        return [{"apiVersion": "metallb.io/v1beta2", "kind": "BGPPeer", "metadata": meta, "spec": {**base, **spec}}]

    @pytest.mark.parametrize("text", ["--5s", "+-5s", "5", "1e3s", "9" * 400 + "s", "3000000h", "1sec"])
    def test_go_refuses_them(self, text: str) -> None:
        """Two signs, no unit, exponents, more digits or more than Go's largest duration are errors."""
        message = verdict(self.peer(holdTime=text))
        assert isinstance(message, str) and "must be a duration with a unit" in message, message

    @pytest.mark.parametrize("text", ["90s", "1m30s", "0", "0s", "3.5s", "2562047h"])
    def test_go_takes_them(self, text: str) -> None:
        """Go's own forms are accepted."""
        assert isinstance(verdict(self.peer(holdTime=text)), Config)

    @pytest.mark.parametrize(("field", "text"), [("holdTime", "0.5s"), ("keepaliveTime", "100ms")])
    def test_under_a_second_is_zero_with_a_warning(self, field: str, text: str) -> None:
        """A hold time under a second becomes 0, as in MetalLB, with a warning line in Config.warnings."""
        config = verdict(self.peer(**{field: text}))
        assert isinstance(config, Config) and config.peers[0].hold_time == 0
        (warning,) = config.warnings
        assert (
            warning.startswith(f'BGPPeer "p": field "spec.{field}": value "{text}"') and "rounds down to 0" in warning
        )

    def test_no_warning_for_zero(self) -> None:
        """An explicit 0 says what it means: no warning."""
        config = verdict(self.peer(holdTime="0s"))
        assert isinstance(config, Config) and config.warnings == ()


class TestLists:
    """Lists are expanded in place, however deep, without recursion."""

    def test_lists_in_lists(self) -> None:
        """A List 5 000 Lists deep (only a Python caller can build one) expands to its one pool."""
        inner: dict[str, Any] = {
            "apiVersion": "metallb.io/v1beta1",
            "kind": "IPAddressPool",
            "metadata": {"name": "p", "namespace": NS},
            "spec": {"addresses": ["10.0.0.0/24"]},
        }
        for _ in range(5000):
            inner = {"apiVersion": "v1", "kind": "List", "items": [inner]}
        config = verdict([inner])
        assert isinstance(config, Config) and list(config.pools) == ["p"]

    def test_api_list_items_take_its_kind(self) -> None:
        """An IPAddressPoolList's items carry no kind: they get the List's, in order."""
        items = [
            {"metadata": {"name": n, "namespace": NS}, "spec": {"addresses": [c]}}
            for n, c in (("b", "10.0.1.0/24"), ("a", "10.0.0.0/24"))
        ]
        config = verdict([{"apiVersion": "metallb.io/v1beta1", "kind": "IPAddressPoolList", "items": items}])
        assert isinstance(config, Config) and list(config.pools) == ["a", "b"]

    def test_a_bad_item_is_named(self) -> None:
        """An item that is no object names the List it is in."""
        message = verdict([{"apiVersion": "v1", "kind": "List", "items": [{"kind": ["x"]}]}])
        assert isinstance(message, str) and message.startswith("List item #1: must be a Kubernetes object"), message
