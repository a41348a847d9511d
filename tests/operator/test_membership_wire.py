"""The gossip wire format and its encryption: round trips, hostile bytes, wrong keys."""

from __future__ import annotations

import base64
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from metallb.operator.membership.crypto import (
    OVERHEAD,
    DecryptError,
    Keyring,
    SecretError,
    derive_key,
    read_secret,
)
from metallb.operator.membership.messages import (
    MAX_NAME,
    Kind,
    Packet,
    Status,
    Update,
    WireError,
    decode,
    encode,
    packet_size,
)

names = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=40)
u64 = st.integers(0, 2**64 - 1)
updates = st.builds(
    Update, status=st.sampled_from(Status), name=names, incarnation=u64, source=st.one_of(st.just(""), names)
)
packets = st.builds(
    Packet,
    kind=st.sampled_from(Kind),
    sender=names,
    incarnation=u64,
    seq=st.integers(0, 2**32 - 1),
    target=st.one_of(st.just(""), names),
    updates=st.lists(updates, max_size=12).map(tuple),
)
SECRET = b"c2VjcmV0IGtleSBmb3IgdGhlIHRlc3Rz"


class TestWireFormat:
    @settings(max_examples=200, derandomize=True, database=None)
    @given(packets)
    def test_round_trip_and_computed_size(self, packet):
        """Every packet decodes to itself, and packet_size() is its encoded length."""
        data = encode(packet)
        assert decode(data) == packet
        assert packet_size(packet) == len(data)

    @settings(max_examples=300, derandomize=True, database=None)
    @given(st.binary(max_size=200))
    def test_arbitrary_bytes_raise_only_wire_error(self, data):
        """Garbage never raises anything but WireError (a decoded packet still passes the checks)."""
        try:
            decode(data)
        except WireError:
            pass

    @given(packets, st.data())
    def test_every_truncation_is_a_wire_error(self, packet, data):
        """A packet cut short at any point is rejected."""
        raw = encode(packet)
        cut = data.draw(st.integers(0, len(raw) - 1))
        with pytest.raises(WireError):
            decode(raw[:cut])

    def test_trailing_bytes_version_and_kind_are_checked(self):
        """Extra bytes, another version or an unknown kind or status are rejected with a reason."""
        raw = encode(Packet(kind=Kind.PING, sender="a", incarnation=1, target="b"))
        with pytest.raises(WireError, match="trailing"):
            decode(raw + b"x")
        with pytest.raises(WireError, match="version 9"):
            decode(b"\x09" + raw[1:])
        with pytest.raises(WireError, match="unknown packet kind 99"):
            decode(raw[:1] + b"\x63" + raw[2:])

    def test_names_longer_than_a_node_name_are_refused(self):
        """Node names are at most 253 bytes; a longer one cannot be sent."""
        encode(Packet(kind=Kind.GOSSIP, sender="n" * MAX_NAME, incarnation=1))
        with pytest.raises(WireError, match="254 bytes, at most 253"):
            encode(Packet(kind=Kind.GOSSIP, sender="n" * (MAX_NAME + 1), incarnation=1))


class TestEncryption:
    def test_round_trip_with_a_fresh_nonce_each_time(self):
        """What one keyring encrypts, another with the same secret decrypts; two encryptions differ."""
        ring = Keyring([SECRET])
        one, two = ring.encrypt(b"hello"), ring.encrypt(b"hello")
        assert one != two and len(one) == len(b"hello") + OVERHEAD
        assert Keyring([SECRET]).decrypt(one) == b"hello"

    def test_a_wrong_key_is_refused(self):
        """A packet under another key does not decrypt."""
        data = Keyring([b"another secret of enough length"]).encrypt(b"hello")
        with pytest.raises(DecryptError):
            Keyring([SECRET]).decrypt(data)

    @given(st.integers(0, 5 + OVERHEAD - 1))
    def test_any_flipped_bit_is_refused(self, index):
        """Authentication covers the version byte, the nonce, the ciphertext and the tag."""
        data = bytearray(Keyring([SECRET]).encrypt(b"hello"))
        data[index] ^= 1
        with pytest.raises(DecryptError):
            Keyring([SECRET]).decrypt(bytes(data))

    def test_rotation_decrypts_with_any_key_of_the_ring(self):
        """A ring [new, old] reads packets from members still on the old key and writes with the new one."""
        old, new = Keyring([SECRET]), Keyring([b"the next secret, also long", SECRET])
        assert new.decrypt(old.encrypt(b"x")) == b"x"
        with pytest.raises(DecryptError):
            old.decrypt(new.encrypt(b"x"))

    def test_short_secrets_are_refused_in_one_line(self):
        """At least 16 bytes once whitespace is stripped; the key is 32 bytes whatever the secret's length."""
        with pytest.raises(SecretError, match=r"^secret key: 15 bytes, at least 16 needed$"):
            derive_key(b"  " + b"x" * 15 + b"\n")
        assert len(derive_key(os.urandom(16))) == len(derive_key(os.urandom(200))) == 32


class TestSecretFile:
    def test_a_file_or_a_mounted_secret_directory(self, tmp_path):
        """The path is the key file itself, or a directory holding `secretkey`; a trailing newline is ignored."""
        value = base64.b64encode(os.urandom(96))  # MetalLB's: openssl rand -base64 128
        (tmp_path / "secretkey").write_bytes(value + b"\n")
        assert read_secret(tmp_path) == read_secret(tmp_path / "secretkey")
        assert derive_key(read_secret(tmp_path)) == derive_key(value)

    def test_missing_or_short_secrets_name_the_path(self, tmp_path):
        """A missing file names where it was looked for; a too short one says so."""
        with pytest.raises(SecretError, match=rf"^secret key path {tmp_path}/secretkey: no such file$"):
            read_secret(tmp_path)
        (tmp_path / "secretkey").write_text("short")
        with pytest.raises(SecretError, match="5 bytes, at least 16"):
            read_secret(tmp_path)
