"""BFD control packets (RFC 5880 4) and authentication (6.7): byte layouts, scapy's decoder, a fuzzed decoder."""

from __future__ import annotations

import hashlib
import random
import struct

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from metallb.announcers.bgp.bfd.auth import Authenticator, AuthKey
from metallb.announcers.bgp.bfd.packet import (
    AuthSection,
    AuthType,
    BfdDecodeError,
    ControlPacket,
    Diag,
    State,
    decode,
    encode,
)
from scapy.contrib import bfd as sbfd

# CI must be deterministic: every property is derandomized.
SETTINGS = settings(derandomize=True, database=None, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def h(text: str) -> bytes:
    """Bytes from hex with spaces."""
    return bytes.fromhex(text.replace(" ", ""))


UP = ControlPacket(
    state=State.UP,
    detect_mult=3,
    my_discr=0x11223344,
    your_discr=0x55667788,
    desired_min_tx=100_000,
    required_min_rx=300_000,
)


class TestEncode:
    """Encoding, against layouts written out by hand from RFC 5880 4.1."""

    def test_up_packet_layout(self):
        """Version 1, state Up (3 << 6), multiplier, length 24, both discriminators, three intervals in µs."""
        assert encode(UP) == h("20 c0 03 18  11223344 55667788  000186a0 000493e0 00000000")

    def test_flags_and_diag(self):
        """Poll, Final, C, D and M sit in bits 5-0 of the second byte; the diag in the low 5 bits of the first."""
        pkt = attrs.evolve(UP, state=State.DOWN, diag=Diag.DETECTION_TIME_EXPIRED, poll=True)
        assert encode(pkt)[:2] == h("21 60")
        assert encode(attrs.evolve(UP, final=True))[1] == 0xD0
        assert encode(attrs.evolve(UP, cpi=True, demand=True, multipoint=True))[1] == 0xCB

    def test_scapy_reads_what_we_write(self):
        """scapy's BFD dissector sees the same fields we encoded."""
        pkt = attrs.evolve(UP, state=State.INIT, diag=Diag.NEIGHBOR_DOWN, poll=True)
        parsed = sbfd.BFD(encode(pkt))
        assert (parsed.version, parsed.diag, parsed.sta, parsed.detect_mult, parsed.len) == (1, 3, 2, 3, 24)
        assert (parsed.my_discriminator, parsed.your_discriminator) == (0x11223344, 0x55667788)
        assert (parsed.min_tx_interval, parsed.min_rx_interval, parsed.echo_rx_interval) == (100_000, 300_000, 0)
        assert "P" in str(parsed.flags)

    def test_round_trip_with_auth(self):
        """A packet with each kind of authentication section decodes back to itself."""
        for auth in (
            AuthSection(type=AuthType.SIMPLE, key_id=7, data=b"secret"),
            AuthSection(type=AuthType.KEYED_MD5, key_id=1, sequence=5, data=bytes(16)),
            AuthSection(type=AuthType.METICULOUS_KEYED_SHA1, key_id=2, sequence=1 << 31, data=bytes(range(20))),
        ):
            pkt = attrs.evolve(UP, auth=auth)
            assert decode(encode(pkt)) == pkt


class TestDecode:
    """Decoding, and the discard rules of RFC 5880 6.8.6 that need only the packet."""

    def test_decodes_a_frr_packet(self):
        """A packet as FRR's bfdd sends while Down (captured): slow 1 s intervals, your discriminator 0."""
        pkt = decode(h("20 40 03 18  da43a5ec 00000000  000f4240 000186a0 0000c350"))
        assert (pkt.state, pkt.my_discr, pkt.your_discr) == (State.DOWN, 0xDA43A5EC, 0)
        assert (pkt.desired_min_tx, pkt.required_min_rx, pkt.required_min_echo_rx) == (1_000_000, 100_000, 50_000)

    def test_reserved_diag_is_kept_as_a_number(self):
        """A diag code the RFC reserves decodes as its number, and logs name it."""
        pkt = decode(h("3f c0") + encode(UP)[2:])
        assert pkt.diag == 31 and Diag.text(pkt.diag) == "reserved diagnostic 31"

    def test_trailing_bytes_beyond_length_are_ignored(self):
        """The length field bounds the packet; extra payload (padding) is not part of it."""
        assert decode(encode(UP) + b"\0\0\0\0") == UP

    @pytest.mark.parametrize(
        ("data", "rule"),
        [
            (h("20 c0 03 18 00"), "shorter than the 24-byte header"),
            (h("40") + encode(UP)[1:], "version 2 is not 1"),
            (encode(UP)[:3] + b"\x17" + encode(UP)[4:], "length field 23 is too small"),
            (encode(UP)[:3] + b"\x20" + encode(UP)[4:], "exceeds the 24-byte payload"),
            (encode(UP)[:2] + b"\x00" + encode(UP)[3:], "detect multiplier is 0"),
            (encode(attrs.evolve(UP, multipoint=True)), "multipoint bit is set"),
            (encode(attrs.evolve(UP, my_discr=0)), "my discriminator is 0"),
            (h("20 c4 03 18") + encode(UP)[4:], "length field 24 is too small"),  # A bit: at least 26
            (h("20 c4 03 1a") + encode(UP)[4:] + h("01 03"), "auth len 3 does not match"),
            (h("20 c4 03 1c") + encode(UP)[4:] + h("09 04 01 00"), "unknown authentication type 9"),
            (h("20 c4 03 1c") + encode(UP)[4:] + h("02 04 01 00"), "keyed_md5 auth len 4 is not 24"),
            (h("20 c4 03 1b") + encode(UP)[4:] + h("01 03 01"), "simple password auth len 3 is not 4-19"),
        ],
    )
    def test_discarded_packets_name_the_rule(self, data, rule):
        """Each malformed packet raises BfdDecodeError saying which rule it broke."""
        with pytest.raises(BfdDecodeError, match=rule):
            decode(data)

    @SETTINGS
    @given(st.binary(max_size=80))
    def test_fuzzed_bytes_decode_or_raise_bfd_decode_error(self, data):
        """Arbitrary bytes never raise anything but BfdDecodeError; what decodes re-encodes to the same header."""
        try:
            pkt = decode(data)
        except BfdDecodeError:
            return
        again = encode(pkt)
        assert again[:24] == data[:24]  # the auth section's reserved byte is the only thing not kept
        assert decode(again) == pkt

    @SETTINGS
    @given(st.binary(min_size=24, max_size=64), st.integers(0, 255))
    def test_fuzzed_headers_with_valid_framing(self, tail, flags):
        """Mutated packets with a correct version and length: decoded or discarded, never a crash."""
        data = bytearray(encode(UP)) + bytearray(tail[24:])
        data[1] = flags
        data[3] = min(len(data), max(24, tail[3]))
        data[4:24] = tail[4:24]
        try:
            decode(bytes(data))
        except BfdDecodeError:
            pass


def signed(key: AuthKey, pkt: ControlPacket = UP, *, seed: int = 1) -> tuple[Authenticator, bytes]:
    auth = Authenticator(key, rng=random.Random(seed))
    return auth, auth.sign(pkt)


class TestAuthentication:
    """Simple password, keyed and meticulous keyed MD5 and SHA1 (RFC 5880 6.7)."""

    def test_simple_password_layout_and_check(self):
        """Type 1, length 3 + password, key ID, password; the right password passes, another does not."""
        key = AuthKey(type=AuthType.SIMPLE, key_id=3, secret=b"pw")
        _, raw = signed(key)
        assert raw[3] == 29 and raw[1] & 0x04 and raw[24:] == h("01 05 03") + b"pw"
        receiver = Authenticator(key)
        assert receiver.check(raw, decode(raw)) is None
        wrong = Authenticator(AuthKey(type=AuthType.SIMPLE, key_id=3, secret=b"other"))
        assert wrong.check(raw, decode(raw)) == "wrong password"

    @pytest.mark.parametrize(
        ("kind", "algo", "size"),
        [(AuthType.KEYED_MD5, "md5", 16), (AuthType.KEYED_SHA1, "sha1", 20)],
    )
    def test_digest_is_over_the_packet_with_the_key_in_place(self, kind, algo, size):
        """The digest is computed over the whole packet with the padded key where the digest goes (6.7.3, 6.7.4)."""
        key = AuthKey(type=kind, key_id=1, secret=b"k3y")
        _, raw = signed(key)
        assert raw[3] == 24 + 8 + size
        expected = hashlib.new(algo, raw[:-size] + b"k3y".ljust(size, b"\0")).digest()
        assert raw[-size:] == expected
        assert Authenticator(key).check(raw, decode(raw)) is None
        tampered = raw[:8] + b"\x99" + raw[9:]
        assert Authenticator(key).check(tampered, decode(tampered)) == "wrong digest"

    def test_sequence_window_keyed_and_meticulous(self):
        """Keyed accepts a repeated number and up to 3 x multiplier ahead; meticulous needs it to grow."""
        for kind, repeat_ok in ((AuthType.KEYED_SHA1, True), (AuthType.METICULOUS_KEYED_SHA1, False)):
            key = AuthKey(type=kind, key_id=1, secret=b"s")
            sender = Authenticator(key, rng=random.Random(5))
            receiver = Authenticator(key)
            first = sender.sign(UP)
            assert receiver.check(first, decode(first)) is None
            assert (receiver.check(first, decode(first)) is None) is repeat_ok
            for _ in range(9):  # 3 x multiplier 3 numbers ahead is still inside the window
                ahead = sender.sign(UP)
            assert receiver.check(ahead, decode(ahead)) is None
            for _ in range(10):
                far = sender.sign(UP)
            assert "out of window" in (receiver.check(far, decode(far)) or "")
            receiver.reset()  # after a detection time the receiver takes any number again
            assert receiver.check(far, decode(far)) is None

    def test_sequence_numbers_wrap(self):
        """Sequence numbers compare modulo 2^32: 0 follows 0xffffffff."""
        key = AuthKey(type=AuthType.METICULOUS_KEYED_MD5, key_id=1, secret=b"s")
        sender, receiver = Authenticator(key), Authenticator(key)
        sender._xmit_seq = 0xFFFFFFFE
        for _ in range(3):
            raw = sender.sign(UP)
            assert receiver.check(raw, decode(raw)) is None
        assert decode(raw).auth.sequence == 1

    def test_mismatches_are_named(self):
        """Another type or key ID, or no section at all, is discarded with the reason."""
        key = AuthKey(type=AuthType.KEYED_MD5, key_id=1, secret=b"s")
        _, raw = signed(AuthKey(type=AuthType.KEYED_MD5, key_id=2, secret=b"s"))
        assert Authenticator(key).check(raw, decode(raw)) == "key ID 2, expected 1"
        _, raw = signed(AuthKey(type=AuthType.KEYED_SHA1, key_id=1, secret=b"s"))
        assert "expected keyed_md5" in (Authenticator(key).check(raw, decode(raw)) or "")
        plain = encode(UP)
        assert "no authentication section" in (Authenticator(key).check(plain, decode(plain)) or "")

    def test_key_length_is_checked(self):
        """MD5 keys and passwords are at most 16 bytes, SHA1 keys 20."""
        with pytest.raises(ValueError, match="1 to 16 bytes"):
            AuthKey(type=AuthType.KEYED_MD5, secret=bytes(17))
        assert AuthKey(type=AuthType.KEYED_SHA1, secret=bytes(20)).key_id == 1
        with pytest.raises(ValueError, match="1 to 20 bytes"):
            AuthKey(type=AuthType.KEYED_SHA1, secret=b"")

    def test_sequence_field_is_big_endian(self):
        """The sequence number follows key ID and the reserved byte, in network order."""
        key = AuthKey(type=AuthType.KEYED_MD5, key_id=9, secret=b"s")
        sender = Authenticator(key)
        sender._xmit_seq = 0x01020303
        raw = sender.sign(UP)
        assert raw[24:28] == h("02 18 09 00") and struct.unpack("!I", raw[28:32])[0] == 0x01020304
