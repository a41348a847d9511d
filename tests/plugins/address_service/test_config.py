"""The ``address-services`` config section: keys, URL normalisation, errors."""

from __future__ import annotations

import pytest
from metallb.allocator import ConfigError, dump_config, parse_config


def entry(**fields: str) -> str:
    base = {"name": "dhcp", "url": "http://dhcpmanager", "protocol": "layer2", "cidrs": "[192.0.2.0/24]"}
    base.update(fields)
    body = "".join(f"  {k}: {v}\n" for k, v in base.items() if v != "<omit>")
    return "address-services:\n- " + body.lstrip()


class TestParse:
    """metallb_parse_pool for address-services entries."""

    def test_accepts_the_decided_keys(self) -> None:
        """Every decided key is accepted and lands in the spec or its options."""
        text = entry(
            **{
                "auth-token": "s3cret",
                "ca-file": "/etc/ca.pem",
                "url": "https://dhcp.example:8443",
                "auto-assign": "false",
                "avoid-buggy-ips": "true",
            }
        )
        spec = parse_config(text).pools["dhcp"]
        assert spec.kind == "address-services"
        assert [str(c) for c in spec.cidrs] == ["192.0.2.0/24"]
        assert spec.auto_assign is False and spec.avoid_buggy_ips is True
        assert dict(spec.options) == {
            "url": "https://dhcp.example:8443",
            "auth-token": "s3cret",
            "ca-file": "/etc/ca.pem",
        }

    @pytest.mark.parametrize(
        ("given", "normalised"),
        [
            ("http://dhcpmanager/", "http://dhcpmanager"),
            ("HTTP://DHCPManager:8000//", "http://dhcpmanager:8000"),
            ("http://proxy/api//dhcp/", "http://proxy/api/dhcp"),
            ("http://[2001:db8::1]:8000/", "http://[2001:db8::1]:8000"),
        ],
    )
    def test_url_is_normalised(self, given: str, normalised: str) -> None:
        """Trailing and doubled slashes go, scheme and host are lower-cased, so /v1/ip is appended cleanly."""
        assert parse_config(entry(url=given)).pools["dhcp"].options["url"] == normalised

    @pytest.mark.parametrize(
        ("url", "rule"),
        [
            ("ftp://dhcpmanager", 'must start with "http://" or "https://"'),
            ("dhcpmanager:8000", 'must start with "http://" or "https://"'),
            ("http://", "must name a host"),
            ("http://user:pw@dhcpmanager", 'must not carry credentials: use "auth-token"'),
            ("http://dhcpmanager/?x=1", "must not have a query or fragment"),
            ("http://dhcpmanager:99999", "invalid URL"),
        ],
    )
    def test_bad_url_is_rejected(self, url: str, rule: str) -> None:
        """A URL that cannot be used is refused at parse time, naming entry, field, value and rule."""
        with pytest.raises(ConfigError) as err:
            parse_config(entry(url=url))
        assert str(err.value).startswith(f'address service #1 "dhcp": field "url": value "{url}": ')
        assert rule in str(err.value)

    def test_url_is_required(self) -> None:
        """An entry without url is refused."""
        with pytest.raises(ConfigError, match='address service #1 "dhcp": missing required field "url"'):
            parse_config(entry(url="<omit>"))

    def test_cidrs_are_required(self) -> None:
        """An entry without cidrs is refused (the fork allowed it, and then trusted anything)."""
        with pytest.raises(
            ConfigError, match='pool has no prefixes defined: list at least one CIDR or range in "cidrs"'
        ):
            parse_config(entry(cidrs="<omit>"))

    def test_ranges_are_accepted_in_cidrs(self) -> None:
        """cidrs takes ranges like address-pools do."""
        spec = parse_config(entry(cidrs="[192.0.2.10-192.0.2.13]")).pools["dhcp"]
        assert [str(c) for c in spec.cidrs] == ["192.0.2.10/31", "192.0.2.12/31"]

    def test_ipv6_and_dual_stack_cidrs(self) -> None:
        """IPv6 cidrs, alone or beside IPv4 ones, are accepted (servers with the family extension lease them)."""
        assert parse_config(entry(cidrs="[2001:db8::/64]")).pools["dhcp"].families() == {6}
        assert parse_config(entry(cidrs="[192.0.2.0/24, 2001:db8::/64]")).pools["dhcp"].families() == {4, 6}

    def test_unknown_key_is_rejected(self) -> None:
        """Keys outside the decided set are refused, timeouts included."""
        with pytest.raises(ConfigError, match='unknown field "timeout"'):
            parse_config(entry(timeout="5s"))

    def test_ca_file_needs_https(self) -> None:
        """A CA bundle with a plain-http URL is a mistake and is refused."""
        with pytest.raises(ConfigError, match='field "ca-file": value "/ca.pem": applies to "https://" URLs only'):
            parse_config(entry(**{"ca-file": "/ca.pem"}))

    def test_token_with_line_break_is_rejected(self) -> None:
        """A token that would break the header is refused without echoing it."""
        with pytest.raises(ConfigError) as err:
            parse_config(entry(**{"auth-token": '" s3cret"'}))
        assert 'field "auth-token": value "<set>"' in str(err.value)
        assert "s3cret" not in str(err.value)

    def test_dump_hides_the_token(self) -> None:
        """check-config output shows that a token is set, never the token."""
        out = dump_config(parse_config(entry(**{"auth-token": "s3cret"})))
        assert "auth-token: <set>" in out and "s3cret" not in out

    def test_overlap_with_static_pool_is_rejected(self) -> None:
        """Address-service cidrs take part in the overlap check across sections."""
        text = "address-pools:\n- name: static\n  protocol: layer2\n  addresses: [192.0.2.0/25]\n" + entry()
        with pytest.raises(ConfigError, match="overlaps with already defined"):
            parse_config(text)
