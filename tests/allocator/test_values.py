"""Values that check themselves: Port, service keys, families and pool names at the Allocator's boundary."""

from __future__ import annotations

import string

import netaddr
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from metallb.allocator import (
    AddressInUseError,
    AddressNotAllowedError,
    Allocator,
    PoolRequest,
    PoolSpec,
    Port,
    UnknownPoolError,
)

CONFIG = "address-pools:\n- name: p\n  protocol: layer2\n  addresses: [10.0.0.0/30, 2001:db8::/126]\n"
#: Text without "/", spaces or control characters: one part of a valid service key.
PART = st.text(alphabet=string.ascii_letters + string.digits + "-._", min_size=1, max_size=20)
VALID_KEYS = st.builds(lambda ns, name: f"{ns}/{name}", PART, PART)
#: Service keys that are not "namespace/name": no slash, two, an empty side, spaces, control characters.
MALFORMED_KEYS = st.one_of(
    PART,
    st.builds(lambda a, b, c: f"{a}/{b}/{c}", PART, PART, PART),
    st.builds(lambda a: f"{a}/", PART),
    st.builds(lambda a: f"/{a}", PART),
    st.just("/"),
    st.just(""),
    st.builds(lambda a, b: f"{a} /{b}", PART, PART),
    st.builds(lambda a, b, c: f"{a}/{b}{c}", PART, PART, st.sampled_from(["\n", "\t", "\x00", " "])),
)
NOT_STR = st.one_of(st.integers(), st.none(), st.binary(min_size=1), st.tuples(PART, PART), st.lists(PART))
PROTOCOL_SPELLINGS = st.sampled_from(["TCP", "UDP", "SCTP"]).flatmap(
    lambda p: st.lists(st.booleans(), min_size=len(p), max_size=len(p)).map(
        lambda upper: "".join(c if u else c.lower() for c, u in zip(p, upper, strict=True))
    )
)


@pytest.fixture(name="alloc")
def _alloc(make) -> Allocator:
    """An allocator over one dual-stack pool "p" (4 IPv4 and 4 IPv6 addresses)."""
    return make(CONFIG)


class TestPort:
    @given(protocol=PROTOCOL_SPELLINGS, number=st.integers(1, 65535))
    def test_valid_ports_are_normalised(self, protocol, number):
        """TCP, UDP and SCTP in any case with a port 1-65535 make a Port whose protocol is upper case."""
        port = Port(protocol, number)
        assert port == Port(protocol.upper(), number) and hash(port) == hash(Port(protocol.upper(), number))
        assert (port.protocol, port.port) == (protocol.upper(), number)
        assert Port.parse(str(port)) == port

    def test_tcp_in_any_case_is_one_port(self):
        """Port("tcp", 80) and Port("TCP", 80) are equal, so sharing sees them clash."""
        assert Port("tcp", 80) == Port("TCP", 80) == Port("Tcp", 80)
        assert len({Port("tcp", 80), Port("TCP", 80)}) == 1

    @given(protocol=st.text(max_size=8).filter(lambda t: t.upper() not in ("TCP", "UDP", "SCTP")))
    def test_unknown_protocols_are_value_errors(self, protocol):
        """Any other protocol text is a ValueError naming the argument, the value and the rule, on one line."""
        with pytest.raises(ValueError, match=r'Port: argument "protocol": value "[^\n]*": must be TCP, UDP or SCTP') as info:
            Port(protocol, 80)
        assert "\n" not in str(info.value)

    @given(protocol=NOT_STR)
    def test_protocol_of_another_type_is_a_type_error(self, protocol):
        """A protocol that is no str is a TypeError."""
        with pytest.raises(TypeError, match='Port: argument "protocol"'):
            Port(protocol, 80)

    @given(number=st.one_of(st.integers(max_value=0), st.integers(min_value=65536)))
    def test_port_out_of_range_is_a_value_error(self, number):
        """Port numbers outside 1-65535 are a ValueError."""
        with pytest.raises(ValueError, match=rf'Port: argument "port": value {number} \(int\): must be from 1 to 65535'):
            Port("TCP", number)

    @pytest.mark.parametrize("number", [True, False, "80", 80.0, None, b"80"])
    def test_port_of_another_type_is_a_type_error(self, number):
        """A str, a float, a bool (not an int here) or None is a TypeError."""
        with pytest.raises(TypeError, match='Port: argument "port": .* must be an int from 1 to 65535'):
            Port("TCP", number)

    @pytest.mark.parametrize("text", ["TCP", "TCP/", "/80", "TCP/8o", "TCP/80/1", "ICMP/1", "TCP/0", "TCP/ 80"])
    def test_parse_rejects_other_forms(self, text):
        """Port.parse takes PROTOCOL/PORT only; anything else is a ValueError."""
        with pytest.raises(ValueError):
            Port.parse(text)

    def test_parse_is_the_explicit_converter(self):
        """Port.parse("udp/53") is Port("UDP", 53); str() writes the same form back."""
        assert Port.parse("udp/53") == Port("UDP", 53)
        assert str(Port("sctp", 9)) == "SCTP/9"


