"""The values the public API takes, and the rules they follow.

:class:`Port` checks itself when it is built; the functions below check the
arguments of :class:`~metallb.allocator.Allocator`'s methods. A value of the
wrong type raises ``TypeError``, a malformed value ``ValueError``; either
message names where it was given, the argument, the value and the rule, so a
mistake fails at the call that made it instead of surfacing later as a
surprising allocation.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import TypeAlias, cast

import attrs
import netaddr

__all__ = [
    "PROTOCOLS",
    "IPLike",
    "Port",
    "family",
    "families",
    "flag",
    "ip_value",
    "pool_name",
    "ports",
    "service_key",
    "text",
]

#: The protocols of a Service port, as Kubernetes spells them.
PROTOCOLS = ("TCP", "UDP", "SCTP")
#: What the API takes as an address: text or an address object.
IPLike: TypeAlias = "str | netaddr.IPAddress | ipaddress.IPv4Address | ipaddress.IPv6Address"
_FAMILIES = "4 (IPv4) or 6 (IPv6)"


def shown(value: object) -> str:
    """A value as messages quote it: text in double quotes, anything else as its repr and type."""
    if isinstance(value, str):
        # One line whatever the value: control characters are shown escaped.
        text = value if value.isprintable() else value.encode("unicode_escape").decode("ascii")
        return f'"{text[:77] + "..." if len(text) > 80 else text}"'
    text = repr(value)
    if len(text) > 80:
        text = text[:77] + "..."
    return f"{text} ({type(value).__name__})"


def _message(where: str, argument: str, value: object, rule: str) -> str:
    return f'{where}: argument "{argument}": value {shown(value)}: {rule}'


def _is_int(value: object) -> bool:
    """An int that is not a bool (True would otherwise be port 1 or family 1)."""
    return isinstance(value, int) and not isinstance(value, bool)


# -- ports -------------------------------------------------------------------------------


def _protocol(value: object) -> str:
    """A protocol name, upper case; TCP, UDP and SCTP in any case."""
    if not isinstance(value, str):
        raise TypeError(_message("Port", "protocol", value, "must be a str: TCP, UDP or SCTP"))
    upper = value.upper()
    if upper not in PROTOCOLS:
        raise ValueError(_message("Port", "protocol", value, "must be TCP, UDP or SCTP (any case)"))
    return upper


def _port_number(_instance: object, _attribute: object, value: int) -> None:
    if not _is_int(value):
        raise TypeError(_message("Port", "port", value, "must be an int from 1 to 65535"))
    if not 1 <= value <= 65535:
        raise ValueError(_message("Port", "port", value, "must be from 1 to 65535"))


@attrs.frozen(order=True)
class Port:
    """A service port as MetalLB compares them: protocol and service port number.

    Built positionally, ``Port("TCP", 80)``; checked when built.

    Attributes:
        protocol: ``TCP``, ``UDP`` or ``SCTP``; given in any case, kept in
            upper case, so ``Port("tcp", 80) == Port("TCP", 80)``. Anything
            else is a ``ValueError`` (a non-str a ``TypeError``).
        port: the Service's ``spec.ports[].port`` (not nodePort or
            targetPort): an int from 1 to 65535. A str or a bool is a
            ``TypeError``, an int out of range a ``ValueError``.
    """

    protocol: str = attrs.field(converter=_protocol)
    port: int = attrs.field(validator=_port_number)

    def __str__(self) -> str:
        return f"{self.protocol}/{self.port}"

    @classmethod
    def parse(cls, text: str) -> Port:
        """The port written ``PROTOCOL/PORT``, as ``str(port)`` writes it: ``Port.parse("udp/53")``.

        Raises ``ValueError`` naming the text and the form when it is not one.
        """
        if not isinstance(text, str):
            raise TypeError(_message("Port.parse", "text", text, 'must be a str like "TCP/80"'))
        protocol, slash, number = text.partition("/")
        if not slash or not number.isascii() or not number.isdigit():
            raise ValueError(_message("Port.parse", "text", text, 'must be PROTOCOL/PORT, like "TCP/80" or "udp/53"'))
        return cls(protocol, int(number))


_COLLECTIONS = (list, tuple, set, frozenset)


def ports(value: object, where: str) -> frozenset[Port]:
    """The ``ports`` argument: an iterable of :class:`Port` (a list, a set ...), as a frozenset.

    A bare tuple such as ``("TCP", 80)``, a string such as ``"TCP/80"``, or a
    single Port is a ``TypeError`` saying what to write instead: they are
    never taken apart into something else.
    """
    if type(value) in _COLLECTIONS:  # the usual case, checked quickly
        given = cast("Iterable[object]", value)
        if all(type(item) is Port for item in given):
            return frozenset(cast("Iterable[Port]", given))
    rule = 'must be a list of Port, like [Port("TCP", 80)]'
    if isinstance(value, Port):
        raise TypeError(_message(where, "ports", value, f"{rule}: put the one Port in a list"))
    if isinstance(value, (str, bytes)):
        raise TypeError(_message(where, "ports", value, f'{rule}; for text, write [Port.parse("TCP/80")]'))
    if isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], str) and _is_int(value[1]):
        rule = f"{rule}: a bare (protocol, port) tuple is not a list of ports"
        raise TypeError(_message(where, "ports", value, rule))
    if not isinstance(value, Iterable):
        raise TypeError(_message(where, "ports", value, rule))
    items = list(value)
    for i, item in enumerate(items):
        if not isinstance(item, Port):
            hint = ""
            if isinstance(item, str):
                hint = f'; for text, write Port.parse("{item}")'
            elif isinstance(item, tuple):
                hint = "; write Port(protocol, port)"
            raise TypeError(_message(where, f"ports[{i}]", item, f"must be a Port{hint}"))
    return frozenset(items)


# -- names, families, keys ----------------------------------------------------------------


def service_key(value: object, where: str, argument: str = "service") -> str:
    """A service key ``namespace/name``: exactly one ``/`` with text on both sides, no spaces."""
    rule = 'must be "namespace/name": exactly one "/" with text on both sides, no spaces or control characters'
    if not isinstance(value, str):
        raise TypeError(_message(where, argument, value, f"must be a str; {rule.removeprefix('must be ')}"))
    namespace, _, name = value.partition("/")
    if not namespace or not name or "/" in name or " " in value or not value.isprintable():
        raise ValueError(_message(where, argument, value, rule))
    return value


def family(value: object, where: str, *, optional: bool = False, argument: str = "family") -> int | None:
    """An IP family, 4 or 6; None too when *optional*."""
    if value is None and optional:
        return None
    rule = f"must be {_FAMILIES}" + (", or None for any" if optional else "")
    if not _is_int(value):
        raise TypeError(_message(where, argument, value, rule))
    if value not in (4, 6):
        raise ValueError(_message(where, argument, value, rule))
    return int(value)  # type: ignore[call-overload]


def families(value: object, where: str, argument: str = "families") -> tuple[int, ...]:
    """IP families, each 4 or 6, at least one, none twice: ``(4, 6)``."""
    rule = f"must be a list of IP families, each {_FAMILIES}, at least one, none twice, like (4, 6)"
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise TypeError(_message(where, argument, value, rule))
    items = tuple(value)
    for item in items:
        if not _is_int(item):
            raise TypeError(_message(where, argument, value, rule))
    if not items or len(set(items)) != len(items) or not set(items) <= {4, 6}:
        raise ValueError(_message(where, argument, value, rule))
    return items


def pool_name(value: object, where: str, *, optional: bool = False, argument: str = "pool") -> str | None:
    """A pool name: a non-empty str (None too when *optional*: any pool)."""
    if value is None and optional:
        return None
    rule = "must be a pool name (a non-empty str)" + (", or None for the automatic choice" if optional else "")
    if not isinstance(value, str):
        raise TypeError(_message(where, argument, value, rule))
    if not value:
        raise ValueError(_message(where, argument, value, rule))
    return value


def text(value: object, where: str, argument: str) -> str:
    """A str argument such as ``sharing_key`` ("" is allowed)."""
    if not isinstance(value, str):
        raise TypeError(_message(where, argument, value, 'must be a str ("" for none)'))
    return value


def flag(value: object, where: str, argument: str) -> bool:
    """A bool argument (True or False, not a truthy value)."""
    if not isinstance(value, bool):
        raise TypeError(_message(where, argument, value, "must be True or False"))
    return value


def ip_value(value: object, where: str, argument: str) -> str | netaddr.IPAddress:
    """An address argument's type: text or an address object (its text is checked where it is used)."""
    if isinstance(value, (str, netaddr.IPAddress)):
        return value
    if isinstance(value, (ipaddress.IPv4Address, ipaddress.IPv6Address)):
        return netaddr.IPAddress(str(value))
    raise TypeError(_message(where, argument, value, "must be an IP address: a str or a netaddr.IPAddress"))
