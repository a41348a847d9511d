"""Authenticated encryption of gossip packets with the shared key (AES-GCM, from ``cryptography``).

The key comes from MetalLB's Secret (``memberlist``, key ``secretkey``),
mounted as a file. Any secret of at least 16 bytes works: the AES-256 key is
HKDF-SHA256 of its bytes (surrounding whitespace ignored), so MetalLB's
``openssl rand -base64 128`` and a raw 16/24/32-byte key are both fine.
Encrypted packets are ``version:u8 nonce:12 ciphertext+tag:16``; the version
byte is authenticated too. A :class:`Keyring` encrypts with its first key and
decrypts with any, so a key can be rotated without a split.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

__all__ = [
    "MIN_SECRET",
    "OVERHEAD",
    "SECRET_KEY",
    "DecryptError",
    "Keyring",
    "SecretError",
    "derive_key",
    "read_secret",
]

#: The key of the Secret's data, and the file name when a directory is mounted (MetalLB's).
SECRET_KEY = "secretkey"
MIN_SECRET = 16
#: Bytes encryption adds to a packet: version, nonce, tag.
OVERHEAD = 1 + 12 + 16
_VERSION = 1
_AAD = b"metallb-memberlist"
_INFO = b"metallb memberlist v1"


class DecryptError(ValueError):
    """A packet that no key of the ring authenticates."""


class SecretError(ValueError):
    """The secret file is missing, unreadable or too short (the message is one line for the log)."""


def derive_key(secret: bytes) -> bytes:
    """The 32-byte AES key for *secret* (at least 16 bytes once whitespace is stripped)."""
    secret = secret.strip()
    if len(secret) < MIN_SECRET:
        raise SecretError(f"secret key: {len(secret)} bytes, at least {MIN_SECRET} needed")
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_INFO).derive(secret)


def read_secret(path: str | os.PathLike[str]) -> bytes:
    """The secret in *path*: a file, or a directory holding ``secretkey`` (a mounted Secret)."""
    where = Path(path)
    if where.is_dir():
        where = where / SECRET_KEY
    try:
        data = where.read_bytes()
    except FileNotFoundError:
        raise SecretError(f"secret key path {where}: no such file") from None
    except OSError as exc:
        raise SecretError(f"secret key path {where}: {exc.strerror or exc}") from None
    derive_key(data)  # the length rule, checked where the path is still known
    return data


class Keyring:
    """Encrypts with the primary (first) key, decrypts with any of them."""

    def __init__(self, secrets: Sequence[bytes]) -> None:
        if not secrets:
            raise SecretError("a keyring needs at least one secret")
        self._ciphers = [AESGCM(derive_key(s)) for s in secrets]

    def encrypt(self, plaintext: bytes) -> bytes:
        """``version nonce ciphertext tag`` under the primary key."""
        nonce = os.urandom(12)
        header = bytes((_VERSION,))
        return header + nonce + self._ciphers[0].encrypt(nonce, plaintext, _AAD + header)

    def decrypt(self, data: bytes) -> bytes:
        """The plaintext, or :class:`DecryptError` when no key authenticates *data*."""
        if len(data) < OVERHEAD or data[0] != _VERSION:
            raise DecryptError("not an encrypted gossip packet")
        header, nonce, body = data[:1], data[1:13], data[13:]
        for cipher in self._ciphers:
            try:
                return cipher.decrypt(nonce, body, _AAD + header)
            except InvalidTag:
                continue
        raise DecryptError("no key of the ring authenticates the packet")
