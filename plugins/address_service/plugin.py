"""Address services: the ``address-services`` pool section and ``AddressService`` kind, the bundled server.

A pool of this section (or kind) leases each address from an HTTP address service
(DHCPManager's v1 protocol, or ``metallb address-service``)::

    address-services:
    - name: dhcp
      url: http://dhcpmanager.metallb-system      # http or https, no trailing path
      protocol: layer2
      cidrs: [192.0.2.0/24]                        # what the service hands out; required
      auth-token: s3cret                           # optional, sent as X-Auth-Token
      ca-file: /etc/metallb/ca.pem                 # optional, for https

or, as a resource (the token and CA certificate live in Secrets, never in the pool)::

    apiVersion: metallb.io/v1alpha1
    kind: AddressService
    metadata: {name: dhcp, namespace: metallb-system}
    spec:
      url: http://dhcpmanager.metallb-system
      cidrs: [192.0.2.0/24]
      authTokenSecret: {name: dhcp-token}          # key "token" unless "key" says otherwise
      caSecret: {name: dhcp-ca}                    # key "ca.crt"; for https

This entry module imports only metallb's base dependencies, so a bare
install parses these pools; the client (httpx), the server (prometheus-client)
and the ``dhcp`` backend (scapy) are imported when first used, and a missing
one is reported with the extra that brings it.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pluggy
from metallb.allocator import (
    AddressSource,
    ConfigError,
    PluginError,
    PoolEntry,
    PoolResource,
    PoolResourceKind,
    PoolSpec,
    SourceCapabilities,
    hookimpl,
)
from metallb.allocator.config import as_str, parse_pool_entry
from metallb.allocator.resource_fields import spec_mapping, spec_str
from metallb.allocator.resources import parse_pool_resource, pool_resource, resolve_secret
from metallb.allocator.yamlload import shown
from metallb.plugins.address_service import hookspecs
from metallb.plugins.address_service.api import Backend, BackendOptions

SECTION = "address-services"
#: The same pools as resources: metallb's own ``AddressService`` kind.
KIND = PoolResourceKind(kind="AddressService", plural="addressservices", section=SECTION, versions=("v1alpha1",))
#: Releases are DELETEs to the service (so Services carry the finalizer); the lease id is annotated.
CAPABILITIES = SourceCapabilities(remote_release=True, annotations={"lease-id": "metallb.io/address-service-lease"})


def missing_dependency(exc: ImportError) -> str:
    """The distribution to install for a failed import: the top-level package (``scapy`` for ``scapy.layers``)."""
    return (exc.name or str(exc)).partition(".")[0]


def _fail(where: str, field: str, value: str, rule: str) -> ConfigError:
    return ConfigError(f'{where}: field "{field}": value "{shown(value)}": {rule}')


def parse_url(value: object, where: str) -> str:
    """``url``: http(s), a host, no query, fragment or credentials; trailing slashes dropped.

    The fork pasted ``/v1/ip`` after the raw value, so ``http://x/`` gave
    ``//v1/ip``, a redirect, and a POST turned into a GET; we normalise here.
    """
    text = as_str(value, where, "url").strip()
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:
        raise _fail(where, "url", text, f"invalid URL: {exc}") from None
    if parts.scheme.lower() not in ("http", "https"):
        raise _fail(where, "url", text, 'must start with "http://" or "https://"')
    if not parts.hostname:
        raise _fail(where, "url", text, "must name a host, like http://dhcpmanager.metallb-system")
    if parts.username is not None or parts.password is not None:
        raise _fail(where, "url", text, 'must not carry credentials: use "auth-token"')
    if parts.query or parts.fragment or text.endswith(("?", "#")):
        raise _fail(where, "url", text, "must not have a query or fragment: the client appends /v1/... itself")
    path = re.sub(r"/{2,}", "/", parts.path).rstrip("/")
    host = parts.hostname.lower()
    netloc = f"[{host}]" if ":" in host else host
    if port is not None:
        netloc += f":{port}"
    return urlunsplit((parts.scheme.lower(), netloc, path, "", ""))


def _parse_token(value: object, where: str) -> str:
    token = as_str(value, where, "auth-token")
    if token != token.strip() or any(c in token for c in "\r\n"):
        raise _fail(where, "auth-token", "<set>", "must not start or end with spaces or contain line breaks")
    return token


def _parse_ca_file(value: object, where: str) -> str:
    return as_str(value, where, "ca-file").strip()


@hookimpl
def metallb_pool_sections() -> Sequence[str]:
    """Address-service pools live in ``address-services``."""
    return [SECTION]


@hookimpl
def metallb_parse_pool(entry: PoolEntry) -> PoolSpec | None:
    """Common pool keys plus ``cidrs`` (required), ``url`` (required), ``auth-token``, ``ca-file``."""
    if entry.section != SECTION:
        return None
    spec = parse_pool_entry(
        entry,
        cidrs_key="cidrs",
        options={"url": parse_url, "auth-token": _parse_token, "ca-file": _parse_ca_file},
        required=("url",),
    )
    if spec.options["ca-file"] and not str(spec.options["url"]).startswith("https://"):
        raise _fail(entry.where(), "ca-file", str(spec.options["ca-file"]), 'applies to "https://" URLs only')
    return spec  # IPv6 or both families too: a server listing the "family" extension hands those out


def _secret_text(resource: PoolResource, field: str, default_key: str) -> str:
    """The text a ``{name, key}`` Secret reference of *resource* points to; "" when the field is absent."""
    where = resource.where()
    spec = resource.spec
    ref = spec_mapping(spec.get(field), where, f"spec.{field}", keys=("name", "key"))
    if not ref:
        return ""
    name = spec_str(ref.get("name"), where, f"spec.{field}.name")
    if not name:
        raise ConfigError(f'{where}: field "spec.{field}.name": missing: name the Secret')
    key = spec_str(ref.get("key"), where, f"spec.{field}.key") or default_key
    value = resolve_secret(where, f"spec.{field}.name", name, key, resource.secrets)
    try:
        return value.decode()
    except UnicodeDecodeError:
        raise _fail(where, f"spec.{field}", name, f'the Secret\'s key "{key}" is not UTF-8 text') from None


@hookimpl
def metallb_pool_resource_kinds() -> Sequence[PoolResourceKind]:
    """Address-service pools are ``AddressService`` resources (``metallb.io/v1alpha1``)."""
    return [KIND]


@hookimpl
def metallb_parse_pool_resource(resource: PoolResource) -> PoolSpec | None:
    """``AddressService``: the shared pool fields, ``cidrs`` and ``url`` (required), ``authTokenSecret``, ``caSecret``.

    The options are those of an ``address-services`` entry: ``auth-token`` from
    the token Secret, and ``ca-data`` (the PEM text) from the CA Secret.
    """
    if resource.kind.kind != KIND.kind:
        return None
    where = resource.where()
    spec = parse_pool_resource(
        resource,
        cidrs_key="cidrs",
        options={"url": parse_url, "authTokenSecret": lambda v, w: None, "caSecret": lambda v, w: None},
        required=("url",),
    )
    token = _parse_token(_secret_text(resource, "authTokenSecret", "token"), where)
    ca = _secret_text(resource, "caSecret", "ca.crt")
    url = str(spec.options["url"])
    if ca and not url.startswith("https://"):
        raise _fail(where, "spec.caSecret", "<set>", 'applies to "https://" URLs only')
    if any(c.version != 4 for c in spec.cidrs):
        bad = next(c for c in spec.cidrs if c.version != 4)
        raise _fail(where, "spec.cidrs", str(bad), "address services hand out IPv4 addresses only")
    options: dict[str, object] = {"url": url, "auth-token": token, "ca-file": ""}
    if ca:
        options["ca-data"] = ca
    return PoolSpec(
        name=spec.name,
        kind=spec.kind,
        cidrs=spec.cidrs,
        auto_assign=spec.auto_assign,
        avoid_buggy_ips=spec.avoid_buggy_ips,
        options=options,
        service_allocation=spec.service_allocation,
        labels=spec.labels,
    )


@hookimpl
def metallb_render_pool_resource(spec: PoolSpec, namespace: str) -> Sequence[dict[str, object]] | None:
    """An ``address-services`` pool as an ``AddressService``, its token and CA certificate as Secrets.

    A ``ca-file`` is read now: its certificate goes into the CA Secret.
    """
    if spec.kind != SECTION:
        return None
    own: dict[str, object] = {"url": spec.options["url"], "cidrs": [str(c) for c in spec.cidrs]}
    secrets: list[dict[str, object]] = []
    token = str(spec.options.get("auth-token") or "")
    if token:
        own["authTokenSecret"] = {"name": f"{spec.name}-token"}
        secrets.append(_secret(f"{spec.name}-token", namespace, {"token": token}))
    ca = str(spec.options.get("ca-data") or "")
    ca_file = str(spec.options.get("ca-file") or "")
    if ca_file and not ca:
        try:
            ca = Path(ca_file).read_text()
        except OSError as exc:
            raise ConfigError(
                f'pool "{shown(spec.name)}": field "ca-file": value "{shown(ca_file)}": '
                f"cannot read it ({exc.strerror}) to put the certificate in a Secret"
            ) from None
    if ca:
        own["caSecret"] = {"name": f"{spec.name}-ca"}
        secrets.append(_secret(f"{spec.name}-ca", namespace, {"ca.crt": ca}))
    return [pool_resource(spec, KIND, namespace, own), *secrets]


def _secret(name: str, namespace: str, data: dict[str, str]) -> dict[str, object]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace},
        "type": "Opaque",
        "stringData": data,
    }


@hookimpl
def metallb_make_source(spec: PoolSpec) -> AddressSource | None:
    """An :class:`AddressServiceSource` for ``address-services`` pools."""
    if spec.kind != SECTION:
        return None
    # Imported here: speakers load this plugin too, and never need httpx.
    try:
        from metallb.plugins.address_service.client import AddressServiceSource
    except ImportError as exc:
        raise ConfigError(
            f'pool "{shown(spec.name)}": address-services pools need {missing_dependency(exc)}, '
            "which is not installed: pip install 'metallb[address-services]'"
        ) from None
    return AddressServiceSource(spec)


@hookimpl
def metallb_pool_capabilities(section: str) -> SourceCapabilities | None:
    """Address-service pools need the finalizer and carry the lease id as an annotation (:data:`CAPABILITIES`)."""
    return CAPABILITIES if section == SECTION else None


@hookimpl
def metallb_add_hookspecs(plugin_manager: pluggy.PluginManager) -> None:
    """Add ``metallb_make_backend`` (``hookspecs``), which backend plugins implement."""
    plugin_manager.add_hookspecs(hookspecs)


@hookimpl
def metallb_make_backend(kind: str, options: BackendOptions) -> Backend | None:
    """The bundled server's ``memory``, ``dhcp`` and ``dhcpv6`` backends (dhcp imports scapy only when asked for)."""
    if kind == "memory":
        from metallb.plugins.address_service.memory import MemoryBackend

        return MemoryBackend(cidrs=options.cidrs)
    if kind == "dhcp":
        if not options.interface:
            raise ValueError("the dhcp backend needs --interface")
        try:
            from metallb.plugins.address_service.dhcp import DhcpBackend
        except ImportError as exc:
            raise PluginError(
                f"the dhcp backend needs {missing_dependency(exc)}, which is not installed: pip install 'metallb[dhcp]'"
            ) from None
        return DhcpBackend(
            interface=options.interface,
            netns=options.netns,
            cidrs=[c for c in options.cidrs if ":" not in c],
            offer_timeout=options.offer_timeout,
            renew_after=options.renew_after,
        )
    if kind == "dhcpv6":
        if not options.interface:
            raise ValueError("the dhcpv6 backend needs --interface")
        from metallb.plugins.address_service.dhcpv6 import Dhcpv6Backend  # the standard library only

        return Dhcpv6Backend(
            interface=options.interface,
            netns=options.netns,
            cidrs=[c for c in options.cidrs if ":" in c],
            offer_timeout=min(options.offer_timeout, 2.0),  # no ping check in DHCPv6 servers
            renew_after=options.renew_after,
        )
    return None


@hookimpl
def metallb_add_commands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``metallb address-service``: the bundled server (its dependencies load when it runs)."""
    from metallb.plugins.address_service import command

    parser = subparsers.add_parser(
        "address-service",
        help=command.HELP,
        description=command.DESCRIPTION,
        epilog=command.EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    command.add_arguments(parser)
    parser.set_defaults(run=command.run)