class TestOtherValues:
    def test_pool_request_checks_service_and_family(self):
        """PoolRequest takes a namespace/name service and family 4, 6 or None."""
        assert PoolRequest(service="ns/a", family=None).family is None
        with pytest.raises(ValueError, match='PoolRequest: argument "service": value "a"'):
            PoolRequest(service="a", family=4)
        with pytest.raises(ValueError, match='argument "family": value 5'):
            PoolRequest(service="ns/a", family=5)
        with pytest.raises(TypeError, match='argument "family": value True'):
            PoolRequest(service="ns/a", family=True)

    def test_pool_spec_needs_a_name(self):
        """A PoolSpec's name is a non-empty str."""
        with pytest.raises(ValueError, match='PoolSpec: argument "name": value "": must be a pool name'):
            PoolSpec(name="", kind="address-pools", cidrs=())
        with pytest.raises(TypeError, match='argument "name"'):
            PoolSpec(name=None, kind="address-pools", cidrs=())  # type: ignore[arg-type]


#: Every public Allocator method taking a service key, called with that key.
SERVICE_CALLS = {
    "allocate": lambda a, key: a.allocate(key),
    "allocate_dual": lambda a, key: a.allocate_dual(key),
    "assign": lambda a, key: a.assign(key, "10.0.0.1"),
    "unassign": lambda a, key: a.unassign(key),
    "ips": lambda a, key: a.ips(key),
    "pool_of": lambda a, key: a.pool_of(key),
    "allocation": lambda a, key: a.allocation(key),
    "describe": lambda a, key: a.describe(key),
}
#: Every public Allocator method taking a pool name, called with that name.
POOL_CALLS = {
    "allocate": lambda a, pool: a.allocate("ns/a", pool=pool),
    "allocate_dual": lambda a, pool: a.allocate_dual("ns/a", pool=pool),
    "stats": lambda a, pool: a.stats(pool),
    "capabilities": lambda a, pool: a.capabilities(pool),
    "reconcile": lambda a, pool: a.reconcile(pool),
}


class TestServiceKeys:
    @pytest.mark.parametrize("method", sorted(SERVICE_CALLS))
    def test_noslash_is_rejected_everywhere(self, alloc, method):
        """Every method taking a service rejects "noslash", naming the method, argument, value and rule."""
        before = alloc.allocations()
        with pytest.raises(ValueError, match=rf'{method}\(\): argument "service": value "noslash": must be "namespace/name"'):
            SERVICE_CALLS[method](alloc, "noslash")
        assert alloc.allocations() == before

    @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(key=MALFORMED_KEYS, method=st.sampled_from(sorted(SERVICE_CALLS)))
    def test_malformed_keys_are_value_errors(self, make, key, method):
        """No slash, two slashes, an empty side, a space or a control character: ValueError, nothing held."""
        alloc = make(CONFIG)
        with pytest.raises(ValueError, match='argument "service"'):
            SERVICE_CALLS[method](alloc, key)
        assert alloc.allocations() == []

    @settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(key=NOT_STR, method=st.sampled_from(sorted(SERVICE_CALLS)))
    def test_keys_of_another_type_are_type_errors(self, make, key, method):
        """A service that is no str is a TypeError."""
        with pytest.raises(TypeError, match='argument "service"'):
            SERVICE_CALLS[method](make(CONFIG), key)

    @settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(key=VALID_KEYS)
    def test_valid_keys_are_accepted(self, make, key):
        """Any namespace/name key allocates, reads back and releases."""
        alloc = make(CONFIG)
        ip = alloc.allocate(key)
        assert alloc.ips(key) == (ip,) and alloc.pool_of(key) == "p"
        assert alloc.unassign(key)


