"""BFD authentication (RFC 5880 6.7): simple password, keyed and meticulous keyed MD5 and SHA1.

One :class:`Authenticator` per session holds the key and the sequence numbers:
it signs what the session sends and checks what it receives. Without one, a
session sends no authentication section and discards packets that carry one.
"""

from __future__ import annotations

import hashlib
import hmac
import random

import attrs
from metallb.announcers.bgp.bfd.packet import AuthSection, AuthType, ControlPacket, encode

__all__ = ["AuthKey", "Authenticator"]

_DIGEST = {
    AuthType.KEYED_MD5: ("md5", 16),
    AuthType.METICULOUS_KEYED_MD5: ("md5", 16),
    AuthType.KEYED_SHA1: ("sha1", 20),
    AuthType.METICULOUS_KEYED_SHA1: ("sha1", 20),
}
_METICULOUS = (AuthType.METICULOUS_KEYED_MD5, AuthType.METICULOUS_KEYED_SHA1)


def _check_secret(instance: AuthKey, attribute: attrs.Attribute[bytes], value: bytes) -> None:
    limit = 16 if instance.type in (AuthType.SIMPLE, AuthType.KEYED_MD5, AuthType.METICULOUS_KEYED_MD5) else 20
    if not 1 <= len(value) <= limit:
        raise ValueError(f"a {instance.type.name.lower()} key is 1 to {limit} bytes, not {len(value)}")


@attrs.frozen(kw_only=True)
class AuthKey:
    """A session's key: the type, the key ID both ends agree on, and the secret."""

    type: AuthType
    key_id: int = attrs.field(default=1, validator=[attrs.validators.ge(0), attrs.validators.le(255)])
    secret: bytes = attrs.field(validator=_check_secret, repr=False)


class Authenticator:
    """Signs and checks one session's packets, tracking sequence numbers (RFC 5880 6.7.3, 6.7.4)."""

    def __init__(self, key: AuthKey, *, rng: random.Random | None = None) -> None:
        self.key = key
        self._xmit_seq = (rng or random.SystemRandom()).getrandbits(32)  # "SHOULD be random" (6.8.1)
        self._rcv_seq = 0
        self._rcv_known = False

    def __repr__(self) -> str:
        return f"<Authenticator({self.key.type.name}, key_id={self.key.key_id})>"

    def sign(self, pkt: ControlPacket) -> bytes:
        """*pkt* encoded with this key's authentication section."""
        key = self.key
        if key.type == AuthType.SIMPLE:
            return encode(attrs.evolve(pkt, auth=AuthSection(type=key.type, key_id=key.key_id, data=key.secret)))
        algo, size = _DIGEST[key.type]
        # Keyed (non-meticulous) types may keep the number; advancing it each packet is allowed and simpler.
        self._xmit_seq = (self._xmit_seq + 1) & 0xFFFFFFFF
        padded = key.secret.ljust(size, b"\0")
        section = AuthSection(type=key.type, key_id=key.key_id, sequence=self._xmit_seq, data=padded)
        unsigned = encode(attrs.evolve(pkt, auth=section))
        digest = hashlib.new(algo, unsigned).digest()
        return unsigned[:-size] + digest

    def reset(self) -> None:
        """Forget the peer's sequence number (the session's detection time passed without a packet)."""
        self._rcv_known = False

    def check(self, raw: bytes, pkt: ControlPacket) -> str | None:
        """None when *pkt* (received as *raw*) is authentic and in sequence, else why it is discarded."""
        key, auth = self.key, pkt.auth
        if auth is None:
            return "no authentication section, but the session uses authentication"
        if auth.type != key.type:
            return f"authentication type {auth.type.name.lower()}, expected {key.type.name.lower()}"
        if auth.key_id != key.key_id:
            return f"key ID {auth.key_id}, expected {key.key_id}"
        if key.type == AuthType.SIMPLE:
            return None if hmac.compare_digest(auth.data, key.secret) else "wrong password"
        algo, size = _DIGEST[key.type]
        length = raw[3]
        expected = hashlib.new(algo, raw[: length - size] + key.secret.ljust(size, b"\0")).digest()
        if not hmac.compare_digest(raw[length - size : length], expected):
            return "wrong digest"
        if self._rcv_known:
            meticulous = key.type in _METICULOUS
            ahead = (auth.sequence - self._rcv_seq) & 0xFFFFFFFF  # modulo 2^32, as 6.7.3 compares
            low = 1 if meticulous else 0
            if not low <= ahead <= 3 * pkt.detect_mult:
                return f"sequence number {auth.sequence} out of window after {self._rcv_seq}"
        self._rcv_seq, self._rcv_known = auth.sequence, True
        return None
