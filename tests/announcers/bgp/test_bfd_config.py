"""The ConfigMap's ``bfd-profiles`` section and peers' ``bfd-profile``: MetalLB's fields, ranges and defaults."""

from __future__ import annotations

import subprocess
import sys

import pytest
from metallb.allocator import BfdProfile, ConfigError, dump_config, parse_config

PEER = """
peers:
- my-asn: 64512
  peer-asn: 64513
  peer-address: 192.0.2.1
  bfd-profile: fast
"""
FULL = """
bfd-profiles:
- name: fast
  receive-interval: 100
  transmit-interval: 120
  detect-multiplier: 5
  echo-interval: 60
  echo-mode: false
  passive-mode: true
  minimum-ttl: 250
- name: defaults
"""


class TestProfiles:
    """Parsing ``bfd-profiles``."""

    def test_fields_and_defaults(self):
        """Every field is read in milliseconds; an empty profile has MetalLB's defaults 300/300/3/50/false/false/254."""
        config = parse_config(FULL + PEER)
        assert config.bfd_profiles["fast"] == BfdProfile(
            receive_interval=100,
            transmit_interval=120,
            detect_multiplier=5,
            echo_interval=60,
            echo_mode=False,
            passive_mode=True,
            minimum_ttl=250,
        )
        assert config.bfd_profiles["defaults"] == BfdProfile(
            receive_interval=300, transmit_interval=300, detect_multiplier=3, echo_interval=50, minimum_ttl=254
        )
        assert config.peers[0].bfd_profile == "fast"
        assert list(config.bfd_profiles) == ["fast", "defaults"]

    @pytest.mark.parametrize(
        ("field", "value", "rule"),
        [
            ("detect-multiplier", "1", "invalid detect multiplier value: must be in 2-255 range"),
            ("detect-multiplier", "256", "invalid detect multiplier value: must be in 2-255 range"),
            ("receive-interval", "9", "invalid receive interval value: must be in 10-60000 range"),
            ("transmit-interval", "60001", "invalid transmit interval value: must be in 10-60000 range"),
            ("minimum-ttl", "0", "invalid minimum ttl value: must be in 1-254 range"),
            ("minimum-ttl", "255", "invalid minimum ttl value: must be in 1-254 range"),
            ("echo-interval", "5", "invalid echo interval value: must be in 10-60000 range"),
            ("receive-interval", "fast", "must be a whole number"),
            ("passive-mode", "maybe", "must be a boolean (true or false)"),
        ],
    )
    def test_ranges_are_metallbs(self, field, value, rule):
        """Each out-of-range value is one line naming the profile, field, value and MetalLB's range."""
        with pytest.raises(ConfigError) as info:
            parse_config(f"bfd-profiles:\n- name: p\n  {field}: {value}\n")
        assert str(info.value) == f'bfd profile #1 "p": field "{field}": value "{value}": {rule}'

    def test_range_checks_run_in_metallbs_order(self):
        """With several bad values the detect multiplier is reported first, as MetalLB's loader checks it."""
        with pytest.raises(ConfigError, match="detect-multiplier"):
            parse_config("bfd-profiles:\n- name: p\n  receive-interval: 1\n  detect-multiplier: 1\n")

    def test_echo_mode_is_rejected(self):
        """echo-mode: true says the echo function is not supported, and what to do."""
        with pytest.raises(ConfigError, match='field "echo-mode": value "true": echo mode is not supported.*set false'):
            parse_config("bfd-profiles:\n- name: p\n  echo-mode: true\n")

    def test_name_is_required_and_unique(self):
        """A profile without a name, or with a name used before, is an error."""
        with pytest.raises(ConfigError, match="bfd profile #1: missing bfd profile name"):
            parse_config("bfd-profiles:\n- receive-interval: 100\n")
        with pytest.raises(ConfigError, match='bfd profile #2 "p": found duplicate bfd profile name "p"'):
            parse_config("bfd-profiles:\n- name: p\n- name: p\n")

    def test_unknown_field_lists_the_allowed_ones(self):
        """A misspelt key is named with every key a profile accepts."""
        with pytest.raises(ConfigError, match='unknown field "recieve-interval".*receive-interval, transmit-interval'):
            parse_config("bfd-profiles:\n- name: p\n  recieve-interval: 100\n")


class TestPeerReference:
    """A peer's ``bfd-profile``."""

    def test_unknown_profile_is_an_error(self):
        """A peer naming a profile that is not defined is refused, listing the defined ones."""
        with pytest.raises(ConfigError) as info:
            parse_config("bfd-profiles:\n- name: slow\n" + PEER)
        assert (
            str(info.value)
            == 'peer #1: field "bfd-profile": value "fast": no such profile in bfd-profiles (defined: slow)'
        )
        with pytest.raises(ConfigError, match=r"\(defined: none\)"):
            parse_config(PEER)

    def test_peer_without_profile_has_no_bfd(self):
        """bfd-profile defaults to empty: no BFD session."""
        config = parse_config(PEER.replace("  bfd-profile: fast\n", ""))
        assert config.peers[0].bfd_profile == ""


class TestCheckConfig:
    """dump_config and ``metallb check-config``."""

    def test_dump_round_trips(self):
        """The normalised YAML writes every profile field and the peer's profile, and parses back equal."""
        config = parse_config(FULL + PEER)
        text = dump_config(config)
        assert "bfd-profile: fast" in text and "minimum-ttl: 250" in text and "echo-interval: 50" in text
        assert parse_config(text) == config

    def test_profiles_change_config_equality(self):
        """Two configs differing only in a profile's timer are not equal (the speaker must see the change)."""
        assert parse_config(FULL + PEER) != parse_config(FULL.replace("120", "130") + PEER)

    def test_check_config_accepts_and_prints(self, tmp_path):
        """metallb check-config exits 0 and prints the profiles."""
        path = tmp_path / "config.yaml"
        path.write_text(FULL + PEER)
        done = subprocess.run(
            [sys.executable, "-m", "metallb.operator", "check-config", str(path)],
            capture_output=True,
            text=True,
            cwd="/",
            check=False,
        )
        assert done.returncode == 0, done.stderr
        assert "bfd-profiles:" in done.stdout and "transmit-interval: 120" in done.stdout