class TestFamiliesAndPools:
    @pytest.mark.parametrize("family", [5, 0, -4, 46])
    def test_unknown_family_is_a_value_error(self, alloc, family):
        """allocate(family=) takes 4, 6 or None."""
        with pytest.raises(ValueError, match=rf'allocate\(\): argument "family": value {family} \(int\): must be 4'):
            alloc.allocate("ns/a", family=family)

    @pytest.mark.parametrize("family", [True, "4", 4.0, (4,)])
    def test_family_of_another_type_is_a_type_error(self, alloc, family):
        """True, "4" or 4.0 are no family (4.0 == 4 would otherwise slip through)."""
        with pytest.raises(TypeError, match='argument "family"'):
            alloc.allocate("ns/a", family=family)

    @pytest.mark.parametrize(
        ("families", "error"),
        [("46", TypeError), ((4, 4), ValueError), ((), ValueError), ((4, 5), ValueError), ((4, True), TypeError), (4, TypeError)],
    )
    def test_allocate_dual_checks_families(self, alloc, families, error):
        """allocate_dual's families: each 4 or 6, at least one, none twice."""
        with pytest.raises(error, match=r'allocate_dual\(\): argument "families"'):
            alloc.allocate_dual("ns/a", families=families)

    @given(families=st.permutations([4, 6]).flatmap(lambda p: st.integers(1, 2).map(lambda n: tuple(p[:n]))))
    @settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    def test_valid_families_are_accepted(self, make, families):
        """Any non-empty selection of 4 and 6, in any order, allocates one address per family."""
        ips = make(CONFIG).allocate_dual("ns/a", families=families)
        assert tuple(ip.version for ip in ips) == families

    @pytest.mark.parametrize("method", sorted(POOL_CALLS))
    def test_pool_names(self, alloc, method):
        """Every method taking a pool rejects "" (ValueError) and a non-str (TypeError); unknown names stay AllocationErrors."""
        with pytest.raises(ValueError, match=rf'{method}\(\): argument "pool": value "": must be a pool name'):
            POOL_CALLS[method](alloc, "")
        with pytest.raises(TypeError, match=rf'{method}\(\): argument "pool": value 3 \(int\)'):
            POOL_CALLS[method](alloc, 3)
        if method != "capabilities":  # documented: the defaults for an unknown pool
            with pytest.raises(UnknownPoolError):
                POOL_CALLS[method](alloc, "nope")

    def test_keys_and_flags(self, alloc):
        """sharing_key and backend_key are str, require_all a bool."""
        with pytest.raises(TypeError, match='argument "sharing_key": value None'):
            alloc.allocate("ns/a", sharing_key=None)
        with pytest.raises(TypeError, match='argument "backend_key"'):
            alloc.assign("ns/a", "10.0.0.1", backend_key=1)
        with pytest.raises(TypeError, match='argument "require_all": value "yes"'):
            alloc.allocate_dual("ns/a", require_all="yes")

    def test_addresses(self, alloc):
        """Addresses are text or address objects; bad text stays AddressNotAllowedError."""
        with pytest.raises(TypeError, match=r'assign\(\): argument "ips": value 5 \(int\)'):
            alloc.assign("ns/a", 5)
        with pytest.raises(TypeError, match=r'allocate_dual\(\): argument "ips"'):
            alloc.allocate_dual("ns/a", ips="10.0.0.1")
        with pytest.raises(AddressNotAllowedError, match='"nonsense" is not an IP address'):
            alloc.allocate("ns/a", ip="nonsense")
        import ipaddress

        assert alloc.allocate("ns/a", ip=ipaddress.ip_address("10.0.0.2")) == netaddr.IPAddress("10.0.0.2")
        assert alloc.users(ipaddress.ip_address("10.0.0.2")) == ("ns/a",)


class TestPortsArgument:
    @pytest.mark.parametrize(
        ("ports", "hint"),
        [
            (("TCP", 80), "a bare \\(protocol, port\\) tuple is not a list of ports"),
            ("TCP/82", 'for text, write \\[Port.parse\\("TCP/80"\\)\\]'),
            (Port("TCP", 80), "put the one Port in a list"),
            ([("TCP", 80)], "write Port\\(protocol, port\\)"),
            (["TCP/82"], 'for text, write Port.parse\\("TCP/82"\\)'),
            ([Port("TCP", 80), 80], "must be a Port"),
            (80, 'must be a list of Port, like \\[Port\\("TCP", 80\\)\\]'),
        ],
    )
    def test_anything_but_ports_is_rejected(self, alloc, ports, hint):
        """Tuples, strings and single ports are never taken apart into ports: a TypeError says what to write."""
        with pytest.raises(TypeError, match=hint):
            alloc.allocate("ns/a", ports=ports)
        assert alloc.allocations() == []

    def test_any_iterable_of_ports(self, alloc):
        """A list, a set, a tuple of Ports or a generator is accepted."""
        alloc.allocate("ns/a", ports=[Port("TCP", 80)])
        alloc.allocate("ns/b", ports={Port("UDP", 53)})
        alloc.allocate("ns/c", ports=(Port("TCP", 1),))
        alloc.allocate("ns/d", ports=(Port("TCP", p) for p in (2, 3)))
        assert alloc.allocation("ns/d").ports == {Port("TCP", 2), Port("TCP", 3)}

    def test_protocol_case_no_longer_hides_a_clash(self, alloc):
        """Two services on tcp/80 and TCP/80 cannot share one address, whatever the case."""
        ip = alloc.allocate("ns/a", ports=[Port("tcp", 80)], sharing_key="k")
        with pytest.raises(AddressInUseError, match="port TCP/80 is already in use"):
            alloc.allocate("ns/b", ip=ip, ports=[Port("TCP", 80)], sharing_key="k")
        assert alloc.allocate("ns/c", ip=ip, ports=[Port("UDP", 80)], sharing_key="k") == ip
